//! `gateway.Gateway`: Evaluate (a query on this peer), Endorse (gathers the endorsements the
//! chaincode's policy needs; see [`crate::gateway`]), Submit (to the ordering service),
//! CommitStatus (waits for a transaction's commit and answers its code and block) and
//! ChaincodeEvents (a chaincode's events block by block, resumable after a transaction).
//! Failures of other organisations or orderers travel as `gateway.ErrorDetail`s in the status
//! details, as Fabric's gateway sends them.

use std::sync::Arc;

use mercato_proto::Limits;
use mercato_proto::block::metadata_entry;
use mercato_proto::pb::common::{Block, BlockMetadataIndex, Envelope, Status as FabricStatus};
use mercato_proto::pb::gateway::gateway_server::Gateway as GatewayApi;
use mercato_proto::pb::gateway::{
    ChaincodeEventsRequest, ChaincodeEventsResponse, CommitStatusRequest, CommitStatusResponse,
    EndorseRequest, EndorseResponse, ErrorDetail, EvaluateRequest, EvaluateResponse,
    SignedChaincodeEventsRequest, SignedCommitStatusRequest, SubmitRequest, SubmitResponse,
};
use mercato_proto::pb::orderer::seek_position::Type as Seek;
use mercato_proto::pb::protos::ChaincodeEvent;
use mercato_proto::status::encode_error_details;
use mercato_proto::transaction::{parse_envelope_message, parse_transaction};
use prost::Message;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

use super::{PeerChannel, blocking};
use crate::endorser::Purpose;
use crate::gateway::{EndorseError, Gateway};
use crate::orderers::BroadcastError;

pub(super) struct GatewayService {
    channel: Arc<PeerChannel>,
    closing: tokio::sync::watch::Receiver<bool>,
}

impl GatewayService {
    pub(super) fn new(
        channel: Arc<PeerChannel>,
        closing: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        GatewayService { channel, closing }
    }

    fn gateway(&self) -> Result<&Arc<Gateway>, Status> {
        self.channel.gateway.as_ref().ok_or_else(|| {
            Status::unimplemented(
                "this peer runs without a gateway (no orderers or other peers configured)",
            )
        })
    }
}

/// What a client is told of another organisation's peer's answer to a forwarded Evaluate: its
/// chaincode response, or the error it carries. An answer without a chaincode response is an
/// error, not a result of status 0.
fn forwarded_result(
    org: &str,
    answer: mercato_proto::pb::protos::ProposalResponse,
) -> Result<EvaluateResponse, Status> {
    let Some(result) = answer.response else {
        return Err(Status::unavailable(format!(
            "a peer of {org} answered the evaluation without a chaincode response"
        )));
    };
    if result.status >= mercato_proto::response::STATUS_ERROR_THRESHOLD {
        return Err(refused(result.status, &result.message));
    }
    Ok(EvaluateResponse {
        result: Some(result),
    })
}

/// The gRPC status for an endorser's refusal or a chaincode's error response.
fn refused(status: i32, message: &str) -> Status {
    let text = format!("evaluate call to endorser returned error: status {status}: {message}");
    match status {
        400 => Status::invalid_argument(text),
        403 => Status::permission_denied(text),
        404 => Status::not_found(text),
        409 => Status::aborted(text),
        412 => Status::failed_precondition(text),
        _ => Status::unknown(text),
    }
}

#[tonic::async_trait]
impl GatewayApi for GatewayService {
    async fn evaluate(
        &self,
        request: Request<EvaluateRequest>,
    ) -> Result<Response<EvaluateResponse>, Status> {
        let r = request.into_inner();
        self.channel.check_channel(&r.channel_id)?;
        let signed = r.proposed_transaction.ok_or_else(|| {
            Status::invalid_argument("EvaluateRequest.proposed_transaction is missing")
        })?;
        // Run here unless the client named organisations that do not include this one; then on
        // a peer of the first of them.
        if let (Some(gateway), Some(first)) =
            (&self.channel.gateway, r.target_organizations.first())
            && !r.target_organizations.iter().any(|o| o == gateway.msp_id())
        {
            return match gateway.evaluate_on(first, signed).await {
                Ok(response) => forwarded_result(first, response).map(Response::new),
                Err(detail) => Err(with_details(
                    Code::Unavailable,
                    format!("no peer of {first} could evaluate the proposal"),
                    &[detail],
                )),
            };
        }
        let channel = Arc::clone(&self.channel);
        // Only readers of the channel query it, checked on the creator before anything runs.
        let outcome = blocking(move || {
            channel
                .endorser
                .endorse_admitted(&signed, Purpose::Evaluate, &|id| channel.may_read(id))
        })
        .await?;
        match outcome {
            Ok(endorsed) => Ok(Response::new(EvaluateResponse {
                result: endorsed.response.response,
            })),
            Err(response) => {
                let r = response.response.unwrap_or_default();
                Err(refused(r.status, &r.message))
            }
        }
    }

