//! The peer node: its configuration (a TOML file, a commented sample in `deploy/peer.toml`,
//! overridable by `MERCATO_PEER_*` environment variables) and [`start`], which joins the channel
//! of the genesis block, opens the sled ledger (resuming at its savepoint), pulls blocks from the
//! orderers into the verify → commit pipeline, and serves the Endorser, Gateway and Deliver over
//! TLS and `/healthz` and `/metrics` on the operations port.
//!
//! Paths in the file are relative to the file's folder.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mercato_ca::channel::ChannelConfig;
use mercato_ca::crypto::pem_blocks;
use mercato_ca::{Role, SigningIdentity};
use mercato_proto::Limits;
use mercato_proto::hash::block_header_hash;
use mercato_proto::pb::common::Block;
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::chaincode::{ChaincodeRuntime, Executor, RuntimeLimits};
use crate::committer::{BlockEvent, Committer};
use crate::endorser::Endorser;
use crate::gateway::{ClientTls, Gateway, GatewayParts, tls_roots};
use crate::ledger::{LedgerStore, SledLedgerStore};
use crate::lifecycle::{LifecycleContract, LifecycleDefinitions, LifecycleResolver, PackageStore};
use crate::orderers::DeliverClient;
use crate::service::{PeerChannel, PeerServer, PeerTls};
use crate::validator::{EndorsementMemo, ValidationContext};

/// A configuration or start-up failure, naming what was wrong.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NodeError(pub String);

fn err(e: impl std::fmt::Display) -> NodeError {
    NodeError(e.to_string())
}

/// Everything the peer reads.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    pub tls: TlsConfig,
    pub identity: IdentityConfig,
    pub ledger: LedgerConfig,
}

/// Where the peer serves and keeps its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// The channel's genesis block.
    pub genesis: PathBuf,
    /// The ledger and the installed chaincode packages.
    pub data_dir: PathBuf,
    /// Endorser, Gateway and Deliver, over TLS.
    pub listen: String,
    /// The `host:port` other nodes know this peer by (as the channel configuration lists it);
    /// defaults to `listen`.
    pub address: String,
    /// `/healthz` and `/metrics`, over plain HTTP (bind it to a private address).
    pub operations: String,
    /// The most threads running requests' CPU-bound work at once (endorsements, evaluations,
    /// signature checks, queries); the rest wait their turn, first come first served. It bounds
    /// the tokio runtime's blocking pool, so it applies where the runtime is built: in the
    /// `mercato-peer` binary, not to a node embedded in another program's runtime.
    pub request_threads: usize,
}

/// The default of `node.request_threads`: 8 per core, 16 to 48. Tokio's own default (512) let
/// hundreds of requests share 2 cores, each slowed by the others and by the switching between
/// them, and it ran more chaincode calls at once than the sandbox has instances (64), so that
/// some failed as "chaincode runtime busy".
fn default_request_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (8 * cores).clamp(16, 48)
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            genesis: "genesis.block".into(),
            data_dir: "data".into(),
            listen: "0.0.0.0:7051".into(),
            address: String::new(),
            operations: "127.0.0.1:9444".into(),
            request_threads: default_request_threads(),
        }
    }
}

/// The peer's TLS certificate and key (PEM), and whether clients must present certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Fabric's `clientAuthRequired`: off by default, as Fabric's, for Gateway clients.
    pub client_auth_required: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: "tls/server.crt".into(),
            key: "tls/server.key".into(),
            client_auth_required: false,
        }
    }
}

/// The identity that endorses and signs Deliver requests: an MSP folder of a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    pub msp_id: String,
    pub msp_dir: PathBuf,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            msp_id: String::new(),
            msp_dir: "msp".into(),
        }
    }
}

/// How blocks are validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerConfig {
    /// Threads that verify one block's signatures.
    pub verify_threads: usize,
    /// Blocks queued between the puller, verification and commit.
    pub pipeline_depth: usize,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            verify_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            pipeline_depth: 4,
        }
    }
}

