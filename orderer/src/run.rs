//! Runs an ordering node from its configuration: the channel from the genesis block, the Raft
//! node over its sled files, Raft and AtomicBroadcast on one TLS port, and the operations
//! endpoint (`/healthz`, `/metrics`). The consenter with the lowest id starts a new cluster's
//! membership; the others wait to be contacted.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mercato_ca::SigningIdentity;
use mercato_ca::channel::ChannelConfig;
use mercato_ca::crypto::{pem_blocks, to_pem};
use mercato_proto::pb::common::Block;
use mercato_proto::pb::mercato::raft_transport_server::RaftTransportServer;
use mercato_proto::pb::orderer::atomic_broadcast_server::AtomicBroadcastServer;
use openraft::{BasicNode, Raft, SnapshotPolicy};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, Server, ServerTlsConfig};

use crate::blockcutter::BatchConfig;
use crate::broadcast::BroadcastChecker;
use crate::config::Config;
use crate::consensus::{GrpcNetwork, LogStore, RaftTransportService, StateMachine};
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::node::OrdererNode;
use crate::service::{AtomicBroadcastService, ReadPolicy};

fn cfg(e: impl std::fmt::Display) -> Error {
    Error::Config(e.to_string())
}

fn read(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

/// A node that is bound and running; [`Running::stop`] shuts it down.
pub struct Running {
    /// Where Raft and AtomicBroadcast are served.
    pub listen: SocketAddr,
    /// Where `/healthz` and `/metrics` are served.
    pub operations: SocketAddr,
    /// The node.
    pub node: Arc<OrdererNode>,
    stop: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
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
    /// Stops serving and shuts Raft down.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        self.node.shutdown().await;
    }
}

/// The most blocks (Raft entries) one AppendEntries carries.
const MAX_BLOCKS_PER_APPEND: u64 = 4;

