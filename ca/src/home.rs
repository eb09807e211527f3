//! The CA home: the folder `mercato-ca init` creates and `mercato-ca start` serves from.
//!
//! ```text
//! <home>/
//!   mercato-ca.toml      the commented configuration
//!   ca/cert.pem          the enrollment CA's certificate (a root, or an intermediate)
//!   ca/key.pem           its P-256 key, PKCS#8 (0600)
//!   ca/chain.pem         for an intermediate: the parent's chain up to the root
//!   tlsca/cert.pem       the TLS root, separate from the enrollment CA
//!   tlsca/key.pem        its key (0600)
//!   tls/server.crt       the server's TLS certificate, from the TLS root, for `server.hosts`
//!   tls/server.key       its key (0600)
//!   db/                  the sled registry
//! ```
//!
//! Folders are 0700. `init` builds the home in a temporary folder beside it and renames it into
//! place at the end, so a failed `init` leaves nothing behind and a home is never half made.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ring::rand::{SecureRandom, SystemRandom};
use x509_parser::extensions::GeneralName;

use crate::authority::{Authority, SubjectKey, TlsRequest, Validity};
use crate::client::{CaClient, EnrollOptions, KeyChoice};
use crate::crypto::{KeyAlgorithm, SigningKey, pem_blocks, to_pem};
use crate::error::CaError;
use crate::identity::Role;
use crate::password::{PasswordHasher, generate_secret};
use crate::registry::{Registration, Registry, SledRegistry};
use crate::server::auth::bootstrap_admin_attributes;
use crate::server::config::{CONFIG_FILE, Config};
use crate::server::core::{CaMaterial, Profile, check_enrollment_id};

/// A server TLS certificate is issued again when it expires within this many seconds.
const SERVER_TLS_RENEW_BEFORE_SECS: i64 = 30 * 86_400;
/// How far back issued certificates start, seconds (clients' clocks may lag).
const BACKDATE_SECS: i64 = 300;

/// The paths of a CA home.
#[derive(Debug, Clone)]
pub struct CaHome {
    dir: PathBuf,
}

/// What `init` needs beyond the configuration.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The configuration to write (and to make the CA with).
    pub config: Config,
    /// The bootstrap admin's enrollment id.
    pub admin_id: String,
    /// Its secret; generated when `None`.
    pub admin_secret: Option<String>,
    /// A parent CA to enroll with as an intermediate; a self-signed root when `None`.
    pub parent: Option<ParentCa>,
}

/// A parent CA that signs this CA's certificate (Fabric CA's intermediate flow): this CA
/// generates its key, sends a CSR, and the parent issues a CA certificate to an identity its
/// registrar registered with `hf.IntermediateCA=true`.
#[derive(Debug, Clone)]
pub struct ParentCa {
    /// The parent's address, `https://host:port`.
    pub url: String,
    /// The parent's TLS root, PEM.
    pub tls_root_pem: Vec<u8>,
    /// The identity the parent registered for this CA.
    pub enrollment_id: String,
    /// Its secret.
    pub secret: String,
}

/// What `init` made.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// The home.
    pub home: PathBuf,
    /// The bootstrap admin's enrollment id.
    pub admin_id: String,
    /// Its one-time secret (it enrolls once; shown once).
    pub admin_secret: String,
    /// Where clients find the TLS root.
    pub tls_root: PathBuf,
}

