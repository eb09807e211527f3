//! `mercato-ca`: the certificate authority server and its client commands.
//!
//! `init` creates a CA home, `start` serves it; `register`, `enroll`, `reenroll`, `revoke`,
//! `gencrl` and `list` talk to a running CA and write MSP folders. Everything is done by the
//! `mercato_ca` library; this file parses flags, starts logging and prints results.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use mercato_ca::authority::RevocationReason;
use mercato_ca::client::{
    self, CaClient, EnrollOptions, KeyChoice, RegisterOptions, RevokeWhat, TlsOptions,
};
use mercato_ca::home::{self, CaHome, InitOptions, ParentCa};
use mercato_ca::server::core::Profile;
use mercato_ca::server::{self, Config};
use mercato_ca::{KeyAlgorithm, SigningIdentity};

#[derive(Parser)]
#[command(
    name = "mercato-ca",
    version,
    about = "Mercato's certificate authority"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a CA home: enrollment CA, TLS root, server TLS certificate, bootstrap admin.
    Init(InitArgs),
    /// Serve the CA home until interrupted (SIGINT or SIGTERM).
    Start {
        /// The CA home.
        #[arg(long, env = "MERCATO_CA_HOME")]
        home: PathBuf,
    },
    /// Register an identity (as a registrar); prints its secret.
    Register(RegisterArgs),
    /// Enroll an identity with its secret and write its MSP folder.
    Enroll(EnrollArgs),
    /// Renew the certificate of an MSP folder's identity (optionally with a new key).
    Reenroll(ReenrollArgs),
    /// Revoke an identity (all its certificates) or one certificate.
    Revoke(RevokeArgs),
    /// Get a fresh CRL and write it into an MSP folder.
    Gencrl(GencrlArgs),
    /// List the identities the caller manages.
    List(ListArgs),
}

#[derive(Args)]
struct InitArgs {
    /// The CA home to create (must not exist, or be empty).
    #[arg(long, env = "MERCATO_CA_HOME")]
    home: PathBuf,
    /// The CA's name: the common name of its certificate.
    #[arg(long, default_value = "ca.org1.example.com")]
    name: String,
    /// The organisation (the O of every certificate).
    #[arg(long, default_value = "Org1")]
    organization: String,
    /// The organisation's MSP id.
    #[arg(long, default_value = "Org1MSP")]
    msp_id: String,
    /// A DNS name or IP address clients dial (repeat for several). Default: localhost,
    /// 127.0.0.1.
    #[arg(long = "host")]
    hosts: Vec<String>,
    /// The address to listen on.
    #[arg(long, default_value = "0.0.0.0:7054")]
    listen: String,
    /// The bootstrap admin's enrollment id.
    #[arg(long, default_value = "admin")]
    admin: String,
    /// The bootstrap admin's secret; generated and printed when not given.
    #[arg(long, env = "MERCATO_CA_ADMIN_SECRET", hide_env_values = true)]
    admin_secret: Option<String>,
    /// PBKDF2 iterations for secret hashes.
    #[arg(long)]
    pbkdf2_iterations: Option<u32>,
    /// Make an intermediate CA signed by this parent CA (https://host:port) instead of a root.
    #[arg(long, requires_all = ["parent_tls_root", "parent_id", "parent_secret"])]
    parent_url: Option<String>,
    /// The parent CA's TLS root (PEM).
    #[arg(long)]
    parent_tls_root: Option<PathBuf>,
    /// The identity the parent's registrar registered for this CA (with hf.IntermediateCA=true).
    #[arg(long)]
    parent_id: Option<String>,
    /// Its secret.
    #[arg(long, env = "MERCATO_CA_PARENT_SECRET", hide_env_values = true)]
    parent_secret: Option<String>,
}

/// Where the CA is.
#[derive(Args)]
struct Connection {
    /// The CA's address.
    #[arg(long, env = "MERCATO_CA_URL", default_value = "https://localhost:7054")]
    url: String,
    /// The CA's TLS root (its home's tlsca/cert.pem).
    #[arg(long, env = "MERCATO_CA_TLS_ROOT")]
    tls_root: PathBuf,
}

impl Connection {
    async fn connect(&self) -> Result<CaClient> {
        let root = std::fs::read(&self.tls_root)
            .with_context(|| format!("reading the TLS root {}", self.tls_root.display()))?;
        Ok(CaClient::connect(&self.url, &root).await?)
    }
}

/// The caller's identity, for signed requests.
#[derive(Args)]
struct Caller {
    /// The caller's MSP folder (signcerts/ and keystore/).
    #[arg(long, env = "MERCATO_CA_MSPDIR")]
    mspdir: PathBuf,
}

impl Caller {
    fn load(&self) -> Result<SigningIdentity> {
        // The MSP id only labels the identity locally; the CA checks the certificate.
        SigningIdentity::load("", &self.mspdir).with_context(|| {
            format!(
                "loading the caller's identity from {}",
                self.mspdir.display()
            )
        })
    }
}

