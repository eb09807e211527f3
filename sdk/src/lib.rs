//! The Mercato client SDK: a Gateway client for sellers, brands and auditors, and the `mercato`
//! CLI built on it.
//!
//! One peer's Gateway does the work (it plans and gathers the endorsements, submits to the
//! ordering service and reports the commit), exactly as with Fabric's Gateway SDKs, which talk
//! to a Mercato peer too:
//!
//! ```no_run
//! # async fn demo() -> mercato_sdk::Result<()> {
//! use mercato_sdk::{Gateway, load_identity};
//! let id = load_identity("Brand1MSP", "crypto/brand1/users/seller1/msp".as_ref())?;
//! let gateway = Gateway::connect("peer0.brand1:7051", &std::fs::read("tls-ca.pem").unwrap(), id).await?;
//! let contract = gateway.network("commerce").contract("commerce");
//! let listed = contract.submit("ListProduct", &[b"sku-1", br#"{"price":100}"#]).await?;
//! println!("committed in block {}", listed.block);
//! let product = contract.evaluate("GetProduct", &[b"sku-1"]).await?;
//! # let _ = product; Ok(()) }
//! ```
//!
//! # Layout
//! - [`Gateway`] (a TLS connection and an identity), [`Network`] (a channel),
//!   [`Contract`] (a chaincode): `evaluate`, `submit`, `submit_async` + [`Pending::status`],
//!   `endorse` → [`Transaction::submit`] as separate steps, chaincode events
//!   ([`Network::chaincode_events`]).
//! - [`error`]: [`Error`], typed by what the caller can do (an endorsement failure with each
//!   organisation's reason, an MVCC conflict that is retryable, a commit failure with its code).
//! - [`ledger`]: the ledger query service for auditors ([`Network::ledger`]): chain info with
//!   commit hashes, blocks, decoded transactions, key history, state reads and ranges.
//! - [`bench`]: a load generator for any Gateway (closed and open loop), with its report.
//! - `bin/mercato/`: the `mercato` CLI (`tx submit|evaluate`, `events`, `bench`, `ledger`,
//!   `audit verify|export`).

pub mod bench;
pub mod error;
pub mod ledger;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use error::{Error, NodeFailure, Result};
pub use mercato_ca::SigningIdentity as Identity;
use mercato_proto::pb::Timestamp;
use mercato_proto::pb::gateway::gateway_client::GatewayClient;
use mercato_proto::pb::gateway::{
    ChaincodeEventsRequest, CommitStatusRequest, EndorseRequest, EvaluateRequest,
    SignedChaincodeEventsRequest, SignedCommitStatusRequest, SubmitRequest,
};
use mercato_proto::pb::orderer::seek_position::Type as Seek;
use mercato_proto::pb::orderer::{SeekNextCommit, SeekPosition, SeekSpecified};
use mercato_proto::pb::protos::{ChaincodeAction, ProposalResponsePayload, SignedProposal};
use mercato_proto::proposal::{ProposalInput, new_proposal, sign_proposal};
use mercato_proto::transaction::sign_envelope;
use mercato_proto::{Signer, ValidationCode};
use prost::Message;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

pub use mercato_proto::pb::protos::ChaincodeEvent;

/// The largest response the SDK accepts.
pub(crate) const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// Options for a connection.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The name the peer's TLS certificate must carry, when it differs from the host connected
    /// to (e.g. connecting to 127.0.0.1 of a peer whose certificate names `peer0.brand1`).
    pub server_name: Option<String>,
    /// A client certificate and key (PEM) for peers that require mutual TLS.
    pub client_tls: Option<(Vec<u8>, Vec<u8>)>,
    /// How long a call may take (endorse, submit, evaluate); commit waits get `commit_timeout`.
    pub timeout: Duration,
    pub commit_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            server_name: None,
            client_tls: None,
            timeout: Duration::from_secs(30),
            commit_timeout: Duration::from_secs(60),
        }
    }
}

/// A connection to one peer's Gateway, as one identity.
#[derive(Clone)]
pub struct Gateway {
    client: GatewayClient<Channel>,
    /// The connection, shared by the other services' clients (the ledger queries).
    transport: Channel,
    identity: Arc<Identity>,
    address: String,
    options: ConnectOptions,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("address", &self.address)
            .field("msp_id", &self.identity.msp_id())
            .finish_non_exhaustive()
    }
}

/// Loads an identity from an MSP folder (`signcerts/`, `keystore/`).
pub fn load_identity(msp_id: &str, msp_dir: &Path) -> Result<Identity> {
    Identity::load(msp_id, msp_dir).map_err(|e| Error::Config(e.to_string()))
}