impl CaHome {
    /// The home at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CaHome { dir: dir.into() }
    }

    /// The home folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// `mercato-ca.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }
    /// The enrollment CA's certificate.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join("ca/cert.pem")
    }
    /// The enrollment CA's key.
    pub fn ca_key_path(&self) -> PathBuf {
        self.dir.join("ca/key.pem")
    }
    /// The parent chain of an intermediate enrollment CA.
    pub fn chain_path(&self) -> PathBuf {
        self.dir.join("ca/chain.pem")
    }
    /// The TLS root's certificate: what clients need to connect.
    pub fn tls_root_path(&self) -> PathBuf {
        self.dir.join("tlsca/cert.pem")
    }
    /// The TLS root's key.
    pub fn tls_root_key_path(&self) -> PathBuf {
        self.dir.join("tlsca/key.pem")
    }
    /// The server's TLS certificate.
    pub fn server_cert_path(&self) -> PathBuf {
        self.dir.join("tls/server.crt")
    }
    /// The server's TLS key.
    pub fn server_key_path(&self) -> PathBuf {
        self.dir.join("tls/server.key")
    }
    /// The registry.
    pub fn db_path(&self) -> PathBuf {
        self.dir.join("db")
    }

    /// Reads `mercato-ca.toml`.
    pub fn load_config(&self) -> Result<Config, CaError> {
        let path = self.config_path();
        let bytes = read(&path)?;
        let text = String::from_utf8(bytes).map_err(|_| CaError::home(&path, "not UTF-8"))?;
        Config::from_toml(&text).map_err(|e| CaError::home(&path, e.to_string()))
    }

    /// Loads the enrollment CA and the TLS root.
    pub fn load_material(&self) -> Result<CaMaterial, CaError> {
        for key in [self.ca_key_path(), self.tls_root_key_path()] {
            warn_if_readable_by_others(&key);
        }
        let authority = load_authority(&self.ca_cert_path(), &self.ca_key_path())?;
        let tls_authority = load_authority(&self.tls_root_path(), &self.tls_root_key_path())?;
        let chain_path = self.chain_path();
        let parent_chain = if chain_path.exists() {
            let chain = pem_blocks(&read(&chain_path)?, "CERTIFICATE")
                .map_err(|e| CaError::home(&chain_path, e.to_string()))?;
            if chain.is_empty() {
                return Err(CaError::home(&chain_path, "no certificate in the chain"));
            }
            chain
        } else {
            Vec::new()
        };
        Ok(CaMaterial {
            authority,
            parent_chain,
            tls_authority,
        })
    }

    /// The server's TLS certificate and key (PEM), issued again from the TLS root when they are
    /// missing, expire within 30 days, were not issued by the current TLS root, or name other
    /// hosts than `server.hosts`.
    pub fn server_tls(
        &self,
        config: &Config,
        tls_authority: &Authority,
        now: i64,
    ) -> Result<(Vec<u8>, Vec<u8>), CaError> {
        let (cert_path, key_path) = (self.server_cert_path(), self.server_key_path());
        if cert_path.exists() && key_path.exists() {
            warn_if_readable_by_others(&key_path);
            let cert_pem = read(&cert_path)?;
            let key_pem = read(&key_path)?;
            match server_cert_is_current(&cert_pem, &key_pem, config, tls_authority, now) {
                Ok(()) => return Ok((cert_pem, key_pem)),
                Err(why) => tracing::info!(reason = %why, "issuing a new server TLS certificate"),
            }
        }
        let (cert_pem, key_pem) = issue_server_tls(config, tls_authority, now)?;
        write_atomically(&cert_path, cert_pem.as_bytes(), 0o644)?;
        write_atomically(&key_path, key_pem.as_bytes(), 0o600)?;
        Ok((cert_pem.into_bytes(), key_pem.into_bytes()))
    }
}

