//! Broadcast's checks: every refusal with its status, and the envelopes that pass.

use std::collections::BTreeMap;
use std::sync::Arc;

use mercato_ca::policy::OrgPolicies;
use mercato_ca::testing::TestOrg;
use mercato_ca::{KeyAlgorithm, MspManager, Role, SigningIdentity};
use mercato_orderer::broadcast::BroadcastChecker;
use mercato_proto::pb::Timestamp;
use mercato_proto::pb::common::{
    ChannelHeader, Envelope, Header, HeaderType, Payload, SignatureHeader, Status,
};
use mercato_proto::pb::protos::{ChaincodeAction, ChaincodeId, Response};
use mercato_proto::proposal::{ProposalInput, new_proposal, parse_signed_proposal, sign_proposal};
use mercato_proto::response::new_proposal_response;
use mercato_proto::transaction::{new_transaction, sign_envelope};
use mercato_proto::{Limits, Signer};
use prost::Message;

pub const CHANNEL: &str = "market";

pub struct Net {
    pub org: TestOrg,
    pub peer: SigningIdentity,
    pub checker: BroadcastChecker,
}

pub fn net() -> Net {
    let org = TestOrg::new("Org1MSP");
    let peer = org.member("peer0", Role::Peer, KeyAlgorithm::EcdsaP256);
    let checker = BroadcastChecker::new(
        CHANNEL,
        Arc::new(MspManager::new([org.msp()])),
        OrgPolicies::defaults(&["Org1MSP"]),
        "ANY Writers".parse().unwrap(),
        16 << 10,
    );
    Net { org, peer, checker }
}

/// An endorsed transaction by `creator` on `channel`, with `padding` bytes of argument.
fn tx(n: &Net, creator: &SigningIdentity, channel: &str, padding: usize) -> Envelope {
    tx_with_nonce(n, creator, channel, padding, b"a fresh nonce of 24 bytes")
}

/// The same with a nonce of the caller's (so a distinct txid).
pub fn tx_with_nonce(
    n: &Net,
    creator: &SigningIdentity,
    channel: &str,
    padding: usize,
    nonce: &[u8],
) -> Envelope {
    let input = ProposalInput {
        channel_id: channel.into(),
        chaincode: "commerce".into(),
        args: vec![b"put".to_vec(), vec![b'x'; padding]],
        transient: BTreeMap::new(),
        nonce: nonce.to_vec(),
        timestamp: Timestamp {
            seconds: 1_800_000_000,
            nanos: 0,
        },
    };
    let unsigned = new_proposal(&input, creator.creator()).unwrap();
    let signed = sign_proposal(unsigned.proposal_bytes, creator).unwrap();
    let proposal = parse_signed_proposal(&signed, &Limits::default()).unwrap();
    let action = ChaincodeAction {
        results: Vec::new(),
        events: Vec::new(),
        response: Some(Response {
            status: 200,
            message: String::new(),
            payload: Vec::new(),
        }),
        chaincode_id: Some(ChaincodeId {
            name: "commerce".into(),
            ..Default::default()
        }),
    };
    let response = new_proposal_response(&proposal.proposal_hash, &action, &n.peer).unwrap();
    let mut env = new_transaction(&proposal, &[response], &Limits::default()).unwrap();
    sign_envelope(&mut env, creator).unwrap();
    env
}

fn refused(n: &Net, env: &[u8], status: Status, says: &str) {
    let r = n.checker.check(env).unwrap_err();
    assert_eq!(r.status, status, "{r}");
    assert!(r.message.contains(says), "{r} should say {says:?}");
}

#[test]
fn writers_envelopes_pass() {
    let n = net();
    for role in [Role::Client, Role::Admin] {
        let who = n.org.member("alice", role, KeyAlgorithm::Ed25519);
        let env = tx(&n, &who, CHANNEL, 10).encode_to_vec();
        let parsed = n.checker.check(&env).unwrap();
        assert_eq!(parsed.header.channel_header.channel_id, CHANNEL);
    }
}