    async fn commit_status(
        &self,
        request: Request<SignedCommitStatusRequest>,
    ) -> Result<Response<CommitStatusResponse>, Status> {
        let signed = request.into_inner();
        let r = CommitStatusRequest::decode(signed.request.as_slice()).map_err(|e| {
            Status::invalid_argument(format!("CommitStatusRequest does not decode: {e}"))
        })?;
        self.channel.check_channel(&r.channel_id)?;
        if r.transaction_id.is_empty() || r.transaction_id.len() > 128 {
            return Err(Status::invalid_argument(format!(
                "transaction id {:?}: 1 to 128 characters",
                r.transaction_id
            )));
        }
        let channel = Arc::clone(&self.channel);
        let (identity, request_bytes, signature) = (r.identity, signed.request, signed.signature);
        blocking(move || -> Result<(), Status> {
            let id = channel.reader(&identity)?;
            id.verify(&request_bytes, &signature).map_err(|e| {
                Status::permission_denied(format!("the request's signature does not verify: {e}"))
            })
        })
        .await??;
        // Subscribe before looking, so that a commit between the two is not missed; after
        // that, each committed block's outcomes say whether it holds the transaction, and the
        // index is read again only when events were missed.
        let mut events = self.channel.committer.subscribe();
        let deadline = tokio::time::Instant::now() + COMMIT_STATUS_LIMIT;
        let indexed = || {
            self.channel
                .store
                .tx_location(&r.transaction_id)
                .map_err(|e| Status::internal(e.to_string()))
                .map(|l| {
                    l.map(|l| CommitStatusResponse {
                        result: i32::from(l.code),
                        block_number: l.block,
                    })
                })
        };
        if let Some(found) = indexed()? {
            return Ok(Response::new(found));
        }
        loop {
            let next = tokio::time::timeout_at(deadline, events.recv()).await;
            match next {
                Err(_) => {
                    return Err(Status::deadline_exceeded(format!(
                        "transaction {} has not committed within {} s; ask again",
                        r.transaction_id,
                        COMMIT_STATUS_LIMIT.as_secs()
                    )));
                }
                Ok(Ok(block)) => {
                    // The first genuine occurrence is the indexed one, as in the txid index.
                    let tx = block
                        .txs
                        .iter()
                        .find(|t| t.txid.as_deref() == Some(r.transaction_id.as_str()));
                    if let Some(tx) = tx {
                        return Ok(Response::new(CommitStatusResponse {
                            result: i32::from(tx.code.0),
                            block_number: block.number,
                        }));
                    }
                }
                Ok(Err(RecvError::Lagged(_))) => {
                    if let Some(found) = indexed()? {
                        return Ok(Response::new(found));
                    }
                }
                Ok(Err(RecvError::Closed)) => {
                    return Err(Status::unavailable("the committer has stopped"));
                }
            }
        }
    }

    async fn endorse(
        &self,
        request: Request<EndorseRequest>,
    ) -> Result<Response<EndorseResponse>, Status> {
        let r = request.into_inner();
        self.channel.check_channel(&r.channel_id)?;
        let gateway = self.gateway()?;
        let signed = r.proposed_transaction.ok_or_else(|| {
            Status::invalid_argument("EndorseRequest.proposed_transaction is missing")
        })?;
        match gateway
            .endorse(signed, &r.transaction_id, &r.endorsing_organizations)
            .await
        {
            Ok(envelope) => Ok(Response::new(EndorseResponse {
                prepared_transaction: Some(envelope),
            })),
            Err(e) => Err(endorse_error(e)),
        }
    }

