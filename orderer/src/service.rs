//! `orderer.AtomicBroadcast` over TLS: Broadcast and Deliver, Fabric-compatible.
//!
//! Broadcast answers each envelope of a stream in order: SUCCESS once the block holding it is
//! committed, or the status of its refusal. On a node that is not the leader, a checked envelope
//! is forwarded to the leader (once: a forwarded call is never forwarded again) and the leader's
//! answer is passed back.
//!
//! Deliver answers signed seek requests (readers of the channel only) with blocks from the chain,
//! waiting for new ones when asked to, then SUCCESS.
//!
//! It shares the node's port with the Raft transport: client certificates are optional there,
//! and only the Raft service demands one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use mercato_ca::MspManager;
use mercato_ca::policy::{OrgPolicies, Policy};
use mercato_proto::Limits;
use mercato_proto::deliver::resolve_seek;
use mercato_proto::pb::common::{Block, Envelope, HeaderType, Status as FabricStatus};
use mercato_proto::pb::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use mercato_proto::pb::orderer::atomic_broadcast_server::AtomicBroadcast;
use mercato_proto::pb::orderer::deliver_response::Type as Reply;
use mercato_proto::pb::orderer::{BroadcastResponse, DeliverResponse, SeekInfo};
use mercato_proto::transaction::parse_envelope_message;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use crate::node::OrdererNode;

/// How many Broadcast answers a stream buffers before it waits for the client.
const BUFFER: usize = 16;
/// How many blocks a Deliver stream buffers before it waits for the client.
const DELIVER_BUFFER: usize = 2;
/// How many envelopes of one Broadcast stream are ordered at once (each up to the channel's
/// `absolute_max_bytes`; streams per connection are limited by the server).
const PIPELINE: usize = 64;
/// Marks a Broadcast forwarded by a follower.
const FORWARDED: &str = "x-mercato-forwarded";

/// Who may read the channel, for Deliver.
#[derive(Debug, Clone)]
pub struct ReadPolicy {
    pub channel_id: String,
    pub msps: Arc<MspManager>,
    pub org_policies: OrgPolicies,
    pub readers: Policy,
}

/// The AtomicBroadcast service of one channel's ordering node.
#[derive(Clone)]
pub struct AtomicBroadcastService(Arc<Inner>);

struct Inner {
    node: Arc<OrdererNode>,
    read: Arc<ReadPolicy>,
    /// How this node reaches the leader's orderer (TLS roots of the orderer organisations).
    forward_tls: ClientTlsConfig,
    clients: Mutex<BTreeMap<String, AtomicBroadcastClient<Channel>>>,
    /// Turns true when the node stops: open Deliver streams end then, so that the server's
    /// graceful shutdown does not wait on clients that wait for blocks.
    closing: tokio::sync::watch::Receiver<bool>,
}

impl std::fmt::Debug for AtomicBroadcastService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicBroadcastService")
            .field("node", &self.0.node.id())
            .finish_non_exhaustive()
    }
}

impl AtomicBroadcastService {
    /// The service of `node`, forwarding to the leader with `forward_tls`; its Deliver streams
    /// end when `closing` turns true.
    pub fn new(
        node: Arc<OrdererNode>,
        read: ReadPolicy,
        forward_tls: ClientTlsConfig,
        closing: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        AtomicBroadcastService(Arc::new(Inner {
            node,
            read: Arc::new(read),
            forward_tls,
            clients: Mutex::new(BTreeMap::new()),
            closing,
        }))
    }
}

impl Inner {
    fn client(&self, addr: &str) -> Result<AtomicBroadcastClient<Channel>, String> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(addr) {
            return Ok(c.clone());
        }
        let channel = Endpoint::from_shared(format!("https://{addr}"))
            .and_then(|e| e.tls_config(self.forward_tls.clone()))
            .map_err(|e| format!("the leader at {addr}: {e}"))?
            .connect_lazy();
        let client = AtomicBroadcastClient::new(channel);
        clients.insert(addr.to_owned(), client.clone());
        Ok(client)
    }
}

fn answer(status: FabricStatus, info: impl Into<String>) -> BroadcastResponse {
    BroadcastResponse {
        status: status as i32,
        info: info.into(),
    }
}

/// Orders one envelope here, or forwards it to the leader.
async fn order(service: &Inner, envelope: Envelope, forwarded: bool) -> BroadcastResponse {
    let bytes = envelope.encode_to_vec();
    match service.node.broadcast(bytes).await {
        Ok(_) => answer(FabricStatus::Success, ""),
        Err(r) if r.at_leader && !forwarded => {
            let Some((leader, addr)) = service.node.other_leader() else {
                return answer(r.status, r.message);
            };
            let mut client = match service.client(&addr) {
                Ok(c) => c,
                Err(e) => return answer(FabricStatus::ServiceUnavailable, e),
            };
            let mut request = Request::new(tokio_stream::once(envelope));
            if let Ok(v) = "1".parse() {
                request.metadata_mut().insert(FORWARDED, v);
            }
            match client.broadcast(request).await {
                Ok(response) => match response.into_inner().message().await {
                    Ok(Some(r)) => r,
                    Ok(None) => answer(
                        FabricStatus::ServiceUnavailable,
                        format!("leader {leader} closed the stream"),
                    ),
                    Err(e) => answer(
                        FabricStatus::ServiceUnavailable,
                        format!("leader {leader}: {}", e.message()),
                    ),
                },
                Err(e) => answer(
                    FabricStatus::ServiceUnavailable,
                    format!("forwarding to leader {leader} at {addr}: {}", e.message()),
                ),
            }
        }
        Err(r) => answer(r.status, r.message),
    }
}