#[test]
fn every_refusal_has_its_status() {
    let n = net();
    let client = n.org.member("alice", Role::Client, KeyAlgorithm::EcdsaP256);

    // Readers who do not write: an auditor, a peer.
    for role in [Role::Auditor, Role::Peer] {
        let who = n.org.member("reader", role, KeyAlgorithm::EcdsaP256);
        refused(
            &n,
            &tx(&n, &who, CHANNEL, 10).encode_to_vec(),
            Status::Forbidden,
            "not allowed to write",
        );
    }
    // A creator from a CA the channel does not know.
    let outsider = TestOrg::new("Org1MSP").member("mallory", Role::Client, KeyAlgorithm::EcdsaP256);
    refused(
        &n,
        &tx(&n, &outsider, CHANNEL, 10).encode_to_vec(),
        Status::Forbidden,
        "not a valid member",
    );
    // A signature that does not verify (the payload changed after signing).
    let mut env = tx(&n, &client, CHANNEL, 10);
    let mut payload = Payload::decode(env.payload.as_slice()).unwrap();
    payload.data.push(0);
    env.payload = payload.encode_to_vec();
    refused(
        &n,
        &env.encode_to_vec(),
        Status::Forbidden,
        "signature does not verify",
    );
    // An unsigned envelope.
    let mut env = tx(&n, &client, CHANNEL, 10);
    env.signature.clear();
    refused(&n, &env.encode_to_vec(), Status::BadRequest, "malformed");
    // Too large for the channel.
    refused(
        &n,
        &tx(&n, &client, CHANNEL, 20 << 10).encode_to_vec(),
        Status::RequestEntityTooLarge,
        "over the channel's limit",
    );
    // Garbage, and nothing.
    refused(&n, b"\xff\x01\x02garbage", Status::BadRequest, "malformed");
    refused(&n, b"", Status::BadRequest, "malformed");
    // Another channel.
    refused(
        &n,
        &tx(&n, &client, "elsewhere", 10).encode_to_vec(),
        Status::NotFound,
        "not served here",
    );
    // A configuration envelope.
    let payload = Payload {
        header: Some(Header {
            channel_header: ChannelHeader {
                r#type: HeaderType::Config as i32,
                channel_id: CHANNEL.into(),
                ..Default::default()
            }
            .encode_to_vec(),
            signature_header: SignatureHeader {
                creator: client.creator().to_vec(),
                nonce: b"nonce".to_vec(),
            }
            .encode_to_vec(),
        }),
        data: b"config".to_vec(),
    };
    let mut env = Envelope {
        payload: payload.encode_to_vec(),
        signature: Vec::new(),
    };
    sign_envelope(&mut env, &client).unwrap();
    refused(
        &n,
        &env.encode_to_vec(),
        Status::BadRequest,
        "only endorser transactions",
    );
}

#[test]
fn the_checks_and_the_batch_come_from_the_genesis_block() {
    use mercato_orderer::BatchConfig;
    use mercato_proto::pb::mercato as pb;
    let n = net();
    let orderers = TestOrg::new("OrdererMSP");
    let tls = orderers
        .member("orderer0", Role::Orderer, KeyAlgorithm::EcdsaP256)
        .certificate_pem()
        .to_vec();
    let tls = mercato_ca::crypto::pem_blocks(&tls, "CERTIFICATE")
        .unwrap()
        .remove(0);
    let org = |o: &TestOrg| pb::Organization {
        msp_id: o.id.clone(),
        root_certs: vec![o.ca.certificate_der().to_vec()],
        ..Default::default()
    };
    let config = pb::ChannelConfig {
        channel_id: CHANNEL.into(),
        application_orgs: vec![org(&n.org)],
        orderer_orgs: vec![org(&orderers)],
        consenters: vec![pb::Consenter {
            id: 1,
            host: "127.0.0.1".into(),
            port: 7050,
            msp_id: "OrdererMSP".into(),
            server_tls_cert: tls.clone(),
            client_tls_cert: tls,
        }],
        batch: Some(pb::BatchSettings {
            max_message_count: 10,
            absolute_max_bytes: 4096,
            preferred_max_bytes: 2048,
            batch_timeout_ms: 20,
        }),
        policies: None,
    };
    let genesis = mercato_proto::config::new_genesis_block(&config);
    let channel = mercato_ca::channel::ChannelConfig::from_genesis(&genesis).unwrap();
    let checker = BroadcastChecker::from_channel(&channel).unwrap();
    let client = n.org.member("alice", Role::Client, KeyAlgorithm::EcdsaP256);
    assert!(
        checker
            .check(&tx(&n, &client, CHANNEL, 10).encode_to_vec())
            .is_ok()
    );
    let big = checker
        .check(&tx(&n, &client, CHANNEL, 5000).encode_to_vec())
        .unwrap_err();
    assert_eq!(big.status, Status::RequestEntityTooLarge);
    let auditor = n.org.member("eve", Role::Auditor, KeyAlgorithm::EcdsaP256);
    let r = checker
        .check(&tx(&n, &auditor, CHANNEL, 10).encode_to_vec())
        .unwrap_err();
    assert_eq!(r.status, Status::Forbidden);
    let batch = BatchConfig::from(&channel.batch);
    assert!(batch.validate().is_ok());
    assert_eq!(batch.batch_timeout, std::time::Duration::from_millis(20));
}

