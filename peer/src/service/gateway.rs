//! `gateway.Gateway`: Evaluate (a query on this peer) and CommitStatus (waits for a
//! transaction's commit and answers its code and block). Endorse, Submit and ChaincodeEvents
//! need the ordering service and other organisations' peers, and are refused as not
//! implemented until those are built.

use std::sync::Arc;

use mercato_proto::pb::gateway::gateway_server::Gateway as GatewayApi;
use mercato_proto::pb::gateway::{
    ChaincodeEventsResponse, CommitStatusRequest, CommitStatusResponse, EndorseRequest,
    EndorseResponse, EvaluateRequest, EvaluateResponse, SignedChaincodeEventsRequest,
    SignedCommitStatusRequest, SubmitRequest, SubmitResponse,
};
use prost::Message;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};

use super::{PeerChannel, blocking};
use crate::endorser::Purpose;

pub(super) struct GatewayService {
    channel: Arc<PeerChannel>,
}

impl GatewayService {
    pub(super) fn new(channel: Arc<PeerChannel>) -> Self {
        GatewayService { channel }
    }
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
        // Subscribe before looking, so that a commit between the two is not missed.
        let mut events = self.channel.committer.subscribe();
        loop {
            let location = self
                .channel
                .store
                .tx_location(&r.transaction_id)
                .map_err(|e| Status::internal(e.to_string()))?;
            if let Some(l) = location {
                return Ok(Response::new(CommitStatusResponse {
                    result: i32::from(l.code),
                    block_number: l.block,
                }));
            }
            match events.recv().await {
                // A block committed, or events were missed: look at the index again.
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => {
                    return Err(Status::unavailable("the committer has stopped"));
                }
            }
        }
    }

    async fn endorse(
        &self,
        _request: Request<EndorseRequest>,
    ) -> Result<Response<EndorseResponse>, Status> {
        Err(Status::unimplemented(
            "Endorse is not served yet: it needs the ordering service and other organisations' peers",
        ))
    }

    async fn submit(
        &self,
        _request: Request<SubmitRequest>,
    ) -> Result<Response<SubmitResponse>, Status> {
        Err(Status::unimplemented(
            "Submit is not served yet: it needs the ordering service",
        ))
    }

    type ChaincodeEventsStream =
        tokio_stream::wrappers::ReceiverStream<Result<ChaincodeEventsResponse, Status>>;

    async fn chaincode_events(
        &self,
        _request: Request<SignedChaincodeEventsRequest>,
    ) -> Result<Response<Self::ChaincodeEventsStream>, Status> {
        Err(Status::unimplemented("ChaincodeEvents is not served yet"))
    }
}
