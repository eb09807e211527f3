//! Making and running a network from its spec: the organisations' CAs, every credential
//! enrolled through them, the genesis block, the node configurations, the nodes as child
//! processes, and the record of it all in `network.json` (so that `up` again resumes it and
//! `down`, `status` and `restart` find the nodes).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use mercato_ca::KeyAlgorithm;
use mercato_ca::client::{
    CaClient, EnrollOptions, KeyChoice, RegisterOptions, TlsOptions, write_msp,
};
use mercato_ca::crypto::pem_blocks;
use mercato_ca::home::{self, CaHome, InitOptions};
use mercato_ca::server::Config as CaConfig;
use mercato_proto::config::new_genesis_block;
use mercato_proto::pb::mercato as pb;
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::spec::{OrgKind, Scheme, Spec};

/// What kind of process a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Ca,
    Orderer,
    Peer,
}

/// One node of the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub kind: Kind,
    pub msp_id: String,
    /// Its service address (TLS).
    pub listen: String,
    /// Its operations address (`/healthz`, `/metrics`); none for a CA.
    pub operations: Option<String>,
    /// Its home: configuration, MSP, data.
    pub home: PathBuf,
    pub log: PathBuf,
    /// The process, while it runs.
    pub pid: Option<u32>,
}

/// A member's identity, for the demo and the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub msp_id: String,
    pub msp_dir: PathBuf,
    /// The peer of its organisation it talks to, and the TLS root that peer chains to.
    pub peer: String,
    pub tls_root: PathBuf,
}

/// Everything `up` made, in `network.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub spec: Spec,
    pub nodes: Vec<Node>,
    pub users: BTreeMap<String, User>,
    /// Chaincodes committed on the channel.
    pub committed: Vec<String>,
    /// How many times the demo ran (its ids are unique per run).
    pub demo_runs: u32,
}

impl State {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("network.json")
    }

    pub fn load(data_dir: &Path) -> Result<Option<State>> {
        let path = Self::path(data_dir);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
        Ok(Some(serde_json::from_str(&text).with_context(|| {
            format!("{} is not a network record", path.display())
        })?))
    }

    /// Writes the record (atomically: a crash leaves the old one or the new one).
    pub fn save(&self, data_dir: &Path) -> Result<()> {
        let path = Self::path(data_dir);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// Shows progress.
pub fn step(text: &str) {
    eprintln!("==> {text}");
}

/// Where the node binaries are: `MERCATO_BIN_DIR` when set (used as it is), else beside this
/// program, built first with cargo from the workspace so that they are never older than the
/// source (cargo does nothing when they are current).
pub fn binaries(workspace: &Path) -> Result<PathBuf> {
    let names = ["mercato-ca", "mercato-orderer", "mercato-peer"];
    if let Some(dir) = std::env::var_os("MERCATO_BIN_DIR") {
        let dir = PathBuf::from(dir);
        if let Some(missing) = names.iter().find(|n| !dir.join(n).exists()) {
            bail!("MERCATO_BIN_DIR={}: no {missing} there", dir.display());
        }
        return Ok(dir);
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    if !workspace.join("Cargo.toml").exists() {
        if let Some(missing) = names.iter().find(|n| !dir.join(n).exists()) {
            bail!(
                "no {missing} beside {} and no workspace to build it from",
                exe.display()
            );
        }
        return Ok(dir);
    }
    let release = dir.ends_with("release");
    step(&format!(
        "building the node binaries ({} profile; a first build takes several minutes)",
        if release { "release" } else { "dev" }
    ));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "-q",
        "-p",
        "mercato-ca",
        "-p",
        "mercato-orderer",
        "-p",
        "mercato-peer",
    ]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd
        .current_dir(workspace)
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("building the node binaries failed");
    }
    Ok(dir)
}