impl Gateway {
    /// Connects to the peer at `address` (`host:port`) over TLS, trusting the PEM roots
    /// `tls_roots`.
    pub async fn connect(
        address: &str,
        tls_roots: &[u8],
        identity: impl Into<Arc<Identity>>,
    ) -> Result<Self> {
        Self::connect_with(address, tls_roots, identity, ConnectOptions::default()).await
    }

    /// Connects with options.
    pub async fn connect_with(
        address: &str,
        tls_roots: &[u8],
        identity: impl Into<Arc<Identity>>,
        options: ConnectOptions,
    ) -> Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let connect_err = |message: String| Error::Connect {
            address: address.to_owned(),
            message,
        };
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(tls_roots));
        if let Some(name) = &options.server_name {
            tls = tls.domain_name(name.clone());
        }
        if let Some((cert, key)) = &options.client_tls {
            tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        let channel = Endpoint::from_shared(format!("https://{address}"))
            .map_err(|e| connect_err(e.to_string()))?
            .tls_config(tls)
            .map_err(|e| connect_err(e.to_string()))?
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(60))
            .connect()
            .await
            .map_err(|e| connect_err(format!("{e}: {}", source_chain(&e))))?;
        Ok(Gateway {
            transport: channel.clone(),
            client: GatewayClient::new(channel)
                .max_decoding_message_size(MAX_RESPONSE_BYTES)
                .max_encoding_message_size(MAX_RESPONSE_BYTES),
            identity: identity.into(),
            address: address.to_owned(),
            options,
        })
    }

    /// The identity this gateway signs as.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// A channel.
    pub fn network(&self, channel: &str) -> Network {
        Network {
            gateway: self.clone(),
            channel: channel.to_owned(),
        }
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut next = e.source();
    while let Some(s) = next {
        out.push(s.to_string());
        next = s.source();
    }
    out.join(": ")
}

/// One channel through a gateway.
#[derive(Debug, Clone)]
pub struct Network {
    gateway: Gateway,
    channel: String,
}

/// Where a chaincode event stream starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventsFrom {
    /// The first block; `None`: the next block to commit.
    pub block: Option<u64>,
    /// Skip the events up to and including this transaction's (to resume a stream).
    pub after_txid: Option<String>,
}

/// A chaincode's events, block by block.
pub struct ChaincodeEvents {
    stream: tonic::Streaming<mercato_proto::pb::gateway::ChaincodeEventsResponse>,
}

impl std::fmt::Debug for ChaincodeEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChaincodeEvents").finish_non_exhaustive()
    }
}

impl ChaincodeEvents {
    /// The next block's events: `(block number, events)`; `None` when the stream ended.
    pub async fn next(&mut self) -> Result<Option<(u64, Vec<ChaincodeEvent>)>> {
        match self.stream.message().await {
            Ok(Some(r)) => Ok(Some((r.block_number, r.events))),
            Ok(None) => Ok(None),
            Err(s) => Err(Error::Status {
                call: "ChaincodeEvents",
                code: s.code(),
                message: s.message().to_owned(),
            }),
        }
    }
}

impl Network {
    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.channel
    }

    /// A chaincode on this channel.
    pub fn contract(&self, chaincode: &str) -> Contract {
        Contract {
            network: self.clone(),
            chaincode: chaincode.to_owned(),
        }
    }

    /// Waits for a transaction's commit and answers its code and block.
    pub async fn commit_status(&self, txid: &str) -> Result<(ValidationCode, u64)> {
        let g = &self.gateway;
        let request = CommitStatusRequest {
            transaction_id: txid.to_owned(),
            channel_id: self.channel.clone(),
            identity: g.identity.serialized().to_vec(),
        }
        .encode_to_vec();
        let signature = sign(&g.identity, &request)?;
        let mut call = tonic::Request::new(SignedCommitStatusRequest { request, signature });
        call.set_timeout(g.options.commit_timeout);
        let r = g
            .client
            .clone()
            .commit_status(call)
            .await
            .map_err(|s| Error::Status {
                call: "CommitStatus",
                code: s.code(),
                message: s.message().to_owned(),
            })?
            .into_inner();
        let code = u8::try_from(r.result)
            .map(ValidationCode)
            .map_err(|_| Error::Malformed(format!("validation code {}", r.result)))?;
        Ok((code, r.block_number))
    }

    /// A chaincode's events from `from` on.
    pub async fn chaincode_events(
        &self,
        chaincode: &str,
        from: EventsFrom,
    ) -> Result<ChaincodeEvents> {
        let g = &self.gateway;
        let start = Some(SeekPosition {
            r#type: Some(match from.block {
                Some(number) => Seek::Specified(SeekSpecified { number }),
                None => Seek::NextCommit(SeekNextCommit {}),
            }),
        });
        let request = ChaincodeEventsRequest {
            channel_id: self.channel.clone(),
            chaincode_id: chaincode.to_owned(),
            identity: g.identity.serialized().to_vec(),
            start_position: start,
            after_transaction_id: from.after_txid.unwrap_or_default(),
        }
        .encode_to_vec();
        let signature = sign(&g.identity, &request)?;
        let stream = g
            .client
            .clone()
            .chaincode_events(SignedChaincodeEventsRequest { request, signature })
            .await
            .map_err(|s| Error::Status {
                call: "ChaincodeEvents",
                code: s.code(),
                message: s.message().to_owned(),
            })?
            .into_inner();
        Ok(ChaincodeEvents { stream })
    }
}

