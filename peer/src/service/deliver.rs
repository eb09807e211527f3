//! `protos.Deliver`: blocks (Deliver) and filtered blocks (DeliverFiltered) for readers of the
//! channel. Each request on the stream is a signed envelope of type DELIVER_SEEK_INFO holding a
//! `SeekInfo` (start, stop, and whether to wait for blocks not yet committed); the peer answers
//! with the blocks, then a SUCCESS status, and reads the next request. A request that is refused
//! is answered with its status (BAD_REQUEST, FORBIDDEN, NOT_FOUND) and the stream goes on.

use std::sync::Arc;

use mercato_proto::block::metadata_entry;
use mercato_proto::pb::common::{
    Block, BlockMetadataIndex, Envelope, HeaderType, Status as FabricStatus,
};
use mercato_proto::pb::orderer::SeekInfo;
use mercato_proto::pb::orderer::seek_info::SeekBehavior;
use mercato_proto::pb::protos::deliver_response::Type as Reply;
use mercato_proto::pb::protos::deliver_server::Deliver as DeliverApi;
use mercato_proto::pb::protos::filtered_transaction::Data as FilteredData;
use mercato_proto::pb::protos::{
    ChaincodeEvent, DeliverResponse, FilteredBlock, FilteredChaincodeAction, FilteredTransaction,
    FilteredTransactionActions,
};
use mercato_proto::transaction::{parse_envelope, parse_envelope_message, parse_transaction};
use prost::Message;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{DELIVER_BUFFER, PeerChannel, blocking, check_timestamp, unix_now};

pub(super) struct DeliverService {
    channel: Arc<PeerChannel>,
    closing: tokio::sync::watch::Receiver<bool>,
}

impl DeliverService {
    pub(super) fn new(
        channel: Arc<PeerChannel>,
        closing: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        DeliverService { channel, closing }
    }
}

type Stream = ReceiverStream<Result<DeliverResponse, Status>>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Blocks,
    Filtered,
}

#[tonic::async_trait]
impl DeliverApi for DeliverService {
    type DeliverStream = Stream;
    type DeliverFilteredStream = Stream;
    type DeliverWithPrivateDataStream = Stream;

    async fn deliver(
        &self,
        request: Request<Streaming<Envelope>>,
    ) -> Result<Response<Stream>, Status> {
        Ok(Response::new(serve(
            Arc::clone(&self.channel),
            request.into_inner(),
            Form::Blocks,
            self.closing.clone(),
        )))
    }

    async fn deliver_filtered(
        &self,
        request: Request<Streaming<Envelope>>,
    ) -> Result<Response<Stream>, Status> {
        Ok(Response::new(serve(
            Arc::clone(&self.channel),
            request.into_inner(),
            Form::Filtered,
            self.closing.clone(),
        )))
    }

    async fn deliver_with_private_data(
        &self,
        _request: Request<Streaming<Envelope>>,
    ) -> Result<Response<Stream>, Status> {
        Err(Status::unimplemented(
            "Mercato has no private data collections; use Deliver",
        ))
    }
}

fn status(s: FabricStatus) -> DeliverResponse {
    DeliverResponse {
        r#type: Some(Reply::Status(s as i32)),
    }
}

fn serve(
    channel: Arc<PeerChannel>,
    mut inbound: Streaming<Envelope>,
    form: Form,
    closing: tokio::sync::watch::Receiver<bool>,
) -> Stream {
    let (tx, rx) = mpsc::channel(DELIVER_BUFFER);
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
            let reply = match seek(&channel, envelope).await {
                Ok(seek) => {
                    match stream_blocks(&channel, &tx, seek, form).await {
                        Some(s) => s,
                        None => return, // The client went away.
                    }
                }
                Err((s, why)) => {
                    tracing::debug!(reason = %why, "deliver request refused");
                    s
                }
            };
            if tx.send(Ok(status(reply))).await.is_err() {
                return;
            }
        }
    };
    super::spawn_until_closing(session, closing);
    ReceiverStream::new(rx)
}

/// Checks a seek request and resolves it to block numbers.
async fn seek(
    channel: &Arc<PeerChannel>,
    envelope: Envelope,
) -> Result<Seek, (FabricStatus, String)> {
    let channel2 = Arc::clone(channel);
    let (checked, expires) =
        blocking(move || -> Result<(SeekInfo, i64), (FabricStatus, String)> {
            let bad = |m: String| (FabricStatus::BadRequest, m);
            let parsed = parse_envelope_message(envelope, &channel2.limits)
                .map_err(|e| bad(format!("malformed seek request: {e}")))?;
            if parsed.header.channel_header.r#type != HeaderType::DeliverSeekInfo as i32 {
                return Err(bad(format!(
                    "a seek request is of type DELIVER_SEEK_INFO (5), not {}",
                    parsed.header.channel_header.r#type
                )));
            }
            channel2
                .check_channel(&parsed.header.channel_header.channel_id)
                .map_err(|s| (FabricStatus::NotFound, s.message().to_owned()))?;
            check_timestamp(
                "the seek request",
                parsed.header.channel_header.timestamp.as_ref(),
            )
            .map_err(bad)?;
            let id = channel2
                .reader(&parsed.header.creator)
                .map_err(|s| (FabricStatus::Forbidden, s.message().to_owned()))?;
            id.verify(&parsed.payload_bytes, &parsed.signature)
                .map_err(|e| {
                    (
                        FabricStatus::Forbidden,
                        format!("the signature does not verify: {e}"),
                    )
                })?;
            let info = SeekInfo::decode(parsed.data.as_slice())
                .map_err(|e| bad(format!("SeekInfo: {e}")))?;
            Ok((info, id.validity().1))
        })
        .await
        .map_err(|s| (FabricStatus::InternalServerError, s.message().to_owned()))??;
    let range = mercato_proto::deliver::resolve_seek(&checked, channel.committer.height())
        .map_err(|e| (FabricStatus::BadRequest, e))?;
    let behavior = if range.wait {
        SeekBehavior::BlockUntilReady
    } else {
        SeekBehavior::FailIfNotReady
    };
    Ok(Seek {
        start: range.start,
        stop: range.stop,
        behavior,
        expires,
    })
}

