//! The peer's gRPC services over TLS, Fabric-compatible: `protos.Endorser`, `gateway.Gateway`
//! (Evaluate, Endorse, Submit, CommitStatus, ChaincodeEvents) and `protos.Deliver` (blocks and
//! filtered blocks); and Mercato's own `mercato.Ledger` (ledger queries for auditors).
//!
//! Every service works on one [`PeerChannel`]: the channel's MSPs and policies, the ledger, the
//! committer (for waiting on commits) and the endorser. Requests are checked here (identity,
//! signature, the channel's Readers policy); CPU-bound work (simulation, signature checks) runs on
//! the blocking pool so that the async threads keep serving.

mod deliver;
mod endorser;
mod gateway;
mod ledger;

pub use endorser::CATCH_UP_WAIT;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mercato_ca::policy::{OrgPolicies, Policy};
use mercato_ca::{Identity, MspManager};
use mercato_proto::Limits;
use mercato_proto::deliver::unix_now;
use mercato_proto::pb::gateway::gateway_server::GatewayServer;
use mercato_proto::pb::mercato::ledger_server::LedgerServer;
use mercato_proto::pb::protos::deliver_server::DeliverServer;
use mercato_proto::pb::protos::endorser_server::EndorserServer;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity as TlsIdentity, Server, ServerTlsConfig};

use crate::committer::Committer;
use crate::endorser::Endorser;
use crate::ledger::LedgerStore;

/// The largest request a client may send (a proposal with its arguments, a signed request).
pub const MAX_REQUEST_BYTES: usize = 16 << 20;
/// The largest message the peer sends (a block).
pub const MAX_RESPONSE_BYTES: usize = 128 << 20;
/// How many responses a Deliver stream buffers before it waits for the client.
const DELIVER_BUFFER: usize = 2;
/// Checks a signed request's timestamp against the peer's clock (within 15 minutes).
fn check_timestamp(
    what: &str,
    at: Option<&mercato_proto::pb::Timestamp>,
) -> std::result::Result<(), String> {
    mercato_proto::deliver::check_timestamp(what, at, unix_now())
}

/// One channel as the services see it.
pub struct PeerChannel {
    /// The channel id.
    pub channel_id: String,
    /// The channel's MSPs.
    pub msps: Arc<MspManager>,
    /// The application organisations' named policies.
    pub org_policies: OrgPolicies,
    /// Who may read the channel (Deliver, CommitStatus): Fabric's `ANY Readers`.
    pub readers: Policy,
    /// The ledger.
    pub store: Arc<dyn LedgerStore>,
    /// The committer, whose events tell when blocks commit.
    pub committer: Arc<Committer>,
    /// The endorser.
    pub endorser: Arc<Endorser>,
    /// The gateway (Endorse, Submit); without one those calls are refused as not served.
    pub gateway: Option<Arc<crate::gateway::Gateway>>,
    /// Size limits for parsing.
    pub limits: Limits,
}

impl std::fmt::Debug for PeerChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerChannel")
            .field("channel_id", &self.channel_id)
            .finish_non_exhaustive()
    }
}

impl PeerChannel {
    /// The identity of serialized `creator`, if it is a member allowed to read the channel.
    fn reader(&self, creator: &[u8]) -> Result<Arc<Identity>, tonic::Status> {
        let id = self.msps.identity_now(creator).map_err(|e| {
            tonic::Status::permission_denied(format!(
                "the identity is not a valid member of channel {}: {e}",
                self.channel_id
            ))
        })?;
        self.may_read(&id)
            .map_err(tonic::Status::permission_denied)?;
        Ok(id)
    }

    /// Whether a verified identity is allowed to read the channel.
    fn may_read(&self, id: &Identity) -> Result<(), String> {
        if self
            .readers
            .evaluate(std::slice::from_ref(id), &self.org_policies)
        {
            Ok(())
        } else {
            Err(format!(
                "{} of {} may not read channel {} (policy {})",
                id.common_name(),
                id.msp_id(),
                self.channel_id,
                self.readers
            ))
        }
    }