/// Creates a CA home at `dir` (which must not exist, or be empty): the enrollment CA (a root,
/// or an intermediate signed by `options.parent`), the TLS root, the server's TLS certificate,
/// the registry with the bootstrap admin, and the commented configuration.
pub async fn init(dir: &Path, options: InitOptions) -> Result<InitReport, CaError> {
    crate::server::install_crypto_provider();
    options.config.validate()?;
    check_enrollment_id(&options.admin_id)?;
    if let Ok(mut entries) = fs::read_dir(dir)
        && entries.next().is_some()
    {
        return Err(CaError::home(
            dir,
            "already exists and is not empty; a CA home is never overwritten",
        ));
    }
    let parent_dir = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = dir
        .file_name()
        .ok_or_else(|| CaError::home(dir, "is not a folder name"))?
        .to_string_lossy()
        .into_owned();
    let mut suffix = [0u8; 6];
    SystemRandom::new()
        .fill(&mut suffix)
        .map_err(|_| CaError::Internal("the system random generator failed".into()))?;
    let staging = parent_dir.join(format!(".{name}.init-{}", hex::encode(suffix)));
    create_private_dir(&staging)?;
    let result = build_home(&CaHome::new(&staging), &options).await;
    let admin_secret = match result {
        Ok(secret) => secret,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    // An empty target folder is replaced; `rename` refuses a non-empty one, so a home created
    // meanwhile by someone else is not clobbered.
    if dir.exists() {
        fs::remove_dir(dir).map_err(|e| CaError::home(dir, e.to_string()))?;
    }
    if let Err(e) = fs::rename(&staging, dir) {
        let _ = fs::remove_dir_all(&staging);
        return Err(CaError::home(
            dir,
            format!("cannot move the new home into place: {e}"),
        ));
    }
    if let Ok(d) = fs::File::open(&parent_dir) {
        let _ = d.sync_all();
    }
    let home = CaHome::new(dir);
    tracing::info!(home = %dir.display(), admin = %options.admin_id, "CA home initialised");
    Ok(InitReport {
        tls_root: home.tls_root_path(),
        home: dir.to_path_buf(),
        admin_id: options.admin_id.clone(),
        admin_secret,
    })
}

/// Fills a staging home; returns the admin's secret.
async fn build_home(home: &CaHome, options: &InitOptions) -> Result<String, CaError> {
    let config = &options.config;
    let now = crate::server::core::Clock::now(&crate::server::core::SystemClock);
    // The registry holds secret hashes: its folder is private too.
    for sub in ["ca", "tlsca", "tls", "db"] {
        create_private_dir(&home.dir.join(sub))?;
    }
    let root_validity = Validity::days_from(now - BACKDATE_SECS, config.ca.validity_days);
    let (authority, parent_chain) = match &options.parent {
        None => (
            Authority::new_root(&config.ca.name, &config.ca.organization, root_validity)
                .map_err(|e| CaError::Internal(format!("making the root CA: {e}")))?,
            Vec::new(),
        ),
        Some(parent) => enroll_with_parent(parent).await?,
    };
    write_new(
        &home.ca_cert_path(),
        authority.certificate_pem().as_bytes(),
        0o644,
    )?;
    write_new(
        &home.ca_key_path(),
        to_pem("PRIVATE KEY", &authority.key_pkcs8_der()).as_bytes(),
        0o600,
    )?;
    if !parent_chain.is_empty() {
        let chain: String = parent_chain
            .iter()
            .map(|der| to_pem("CERTIFICATE", der))
            .collect();
        write_new(&home.chain_path(), chain.as_bytes(), 0o644)?;
    }
    let tls_root = Authority::new_root(
        &format!("tlsca.{}", config.ca.name),
        &config.ca.organization,
        root_validity,
    )
    .map_err(|e| CaError::Internal(format!("making the TLS root: {e}")))?;
    write_new(
        &home.tls_root_path(),
        tls_root.certificate_pem().as_bytes(),
        0o644,
    )?;
    write_new(
        &home.tls_root_key_path(),
        to_pem("PRIVATE KEY", &tls_root.key_pkcs8_der()).as_bytes(),
        0o600,
    )?;
    let (cert_pem, key_pem) = issue_server_tls(config, &tls_root, now)?;
    write_new(&home.server_cert_path(), cert_pem.as_bytes(), 0o644)?;
    write_new(&home.server_key_path(), key_pem.as_bytes(), 0o600)?;

    // Hashing is slow by design; it runs off the async threads.
    let admin_id = options.admin_id.clone();
    let secret = match &options.admin_secret {
        Some(s) => s.clone(),
        None => generate_secret()?,
    };
    let db = home.db_path();
    let iterations = config.security.pbkdf2_iterations;
    let secret_for_hash = secret.clone();
    tokio::task::spawn_blocking(move || -> Result<(), CaError> {
        let registry = SledRegistry::open(&db)?;
        let hasher = PasswordHasher::new(iterations)?;
        registry.register(&Registration {
            id: admin_id,
            role: Role::Admin,
            affiliation: String::new(),
            attributes: bootstrap_admin_attributes(),
            // One enrollment: the secret is for bootstrapping only; afterwards the admin
            // renews with `reenroll`.
            max_enrollments: Some(1),
            enrollments: 0,
            secret: hasher.hash(&secret_for_hash)?,
            registered_by: String::new(),
            registered_at: now,
            revoked: None,
        })?;
        Ok(())
    })
    .await
    .map_err(|e| CaError::Internal(format!("registering the bootstrap admin: {e}")))??;
    write_new(
        &home.config_path(),
        config.to_commented_toml().as_bytes(),
        0o644,
    )?;
    Ok(secret)
}

/// Enrolls with the parent CA for an intermediate CA certificate; returns the new CA and the
/// parent's chain.
async fn enroll_with_parent(parent: &ParentCa) -> Result<(Authority, Vec<Vec<u8>>), CaError> {
    let fail = |e: crate::error::ClientError| {
        CaError::Config(format!(
            "enrolling with the parent CA at {}: {e}",
            parent.url
        ))
    };
    let mut client = CaClient::connect(&parent.url, &parent.tls_root_pem)
        .await
        .map_err(fail)?;
    let enrolled = client
        .enroll(
            &parent.enrollment_id,
            &parent.secret,
            &EnrollOptions {
                key: KeyChoice::Generate(KeyAlgorithm::EcdsaP256),
                profile: Profile::IntermediateCa,
                tls: None,
            },
        )
        .await
        .map_err(fail)?;
    let authority = Authority::load(&enrolled.certificate, &enrolled.key_pkcs8)
        .map_err(|e| CaError::Config(format!("the parent CA's certificate is not usable: {e}")))?;
    Ok((authority, enrolled.ca_chain))
}

fn issue_server_tls(
    config: &Config,
    tls_authority: &Authority,
    now: i64,
) -> Result<(String, String), CaError> {
    let (key, pkcs8) = SigningKey::generate(KeyAlgorithm::EcdsaP256)
        .map_err(|e| CaError::Internal(format!("making the server TLS key: {e}")))?;
    let serial = crate::server::core::new_serial()?;
    let mut validity =
        Validity::days_from(now - BACKDATE_SECS, config.enrollment.tls_validity_days);
    validity.not_after = validity.not_after.min(tls_authority.not_after());
    let der = tls_authority
        .issue_tls(&TlsRequest {
            common_name: config.ca.name.clone(),
            role: None,
            key: SubjectKey {
                algorithm: KeyAlgorithm::EcdsaP256,
                bytes: key.public_key_bytes().to_vec(),
            },
            validity,
            serial,
            hosts: config.server.hosts.clone(),
        })
        .map_err(|e| CaError::Internal(format!("issuing the server TLS certificate: {e}")))?;
    Ok((to_pem("CERTIFICATE", &der), to_pem("PRIVATE KEY", &pkcs8)))
}

/// Why the stored server certificate must be issued again, if it must.
fn server_cert_is_current(
    cert_pem: &[u8],
    key_pem: &[u8],
    config: &Config,
    tls_authority: &Authority,
    now: i64,
) -> Result<(), String> {
    let der = pem_blocks(cert_pem, "CERTIFICATE")
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .ok_or("no certificate in the file")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| e.to_string())?;
    let (_, root) = x509_parser::parse_x509_certificate(tls_authority.certificate_der())
        .map_err(|e| e.to_string())?;
    if cert.verify_signature(Some(root.public_key())).is_err() {
        return Err("it was not issued by the current TLS root".into());
    }
    if cert.validity().not_after.timestamp() < now + SERVER_TLS_RENEW_BEFORE_SECS {
        return Err("it expires within 30 days".into());
    }
    let key = SigningKey::from_pem(key_pem).map_err(|e| e.to_string())?;
    if key.public_key_bytes() != cert.public_key().subject_public_key.data.as_ref() {
        return Err("the key does not match it".into());
    }
    let mut have = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => have.push(d.to_ascii_lowercase()),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => have.push(
                        std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap_or_default())
                            .to_string(),
                    ),
                    16 => have.push(
                        std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap_or_default())
                            .to_string(),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let mut want: Vec<String> = config
        .server
        .hosts
        .iter()
        .map(|h| match h.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => h.to_ascii_lowercase(),
        })
        .collect();
    have.sort();
    have.dedup();
    want.sort();
    want.dedup();
    if have != want {
        return Err(format!(
            "it names hosts {have:?}, the configuration {want:?}"
        ));
    }
    Ok(())
}