/// Envelopes of every kind: Ed25519 and P-256 writers, bad signatures among good ones, a reader,
/// garbage. `true` where the envelope may be ordered.
fn mixed(n: &Net) -> Vec<(Vec<u8>, bool)> {
    let ed = n.org.member("alice", Role::Client, KeyAlgorithm::Ed25519);
    let p256 = n.org.member("bob", Role::Client, KeyAlgorithm::EcdsaP256);
    let auditor = n.org.member("eve", Role::Auditor, KeyAlgorithm::Ed25519);
    let mut out = Vec::new();
    for i in 0..40u32 {
        let nonce = format!("nonce {i:>20}");
        let who = if i % 7 == 3 { &p256 } else { &ed };
        let mut env = tx_with_nonce(n, who, CHANNEL, 10, nonce.as_bytes());
        let ok = match i % 10 {
            // The payload changed after signing.
            4 => {
                env.payload.push(0);
                false
            }
            // A signature bit flipped.
            8 => {
                env.signature[10] ^= 1;
                false
            }
            _ => true,
        };
        out.push((env.encode_to_vec(), ok));
    }
    out.push((tx(n, &auditor, CHANNEL, 10).encode_to_vec(), false));
    out.push((b"\xff\x01garbage".to_vec(), false));
    out
}

#[test]
fn a_batch_gets_the_answers_each_envelope_gets_alone() {
    let n = net();
    let cases = mixed(&n);
    let envelopes: Vec<Vec<u8>> = cases.iter().map(|(e, _)| e.clone()).collect();
    let batch = n.checker.check_batch(&envelopes);
    assert_eq!(batch.len(), envelopes.len());
    for (i, ((env, ok), verdict)) in cases.iter().zip(&batch).enumerate() {
        let alone = n.checker.check(env);
        assert_eq!(verdict.is_ok(), *ok, "envelope {i}: {verdict:?}");
        match (verdict, alone) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.header.channel_header.tx_id, b.header.channel_header.tx_id)
            }
            (Err(a), Err(b)) => assert_eq!(*a, b, "envelope {i}"),
            (a, b) => panic!("envelope {i}: {a:?} in a batch, {b:?} alone"),
        }
    }
    // A batch whose signatures all hold, and one of a single envelope.
    let good: Vec<Vec<u8>> = cases
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(e, _)| e.clone())
        .collect();
    assert!(n.checker.check_batch(&good).iter().all(Result::is_ok));
    assert_eq!(n.checker.check_batch(&good[..1]).len(), 1);
    assert!(n.checker.check_batch(&[]).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_threads_answer_every_envelope_concurrently() {
    use mercato_orderer::checks::CheckPool;
    let n = net();
    let cases = mixed(&n);
    let pool = Arc::new(CheckPool::start(Arc::new(n.checker), 2).unwrap());
    let tasks: Vec<_> = cases
        .iter()
        .map(|(env, _)| {
            let pool = Arc::clone(&pool);
            let env = env.clone();
            tokio::spawn(async move { pool.check(env).await })
        })
        .collect();
    for ((env, ok), task) in cases.iter().zip(tasks) {
        match task.await.unwrap() {
            Ok(back) => {
                assert!(ok);
                assert_eq!(&back, env, "the envelope comes back unchanged");
            }
            Err(r) => assert!(!ok, "{r}"),
        }
    }
}