/// A seek request that passed its checks.
struct Seek {
    start: u64,
    stop: u64,
    behavior: SeekBehavior,
    /// When the reader's certificate expires (Unix seconds): the session ends then, however long
    /// it was asked to wait for blocks.
    expires: i64,
}

/// Sends blocks `start..=stop`, waiting for blocks not yet committed unless told to fail.
/// Returns the closing status, or `None` when the client went away.
async fn stream_blocks(
    channel: &Arc<PeerChannel>,
    tx: &mpsc::Sender<Result<DeliverResponse, Status>>,
    seek: Seek,
    form: Form,
) -> Option<FabricStatus> {
    let Seek {
        start,
        stop,
        behavior,
        expires,
    } = seek;
    let mut events = channel.committer.subscribe();
    let mut n = start;
    while n <= stop {
        if unix_now() > expires {
            tracing::debug!(
                block = n,
                "deliver session ended: the reader's certificate expired"
            );
            return Some(FabricStatus::Forbidden);
        }
        if channel.committer.height() <= n {
            if behavior == SeekBehavior::FailIfNotReady {
                return Some(FabricStatus::NotFound);
            }
            tokio::select! {
                event = events.recv() => match event {
                    Ok(_) | Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return Some(FabricStatus::ServiceUnavailable),
                },
                _ = tx.closed() => return None,
            }
        }
        let store = Arc::clone(&channel.store);
        let channel_id = channel.channel_id.clone();
        let limits = channel.limits.clone();
        let reply = blocking(move || -> Result<Reply, String> {
            let bytes = store
                .block(n)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("block {n} is missing from the ledger"))?;
            let block = Block::decode(bytes.as_slice()).map_err(|e| e.to_string())?;
            Ok(match form {
                Form::Blocks => Reply::Block(block),
                Form::Filtered => Reply::FilteredBlock(filtered(&channel_id, n, &block, &limits)),
            })
        })
        .await;
        let reply = match reply {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::error!(block = n, error = %e, "deliver could not read a block");
                return Some(FabricStatus::InternalServerError);
            }
            Err(_) => return Some(FabricStatus::InternalServerError),
        };
        if tx
            .send(Ok(DeliverResponse {
                r#type: Some(reply),
            }))
            .await
            .is_err()
        {
            return None;
        }
        n += 1;
    }
    Some(FabricStatus::Success)
}

/// A block as DeliverFiltered shows it: each transaction's id, type and validation code, and the
/// chaincode event (without its payload) of a valid one.
fn filtered(
    channel_id: &str,
    number: u64,
    block: &Block,
    limits: &mercato_proto::Limits,
) -> FilteredBlock {
    let codes = metadata_entry(block, BlockMetadataIndex::TransactionsFilter).unwrap_or_default();
    let envelopes = block
        .data
        .as_ref()
        .map(|d| d.data.as_slice())
        .unwrap_or_default();
    let filtered_transactions = envelopes
        .iter()
        .enumerate()
        .map(|(i, env)| {
            let code = codes.get(i).copied().map(i32::from).unwrap_or(254);
            match parse_envelope(env, limits) {
                Err(_) => FilteredTransaction {
                    tx_validation_code: code,
                    ..Default::default()
                },
                Ok(parsed) => {
                    let event = (code == 0)
                        .then(|| parse_transaction(env, limits).ok())
                        .flatten()
                        .filter(|tx| !tx.action.events.is_empty())
                        .and_then(|tx| ChaincodeEvent::decode(tx.action.events.as_slice()).ok())
                        .map(|e| ChaincodeEvent {
                            payload: Vec::new(),
                            ..e
                        });
                    FilteredTransaction {
                        txid: parsed.header.channel_header.tx_id.clone(),
                        r#type: parsed.header.channel_header.r#type,
                        tx_validation_code: code,
                        data: event.map(|e| {
                            FilteredData::TransactionActions(FilteredTransactionActions {
                                chaincode_actions: vec![FilteredChaincodeAction {
                                    chaincode_event: Some(e),
                                }],
                            })
                        }),
                    }
                }
            }
        })
        .collect();
    FilteredBlock {
        channel_id: channel_id.to_owned(),
        number,
        filtered_transactions,
    }
}