    async fn submit(
        &self,
        request: Request<SubmitRequest>,
    ) -> Result<Response<SubmitResponse>, Status> {
        let r = request.into_inner();
        self.channel.check_channel(&r.channel_id)?;
        let gateway = self.gateway()?;
        let envelope = r.prepared_transaction.ok_or_else(|| {
            Status::invalid_argument("SubmitRequest.prepared_transaction is missing")
        })?;
        if envelope.signature.is_empty() {
            return Err(Status::invalid_argument(
                "the prepared transaction is not signed: sign Envelope.payload as its creator",
            ));
        }
        // Structure, channel and txid are checked here; the creator and its signature by the
        // orderer, whose refusal comes back with its reason (checking them here too would cost
        // a second signature verification per transaction).
        let parsed = parse_envelope_message(envelope, &self.channel.limits).map_err(|e| {
            Status::invalid_argument(format!("malformed prepared transaction: {e}"))
        })?;
        let header = &parsed.header.channel_header;
        self.channel.check_channel(&header.channel_id)?;
        if !r.transaction_id.is_empty() && r.transaction_id != header.tx_id {
            return Err(Status::invalid_argument(format!(
                "SubmitRequest.transaction_id {:?} is not the transaction's {:?}",
                r.transaction_id, header.tx_id
            )));
        }
        // The envelope again from its parts, as received: no copy of it was kept.
        let envelope = Envelope {
            payload: parsed.payload_bytes,
            signature: parsed.signature,
        };
        match gateway.orderers().broadcast(envelope).await {
            Ok(()) => Ok(Response::new(SubmitResponse {})),
            Err(e) => Err(broadcast_error(e)),
        }
    }

    type ChaincodeEventsStream = ReceiverStream<Result<ChaincodeEventsResponse, Status>>;

    async fn chaincode_events(
        &self,
        request: Request<SignedChaincodeEventsRequest>,
    ) -> Result<Response<Self::ChaincodeEventsStream>, Status> {
        let signed = request.into_inner();
        let r = ChaincodeEventsRequest::decode(signed.request.as_slice()).map_err(|e| {
            Status::invalid_argument(format!("ChaincodeEventsRequest does not decode: {e}"))
        })?;
        self.channel.check_channel(&r.channel_id)?;
        if r.chaincode_id.is_empty() || r.chaincode_id.len() > 256 {
            return Err(Status::invalid_argument(format!(
                "chaincode id {:?}: 1 to 256 characters",
                r.chaincode_id
            )));
        }
        let channel = Arc::clone(&self.channel);
        let (identity, request_bytes, signature) =
            (r.identity.clone(), signed.request, signed.signature);
        blocking(move || -> Result<(), Status> {
            let id = channel.reader(&identity)?;
            id.verify(&request_bytes, &signature).map_err(|e| {
                Status::permission_denied(format!("the request's signature does not verify: {e}"))
            })
        })
        .await??;
        let height = self.channel.committer.height();
        let start = match r.start_position.and_then(|p| p.r#type) {
            // As Fabric's gateway: by default, the next block to commit; newest is the last one.
            None | Some(Seek::NextCommit(_)) => height,
            Some(Seek::Newest(_)) => height.saturating_sub(1),
            Some(Seek::Oldest(_)) => 0,
            Some(Seek::Specified(s)) => s.number,
        };
        let (tx, rx) = mpsc::channel(EVENTS_BUFFER);
        let channel = Arc::clone(&self.channel);
        super::spawn_until_closing(
            stream_events(channel, tx, r.chaincode_id, start, r.after_transaction_id),
            self.closing.clone(),
        );
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The longest a CommitStatus call waits for its transaction (a client may ask again).
const COMMIT_STATUS_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);

/// How many event responses a stream buffers before it waits for the client.
const EVENTS_BUFFER: usize = 4;

/// Sends the chaincode's events block by block from `start`, waiting for new blocks; in the
/// first block, events up to and including `after_txid` are skipped (a resumed stream).
async fn stream_events(
    channel: Arc<PeerChannel>,
    tx: mpsc::Sender<Result<ChaincodeEventsResponse, Status>>,
    chaincode: String,
    start: u64,
    after_txid: String,
) {
    let mut events = channel.committer.subscribe();
    let mut n = start;
    let mut skip_until = (!after_txid.is_empty()).then_some(after_txid);
    loop {
        if channel.committer.height() <= n {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(_) | Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => {
                        let _ = tx.send(Err(Status::unavailable("the committer has stopped"))).await;
                        return;
                    }
                },
                _ = tx.closed() => return,
            }
        }
        let store = Arc::clone(&channel.store);
        let limits = channel.limits.clone();
        let chaincode2 = chaincode.clone();
        let found = blocking(move || -> Result<Vec<ChaincodeEvent>, String> {
            let bytes = store
                .block(n)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("block {n} is missing from the ledger"))?;
            let block = Block::decode(bytes.as_slice()).map_err(|e| e.to_string())?;
            Ok(block_events(&block, &chaincode2, &limits))
        })
        .await;
        let mut found = match found {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::error!(block = n, error = %e, "chaincode events could not read a block");
                let _ = tx.send(Err(Status::internal(e))).await;
                return;
            }
            Err(s) => {
                let _ = tx.send(Err(s)).await;
                return;
            }
        };
        if let Some(after) = skip_until.take()
            && let Some(at) = found.iter().position(|e| e.tx_id == after)
        {
            found.drain(..=at);
        }
        if !found.is_empty()
            && tx
                .send(Ok(ChaincodeEventsResponse {
                    events: found,
                    block_number: n,
                }))
                .await
                .is_err()
        {
            return;
        }
        n += 1;
    }
}