fn sign(identity: &Identity, message: &[u8]) -> Result<Vec<u8>> {
    identity
        .sign(message)
        .map_err(|e| Error::Config(format!("signing: {e}")))
}

/// One chaincode on one channel.
#[derive(Debug, Clone)]
pub struct Contract {
    network: Network,
    chaincode: String,
}

/// A committed transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub txid: String,
    /// The chaincode's result payload.
    pub result: Vec<u8>,
    /// The block it committed in.
    pub block: u64,
}

/// A transaction handed to the ordering service, not yet known to be committed.
#[derive(Debug, Clone)]
pub struct Pending {
    network: Network,
    pub txid: String,
    /// The chaincode's result payload (from the endorsement).
    pub result: Vec<u8>,
}

impl Pending {
    /// Waits for the commit: `Ok` with the block when valid, [`Error::Commit`] otherwise.
    pub async fn status(&self) -> Result<Submitted> {
        let (code, block) = self.network.commit_status(&self.txid).await?;
        if code.is_valid() {
            Ok(Submitted {
                txid: self.txid.clone(),
                result: self.result.clone(),
                block,
            })
        } else {
            Err(Error::Commit {
                txid: self.txid.clone(),
                code,
                block,
            })
        }
    }
}

/// A call's arguments and private data.
#[derive(Debug, Clone, Default)]
pub struct Proposal {
    pub function: String,
    pub args: Vec<Vec<u8>>,
    /// Private inputs that reach the chaincode but never the ledger.
    pub transient: BTreeMap<String, Vec<u8>>,
    /// The organisations to endorse (empty: the gateway plans them from the policy).
    pub endorsing_orgs: Vec<String>,
}

impl Proposal {
    /// A call of `function` with `args`.
    pub fn new(function: &str, args: &[&[u8]]) -> Self {
        Proposal {
            function: function.to_owned(),
            args: args.iter().map(|a| a.to_vec()).collect(),
            ..Default::default()
        }
    }
}

impl Contract {
    /// The chaincode's name.
    pub fn name(&self) -> &str {
        &self.chaincode
    }

    fn signed(&self, p: &Proposal) -> Result<(SignedProposal, String)> {
        let g = &self.network.gateway;
        let mut args = Vec::with_capacity(p.args.len() + 1);
        args.push(p.function.as_bytes().to_vec());
        args.extend(p.args.iter().cloned());
        let input = ProposalInput {
            channel_id: self.network.channel.clone(),
            chaincode: self.chaincode.clone(),
            args,
            transient: p.transient.clone(),
            nonce: mercato_ca::crypto::random_nonce().map_err(|e| Error::Config(e.to_string()))?,
            timestamp: now(),
        };
        let unsigned = new_proposal(&input, g.identity.serialized())
            .map_err(|e| Error::Config(format!("building the proposal: {e}")))?;
        let signed = sign_proposal(unsigned.proposal_bytes, g.identity.as_ref())
            .map_err(|e| Error::Config(format!("signing the proposal: {e}")))?;
        Ok((signed, unsigned.txid))
    }

    /// Evaluates a query on the gateway's peer: nothing is ordered; returns the result payload.
    pub async fn evaluate(&self, function: &str, args: &[&[u8]]) -> Result<Vec<u8>> {
        self.evaluate_proposal(&Proposal::new(function, args)).await
    }

    /// Evaluates a proposal with transient data.
    pub async fn evaluate_proposal(&self, p: &Proposal) -> Result<Vec<u8>> {
        let g = &self.network.gateway;
        let (signed, txid) = self.signed(p)?;
        let mut call = tonic::Request::new(EvaluateRequest {
            transaction_id: txid,
            channel_id: self.network.channel.clone(),
            proposed_transaction: Some(signed),
            target_organizations: p.endorsing_orgs.clone(),
        });
        call.set_timeout(g.options.timeout);
        let r = g
            .client
            .clone()
            .evaluate(call)
            .await
            .map_err(|s| Error::Evaluate {
                code: s.code(),
                message: s.message().to_owned(),
            })?
            .into_inner();
        Ok(r.result.map(|r| r.payload).unwrap_or_default())
    }

