//! The peer's gRPC services over real TLS on 127.0.0.1: the Endorser, the Gateway's Evaluate and
//! CommitStatus, and Deliver with blocks and filtered blocks, called with the generated clients.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use mercato_ca::crypto::to_pem;
use mercato_ca::{KeyAlgorithm, Role, SigningIdentity};
use mercato_peer::chaincode::{ChaincodeRuntime, Executor, RuntimeLimits, StaticResolver};
use mercato_peer::committer::Committer;
use mercato_peer::endorser::Endorser;
use mercato_peer::ledger::{LedgerStore, MemLedgerStore};
use mercato_peer::service::{PeerChannel, PeerServer, PeerTls};
use mercato_proto::deliver::unix_now;
use mercato_proto::pb::Timestamp;
use mercato_proto::pb::common::{
    Block, ChannelHeader, Header, HeaderType, SignatureHeader, Status as FabricStatus,
};
use mercato_proto::pb::gateway::gateway_client::GatewayClient;
use mercato_proto::pb::gateway::{CommitStatusRequest, EvaluateRequest, SignedCommitStatusRequest};
use mercato_proto::pb::orderer::seek_info::SeekBehavior;
use mercato_proto::pb::orderer::seek_position::Type as Seek;
use mercato_proto::pb::orderer::{SeekInfo, SeekOldest, SeekPosition, SeekSpecified};
use mercato_proto::pb::protos::deliver_client::DeliverClient;
use mercato_proto::pb::protos::deliver_response::Type as Reply;
use mercato_proto::pb::protos::endorser_client::EndorserClient;
use mercato_proto::pb::protos::{DeliverResponse, SignedProposal};
use mercato_proto::proposal::{ProposalInput, new_proposal, sign_proposal};
use mercato_proto::transaction::new_signed_envelope;
use mercato_proto::{Limits, Signer, TxValidationCode};
use prost::Message;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::fixture::{CHAINCODE, CHANNEL, Net, rw};
use crate::wasm;

struct Peer {
    net: Net,
    committer: Arc<Committer>,
    endorser: Arc<Endorser>,
    channel: Channel,
    last: Block,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A TLS root and a server certificate for 127.0.0.1.
fn tls() -> (PeerTls, Vec<u8>) {
    let ca = mercato_ca::testing::TestTls::new("tlsca.brand1");
    let (der, pkcs8) = ca.issue("peer0.brand1", Role::Peer, &["127.0.0.1"]);
    let server = PeerTls {
        cert_pem: to_pem("CERTIFICATE", &der).into_bytes(),
        key_pem: to_pem("PRIVATE KEY", &pkcs8).into_bytes(),
        client_roots_pem: None,
        client_auth_required: false,
    };
    (server, ca.root_pem().into_bytes())
}

async fn start() -> Peer {
    let net = Net::new(KeyAlgorithm::EcdsaP256);
    let ctx = Arc::new(net.context());
    let store: Arc<dyn LedgerStore> = Arc::new(MemLedgerStore::new());
    let committer = Arc::new(Committer::new(Arc::clone(&store), Arc::clone(&ctx)).unwrap());
    let genesis = net.genesis();
    committer.commit_genesis(genesis.clone()).unwrap();
    let runtime = Arc::new(ChaincodeRuntime::new(RuntimeLimits::default(), None).unwrap());
    let executor = Executor::new(
        runtime,
        Arc::new(StaticResolver::new().with(CHAINCODE, wasm::testcc().to_vec())),
    );
    let signer: Arc<dyn Signer> =
        Arc::new(net.orgs[0].member("peer1.brand1", Role::Peer, KeyAlgorithm::EcdsaP256));
    let endorser = Arc::new(Endorser::new(
        CHANNEL,
        Arc::clone(&ctx.msps),
        Arc::clone(&store),
        executor,
        signer,
        None,
        Limits::default(),
    ));
    let channel = Arc::new(PeerChannel {
        channel_id: CHANNEL.into(),
        msps: Arc::clone(&ctx.msps),
        org_policies: ctx.org_policies.clone(),
        readers: "ANY Readers".parse().unwrap(),
        store,
        committer: Arc::clone(&committer),
        endorser: Arc::clone(&endorser),
        gateway: None,
        limits: Limits::default(),
    });
    let (server_tls, root) = tls();
    let server = PeerServer::bind("127.0.0.1:0".parse().unwrap(), &server_tls, channel)
        .await
        .unwrap();
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(root)))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Peer {
        net,
        committer,
        endorser,
        channel,
        last: genesis,
        stop: Some(stop),
    }
}

