//! Raft between consenters over gRPC with mutual TLS (`mercato.RaftTransport`).
//!
//! The server end ([`RaftTransportService`]) serves one channel's Raft instance and accepts only
//! callers whose TLS client certificate is one of the channel's consenters'. The client end
//! ([`GrpcNetwork`]) reaches a consenter at the `host:port` of its Raft node, presenting this
//! node's certificate and trusting only the orderer organisations' TLS roots.
//!
//! A message is a JSON head (votes, log ids, snapshot metadata, and the result of a call) with
//! the bulky parts raw beside it: log entries in the log's own encoding (a block's bytes are
//! never re-encoded) and snapshot chunks.

// openraft's error types are large; they are the traits' types, not ours to shrink.
#![allow(clippy::result_large_err)]

use std::collections::BTreeSet;
use std::time::Duration;

use mercato_proto::pb::mercato::RaftMessage;
use mercato_proto::pb::mercato::raft_transport_client::RaftTransportClient;
use mercato_proto::pb::mercato::raft_transport_server::RaftTransport;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, LogId, Raft, SnapshotMeta, Vote};
use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Response, Status};

use super::store::{ChainSource, TypeConfig, decode_entry, encode_entry};
use crate::ledger::Ledger;

type NodeId = u64;

/// The largest Raft message (a batch of blocks or a snapshot chunk).
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// GetBlocks answers with at most this many blocks, and stops adding blocks once it holds this
/// many bytes (so an answer holds at least one block when the node has any of those asked, and
/// a block is at most a message's size).
const GET_BLOCKS_MAX: u64 = 1000;
const GET_BLOCKS_BYTES: usize = 64 << 20;

#[derive(Serialize, Deserialize)]
struct BlocksHead {
    from: u64,
    to: u64,
}

#[derive(Serialize, Deserialize)]
struct AppendHead {
    vote: Vote<NodeId>,
    prev_log_id: Option<LogId<NodeId>>,
    leader_commit: Option<LogId<NodeId>>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotHead {
    vote: Vote<NodeId>,
    meta: SnapshotMeta<NodeId, BasicNode>,
    offset: u64,
    done: bool,
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, Status> {
    serde_json::to_vec(v).map_err(|e| Status::internal(format!("encoding a Raft message: {e}")))
}

fn from_json<T: for<'a> Deserialize<'a>>(what: &str, bytes: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(bytes)
        .map_err(|e| Status::invalid_argument(format!("{what} does not decode: {e}")))
}

/// The server end for one channel's Raft instance.
pub struct RaftTransportService {
    channel_id: String,
    raft: Raft<TypeConfig>,
    /// The chain, for consenters installing a snapshot (GetBlocks).
    ledger: Ledger,
    /// DER client certificates of the consenters: the only callers accepted.
    consenters: BTreeSet<Vec<u8>>,
}

impl std::fmt::Debug for RaftTransportService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftTransportService")
            .field("channel_id", &self.channel_id)
            .finish_non_exhaustive()
    }
}

impl RaftTransportService {
    /// Serves `raft` of `channel_id`, and the blocks of `ledger`, to callers presenting one of
    /// `consenter_certs` (DER).
    pub fn new(
        channel_id: &str,
        raft: Raft<TypeConfig>,
        ledger: Ledger,
        consenter_certs: Vec<Vec<u8>>,
    ) -> Self {
        RaftTransportService {
            channel_id: channel_id.to_owned(),
            raft,
            ledger,
            consenters: consenter_certs.into_iter().collect(),
        }
    }

    fn admit(&self, request: &Request<RaftMessage>) -> Result<(), Status> {
        let certs = request.peer_certs().ok_or_else(|| {
            Status::unauthenticated("Raft messages need a TLS client certificate")
        })?;
        let known = certs
            .first()
            .is_some_and(|c| self.consenters.contains(c.as_ref()));
        if !known {
            return Err(Status::permission_denied(
                "the TLS client certificate is not a consenter's of this channel",
            ));
        }
        if request.get_ref().channel_id != self.channel_id {
            return Err(Status::not_found(format!(
                "channel {:?} is not ordered here",
                request.get_ref().channel_id
            )));
        }
        Ok(())
    }
}