    /// Submits a transaction and waits for its commit.
    pub async fn submit(&self, function: &str, args: &[&[u8]]) -> Result<Submitted> {
        self.submit_async(function, args).await?.status().await
    }

    /// Submits a proposal with transient data and waits for its commit.
    pub async fn submit_proposal(&self, p: &Proposal) -> Result<Submitted> {
        self.submit_proposal_async(p).await?.status().await
    }

    /// Endorses and submits a transaction; returns once the ordering service has it.
    pub async fn submit_async(&self, function: &str, args: &[&[u8]]) -> Result<Pending> {
        self.submit_proposal_async(&Proposal::new(function, args))
            .await
    }

    /// Endorses and submits a proposal with transient data.
    pub async fn submit_proposal_async(&self, p: &Proposal) -> Result<Pending> {
        self.endorse(p).await?.submit().await
    }

    /// Gathers the endorsements of a proposal (the gateway plans them) and returns the
    /// transaction, signed by this identity, ready to submit. Until it is submitted nothing is
    /// ordered; its reads are those of the state at endorsement.
    pub async fn endorse(&self, p: &Proposal) -> Result<Transaction> {
        let g = &self.network.gateway;
        let (signed, txid) = self.signed(p)?;
        let mut call = tonic::Request::new(EndorseRequest {
            transaction_id: txid.clone(),
            channel_id: self.network.channel.clone(),
            proposed_transaction: Some(signed),
            endorsing_organizations: p.endorsing_orgs.clone(),
        });
        call.set_timeout(g.options.timeout);
        let endorsed = g
            .client
            .clone()
            .endorse(call)
            .await
            .map_err(|s| Error::Endorse {
                code: s.code(),
                message: s.message().to_owned(),
                failures: error::failures_of(&s),
            })?
            .into_inner();
        let mut envelope = endorsed
            .prepared_transaction
            .ok_or_else(|| Error::Malformed("EndorseResponse without a transaction".into()))?;
        let result = result_of(&envelope)?;
        sign_envelope(&mut envelope, g.identity.as_ref())
            .map_err(|e| Error::Config(format!("signing the transaction: {e}")))?;
        Ok(Transaction {
            network: self.network.clone(),
            txid,
            result,
            envelope,
        })
    }
}

/// An endorsed, signed transaction not yet submitted.
#[derive(Debug, Clone)]
pub struct Transaction {
    network: Network,
    pub txid: String,
    /// The chaincode's result payload, as endorsed.
    pub result: Vec<u8>,
    envelope: mercato_proto::pb::common::Envelope,
}

impl Transaction {
    /// Hands the transaction to the ordering service through the gateway.
    pub async fn submit(self) -> Result<Pending> {
        let g = &self.network.gateway;
        let mut call = tonic::Request::new(SubmitRequest {
            transaction_id: self.txid.clone(),
            channel_id: self.network.channel.clone(),
            prepared_transaction: Some(self.envelope),
        });
        call.set_timeout(g.options.timeout);
        g.client
            .clone()
            .submit(call)
            .await
            .map_err(|s| Error::Submit {
                code: s.code(),
                message: s.message().to_owned(),
                failures: error::failures_of(&s),
            })?;
        Ok(Pending {
            network: self.network,
            txid: self.txid,
            result: self.result,
        })
    }
}

/// The chaincode's result payload inside a prepared (unsigned) transaction: payload →
/// transaction → its one action → the proposal response payload → the chaincode action.
fn result_of(envelope: &mercato_proto::pb::common::Envelope) -> Result<Vec<u8>> {
    use mercato_proto::pb::common::Payload;
    use mercato_proto::pb::protos::{ChaincodeActionPayload, Transaction};
    let bad = |what: &str, e: prost::DecodeError| {
        Error::Malformed(format!("prepared transaction: {what}: {e}"))
    };
    let payload = Payload::decode(envelope.payload.as_slice()).map_err(|e| bad("Payload", e))?;
    let tx = Transaction::decode(payload.data.as_slice()).map_err(|e| bad("Transaction", e))?;
    let action = tx
        .actions
        .first()
        .ok_or_else(|| Error::Malformed("prepared transaction without an action".into()))?;
    let action = ChaincodeActionPayload::decode(action.payload.as_slice())
        .map_err(|e| bad("ChaincodeActionPayload", e))?;
    let prp = action
        .action
        .map(|a| a.proposal_response_payload)
        .unwrap_or_default();
    let prp = ProposalResponsePayload::decode(prp.as_slice())
        .map_err(|e| bad("ProposalResponsePayload", e))?;
    let action =
        ChaincodeAction::decode(prp.extension.as_slice()).map_err(|e| bad("ChaincodeAction", e))?;
    Ok(action.response.map(|r| r.payload).unwrap_or_default())
}

/// The wall clock as a protobuf timestamp.
pub(crate) fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}