/// Starts the node of `config`.
pub async fn start(config: &Config) -> Result<Running> {
    config.validate()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let genesis = Block::decode(read(&config.node.genesis)?.as_slice()).map_err(|e| {
        cfg(format!(
            "{}: not a block: {e}",
            config.node.genesis.display()
        ))
    })?;
    let channel = ChannelConfig::from_genesis(&genesis).map_err(cfg)?;
    let id = config.node.id;
    let me = channel
        .consenters
        .iter()
        .find(|c| c.id == id)
        .ok_or_else(|| {
            cfg(format!(
                "node {id} is not a consenter of channel {}",
                channel.channel_id
            ))
        })?;
    let cert_pem = read(&config.tls.cert)?;
    let key_pem = read(&config.tls.key)?;
    let cert_der = pem_blocks(&cert_pem, "CERTIFICATE")
        .map_err(cfg)?
        .into_iter()
        .next()
        .ok_or_else(|| cfg(format!("{}: no certificate", config.tls.cert.display())))?;
    if cert_der != me.server_tls_cert {
        return Err(cfg(format!(
            "{} is not the TLS certificate the channel configuration gives consenter {id}",
            config.tls.cert.display()
        )));
    }
    // The orderer organisations' TLS roots: who consenters and forwarding trust.
    let roots: String = channel
        .orderer_orgs
        .iter()
        .flat_map(|o| {
            o.material
                .tls_root_certs
                .iter()
                .chain(&o.material.tls_intermediate_certs)
        })
        .map(|der| to_pem("CERTIFICATE", der))
        .collect();
    if roots.is_empty() {
        return Err(cfg(
            "the orderer organisations list no TLS root certificate",
        ));
    }

    std::fs::create_dir_all(&config.node.data_dir)
        .map_err(|e| cfg(format!("{}: {e}", config.node.data_dir.display())))?;
    // sled's page cache is bounded (its default is 1 GiB): the log and the chain are read back
    // rarely, by followers catching up and by Deliver.
    let db = sled::Config::new()
        .path(&config.node.data_dir)
        .cache_capacity(64 << 20)
        .open()
        .map_err(|e| Error::Storage(format!("{}: {e}", config.node.data_dir.display())))?;
    let ledger = Ledger::open(&db, &config.node.data_dir.join("blocks"), &genesis)?;
    let raft_config = openraft::Config {
        cluster_name: channel.channel_id.clone(),
        heartbeat_interval: config.raft.heartbeat_ms,
        election_timeout_min: config.raft.election_timeout_min_ms,
        election_timeout_max: config.raft.election_timeout_max_ms,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.raft.snapshot_every),
        max_in_snapshot_log_to_keep: config.raft.snapshot_every / 2,
        // A snapshot is a summary of the chain, but the node installing it may fetch the blocks
        // it lacks before it answers; a leader that stops waiting sends it again, harmlessly.
        install_snapshot_timeout: 120_000,
        // Entries are whole blocks: send no more per message than fits in one, and at most
        // MAX_BLOCKS_PER_APPEND, so that a follower catching up answers each message well
        // within the heartbeat (openraft's timeout for it).
        max_payload_entries: (crate::consensus::transport::MAX_MESSAGE_BYTES as u64
            / (u64::from(channel.batch.absolute_max_bytes) + (64 << 10)))
            .clamp(1, MAX_BLOCKS_PER_APPEND),
        ..Default::default()
    }
    .validate()
    .map_err(cfg)?;
    let client_tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&roots))
        .identity(Identity::from_pem(&cert_pem, &key_pem));
    let network = GrpcNetwork::new(&channel.channel_id, client_tls);
    let raft = Raft::new(
        id,
        Arc::new(raft_config),
        network.clone(),
        LogStore::open(&db, &config.node.data_dir.join("raft-log"))?,
        StateMachine::with_source(ledger.clone(), id, Arc::new(network)),
    )
    .await
    .map_err(|e| Error::Storage(format!("starting Raft: {e}")))?;
    let lowest = channel.consenters.iter().map(|c| c.id).min().unwrap_or(id);
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| Error::Storage(e.to_string()))?;
    if !initialized && id == lowest {
        let members = channel
            .consenters
            .iter()
            .map(|c| (c.id, BasicNode::new(c.endpoint.to_string())))
            .collect::<std::collections::BTreeMap<_, _>>();
        raft.initialize(members)
            .await
            .map_err(|e| Error::Storage(format!("starting the cluster: {e}")))?;
    }
    crate::consensus::purge_on_start(&raft)
        .await
        .map_err(|e| Error::Storage(format!("purging the log at start: {e}")))?;

    let signer =
        SigningIdentity::load(&config.identity.msp_id, &config.identity.msp_dir).map_err(cfg)?;
    let checker = BroadcastChecker::from_channel(&channel).map_err(cfg)?;
    let batch = BatchConfig::from(&channel.batch);
    batch.validate()?;
    let node = Arc::new(
        OrdererNode::new(
            id,
            raft.clone(),
            ledger.clone(),
            checker,
            batch,
            Arc::new(signer),
        )
        .map_err(|e| Error::Start(format!("the Broadcast checks' threads: {e}")))?,
    );

    let read_policy = ReadPolicy {
        channel_id: channel.channel_id.clone(),
        msps: Arc::new(channel.msp_manager().map_err(cfg)?),
        org_policies: channel.org_policies(),
        readers: channel.policies.readers.clone(),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let broadcast = AtomicBroadcastService::new(
        Arc::clone(&node),
        read_policy,
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&roots)),
        stopped.clone(),
    );
    let consenter_certs = channel
        .consenters
        .iter()
        .map(|c| c.client_tls_cert.clone())
        .collect();
    let raft_service =
        RaftTransportService::new(&channel.channel_id, raft, ledger.clone(), consenter_certs);
    let server_tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(&cert_pem, &key_pem))
        .client_ca_root(Certificate::from_pem(&roots))
        .client_auth_optional(true);

    let listener = tokio::net::TcpListener::bind(&config.node.listen)
        .await
        .map_err(|e| cfg(format!("listening on {}: {e}", config.node.listen)))?;
    let listen = listener.local_addr().map_err(cfg)?;
    let ops_listener = tokio::net::TcpListener::bind(&config.node.operations)
        .await
        .map_err(|e| cfg(format!("listening on {}: {e}", config.node.operations)))?;
    let operations = ops_listener.local_addr().map_err(cfg)?;
    let mut grpc_stop = stopped.clone();
    let router = Server::builder()
        .tls_config(server_tls)
        .map_err(cfg)?
        .http2_keepalive_interval(Some(Duration::from_secs(60)))
        .concurrency_limit_per_connection(256)
        .max_concurrent_streams(Some(256))
        .add_service(
            RaftTransportServer::new(raft_service)
                .max_decoding_message_size(crate::consensus::transport::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(crate::consensus::transport::MAX_MESSAGE_BYTES),
        )
        .add_service(
            AtomicBroadcastServer::new(broadcast)
                .max_decoding_message_size(batch.absolute_max_bytes as usize + 4096)
                .max_encoding_message_size(crate::consensus::transport::MAX_MESSAGE_BYTES),
        );
    let ops_node = Arc::clone(&node);
    let mut ops_stop = stopped;
    let server = tokio::spawn(async move {
        let grpc = router.serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            async move {
                let _ = grpc_stop.wait_for(|s| *s).await;
            },
        );
        let ops = async move {
            tokio::select! {
                _ = serve_operations(ops_listener, ops_node) => {}
                _ = ops_stop.wait_for(|s| *s) => {}
            }
        };
        let (r, _) = tokio::join!(grpc, ops);
        if let Err(e) = r {
            tracing::error!(error = %e, "the orderer's server failed");
        }
    });
    tracing::info!(%listen, %operations, node = id, channel = %channel.channel_id, "orderer serving");
    Ok(Running {
        listen,
        operations,
        node,
        stop,
        server,
    })
}