fn load_authority(cert: &Path, key: &Path) -> Result<Authority, CaError> {
    let cert_der = pem_blocks(&read(cert)?, "CERTIFICATE")
        .map_err(|e| CaError::home(cert, e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| CaError::home(cert, "no CERTIFICATE block"))?;
    let key_der = pem_blocks(&read(key)?, "PRIVATE KEY")
        .map_err(|e| CaError::home(key, e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| CaError::home(key, "no PRIVATE KEY block"))?;
    Authority::load(&cert_der, &key_der).map_err(|e| CaError::home(cert, e.to_string()))
}

fn read(path: &Path) -> Result<Vec<u8>, CaError> {
    crate::msp::read_limited(path).map_err(|e| CaError::home(path, e.to_string()))
}

fn create_private_dir(dir: &Path) -> Result<(), CaError> {
    fs::create_dir_all(dir).map_err(|e| CaError::home(dir, e.to_string()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| CaError::home(dir, e.to_string()))
}

/// Writes a new file with `mode`, refusing to replace one, and syncs it.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| CaError::home(path, e.to_string()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| CaError::home(path, e.to_string()))
}

/// Replaces a file: writes a new one beside it, then renames it over the old one.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, bytes, mode)?;
    fs::rename(&tmp, path).map_err(|e| CaError::home(path, e.to_string()))
}

fn warn_if_readable_by_others(path: &Path) {
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "a private key is readable by other users; it should be 0600"
        );
    }
}

/// A shared registry opened from the home (for the server).
pub(crate) fn open_registry(home: &CaHome) -> Result<Arc<dyn Registry>, CaError> {
    Ok(Arc::new(SledRegistry::open(&home.db_path())?))
}