impl Config {
    /// Reads a configuration file; relative paths in it are made relative to its folder.
    pub fn load(path: &Path) -> Result<Self, NodeError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| NodeError(format!("{}: {e}", path.display())))?;
        let mut config: Config =
            toml::from_str(&text).map_err(|e| NodeError(format!("{}: {e}", path.display())))?;
        config.resolve(path.parent().unwrap_or(Path::new(".")));
        Ok(config)
    }

    /// Makes relative paths relative to `base`.
    pub fn resolve(&mut self, base: &Path) {
        for p in [
            &mut self.node.genesis,
            &mut self.node.data_dir,
            &mut self.tls.cert,
            &mut self.tls.key,
            &mut self.identity.msp_dir,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Applies `MERCATO_PEER_*` overrides: `GENESIS`, `DATA_DIR`, `LISTEN`, `ADDRESS`,
    /// `OPERATIONS`, `TLS_CERT`, `TLS_KEY`, `TLS_CLIENT_AUTH_REQUIRED`, `MSP_ID`, `MSP_DIR`,
    /// `VERIFY_THREADS`.
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), NodeError> {
        for (key, v) in vars {
            let number = |v: &str| {
                v.trim()
                    .parse::<usize>()
                    .map_err(|_| NodeError(format!("{key}={v:?} is not a number")))
            };
            match key.as_str() {
                "MERCATO_PEER_GENESIS" => self.node.genesis = v.into(),
                "MERCATO_PEER_DATA_DIR" => self.node.data_dir = v.into(),
                "MERCATO_PEER_LISTEN" => self.node.listen = v,
                "MERCATO_PEER_ADDRESS" => self.node.address = v,
                "MERCATO_PEER_OPERATIONS" => self.node.operations = v,
                "MERCATO_PEER_REQUEST_THREADS" => self.node.request_threads = number(&v)?,
                "MERCATO_PEER_TLS_CERT" => self.tls.cert = v.into(),
                "MERCATO_PEER_TLS_KEY" => self.tls.key = v.into(),
                "MERCATO_PEER_TLS_CLIENT_AUTH_REQUIRED" => {
                    self.tls.client_auth_required = match v.trim() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(NodeError(format!("{key}={v:?}: true or false"))),
                    }
                }
                "MERCATO_PEER_MSP_ID" => self.identity.msp_id = v,
                "MERCATO_PEER_MSP_DIR" => self.identity.msp_dir = v.into(),
                "MERCATO_PEER_VERIFY_THREADS" => self.ledger.verify_threads = number(&v)?,
                k if k.starts_with("MERCATO_PEER_") && k != "MERCATO_PEER_LOG" => {
                    return Err(NodeError(format!("unknown variable {k}")));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), NodeError> {
        let bad = |m: String| Err(NodeError(m));
        for (what, addr) in [
            ("node.listen", &self.node.listen),
            ("node.operations", &self.node.operations),
        ] {
            if addr.parse::<SocketAddr>().is_err() {
                return bad(format!("{what} {addr:?} is not an address:port"));
            }
        }
        if self.identity.msp_id.is_empty() {
            return bad("identity.msp_id is empty: the peer's organisation's MSP id".into());
        }
        if !(1..=512).contains(&self.node.request_threads) {
            return bad(format!(
                "node.request_threads {}: 1 to 512",
                self.node.request_threads
            ));
        }
        if !(1..=64).contains(&self.ledger.verify_threads) {
            return bad(format!(
                "ledger.verify_threads {}: 1 to 64",
                self.ledger.verify_threads
            ));
        }
        if !(1..=64).contains(&self.ledger.pipeline_depth) {
            return bad(format!(
                "ledger.pipeline_depth {}: 1 to 64",
                self.ledger.pipeline_depth
            ));
        }
        Ok(())
    }

    /// Where installed chaincode packages are kept.
    pub fn packages_dir(&self) -> PathBuf {
        self.node.data_dir.join("packages")
    }

    /// Where the ledger is kept.
    pub fn ledger_dir(&self) -> PathBuf {
        self.node.data_dir.join("ledger")
    }
}

fn read(path: &Path) -> Result<Vec<u8>, NodeError> {
    std::fs::read(path).map_err(|e| NodeError(format!("{}: {e}", path.display())))
}

/// Reads and decodes a genesis block file.
pub fn read_genesis(path: &Path) -> Result<(Block, ChannelConfig), NodeError> {
    let bytes = read(path)?;
    if bytes.len() > mercato_proto::Limits::default().max_message_bytes {
        return Err(NodeError(format!(
            "{}: too large for a block",
            path.display()
        )));
    }
    let block = Block::decode(bytes.as_slice())
        .map_err(|e| NodeError(format!("{}: not a block: {e}", path.display())))?;
    let config = ChannelConfig::from_genesis(&block)
        .map_err(|e| NodeError(format!("{}: {e}", path.display())))?;
    Ok((block, config))
}

/// What the operations port reports, besides the committer's height.
#[derive(Debug)]
pub struct NodeMetrics {
    pub blocks_committed: AtomicU64,
    /// Sum of the time from a block's arrival from the orderer to its commit.
    pub commit_micros: AtomicU64,
    /// Per validation code (index = code), the transactions committed with it.
    pub codes: Vec<AtomicU64>,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        NodeMetrics {
            blocks_committed: AtomicU64::new(0),
            commit_micros: AtomicU64::new(0),
            codes: (0..256).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// A peer that is bound and running; [`Running::stop`] shuts it down.
pub struct Running {
    /// Where the Endorser, Gateway and Deliver are served.
    pub listen: SocketAddr,
    /// Where `/healthz` and `/metrics` are served.
    pub operations: SocketAddr,
    /// The channel as the services see it.
    pub channel: Arc<PeerChannel>,
    pub metrics: Arc<NodeMetrics>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("listen", &self.listen)
            .field("operations", &self.operations)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// The committer's height.
    pub fn height(&self) -> u64 {
        self.channel.committer.height()
    }

    /// Stops serving and pulling; blocks already queued are committed first.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Installs a chaincode package into the peer's package folder (compiling it first: a module
/// the sandbox would refuse is refused now). A running peer sees it at its next use.
pub fn install(
    config: &Config,
    package: &[u8],
) -> Result<crate::lifecycle::InstalledPackage, NodeError> {
    let dir = config.packages_dir();
    std::fs::create_dir_all(&dir).map_err(|e| NodeError(format!("{}: {e}", dir.display())))?;
    let packages = PackageStore::open(&dir).map_err(err)?;
    // Compiled into the peer's cache, so that its first call need not compile.
    packages.install(package, &runtime(config)?).map_err(err)
}

/// The chaincode runtime, with compiled modules cached on disk in the data directory: a
/// restarted peer, or one that installed a package, serves its first call at once.
fn runtime(config: &Config) -> Result<ChaincodeRuntime, NodeError> {
    let cache = config.node.data_dir.join("chaincode-cache");
    std::fs::create_dir_all(&cache).map_err(|e| NodeError(format!("{}: {e}", cache.display())))?;
    ChaincodeRuntime::new(RuntimeLimits::default(), Some(&cache)).map_err(err)
}

/// Starts the peer of `config`.
pub async fn start(config: &Config) -> Result<Running, NodeError> {
    config.validate()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (genesis, channel) = read_genesis(&config.node.genesis)?;
    let signer = Arc::new(
        SigningIdentity::load(&config.identity.msp_id, &config.identity.msp_dir).map_err(err)?,
    );
    let msps = Arc::new(channel.msp_manager().map_err(err)?);
    let me = msps.identity(signer.serialized()).map_err(|e| {
        NodeError(format!(
            "{}: not a member of channel {}: {e}",
            config.identity.msp_dir.display(),
            channel.channel_id
        ))
    })?;
    if me.role() != Role::Peer
        || !channel
            .application_org_ids()
            .contains(&me.msp_id().to_owned())
    {
        return Err(NodeError(format!(
            "{} is a {} of {}: a peer needs a peer identity of one of the channel's application organisations",
            config.identity.msp_dir.display(),
            me.role(),
            me.msp_id()
        )));
    }
    let cert_pem = read(&config.tls.cert)?;
    let key_pem = read(&config.tls.key)?;
    if pem_blocks(&cert_pem, "CERTIFICATE")
        .map_err(err)?
        .is_empty()
    {
        return Err(NodeError(format!(
            "{}: no certificate",
            config.tls.cert.display()
        )));
    }

    // The ledger, resumed at its savepoint; a fresh one starts from the genesis block.
    std::fs::create_dir_all(&config.node.data_dir)
        .map_err(|e| NodeError(format!("{}: {e}", config.node.data_dir.display())))?;
    let store: Arc<dyn LedgerStore> =
        Arc::new(SledLedgerStore::open(&config.ledger_dir(), &channel.channel_id).map_err(err)?);
    let memo = Arc::new(EndorsementMemo::new(signer.serialized().to_vec(), 65_536));
    let ctx = Arc::new(
        ValidationContext::from_channel(
            &channel,
            Arc::new(LifecycleDefinitions::new()),
            Some(Arc::clone(&memo)),
            config.ledger.verify_threads,
        )
        .map_err(err)?,
    );
    let committer = Arc::new(Committer::new(Arc::clone(&store), Arc::clone(&ctx)).map_err(err)?);
    let genesis_hash = block_header_hash(
        genesis
            .header
            .as_ref()
            .ok_or_else(|| err("the genesis block has no header"))?,
    );
    if committer.height() == 0 {
        committer.commit_genesis(genesis).map_err(err)?;
    } else {
        let stored = store
            .block(0)
            .map_err(err)?
            .and_then(|b| Block::decode(b.as_slice()).ok())
            .and_then(|b| b.header.map(|h| block_header_hash(&h)));
        if stored != Some(genesis_hash) {
            return Err(NodeError(format!(
                "{} holds the ledger of another channel or genesis block than {}",
                config.ledger_dir().display(),
                config.node.genesis.display()
            )));
        }
    }
    let last_hash = store
        .savepoint()
        .map_err(err)?
        .map(|s| s.hash)
        .ok_or_else(|| err("the ledger has no savepoint after the genesis block"))?;

    // Chaincode: installed packages resolved through the committed definitions.
    let packages_dir = config.packages_dir();
    std::fs::create_dir_all(&packages_dir)
        .map_err(|e| NodeError(format!("{}: {e}", packages_dir.display())))?;
    let packages = Arc::new(PackageStore::open(&packages_dir).map_err(err)?);
    let runtime = Arc::new(runtime(config)?);
    let resolver = LifecycleResolver::new(
        packages,
        LifecycleContract {
            msp_id: me.msp_id().to_owned(),
            orgs: channel.application_org_ids(),
        },
    );
    let executor = Executor::new(runtime, Arc::new(resolver));
    let limits = Limits::default();
    let endorser = Arc::new(Endorser::new(
        &channel.channel_id,
        Arc::clone(&msps),
        Arc::clone(&store),
        executor,
        Arc::clone(&signer) as Arc<dyn mercato_proto::Signer>,
        Some(memo),
        limits.clone(),
    ));

    let listener = tokio::net::TcpListener::bind(&config.node.listen)
        .await
        .map_err(|e| NodeError(format!("listening on {}: {e}", config.node.listen)))?;
    let listen = listener.local_addr().map_err(err)?;
    let address = if config.node.address.is_empty() {
        listen.to_string()
    } else {
        config.node.address.clone()
    };
    let gateway = Gateway::new(
        &channel,
        GatewayParts {
            msp_id: me.msp_id().to_owned(),
            address,
            endorser: Arc::clone(&endorser),
            store: Arc::clone(&store),
            committer: Arc::clone(&committer),
            definitions: Arc::new(LifecycleDefinitions::new()),
            msps: Arc::clone(&msps),
            tls: ClientTls {
                cert_pem: cert_pem.clone(),
                key_pem: key_pem.clone(),
            },
            limits: limits.clone(),
        },
    )
    .map_err(err)?;
    let orderers = gateway.orderers().clone();
    let peer_channel = Arc::new(PeerChannel {
        channel_id: channel.channel_id.clone(),
        msps,
        org_policies: channel.org_policies(),
        readers: channel.policies.readers.clone(),
        store: Arc::clone(&store),
        committer: Arc::clone(&committer),
        endorser,
        gateway: Some(Arc::new(gateway)),
        limits,
    });
    // Other peers (and orderers) may present client certificates: they are checked against the
    // channel's TLS roots.
    let client_roots = tls_roots(channel.application_orgs.iter().chain(&channel.orderer_orgs));
    let server = PeerServer::from_listener(
        listener,
        &PeerTls {
            cert_pem,
            key_pem,
            client_roots_pem: Some(client_roots.into_bytes()),
            client_auth_required: config.tls.client_auth_required,
        },
        Arc::clone(&peer_channel),
    )
    .map_err(err)?;
    let ops_listener = tokio::net::TcpListener::bind(&config.node.operations)
        .await
        .map_err(|e| NodeError(format!("listening on {}: {e}", config.node.operations)))?;
    let operations = ops_listener.local_addr().map_err(err)?;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let metrics = Arc::new(NodeMetrics::default());
    let arrivals = Arc::new(Mutex::new(VecDeque::new()));
    let pipeline = Arc::new(committer.start_pipeline(config.ledger.pipeline_depth));
    let deliver = Arc::new(DeliverClient::new(
        &committer,
        ctx,
        signer,
        Arc::clone(&pipeline),
        last_hash,
        Arc::clone(&arrivals),
    ));
    let checks = deliver.start_checks().map_err(NodeError)?;
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(orderers.pull_blocks(
        Arc::clone(&deliver),
        checks,
        stopped.clone(),
    )));
    tasks.push(tokio::spawn(count_commits(
        committer.subscribe(),
        Arc::clone(&metrics),
        arrivals,
        stopped.clone(),
    )));
    let mut grpc_stop = stopped.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = server
            .serve(async move {
                let _ = grpc_stop.wait_for(|s| *s).await;
            })
            .await
        {
            tracing::error!(error = %e, "the peer's server failed");
        }
    }));
    let ops = Operations {
        channel: Arc::clone(&peer_channel),
        metrics: Arc::clone(&metrics),
        deliver,
        pipeline,
    };
    let mut ops_stop = stopped;
    tasks.push(tokio::spawn(async move {
        tokio::select! {
            _ = serve_operations(ops_listener, Arc::new(ops)) => {}
            _ = ops_stop.wait_for(|s| *s) => {}
        }
    }));
    tracing::info!(%listen, %operations, channel = %channel.channel_id, msp = %me.msp_id(), height = committer.height(), "peer serving");
    Ok(Running {
        listen,
        operations,
        channel: peer_channel,
        metrics,
        stop,
        tasks,
    })
}

/// Runs the peer of `config` until `shutdown` resolves.
pub async fn run(config: &Config, shutdown: impl Future<Output = ()>) -> Result<(), NodeError> {
    let running = start(config).await?;
    shutdown.await;
    tracing::info!("peer stopping");
    running.stop().await;
    Ok(())
}

/// Counts committed blocks and transactions by code, and the time from arrival to commit.
async fn count_commits(
    mut events: tokio::sync::broadcast::Receiver<Arc<BlockEvent>>,
    metrics: Arc<NodeMetrics>,
    arrivals: Arc<Mutex<VecDeque<(u64, Instant)>>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = stop.wait_for(|s| *s) => return,
        };
        let event = match event {
            Ok(e) => e,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        metrics.blocks_committed.fetch_add(1, Ordering::Relaxed);
        for tx in &event.txs {
            metrics.codes[usize::from(tx.code.0)].fetch_add(1, Ordering::Relaxed);
        }
        let mut arrivals = arrivals.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((n, at)) = arrivals.front().copied() {
            if n > event.number {
                break;
            }
            arrivals.pop_front();
            if n == event.number {
                let micros = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX);
                metrics.commit_micros.fetch_add(micros, Ordering::Relaxed);
            }
        }
    }
}