impl Peer {
    fn proposal(&self, who: &SigningIdentity, args: &[&str]) -> SignedProposal {
        let input = ProposalInput {
            channel_id: CHANNEL.into(),
            chaincode: CHAINCODE.into(),
            args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
            transient: BTreeMap::new(),
            nonce: self.net.next_nonce(),
            timestamp: Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            },
        };
        sign_proposal(
            new_proposal(&input, who.creator()).unwrap().proposal_bytes,
            who,
        )
        .unwrap()
    }

    /// Commits a block of transactions writing `keys`, returning their txids.
    fn commit(&mut self, keys: &[&str]) -> Vec<String> {
        let (block, txids) = self.next_block(keys);
        self.commit_next(block);
        txids
    }

    /// The next block, of transactions writing `keys`, and their txids.
    fn next_block(&self, keys: &[&str]) -> (Block, Vec<String>) {
        let (envs, txids): (Vec<Vec<u8>>, Vec<String>) = keys
            .iter()
            .map(|k| {
                let (env, txid) = self.net.tx(&rw::one(rw::put(rw::ns(CHAINCODE), k, "v")));
                (env.encode_to_vec(), txid)
            })
            .unzip();
        let number = self.committer.height();
        (self.net.block(number, &self.last, envs), txids)
    }

    fn commit_next(&mut self, block: Block) {
        self.committer.commit_block(block.clone()).unwrap();
        self.last = block;
    }

    fn seek(
        &self,
        who: &SigningIdentity,
        start: Seek,
        stop: Seek,
        behavior: SeekBehavior,
    ) -> mercato_proto::pb::common::Envelope {
        self.seek_at(who, start, stop, behavior, Some(unix_now()))
    }

    /// A member of the sellers' org whose certificate expired an hour ago.
    fn expired_member(&self, name: &str, role: Role) -> SigningIdentity {
        let now = unix_now();
        let validity = mercato_ca::authority::Validity {
            not_before: now - 86_400,
            not_after: now - 3600,
        };
        let (id, _) =
            self.net.orgs[2].member_valid(name, role, &[], KeyAlgorithm::EcdsaP256, validity);
        id
    }

    /// A seek request stamped `at` (Unix seconds), or not stamped.
    fn seek_at(
        &self,
        who: &SigningIdentity,
        start: Seek,
        stop: Seek,
        behavior: SeekBehavior,
        at: Option<i64>,
    ) -> mercato_proto::pb::common::Envelope {
        let header = Header {
            channel_header: ChannelHeader {
                r#type: HeaderType::DeliverSeekInfo as i32,
                channel_id: CHANNEL.into(),
                timestamp: at.map(|seconds| Timestamp { seconds, nanos: 0 }),
                ..Default::default()
            }
            .encode_to_vec(),
            signature_header: SignatureHeader {
                creator: who.creator().to_vec(),
                nonce: self.net.next_nonce(),
            }
            .encode_to_vec(),
        };
        let info = SeekInfo {
            start: Some(SeekPosition {
                r#type: Some(start),
            }),
            stop: Some(SeekPosition { r#type: Some(stop) }),
            behavior: behavior as i32,
            ..Default::default()
        };
        new_signed_envelope(header, info.encode_to_vec(), who).unwrap()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endorser_and_evaluate_over_tls() {
    let peer = start().await;
    let mut endorser = EndorserClient::new(peer.channel.clone());
    let r = endorser
        .process_proposal(peer.proposal(&peer.net.client, &["put", "a", "1"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.response.as_ref().unwrap().status, 200);
    assert!(r.endorsement.is_some());
    // An auditor may not endorse for submission: a response with 403, not a transport error.
    let auditor = peer.net.orgs[2].member("eve", Role::Auditor, KeyAlgorithm::EcdsaP256);
    let r = endorser
        .process_proposal(peer.proposal(&auditor, &["put", "a", "1"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.response.unwrap().status, 403);

    let mut gateway = GatewayClient::new(peer.channel.clone());
    let evaluate = |p: SignedProposal, channel: &str| EvaluateRequest {
        transaction_id: String::new(),
        channel_id: channel.into(),
        proposed_transaction: Some(p),
        target_organizations: Vec::new(),
    };
    let r = gateway
        .evaluate(evaluate(peer.proposal(&auditor, &["whoami"]), CHANNEL))
        .await
        .unwrap()
        .into_inner();
    assert!(String::from_utf8_lossy(&r.result.unwrap().payload).contains("auditor"));
    // The chaincode's own error (no such key) is a gRPC error naming it.
    let e = gateway
        .evaluate(evaluate(peer.proposal(&auditor, &["get", "nope"]), CHANNEL))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    assert!(e.message().contains("no key nope"), "{}", e.message());
    // Someone from a CA the channel does not know is not a reader.
    let stranger = mercato_ca::testing::TestOrg::new("SellersMSP").member(
        "x",
        Role::Client,
        KeyAlgorithm::EcdsaP256,
    );
    let e = gateway
        .evaluate(evaluate(peer.proposal(&stranger, &["whoami"]), CHANNEL))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    let e = gateway
        .evaluate(evaluate(peer.proposal(&auditor, &["whoami"]), "elsewhere"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = gateway
        .evaluate(EvaluateRequest {
            proposed_transaction: None,
            ..evaluate(peer.proposal(&auditor, &["whoami"]), CHANNEL)
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endorser_refuses_a_committed_txid_and_an_expired_creator() {
    let mut peer = start().await;
    let mut endorser = EndorserClient::new(peer.channel.clone());
    let proposal = peer.proposal(&peer.net.client, &["put", "dup", "1"]);
    let response = endorser
        .process_proposal(proposal.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.response.as_ref().unwrap().status, 200);
    // Its transaction commits (one endorsement of a 2-of-2 chaincode: invalid, but its genuine
    // txid is indexed all the same).
    let parsed =
        mercato_proto::proposal::parse_signed_proposal(&proposal, &Limits::DEFAULT).unwrap();
    let txid = parsed.header.channel_header.tx_id.clone();
    let mut env =
        mercato_proto::transaction::new_transaction(&parsed, &[response], &Limits::DEFAULT)
            .unwrap();
    env.signature = peer.net.client.sign(&env.payload).unwrap();
    let number = peer.committer.height();
    let block = peer
        .net
        .block(number, &peer.last, vec![env.encode_to_vec()]);
    peer.commit_next(block);
    assert!(peer.committer.store().tx_location(&txid).unwrap().is_some());
    let again = endorser
        .process_proposal(proposal)
        .await
        .unwrap()
        .into_inner();
    let r = again.response.unwrap();
    assert_eq!(r.status, 409, "{}", r.message);
    assert!(r.message.contains("duplicate transaction"), "{}", r.message);
    assert!(again.endorsement.is_none());

    // A client whose certificate expired an hour ago.
    let expired = peer.expired_member("old-carol", Role::Client);
    let r = endorser
        .process_proposal(peer.proposal(&expired, &["put", "late", "1"]))
        .await
        .unwrap()
        .into_inner()
        .response
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.message);
    assert!(r.message.contains("old-carol"), "{}", r.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_proposal_waits_for_the_height_its_gateway_has_seen() {
    use mercato_peer::gateway::SEEN_HEIGHT_METADATA;
    let mut peer = start().await;
    let endorser = EndorserClient::new(peer.channel.clone());
    let call = |p: SignedProposal, seen: Option<&str>| {
        let mut request = tonic::Request::new(p);
        if let Some(seen) = seen {
            request
                .metadata_mut()
                .insert(SEEN_HEIGHT_METADATA, seen.parse().unwrap());
        }
        let mut endorser = endorser.clone();
        async move {
            let r = endorser
                .process_proposal(request)
                .await
                .unwrap()
                .into_inner();
            r.response.unwrap()
        }
    };
    let refused = || peer.endorser.metrics.refused.load(Ordering::Relaxed);
    let get = |peer: &Peer| peer.proposal(&peer.net.client, &["get", "k"]);
    // Without the gateway's height, or with one that is not a number, the refusal comes at once.
    assert_eq!(call(get(&peer), None).await.status, 404);
    assert_eq!(call(get(&peer), Some("soon")).await.status, 404);
    assert_eq!(refused(), 2);

    // A gateway that has seen one block more: the peer, refusing, waits for it, and the block
    // that writes the key commits meanwhile (before or after the wait began: either way the
    // refusal came from a state older than the gateway's, and the proposal runs again).
    let seen = (peer.committer.height() + 1).to_string();
    // Built beforehand: only its commit has to fit in the peer's wait.
    let (block, _) = peer.next_block(&["k"]);
    let waiting = tokio::spawn(call(get(&peer), Some(&seen)));
    for _ in 0..2500 {
        if refused() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert_eq!(refused(), 3, "the proposal was not simulated");
    peer.commit_next(block);
    let answer = waiting.await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.message);
    assert_eq!(answer.payload, b"v");
    assert_eq!(peer.endorser.metrics.caught_up.load(Ordering::Relaxed), 1);

    // A height this peer does not reach in time: refused once the wait is over.
    let far = (peer.committer.height() + 100).to_string();
    let started = std::time::Instant::now();
    let answer = call(
        peer.proposal(&peer.net.client, &["get", "nope"]),
        Some(&far),
    )
    .await;
    assert_eq!(answer.status, 404);
    assert!(started.elapsed() >= mercato_peer::service::CATCH_UP_WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_status_waits_for_the_commit() {
    let mut peer = start().await;
    let mut gateway = GatewayClient::new(peer.channel.clone());
    let signed = |who: &SigningIdentity, txid: &str| {
        let request = CommitStatusRequest {
            transaction_id: txid.into(),
            channel_id: CHANNEL.into(),
            identity: who.creator().to_vec(),
        }
        .encode_to_vec();
        SignedCommitStatusRequest {
            signature: who.sign(&request).unwrap(),
            request,
        }
    };
    // Already committed: answered at once.
    let txids = peer.commit(&["k1"]);
    let r = gateway
        .commit_status(signed(&peer.net.client, &txids[0]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.result, r.block_number),
        (TxValidationCode::Valid as i32, 1)
    );

    // Not yet committed: the call waits until block 2 commits it.
    let (env, txid) = peer.net.tx(&rw::one(rw::put(rw::ns(CHAINCODE), "k2", "v")));
    let waiting = tokio::spawn({
        let mut gateway = gateway.clone();
        let request = signed(&peer.net.client, &txid);
        async move { gateway.commit_status(request).await }
    });
    tokio::task::yield_now().await;
    let block = peer.net.block(2, &peer.last, vec![env.encode_to_vec()]);
    peer.committer.commit_block(block.clone()).unwrap();
    peer.last = block;
    let r = waiting.await.unwrap().unwrap().into_inner();
    assert_eq!(
        (r.result, r.block_number),
        (TxValidationCode::Valid as i32, 2)
    );

    // A request signed by someone else, or by a stranger, is refused.
    let mut forged = signed(&peer.net.client, &txids[0]);
    forged.signature = peer.net.peer2.sign(&forged.request).unwrap();
    let e = gateway.commit_status(forged).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    let stranger = mercato_ca::testing::TestOrg::new("SellersMSP").member(
        "x",
        Role::Client,
        KeyAlgorithm::EcdsaP256,
    );
    let e = gateway
        .commit_status(signed(&stranger, &txids[0]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let e = gateway
        .commit_status(SignedCommitStatusRequest {
            request: b"\xff\xff".to_vec(),
            signature: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}

async fn next(stream: &mut tonic::Streaming<DeliverResponse>) -> Reply {
    stream.message().await.unwrap().unwrap().r#type.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_streams_blocks_and_waits_for_new_ones() {
    let mut peer = start().await;
    peer.commit(&["a", "b"]);
    let client = peer.net.orgs[2].member("eve", Role::Auditor, KeyAlgorithm::EcdsaP256);
    let mut deliver = DeliverClient::new(peer.channel.clone());

    // From the oldest block to block 2, which is not committed yet: blocks 0 and 1 come at
    // once, block 2 when it commits, then SUCCESS.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(peer.seek(
        &client,
        Seek::Oldest(SeekOldest {}),
        Seek::Specified(SeekSpecified { number: 2 }),
        SeekBehavior::BlockUntilReady,
    ))
    .await
    .unwrap();
    let mut stream = deliver
        .deliver(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for n in 0..2 {
        match next(&mut stream).await {
            Reply::Block(b) => assert_eq!(b.header.unwrap().number, n),
            other => panic!("expected block {n}, got {other:?}"),
        }
    }
    let txids = peer.commit(&["c"]);
    match next(&mut stream).await {
        Reply::Block(b) => assert_eq!(b.header.unwrap().number, 2),
        other => panic!("expected block 2, got {other:?}"),
    }
    assert_eq!(
        next(&mut stream).await,
        Reply::Status(FabricStatus::Success as i32)
    );

    // On the same stream: a block that is not there, without waiting; then a forged request.
    tx.send(peer.seek(
        &client,
        Seek::Specified(SeekSpecified { number: 9 }),
        Seek::Specified(SeekSpecified { number: 9 }),
        SeekBehavior::FailIfNotReady,
    ))
    .await
    .unwrap();
    assert_eq!(
        next(&mut stream).await,
        Reply::Status(FabricStatus::NotFound as i32)
    );
    let mut forged = peer.seek(
        &client,
        Seek::Oldest(SeekOldest {}),
        Seek::Oldest(SeekOldest {}),
        SeekBehavior::FailIfNotReady,
    );
    forged.signature = peer.net.client.sign(&forged.payload).unwrap();
    tx.send(forged).await.unwrap();
    assert_eq!(
        next(&mut stream).await,
        Reply::Status(FabricStatus::Forbidden as i32)
    );
    // A replayed request (stamped an hour ago) or one without a timestamp is not served.
    for at in [Some(unix_now() - 3600), None] {
        tx.send(peer.seek_at(
            &client,
            Seek::Oldest(SeekOldest {}),
            Seek::Oldest(SeekOldest {}),
            SeekBehavior::FailIfNotReady,
            at,
        ))
        .await
        .unwrap();
        assert_eq!(
            next(&mut stream).await,
            Reply::Status(FabricStatus::BadRequest as i32),
            "stamped {at:?}"
        );
    }
    // A reader whose certificate has expired is refused.
    let expired = peer.expired_member("old-eve", Role::Auditor);
    tx.send(peer.seek(
        &expired,
        Seek::Oldest(SeekOldest {}),
        Seek::Oldest(SeekOldest {}),
        SeekBehavior::FailIfNotReady,
    ))
    .await
    .unwrap();
    assert_eq!(
        next(&mut stream).await,
        Reply::Status(FabricStatus::Forbidden as i32)
    );

    // Filtered: block 2's transaction with its id and code.
    let (ftx, frx) = tokio::sync::mpsc::channel(1);
    ftx.send(peer.seek(
        &client,
        Seek::Specified(SeekSpecified { number: 2 }),
        Seek::Specified(SeekSpecified { number: 2 }),
        SeekBehavior::FailIfNotReady,
    ))
    .await
    .unwrap();
    let mut filtered = deliver
        .deliver_filtered(tokio_stream::wrappers::ReceiverStream::new(frx))
        .await
        .unwrap()
        .into_inner();
    match next(&mut filtered).await {
        Reply::FilteredBlock(f) => {
            assert_eq!((f.channel_id.as_str(), f.number), (CHANNEL, 2));
            assert_eq!(f.filtered_transactions.len(), 1);
            assert_eq!(f.filtered_transactions[0].txid, txids[0]);
            assert_eq!(
                f.filtered_transactions[0].tx_validation_code,
                TxValidationCode::Valid as i32
            );
        }
        other => panic!("expected a filtered block, got {other:?}"),
    }
    assert_eq!(
        next(&mut filtered).await,
        Reply::Status(FabricStatus::Success as i32)
    );
}