/// Builds a chaincode crate for wasm, adding the wasm target with rustup first if it is missing.
pub fn build_chaincode(workspace: &Path, package: &str) -> Result<Vec<u8>> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(workspace)
        .output();
    if let Ok(out) = installed
        && out.status.success()
        && !String::from_utf8_lossy(&out.stdout).contains("wasm32-unknown-unknown")
    {
        step("the wasm32-unknown-unknown target is missing: installing it with rustup");
        let ok = Command::new("rustup")
            .args(["target", "add", "wasm32-unknown-unknown"])
            .current_dir(workspace)
            .status()?
            .success();
        if !ok {
            bail!("rustup target add wasm32-unknown-unknown failed");
        }
    }
    step(&format!(
        "building chaincode {package} for wasm32-unknown-unknown"
    ));
    let target = workspace.join("target").join("chaincode");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "-q",
            "-p",
            package,
            "--target",
            "wasm32-unknown-unknown",
            "--profile",
            "wasm",
            "--target-dir",
        ])
        .arg(&target)
        .current_dir(workspace)
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("building {package} for wasm failed");
    }
    let file = target
        .join("wasm32-unknown-unknown/wasm")
        .join(format!("{}.wasm", package.replace('-', "_")));
    std::fs::read(&file).with_context(|| file.display().to_string())
}

fn algorithm(scheme: Scheme) -> KeyAlgorithm {
    match scheme {
        Scheme::P256 => KeyAlgorithm::EcdsaP256,
        Scheme::Ed25519 => KeyAlgorithm::Ed25519,
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, bytes).with_context(|| path.display().to_string())
}

fn der_of(pem_file: &Path) -> Result<Vec<u8>> {
    let pem = std::fs::read(pem_file).with_context(|| pem_file.display().to_string())?;
    pem_blocks(&pem, "CERTIFICATE")?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("{}: no certificate", pem_file.display()))
}

/// Is the process alive?
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
            .unwrap_or(false)
}

/// Starts a node's process, its output appended to its log.
pub fn spawn(bins: &Path, node: &mut Node) -> Result<()> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.log)
        .with_context(|| node.log.display().to_string())?;
    let mut cmd = match node.kind {
        Kind::Ca => {
            let mut c = Command::new(bins.join("mercato-ca"));
            c.arg("start").arg("--home").arg(&node.home);
            c
        }
        Kind::Orderer => {
            let mut c = Command::new(bins.join("mercato-orderer"));
            c.arg("start")
                .arg("--config")
                .arg(node.home.join("orderer.toml"));
            c
        }
        Kind::Peer => {
            let mut c = Command::new(bins.join("mercato-peer"));
            c.arg("start")
                .arg("--config")
                .arg(node.home.join("peer.toml"));
            c
        }
    };
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", node.name))?;
    node.pid = Some(child.id());
    Ok(())
}