fn reply<T: Serialize>(result: &T) -> Result<Response<RaftMessage>, Status> {
    Ok(Response::new(RaftMessage {
        head: to_json(result)?,
        ..Default::default()
    }))
}

#[tonic::async_trait]
impl RaftTransport for RaftTransportService {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.admit(&request)?;
        let m = request.into_inner();
        let head: AppendHead = from_json("AppendEntries", &m.head)?;
        let entries = m
            .entries
            .iter()
            .map(|e| decode_entry(e).map_err(|e| Status::invalid_argument(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let result = self
            .raft
            .append_entries(AppendEntriesRequest {
                vote: head.vote,
                prev_log_id: head.prev_log_id,
                entries,
                leader_commit: head.leader_commit,
            })
            .await;
        reply(&result)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.admit(&request)?;
        let vote: VoteRequest<NodeId> = from_json("Vote", &request.get_ref().head)?;
        reply(&self.raft.vote(vote).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.admit(&request)?;
        let m = request.into_inner();
        let head: SnapshotHead = from_json("InstallSnapshot", &m.head)?;
        let result = self
            .raft
            .install_snapshot(InstallSnapshotRequest {
                vote: head.vote,
                meta: head.meta,
                offset: head.offset,
                data: m.data,
                done: head.done,
            })
            .await;
        reply(&result)
    }

    async fn get_blocks(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.admit(&request)?;
        let head: BlocksHead = from_json("GetBlocks", &request.get_ref().head)?;
        let end = head
            .to
            .min(self.ledger.height())
            .min(head.from.saturating_add(GET_BLOCKS_MAX));
        let mut blocks = Vec::new();
        let mut bytes = 0;
        for n in head.from..end {
            let block = self
                .ledger
                .block(n)
                .map_err(|e| Status::internal(e.to_string()))?
                .ok_or_else(|| Status::internal(format!("block {n} is missing")))?;
            bytes += block.len();
            blocks.push(block);
            if bytes >= GET_BLOCKS_BYTES {
                break;
            }
        }
        Ok(Response::new(RaftMessage {
            entries: blocks,
            ..Default::default()
        }))
    }
}

/// The client end: reaches consenters over mutual TLS.
#[derive(Clone)]
pub struct GrpcNetwork {
    channel_id: String,
    tls: ClientTlsConfig,
}

impl std::fmt::Debug for GrpcNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcNetwork")
            .field("channel_id", &self.channel_id)
            .finish_non_exhaustive()
    }
}

impl GrpcNetwork {
    /// Consenters of `channel_id`, reached with `tls` (this node's identity and the orderer
    /// organisations' TLS roots).
    pub fn new(channel_id: &str, tls: ClientTlsConfig) -> Self {
        GrpcNetwork {
            channel_id: channel_id.to_owned(),
            tls,
        }
    }
}

/// A connection to one consenter.
pub struct GrpcConnection {
    target: NodeId,
    channel_id: String,
    client: Result<RaftTransportClient<Channel>, String>,
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetwork {
    type Network = GrpcConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> GrpcConnection {
        GrpcConnection {
            target,
            channel_id: self.channel_id.clone(),
            client: self.client(target, &node.addr),
        }
    }
}

impl GrpcNetwork {
    fn client(&self, target: NodeId, addr: &str) -> Result<RaftTransportClient<Channel>, String> {
        Endpoint::from_shared(format!("https://{addr}"))
            .and_then(|e| e.tls_config(self.tls.clone()))
            .map(|e| {
                let channel = e
                    .connect_timeout(Duration::from_secs(3))
                    .tcp_nodelay(true)
                    .connect_lazy();
                RaftTransportClient::new(channel)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES)
            })
            .map_err(|e| format!("consenter {target} at {addr}: {e}"))
    }
}

#[tonic::async_trait]
impl ChainSource for GrpcNetwork {
    async fn blocks(
        &self,
        node: NodeId,
        addr: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Vec<u8>>, String> {
        let mut client = self.client(node, addr)?;
        let head = serde_json::to_vec(&BlocksHead { from, to }).map_err(|e| e.to_string())?;
        let mut request = Request::new(RaftMessage {
            channel_id: self.channel_id.clone(),
            head,
            ..Default::default()
        });
        request.set_timeout(Duration::from_secs(60));
        let answer = client
            .get_blocks(request)
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
        Ok(answer.into_inner().entries)
    }
}

/// Why a call did not reach the remote Raft.
fn transport<E: std::error::Error>(
    target: NodeId,
    status: &Status,
) -> RPCError<NodeId, BasicNode, E> {
    let e = std::io::Error::other(format!("consenter {target}: {}", status.message()));
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
            RPCError::Unreachable(Unreachable::new(&e))
        }
        _ => RPCError::Network(NetworkError::new(&e)),
    }
}