struct Operations {
    channel: Arc<PeerChannel>,
    metrics: Arc<NodeMetrics>,
    deliver: Arc<DeliverClient>,
    pipeline: Arc<crate::committer::Pipeline>,
}

/// `/healthz` (200 while the committer runs, 503 with the reason once it stopped) and `/metrics`
/// (Prometheus text) over plain HTTP/1.1; anything else is 404. Requests are read with a size and
/// time limit.
async fn serve_operations(listener: tokio::net::TcpListener, ops: Arc<Operations>) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let ops = Arc::clone(&ops);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut len = 0;
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while len < buf.len() {
                    let n = conn.read(&mut buf[len..]).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    len += n;
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        return Some(());
                    }
                }
                None
            })
            .await;
            if !matches!(read, Ok(Some(()))) {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..len]);
            let path = head.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = match path {
                "/healthz" => match ops.pipeline.stopped() {
                    None => ("200 OK", "ok\n".to_string()),
                    Some(why) => (
                        "503 Service Unavailable",
                        format!("committer stopped: {why}\n"),
                    ),
                },
                "/metrics" => ("200 OK", ops.metrics_text()),
                _ => ("404 Not Found", "not found\n".to_string()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(response.as_bytes()).await;
        });
    }
}

impl Operations {
    fn metrics_text(&self) -> String {
        let m = &self.metrics;
        let mut out = String::new();
        let mut metric = |name: &str, help: &str, kind: &str, value: String| {
            out.push_str(&format!(
                "# HELP mercato_peer_{name} {help}\n# TYPE mercato_peer_{name} {kind}\nmercato_peer_{name} {value}\n"
            ));
        };
        metric(
            "height",
            "Blocks in the ledger.",
            "gauge",
            self.channel.committer.height().to_string(),
        );
        metric(
            "blocks_committed_total",
            "Blocks committed since start.",
            "counter",
            m.blocks_committed.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "commit_seconds_sum",
            "Total time from a block's arrival from the orderer to its commit.",
            "counter",
            format!(
                "{:.6}",
                m.commit_micros.load(Ordering::Relaxed) as f64 / 1e6
            ),
        );
        metric(
            "deliver_check_wait_seconds_sum",
            "Total time blocks from the orderer waited for their check to start.",
            "counter",
            format!(
                "{:.6}",
                self.deliver.check_wait_micros.load(Ordering::Relaxed) as f64 / 1e6
            ),
        );
        metric(
            "blocks_refused_total",
            "Blocks from orderers that failed the checks.",
            "counter",
            self.deliver.refused.load(Ordering::Relaxed).to_string(),
        );
        let e = &self.channel.endorser.metrics;
        metric(
            "endorsements_total",
            "Proposals this peer endorsed (or evaluated) successfully.",
            "counter",
            e.endorsed.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "proposals_refused_total",
            "Proposals refused by the checks or the chaincode.",
            "counter",
            e.refused.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "proposals_caught_up_total",
            "Proposals refused while behind the height their gateway had seen, simulated again once this peer reached it.",
            "counter",
            e.caught_up.load(Ordering::Relaxed).to_string(),
        );
        out.push_str("# HELP mercato_peer_transactions_total Committed transactions by validation code.\n# TYPE mercato_peer_transactions_total counter\n");
        for (code, n) in m.codes.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                let name = mercato_proto::ValidationCode(u8::try_from(code).unwrap_or(255)).name();
                out.push_str(&format!(
                    "mercato_peer_transactions_total{{code=\"{name}\"}} {n}\n"
                ));
            }
        }
        out
    }
}
