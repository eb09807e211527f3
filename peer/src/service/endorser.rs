//! `protos.Endorser/ProcessProposal`: every outcome is a `ProposalResponse` (a refusal carries a
//! status of 400 or more and a message), as Fabric's endorser answers.
//!
//! A gateway may say how far its own ledger has got ([`SEEN_HEIGHT_METADATA`]). When this peer,
//! behind that height, refuses the proposal, it waits up to [`CATCH_UP_WAIT`] for its committer to
//! reach the height and simulates once more: the refusal may only mean that it has not yet
//! committed the client's previous transaction (an order shipped right after it was placed). A
//! proposal this peer endorses is answered at once, whatever its height.

use std::sync::Arc;
use std::time::Duration;

use mercato_proto::pb::protos::endorser_server::Endorser as EndorserApi;
use mercato_proto::pb::protos::{ProposalResponse, SignedProposal};
use mercato_proto::response::STATUS_ERROR_THRESHOLD;
use tonic::{Request, Response, Status};

use super::{PeerChannel, blocking};
use crate::endorser::Purpose;
use crate::gateway::SEEN_HEIGHT_METADATA;

/// The longest a refused proposal waits for this peer to reach the gateway's height.
pub const CATCH_UP_WAIT: Duration = Duration::from_secs(1);

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
        // Malformed or absent: no catching up, the proposal is answered as it stands.
        let seen = request
            .metadata()
            .get(SEEN_HEIGHT_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let signed = Arc::new(request.into_inner());
        let process = || {
            let channel = Arc::clone(&self.channel);
            let signed = Arc::clone(&signed);
            blocking(move || channel.endorser.process_proposal(&signed, Purpose::Endorse))
        };
        // The height before the simulation: the state it ran on was at least this new, perhaps
        // newer (a block may commit meanwhile), never older.
        let behind = seen.filter(|&seen| self.channel.committer.height() < seen);
        let response = process().await?;
        let refused = response
            .response
            .as_ref()
            .is_none_or(|r| r.status >= STATUS_ERROR_THRESHOLD);
        if let Some(seen) = behind
            && refused
            && self.channel.committer.reached(seen, CATCH_UP_WAIT).await
        {
            let metrics = &self.channel.endorser.metrics;
            metrics
                .caught_up
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(Response::new(process().await?));
        }
        Ok(Response::new(response))
    }
}