impl GrpcConnection {
    async fn call<R, E>(
        &mut self,
        message: RaftMessage,
        option: &RPCOption,
        rpc: impl AsyncFnOnce(
            &mut RaftTransportClient<Channel>,
            Request<RaftMessage>,
        ) -> Result<Response<RaftMessage>, Status>,
    ) -> Result<R, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        R: for<'a> Deserialize<'a>,
        E: std::error::Error + for<'a> Deserialize<'a>,
    {
        let target = self.target;
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => {
                return Err(RPCError::Unreachable(Unreachable::new(
                    &std::io::Error::other(e.clone()),
                )));
            }
        };
        let mut request = Request::new(message);
        request.set_timeout(option.hard_ttl());
        let response = rpc(client, request)
            .await
            .map_err(|s| transport(target, &s))?;
        let result: Result<R, RaftError<NodeId, E>> =
            serde_json::from_slice(&response.get_ref().head).map_err(|e| {
                RPCError::Network(NetworkError::new(&std::io::Error::other(format!(
                    "consenter {target} answered what does not decode: {e}"
                ))))
            })?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(target, e)))
    }
}

impl RaftNetwork<TypeConfig> for GrpcConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let head = AppendHead {
            vote: rpc.vote,
            prev_log_id: rpc.prev_log_id,
            leader_commit: rpc.leader_commit,
        };
        let bad = |e: String| RPCError::Network(NetworkError::new(&std::io::Error::other(e)));
        let entries = rpc
            .entries
            .iter()
            .map(|e| encode_entry(e).map_err(|e| bad(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let message = RaftMessage {
            channel_id: self.channel_id.clone(),
            head: serde_json::to_vec(&head).map_err(|e| bad(e.to_string()))?,
            entries,
            data: Vec::new(),
        };
        self.call(message, &option, async |c, r| c.append_entries(r).await)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let head = SnapshotHead {
            vote: rpc.vote,
            meta: rpc.meta,
            offset: rpc.offset,
            done: rpc.done,
        };
        let message = RaftMessage {
            channel_id: self.channel_id.clone(),
            head: serde_json::to_vec(&head).map_err(|e| {
                RPCError::Network(NetworkError::new(&std::io::Error::other(e.to_string())))
            })?,
            entries: Vec::new(),
            data: rpc.data,
        };
        self.call(message, &option, async |c, r| c.install_snapshot(r).await)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let message = RaftMessage {
            channel_id: self.channel_id.clone(),
            head: serde_json::to_vec(&rpc).map_err(|e| {
                RPCError::Network(NetworkError::new(&std::io::Error::other(e.to_string())))
            })?,
            entries: Vec::new(),
            data: Vec::new(),
        };
        self.call(message, &option, async |c, r| c.vote(r).await)
            .await
    }
}