#[derive(Args)]
struct RegisterArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(flatten)]
    caller: Caller,
    /// The new enrollment id.
    #[arg(long)]
    id: String,
    /// Its secret; the CA generates one when not given.
    #[arg(long, env = "MERCATO_CA_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Its type: client, peer, orderer, admin or auditor.
    #[arg(long = "type", default_value = "client")]
    role: String,
    /// Its affiliation (default: the registrar's).
    #[arg(long)]
    affiliation: Option<String>,
    /// An attribute name=value (repeat for several), e.g. role=brand.
    #[arg(long = "attr", value_parser = parse_attribute)]
    attributes: Vec<(String, String)>,
    /// How many times the secret may enroll: 0 for the CA's default, -1 unlimited.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    max_enrollments: i32,
}

#[derive(Args)]
struct KeyArgs {
    /// The key algorithm: p256 (Fabric-compatible) or ed25519 (faster to verify).
    #[arg(long, default_value = "p256")]
    key_algorithm: KeyAlgorithm,
    /// Also get a TLS certificate (with --host for a node's server certificate).
    #[arg(long)]
    tls: bool,
    /// A DNS name or IP address for the TLS certificate (repeat for several).
    #[arg(long = "host", requires = "tls")]
    hosts: Vec<String>,
}

impl KeyArgs {
    fn tls(&self) -> Option<TlsOptions> {
        self.tls.then(|| TlsOptions {
            algorithm: self.key_algorithm,
            hosts: self.hosts.clone(),
        })
    }
}

#[derive(Args)]
struct EnrollArgs {
    #[command(flatten)]
    connection: Connection,
    /// The enrollment id.
    #[arg(long)]
    id: String,
    /// Its secret.
    #[arg(long, env = "MERCATO_CA_SECRET", hide_env_values = true)]
    secret: String,
    /// The MSP folder to write.
    #[arg(long, env = "MERCATO_CA_MSPDIR")]
    mspdir: PathBuf,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(Args)]
struct ReenrollArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(flatten)]
    caller: Caller,
    /// Generate a new key instead of keeping the current one.
    #[arg(long)]
    rotate_key: bool,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(Args)]
struct RevokeArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(flatten)]
    caller: Caller,
    /// Revoke this identity and all its certificates.
    #[arg(long, conflicts_with = "serial", required_unless_present = "serial")]
    id: Option<String>,
    /// Revoke this certificate (hex serial, as `list` shows it).
    #[arg(long)]
    serial: Option<String>,
    /// Why: unspecified, keycompromise, cacompromise, affiliationchanged, superseded,
    /// cessationofoperation, privilegewithdrawn, aacompromise.
    #[arg(long, default_value = "unspecified")]
    reason: RevocationReason,
    /// Also get a fresh CRL and write it into the caller's MSP folder (crls/crl.pem).
    #[arg(long)]
    gencrl: bool,
}

#[derive(Args)]
struct GencrlArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(flatten)]
    caller: Caller,
    /// Where to write the CRL (PEM); default: the caller's MSP folder, crls/crl.pem.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where to write the TLS root's CRL (PEM), if wanted.
    #[arg(long)]
    tls_out: Option<PathBuf>,
}

#[derive(Args)]
struct ListArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(flatten)]
    caller: Caller,
}

fn parse_attribute(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{s:?} is not name=value"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain on one line, without a backtrace: these are operator errors.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MERCATO_CA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    server::install_crypto_provider();
    match Cli::parse().command {
        Command::Init(args) => init(args).await,
        Command::Start { home } => start(&home).await,
        Command::Register(args) => register(args).await,
        Command::Enroll(args) => enroll(args).await,
        Command::Reenroll(args) => reenroll(args).await,
        Command::Revoke(args) => revoke(args).await,
        Command::Gencrl(args) => gencrl(args).await,
        Command::List(args) => list(args).await,
    }
}

async fn init(args: InitArgs) -> Result<()> {
    let mut config = Config::default();
    config.ca.name = args.name;
    config.ca.organization = args.organization;
    config.ca.msp_id = args.msp_id;
    config.server.listen = args.listen;
    if !args.hosts.is_empty() {
        config.server.hosts = args.hosts;
    }
    if let Some(n) = args.pbkdf2_iterations {
        config.security.pbkdf2_iterations = n;
    }
    let parent = match args.parent_url {
        Some(url) => Some(ParentCa {
            url,
            tls_root_pem: read(args.parent_tls_root.as_deref())?,
            enrollment_id: args.parent_id.unwrap_or_default(),
            secret: args.parent_secret.unwrap_or_default(),
        }),
        None => None,
    };
    let report = home::init(
        &args.home,
        InitOptions {
            config,
            admin_id: args.admin,
            admin_secret: args.admin_secret,
            parent,
        },
    )
    .await?;
    println!("CA home: {}", report.home.display());
    println!("TLS root for clients: {}", report.tls_root.display());
    println!("bootstrap admin: {}", report.admin_id);
    println!("admin secret: {}", report.admin_secret);
    eprintln!("The secret enrolls the admin once and is not stored in clear; keep it until then.");
    Ok(())
}