/// The events of `chaincode` set by the valid transactions of a committed block, in order.
fn block_events(block: &Block, chaincode: &str, limits: &Limits) -> Vec<ChaincodeEvent> {
    let codes = metadata_entry(block, BlockMetadataIndex::TransactionsFilter).unwrap_or_default();
    let envelopes = block
        .data
        .as_ref()
        .map(|d| d.data.as_slice())
        .unwrap_or_default();
    envelopes
        .iter()
        .enumerate()
        .filter(|(i, _)| codes.get(*i) == Some(&0))
        .filter_map(|(_, env)| parse_transaction(env, limits).ok())
        .filter(|tx| !tx.action.events.is_empty())
        .filter_map(|tx| ChaincodeEvent::decode(tx.action.events.as_slice()).ok())
        .filter(|e| e.chaincode_id == chaincode)
        .collect()
}

/// A gRPC status carrying `gateway.ErrorDetail`s.
fn with_details(code: Code, message: String, details: &[ErrorDetail]) -> Status {
    let bytes = encode_error_details(code as i32, &message, details);
    Status::with_details(code, message, bytes.into())
}

/// The gRPC status for a failed Endorse (Fabric's gateway answers ABORTED with details for an
/// endorser's refusal).
fn endorse_error(e: EndorseError) -> Status {
    match e {
        EndorseError::BadProposal(m) => Status::invalid_argument(m),
        EndorseError::Unsatisfiable { message, details } => {
            with_details(Code::FailedPrecondition, message, &details)
        }
        EndorseError::Refused {
            status,
            message,
            details,
        } => {
            let code = match status {
                400 => Code::InvalidArgument,
                403 => Code::PermissionDenied,
                404 => Code::NotFound,
                _ => Code::Aborted,
            };
            with_details(code, message, &details)
        }
        EndorseError::Mismatch { message, details } => {
            with_details(Code::Aborted, message, &details)
        }
        EndorseError::Internal(m) => Status::internal(m),
    }
}

/// The gRPC status for a failed Submit.
fn broadcast_error(e: BroadcastError) -> Status {
    let message = e.to_string();
    match e {
        BroadcastError::Refused {
            address,
            info,
            status,
        } => with_details(
            match status {
                FabricStatus::Forbidden => Code::PermissionDenied,
                FabricStatus::BadRequest => Code::InvalidArgument,
                _ => Code::Aborted,
            },
            message,
            &[ErrorDetail {
                address,
                msp_id: String::new(),
                message: format!("{} {info}", status.as_str_name()),
            }],
        ),
        BroadcastError::Unavailable(failures) => {
            let details: Vec<ErrorDetail> = failures
                .into_iter()
                .map(|(address, message)| ErrorDetail {
                    address,
                    msp_id: String::new(),
                    message,
                })
                .collect();
            with_details(Code::Unavailable, message, &details)
        }
    }
}

#[cfg(test)]
mod tests {
    use mercato_proto::pb::protos::{ProposalResponse, Response as ChaincodeResponse};

    use super::*;

    #[test]
    fn a_forwarded_evaluation_needs_a_chaincode_response() {
        let answer = |response| ProposalResponse {
            response,
            ..Default::default()
        };
        let none = forwarded_result("Brand2MSP", answer(None)).unwrap_err();
        assert_eq!(none.code(), Code::Unavailable);
        assert!(none.message().contains("Brand2MSP"), "{}", none.message());
        let failed = forwarded_result(
            "Brand2MSP",
            answer(Some(ChaincodeResponse {
                status: 404,
                message: "no key k".into(),
                payload: Vec::new(),
            })),
        )
        .unwrap_err();
        assert_eq!(failed.code(), Code::NotFound);
        let ok = forwarded_result(
            "Brand2MSP",
            answer(Some(ChaincodeResponse {
                status: 200,
                message: String::new(),
                payload: b"v".to_vec(),
            })),
        )
        .unwrap();
        assert_eq!(ok.result.unwrap().payload, b"v");
    }
}