    fn check_channel(&self, channel_id: &str) -> Result<(), tonic::Status> {
        if channel_id == self.channel_id {
            Ok(())
        } else {
            Err(tonic::Status::not_found(format!(
                "channel {channel_id:?} is not served by this peer (it serves {:?})",
                self.channel_id
            )))
        }
    }
}

/// TLS for the peer's port: its certificate and key (PEM), and, for mutual TLS, the roots client
/// certificates must chain to.
#[derive(Debug, Clone)]
pub struct PeerTls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// The roots client certificates are checked against (other peers' TLS CAs, for mutual
    /// TLS between peers).
    pub client_roots_pem: Option<Vec<u8>>,
    /// Whether every client must present a certificate (Fabric's `clientAuthRequired`);
    /// otherwise one is optional and checked when presented.
    pub client_auth_required: bool,
}

/// The peer's gRPC server, bound and ready to serve.
pub struct PeerServer {
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
    tls: ServerTlsConfig,
    channel: Arc<PeerChannel>,
}

impl std::fmt::Debug for PeerServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl PeerServer {
    /// Binds `addr` (port 0: any free port) for `channel`.
    pub async fn bind(
        addr: SocketAddr,
        tls: &PeerTls,
        channel: Arc<PeerChannel>,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Self::from_listener(listener, tls, channel)
    }

    /// Serves `channel` on a bound listener.
    pub fn from_listener(
        listener: tokio::net::TcpListener,
        tls: &PeerTls,
        channel: Arc<PeerChannel>,
    ) -> std::io::Result<Self> {
        // Only ring is compiled in; naming it keeps rustls from refusing to choose.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let local_addr = listener.local_addr()?;
        let mut config = ServerTlsConfig::new()
            .identity(TlsIdentity::from_pem(&tls.cert_pem, &tls.key_pem))
            .timeout(Duration::from_secs(10));
        if let Some(roots) = &tls.client_roots_pem {
            config = config
                .client_ca_root(Certificate::from_pem(roots))
                .client_auth_optional(!tls.client_auth_required);
        }
        Ok(PeerServer {
            listener,
            local_addr,
            tls: config,
            channel,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        let PeerServer {
            listener,
            local_addr,
            tls,
            channel,
        } = self;
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        tracing::info!(addr = %local_addr, channel = %channel.channel_id, "peer serving");
        // Streams that wait for blocks (Deliver, ChaincodeEvents) end when the server stops, so
        // that its graceful shutdown does not wait on them.
        let (closing_tx, closing) = tokio::sync::watch::channel(false);
        let shutdown = async move {
            shutdown.await;
            let _ = closing_tx.send(true);
        };
        Server::builder()
            .tls_config(tls)?
            .http2_keepalive_interval(Some(Duration::from_secs(60)))
            .concurrency_limit_per_connection(256)
            .max_concurrent_streams(Some(256))
            .add_service(
                EndorserServer::new(endorser::EndorserService::new(Arc::clone(&channel)))
                    .max_decoding_message_size(MAX_REQUEST_BYTES),
            )
            .add_service(
                GatewayServer::new(gateway::GatewayService::new(
                    Arc::clone(&channel),
                    closing.clone(),
                ))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
            )
            .add_service(
                LedgerServer::new(ledger::LedgerService::new(Arc::clone(&channel)))
                    .max_decoding_message_size(MAX_REQUEST_BYTES)
                    .max_encoding_message_size(MAX_RESPONSE_BYTES),
            )
            .add_service(
                DeliverServer::new(deliver::DeliverService::new(channel, closing))
                    .max_decoding_message_size(MAX_REQUEST_BYTES)
                    .max_encoding_message_size(MAX_RESPONSE_BYTES),
            )
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
    }
}

/// Runs `session` until it ends or `closing` turns true.
fn spawn_until_closing(
    session: impl Future<Output = ()> + Send + 'static,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        tokio::select! {
            _ = session => {}
            _ = closing.wait_for(|c| *c) => {}
        }
    });
}

/// Runs CPU-bound work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tonic::Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| tonic::Status::internal(format!("a worker failed: {e}")))
}