/// Asks a node to stop (SIGTERM) and waits for it, killing it after 20 s.
pub fn stop(node: &mut Node) {
    let Some(pid) = node.pid.take() else { return };
    if !alive(pid) {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(pid) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

/// GET over plain HTTP on an operations port: (status line, body).
pub async fn http_get(addr: &str, path: &str) -> Result<(String, String)> {
    let addr: SocketAddr = addr.parse()?;
    let io = async {
        let mut conn = tokio::net::TcpStream::connect(addr).await?;
        conn.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut out = String::new();
        conn.read_to_string(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let out = tokio::time::timeout(Duration::from_secs(5), io).await??;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    Ok((
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    ))
}

/// Waits until a node answers: a CA its TLS port, an orderer or peer `/healthz` with 200.
pub async fn wait_ready(node: &Node, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(pid) = node.pid
            && !alive(pid)
        {
            bail!("{} exited; see {}", node.name, node.log.display());
        }
        let ready = match (&node.kind, &node.operations) {
            (Kind::Ca, _) => tokio::net::TcpStream::connect(&node.listen).await.is_ok(),
            (_, Some(ops)) => http_get(ops, "/healthz")
                .await
                .is_ok_and(|(status, _)| status.contains(" 200 ")),
            _ => true,
        };
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not become ready in {} s; see {}",
                node.name,
                timeout.as_secs(),
                node.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of a metric in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Makes a new network under the spec's data directory: CAs started, every identity enrolled,
/// the genesis block, the node configurations. The nodes are not started.
pub async fn create(spec: &Spec, bins: &Path) -> Result<State> {
    let data = &spec.data_dir;
    std::fs::create_dir_all(data.join("logs"))?;
    let alg = algorithm(spec.scheme);
    let mut port = spec.base_port;
    let mut next_port = || {
        let p = port;
        port += 1;
        p
    };
    let hosts = vec!["127.0.0.1".to_string(), "localhost".to_string()];

    // Every organisation's CA: made, started, its bootstrap admin enrolled.
    let mut nodes = Vec::new();
    let mut all_orgs: Vec<(String, Option<OrgKind>)> = spec
        .orgs
        .iter()
        .map(|o| (o.msp_id.clone(), Some(o.kind)))
        .collect();
    all_orgs.push((spec.orderer.msp_id.clone(), None));
    let mut clients: BTreeMap<String, (CaClient, mercato_ca::SigningIdentity, PathBuf)> =
        BTreeMap::new();
    for (msp_id, _) in &all_orgs {
        let home_dir = data.join("orgs").join(msp_id).join("ca");
        let listen = format!("127.0.0.1:{}", next_port());
        step(&format!(
            "{msp_id}: creating its certificate authority at {listen}"
        ));
        let mut config = CaConfig::default();
        config.ca.name = format!("ca.{}", msp_id.to_lowercase());
        config.ca.organization = msp_id.clone();
        config.ca.msp_id = msp_id.clone();
        config.server.listen = listen.clone();
        config.server.hosts = hosts.clone();
        let report = home::init(
            &home_dir,
            InitOptions {
                config,
                admin_id: "admin".into(),
                admin_secret: None,
                parent: None,
            },
        )
        .await
        .with_context(|| format!("making the CA of {msp_id}"))?;
        let mut node = Node {
            name: format!("ca.{msp_id}"),
            kind: Kind::Ca,
            msp_id: msp_id.clone(),
            listen: listen.clone(),
            operations: None,
            home: home_dir.clone(),
            log: data.join("logs").join(format!("ca.{msp_id}.log")),
            pid: None,
        };
        spawn(bins, &mut node)?;
        wait_ready(&node, Duration::from_secs(30)).await?;
        let tls_root = std::fs::read(&report.tls_root)?;
        let mut client = connect_ca(&listen, &tls_root).await?;
        let enrolled = client
            .enroll(
                "admin",
                &report.admin_secret,
                &EnrollOptions {
                    key: KeyChoice::Generate(alg),
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("enrolling the admin of {msp_id}"))?;
        let admin_dir = data.join("orgs").join(msp_id).join("users/admin/msp");
        write_msp(&admin_dir, &enrolled)?;
        let admin = mercato_ca::SigningIdentity::load(msp_id, &admin_dir)?;
        clients.insert(msp_id.clone(), (client, admin, home_dir));
        nodes.push(node);
    }

    // Register and enroll one identity at its organisation's CA.
    async fn issue(
        ca: &mut (CaClient, mercato_ca::SigningIdentity, PathBuf),
        id: &str,
        role: &str,
        attributes: Vec<(String, String)>,
        alg: KeyAlgorithm,
        tls_hosts: Option<Vec<String>>,
        dir: &Path,
    ) -> Result<()> {
        let secret =
            ca.0.register(
                &ca.1,
                &RegisterOptions {
                    id: id.into(),
                    role: role.into(),
                    attributes,
                    max_enrollments: 1,
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("registering {id}"))?;
        let enrolled =
            ca.0.enroll(
                id,
                &secret,
                &EnrollOptions {
                    key: KeyChoice::Generate(alg),
                    tls: tls_hosts.map(|hosts| TlsOptions {
                        algorithm: KeyAlgorithm::EcdsaP256,
                        hosts,
                    }),
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("enrolling {id}"))?;
        write_msp(dir, &enrolled)?;
        Ok(())
    }

    // Orderers.
    step(&format!(
        "{}: enrolling {} orderers",
        spec.orderer.msp_id, spec.orderer.nodes
    ));
    let orderer_ca = clients
        .get_mut(&spec.orderer.msp_id)
        .ok_or_else(|| anyhow!("no orderer CA"))?;
    let mut orderers = Vec::new();
    for i in 1..=spec.orderer.nodes {
        let name = format!("orderer{i}");
        let home_dir = data.join("orderers").join(&name);
        issue(
            orderer_ca,
            &name,
            "orderer",
            vec![],
            alg,
            Some(hosts.clone()),
            &home_dir.join("msp"),
        )
        .await?;
        let (listen, ops) = (next_port(), next_port());
        orderers.push((u64::from(i), listen, ops, home_dir, name));
    }
    // Peers and users.
    let mut users = BTreeMap::new();
    let mut peers = Vec::new();
    for org in &spec.orgs {
        let ca = clients
            .get_mut(&org.msp_id)
            .ok_or_else(|| anyhow!("no CA of {}", org.msp_id))?;
        step(&format!(
            "{}: enrolling {} peer(s), its admin and users",
            org.msp_id, org.peers
        ));
        let org_dir = data.join("orgs").join(&org.msp_id);
        for p in 0..org.peers {
            let name = format!("peer{p}.{}", org.msp_id);
            let home_dir = org_dir.join("peers").join(format!("peer{p}"));
            issue(
                ca,
                &format!("peer{p}"),
                "peer",
                vec![],
                alg,
                Some(hosts.clone()),
                &home_dir.join("msp"),
            )
            .await?;
            let (listen, ops) = (next_port(), next_port());
            peers.push((org.msp_id.clone(), listen, ops, home_dir, name));
        }
        // (enrollment id, type, attributes)
        type Member = (String, &'static str, Vec<(String, String)>);
        let mut members: Vec<Member> = Vec::new();
        match org.kind {
            OrgKind::Platform => {
                members.push((
                    "sam".into(),
                    "client",
                    vec![("role".into(), "seller".into())],
                ));
                members.push(("bob".into(), "client", vec![]));
                members.push(("eve".into(), "auditor", vec![]));
            }
            OrgKind::Brand => {
                let brand = org.brand.clone().unwrap_or_default();
                members.push((
                    format!("{brand}-ops"),
                    "client",
                    vec![("role".into(), "brand".into())],
                ));
            }
        }
        for (id, role, attrs) in members {
            issue(
                ca,
                &id,
                role,
                attrs,
                alg,
                None,
                &org_dir.join("users").join(&id).join("msp"),
            )
            .await?;
            users.insert(id.clone(), org_dir.join("users").join(&id).join("msp"));
        }
        users.insert(
            format!("admin@{}", org.msp_id),
            org_dir.join("users/admin/msp"),
        );
    }

    // The genesis block, from the CAs' certificates and the nodes' TLS certificates.
    step("writing the channel's genesis block");
    let org_proto = |msp_id: &str,
                     peers: Vec<pb::Endpoint>,
                     orderers: Vec<pb::Endpoint>|
     -> Result<pb::Organization> {
        let home = CaHome::new(data.join("orgs").join(msp_id).join("ca"));
        Ok(pb::Organization {
            msp_id: msp_id.to_owned(),
            root_certs: vec![der_of(&home.ca_cert_path())?],
            tls_root_certs: vec![der_of(&home.tls_root_path())?],
            peers,
            orderers,
            ..Default::default()
        })
    };
    let endpoint = |port: u16| pb::Endpoint {
        host: "127.0.0.1".into(),
        port: port.into(),
    };
    let application_orgs = spec
        .orgs
        .iter()
        .map(|o| {
            let eps = peers
                .iter()
                .filter(|p| p.0 == o.msp_id)
                .map(|p| endpoint(p.1))
                .collect();
            org_proto(&o.msp_id, eps, vec![])
        })
        .collect::<Result<Vec<_>>>()?;
    let consenters = orderers
        .iter()
        .map(|(id, port, _, home, _)| {
            let cert = der_of(&home.join("msp/tls/server.crt"))?;
            Ok(pb::Consenter {
                id: *id,
                host: "127.0.0.1".into(),
                port: (*port).into(),
                msp_id: spec.orderer.msp_id.clone(),
                server_tls_cert: cert.clone(),
                client_tls_cert: cert,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let channel = pb::ChannelConfig {
        channel_id: spec.channel.clone(),
        application_orgs,
        orderer_orgs: vec![org_proto(
            &spec.orderer.msp_id,
            vec![],
            orderers.iter().map(|o| endpoint(o.1)).collect(),
        )?],
        consenters,
        batch: Some(pb::BatchSettings {
            max_message_count: spec.orderer.max_message_count,
            absolute_max_bytes: 10 << 20,
            preferred_max_bytes: 2 << 20,
            batch_timeout_ms: spec.orderer.batch_timeout_ms,
        }),
        policies: None,
    };
    // Refuse now what the nodes would refuse at start.
    mercato_ca::channel::ChannelConfig::from_proto(&channel)
        .context("the channel configuration")?;
    let genesis = new_genesis_block(&channel).encode_to_vec();
    write(&data.join("genesis.block"), &genesis)?;

    // Node configurations.
    for (id, listen, ops, home_dir, name) in orderers {
        write(&home_dir.join("genesis.block"), &genesis)?;
        let text = format!(
            "# Written by mercato-deploy; see deploy/orderer.toml for every setting.\n[node]\nid = {id}\ngenesis = \"genesis.block\"\ndata_dir = \"data\"\nlisten = \"127.0.0.1:{listen}\"\noperations = \"127.0.0.1:{ops}\"\n\n[tls]\ncert = \"msp/tls/server.crt\"\nkey = \"msp/tls/server.key\"\n\n[identity]\nmsp_id = \"{}\"\nmsp_dir = \"msp\"\n",
            spec.orderer.msp_id
        );
        write(&home_dir.join("orderer.toml"), text.as_bytes())?;
        nodes.push(Node {
            log: data.join("logs").join(format!("{name}.log")),
            name,
            kind: Kind::Orderer,
            msp_id: spec.orderer.msp_id.clone(),
            listen: format!("127.0.0.1:{listen}"),
            operations: Some(format!("127.0.0.1:{ops}")),
            home: home_dir,
            pid: None,
        });
    }
    for (msp_id, listen, ops, home_dir, name) in peers {
        write(&home_dir.join("genesis.block"), &genesis)?;
        let text = format!(
            "# Written by mercato-deploy; see deploy/peer.toml for every setting.\n[node]\ngenesis = \"genesis.block\"\ndata_dir = \"data\"\nlisten = \"127.0.0.1:{listen}\"\noperations = \"127.0.0.1:{ops}\"\n\n[tls]\ncert = \"msp/tls/server.crt\"\nkey = \"msp/tls/server.key\"\n\n[identity]\nmsp_id = \"{msp_id}\"\nmsp_dir = \"msp\"\n"
        );
        write(&home_dir.join("peer.toml"), text.as_bytes())?;
        nodes.push(Node {
            log: data.join("logs").join(format!("{name}.log")),
            name,
            kind: Kind::Peer,
            msp_id,
            listen: format!("127.0.0.1:{listen}"),
            operations: Some(format!("127.0.0.1:{ops}")),
            home: home_dir,
            pid: None,
        });
    }

    // Users, each with a CLI profile for its organisation's first peer.
    let mut user_records = BTreeMap::new();
    for (name, msp_dir) in users {
        let msp_id = spec
            .orgs
            .iter()
            .find(|o| msp_dir.starts_with(data.join("orgs").join(&o.msp_id)))
            .map(|o| o.msp_id.clone())
            .unwrap_or_default();
        let peer = nodes
            .iter()
            .find(|n| n.kind == Kind::Peer && n.msp_id == msp_id)
            .ok_or_else(|| anyhow!("{msp_id} has no peer"))?;
        let tls_root = CaHome::new(data.join("orgs").join(&msp_id).join("ca")).tls_root_path();
        let profile = format!(
            "# mercato --profile {name}.toml ...\npeer = \"{}\"\ntls_root = \"{}\"\nmsp_id = \"{msp_id}\"\nmsp_dir = \"{}\"\nchannel = \"{}\"\n",
            peer.listen,
            absolute(&tls_root).display(),
            absolute(&msp_dir).display(),
            spec.channel
        );
        write(
            &data.join("profiles").join(format!("{name}.toml")),
            profile.as_bytes(),
        )?;
        user_records.insert(
            name,
            User {
                msp_id,
                msp_dir,
                peer: peer.listen.clone(),
                tls_root,
            },
        );
    }
    Ok(State {
        spec: spec.clone(),
        nodes,
        users: user_records,
        committed: Vec::new(),
        demo_runs: 0,
    })
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

async fn connect_ca(listen: &str, tls_root: &[u8]) -> Result<CaClient> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match CaClient::connect(&format!("https://{listen}"), tls_root).await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() > deadline => return Err(anyhow!("the CA at {listen}: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