/// Runs the node of `config` until `shutdown` resolves.
pub async fn run(config: &Config, shutdown: impl Future<Output = ()>) -> Result<()> {
    let running = start(config).await?;
    shutdown.await;
    tracing::info!("orderer stopping");
    running.stop().await;
    Ok(())
}

/// `/healthz` (200 when a leader is known, 503 otherwise) and `/metrics` (Prometheus text) over
/// plain HTTP/1.1; anything else is 404. Requests are read with a size and time limit.
async fn serve_operations(listener: tokio::net::TcpListener, node: Arc<OrdererNode>) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let node = Arc::clone(&node);
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
                "/healthz" => {
                    if node.raft().metrics().borrow().current_leader.is_some() {
                        ("200 OK", "ok\n".to_string())
                    } else {
                        ("503 Service Unavailable", "no Raft leader\n".to_string())
                    }
                }
                "/metrics" => ("200 OK", metrics_text(&node)),
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

fn metrics_text(node: &OrdererNode) -> String {
    let raft = node.raft().metrics().borrow().clone();
    let m = node.metrics();
    let ordered = m.envelopes_ordered.load(Ordering::Relaxed);
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, value: String| {
        out.push_str(&format!(
            "# HELP mercato_orderer_{name} {help}\n# TYPE mercato_orderer_{name} {kind}\nmercato_orderer_{name} {value}\n"
        ));
    };
    metric(
        "height",
        "Blocks in the chain.",
        "gauge",
        node.ledger().height().to_string(),
    );
    metric(
        "raft_term",
        "The current Raft term.",
        "gauge",
        raft.current_term.to_string(),
    );
    metric(
        "raft_leader",
        "The Raft id of the leader this node knows (0: none).",
        "gauge",
        raft.current_leader.unwrap_or(0).to_string(),
    );
    metric(
        "raft_last_applied",
        "The index of the last applied log entry.",
        "gauge",
        raft.last_applied.map(|l| l.index).unwrap_or(0).to_string(),
    );
    metric(
        "blocks_cut_total",
        "Blocks this node cut as the leader.",
        "counter",
        m.blocks_cut.load(Ordering::Relaxed).to_string(),
    );
    metric(
        "broadcast_ordered_total",
        "Envelopes acknowledged with SUCCESS.",
        "counter",
        ordered.to_string(),
    );
    metric(
        "broadcast_refused_total",
        "Envelopes refused.",
        "counter",
        m.envelopes_refused.load(Ordering::Relaxed).to_string(),
    );
    metric(
        "broadcast_seconds_sum",
        "Total time from receiving an envelope to its acknowledgement, of the ordered ones.",
        "counter",
        format!(
            "{:.6}",
            m.broadcast_micros.load(Ordering::Relaxed) as f64 / 1e6
        ),
    );
    out
}
