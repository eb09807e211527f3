//! `protos.Endorser/ProcessProposal`: every outcome is a `ProposalResponse` (a refusal carries a
//! status of 400 or more and a message), as Fabric's endorser answers.

use std::sync::Arc;

use mercato_proto::pb::protos::endorser_server::Endorser as EndorserApi;
use mercato_proto::pb::protos::{ProposalResponse, SignedProposal};
use tonic::{Request, Response, Status};

use super::{PeerChannel, blocking};
use crate::endorser::Purpose;

pub(super) struct EndorserService {
    channel: Arc<PeerChannel>,
}

impl EndorserService {
    pub(super) fn new(channel: Arc<PeerChannel>) -> Self {
        EndorserService { channel }
    }
}

#[tonic::async_trait]
impl EndorserApi for EndorserService {
    async fn process_proposal(
        &self,
        request: Request<SignedProposal>,
    ) -> Result<Response<ProposalResponse>, Status> {
        let channel = Arc::clone(&self.channel);
        let signed = request.into_inner();
        let response =
            blocking(move || channel.endorser.process_proposal(&signed, Purpose::Endorse)).await?;
        Ok(Response::new(response))
    }
}