type BroadcastStream = ReceiverStream<Result<BroadcastResponse, Status>>;
type DeliverStream = ReceiverStream<Result<DeliverResponse, Status>>;

#[tonic::async_trait]
impl AtomicBroadcast for AtomicBroadcastService {
    type BroadcastStream = BroadcastStream;
    type DeliverStream = DeliverStream;

    async fn broadcast(
        &self,
        request: Request<Streaming<Envelope>>,
    ) -> Result<Response<BroadcastStream>, Status> {
        let forwarded = request.metadata().contains_key(FORWARDED);
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(BUFFER);
        let service = Arc::clone(&self.0);
        let mut closing = self.0.closing.clone();
        tokio::spawn(async move {
            // Envelopes of one stream are ordered concurrently (a client may send many before it
            // reads an answer) and answered in the order they came, at most PIPELINE at a time.
            // When the node closes, the stream takes no more envelopes, answers those it took
            // and ends, so that a client's long-lived stream never holds up the shutdown.
            let mut in_flight = FuturesOrdered::new();
            let mut open = true;
            loop {
                tokio::select! {
                    _ = async { let _ = closing.wait_for(|c| *c).await; }, if open => open = false,
                    next = inbound.message(), if open && in_flight.len() < PIPELINE => match next {
                        Ok(Some(envelope)) => {
                            let service = Arc::clone(&service);
                            in_flight.push_back(async move { order(&service, envelope, forwarded).await });
                        }
                        Ok(None) => open = false,
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    },
                    Some(reply) = in_flight.next(), if !in_flight.is_empty() => {
                        if tx.send(Ok(reply)).await.is_err() {
                            return;
                        }
                    },
                    else => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn deliver(
        &self,
        request: Request<Streaming<Envelope>>,
    ) -> Result<Response<DeliverStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(DELIVER_BUFFER);
        let service = Arc::clone(&self.0);
        let mut closing = self.0.closing.clone();
        let session = async move {
            loop {
                let envelope = match inbound.message().await {
                    Ok(Some(e)) => e,
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let status = match seek(&service.read, envelope) {
                    Err((s, why)) => {
                        tracing::debug!(reason = %why, "deliver request refused");
                        s
                    }
                    Ok(info) => match stream(&service.node, &tx, &info).await {
                        Some(s) => s,
                        None => return,
                    },
                };
                let reply = DeliverResponse {
                    r#type: Some(Reply::Status(status as i32)),
                };
                if tx.send(Ok(reply)).await.is_err() {
                    return;
                }
            }
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = session => {}
                _ = closing.wait_for(|c| *c) => {}
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Checks a signed seek request: type, channel, a reader's valid signature.
fn seek(read: &ReadPolicy, envelope: Envelope) -> Result<SeekInfo, (FabricStatus, String)> {
    let bad = |m: String| (FabricStatus::BadRequest, m);
    let parsed = parse_envelope_message(envelope, &Limits::default())
        .map_err(|e| bad(format!("malformed seek request: {e}")))?;
    let header = &parsed.header;
    if header.channel_header.r#type != HeaderType::DeliverSeekInfo as i32 {
        return Err(bad(format!(
            "a seek request is of type DELIVER_SEEK_INFO (5), not {}",
            header.channel_header.r#type
        )));
    }
    mercato_proto::deliver::check_timestamp(
        "the seek request",
        header.channel_header.timestamp.as_ref(),
        mercato_proto::deliver::unix_now(),
    )
    .map_err(bad)?;
    if header.channel_header.channel_id != read.channel_id {
        return Err((
            FabricStatus::NotFound,
            format!(
                "channel {:?} is not ordered here",
                header.channel_header.channel_id
            ),
        ));
    }
    let forbidden = |m: String| (FabricStatus::Forbidden, m);
    let id = read
        .msps
        .identity_now(&header.creator)
        .map_err(|e| forbidden(format!("the creator is not a member of the channel: {e}")))?;
    id.verify(&parsed.payload_bytes, &parsed.signature)
        .map_err(|e| forbidden(format!("the signature does not verify: {e}")))?;
    if !read
        .readers
        .evaluate(&[Arc::clone(&id)], &read.org_policies)
    {
        return Err(forbidden(format!(
            "{} may not read the channel (policy {})",
            id.common_name(),
            read.readers
        )));
    }
    SeekInfo::decode(parsed.data.as_slice()).map_err(|e| bad(format!("SeekInfo: {e}")))
}

/// Streams the blocks of a seek; the closing status, or `None` if the client went away.
async fn stream(
    node: &OrdererNode,
    tx: &mpsc::Sender<Result<DeliverResponse, Status>>,
    info: &SeekInfo,
) -> Option<FabricStatus> {
    let ledger = node.ledger();
    let range = match resolve_seek(info, ledger.height()) {
        Ok(r) => r,
        Err(_) => return Some(FabricStatus::BadRequest),
    };
    let mut height = ledger.watch_height();
    for n in range.start..=range.stop {
        if ledger.height() <= n {
            if !range.wait {
                return Some(FabricStatus::NotFound);
            }
            tokio::select! {
                r = height.wait_for(|h| *h > n) => if r.is_err() { return Some(FabricStatus::ServiceUnavailable) },
                _ = tx.closed() => return None,
            }
        }
        let block = match ledger.block(n) {
            Ok(Some(bytes)) => match Block::decode(bytes.as_slice()) {
                Ok(b) => b,
                Err(_) => return Some(FabricStatus::InternalServerError),
            },
            _ => return Some(FabricStatus::InternalServerError),
        };
        let reply = DeliverResponse {
            r#type: Some(Reply::Block(block)),
        };
        if tx.send(Ok(reply)).await.is_err() {
            return None;
        }
    }
    Some(FabricStatus::Success)
}