fn read(path: Option<&Path>) -> Result<Vec<u8>> {
    let path = path.context("a path is missing")?;
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

async fn start(home: &Path) -> Result<()> {
    let mut config = CaHome::new(home).load_config()?;
    // vars() panics on a value that is not UTF-8; such variables are not ours anyway.
    config.apply_env(
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
    )?;
    server::run(home, config, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutting down");
}

async fn register(args: RegisterArgs) -> Result<()> {
    let signer = args.caller.load()?;
    let mut ca = args.connection.connect().await?;
    let secret = ca
        .register(
            &signer,
            &RegisterOptions {
                id: args.id.clone(),
                secret: args.secret,
                role: args.role,
                affiliation: args.affiliation,
                attributes: args.attributes,
                max_enrollments: args.max_enrollments,
            },
        )
        .await?;
    println!("registered: {}", args.id);
    println!("secret: {secret}");
    Ok(())
}

async fn enroll(args: EnrollArgs) -> Result<()> {
    let mut ca = args.connection.connect().await?;
    let enrolled = ca
        .enroll(
            &args.id,
            &args.secret,
            &EnrollOptions {
                key: KeyChoice::Generate(args.key.key_algorithm),
                profile: Profile::Enrollment,
                tls: args.key.tls(),
            },
        )
        .await?;
    client::write_msp(&args.mspdir, &enrolled)?;
    println!("enrolled {}: serial {}", args.id, enrolled.serial);
    if let Some(tls) = &enrolled.tls {
        println!("TLS certificate: serial {}", tls.serial);
    }
    println!("MSP folder: {}", args.mspdir.display());
    Ok(())
}

async fn reenroll(args: ReenrollArgs) -> Result<()> {
    let signer = args.caller.load()?;
    let key = if args.rotate_key {
        KeyChoice::Generate(args.key.key_algorithm)
    } else {
        KeyChoice::Reuse(client::read_key(&args.caller.mspdir)?)
    };
    let mut ca = args.connection.connect().await?;
    let enrolled = ca
        .reenroll(
            &signer,
            &EnrollOptions {
                key,
                profile: Profile::Enrollment,
                tls: args.key.tls(),
            },
        )
        .await?;
    client::write_msp(&args.caller.mspdir, &enrolled)?;
    println!("re-enrolled: serial {}", enrolled.serial);
    Ok(())
}

async fn revoke(args: RevokeArgs) -> Result<()> {
    let signer = args.caller.load()?;
    let what = match (args.id, args.serial) {
        (Some(id), None) => RevokeWhat::Identity(id),
        (None, Some(serial)) => RevokeWhat::Serial(serial),
        _ => bail!("give exactly one of --id and --serial"),
    };
    let mut ca = args.connection.connect().await?;
    let (serials, crl) = ca.revoke(&signer, &what, args.reason, args.gencrl).await?;
    for serial in &serials {
        println!("revoked: {serial}");
    }
    if let Some(crl) = crl {
        let path = client::write_crl(&args.caller.mspdir, &crl)?;
        println!("CRL: {}", path.display());
    }
    Ok(())
}

async fn gencrl(args: GencrlArgs) -> Result<()> {
    let signer = args.caller.load()?;
    let mut ca = args.connection.connect().await?;
    let crls = ca.gen_crl(&signer).await?;
    let path = match args.out {
        Some(path) => {
            std::fs::write(&path, mercato_ca::crypto::to_pem("X509 CRL", &crls.crl))
                .with_context(|| format!("writing {}", path.display()))?;
            path
        }
        None => client::write_crl(&args.caller.mspdir, &crls.crl)?,
    };
    println!("CRL {}: {}", crls.number, path.display());
    if let Some(tls_out) = args.tls_out {
        std::fs::write(
            &tls_out,
            mercato_ca::crypto::to_pem("X509 CRL", &crls.tls_crl),
        )
        .with_context(|| format!("writing {}", tls_out.display()))?;
        println!("TLS CRL {}: {}", crls.number, tls_out.display());
    }
    Ok(())
}

async fn list(args: ListArgs) -> Result<()> {
    let signer = args.caller.load()?;
    let mut ca = args.connection.connect().await?;
    for id in ca.list(&signer).await? {
        let attrs: Vec<String> = id
            .attributes
            .iter()
            .map(|a| format!("{}={}", a.name, a.value))
            .collect();
        let max = match id.max_enrollments {
            -1 => "unlimited".to_owned(),
            n => n.to_string(),
        };
        println!(
            "{} type={} affiliation={:?} enrollments={}/{} revoked={} attrs=[{}]",
            id.enrollment_id,
            id.r#type,
            id.affiliation,
            id.enrollments,
            max,
            id.revoked,
            attrs.join(", ")
        );
        for cert in &id.certificates {
            println!(
                "  {} {} not_after={} revoked={}",
                cert.kind, cert.serial, cert.not_after, cert.revoked
            );
        }
    }
    Ok(())
}
