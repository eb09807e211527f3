//! The chaincode lifecycle end to end on two peers of two organisations: install, approve,
//! commit, invoke and upgrade, each step a real signed proposal endorsed by the peers' endorsers,
//! put into an orderer-signed block and committed by both peers' committers.

use std::collections::BTreeMap;
use std::sync::Arc;

use mercato_ca::{KeyAlgorithm, Role, SigningIdentity};
use mercato_peer::chaincode::{ChaincodeRuntime, Executor, RuntimeLimits};
use mercato_peer::committer::Committer;
use mercato_peer::endorser::{Endorser, Purpose};
use mercato_peer::ledger::{LedgerStore, MemLedgerStore};
use mercato_peer::lifecycle::{
    APPROVE, CHECK_COMMIT_READINESS, COMMIT, ChaincodeDefinition, LIFECYCLE, LifecycleContract,
    LifecycleDefinitions, LifecycleError, LifecycleResolver, PackageStore, QUERY_DEFINITION,
    approval_key, new_package,
};
use mercato_proto::pb::Timestamp;
use mercato_proto::pb::common::{Block, Envelope};
use mercato_proto::pb::mercato::CommitReadiness;
use mercato_proto::pb::protos::SignedProposal;
use mercato_proto::proposal::{ProposalInput, new_proposal, sign_proposal};
use mercato_proto::transaction::{new_transaction, sign_envelope};
use mercato_proto::{Limits, Signer, TxValidationCode, ValidationCode};
use prost::Message;

use crate::fixture::{CHANNEL, Net, TxSpec, rw};
use crate::wasm;

const CC: &str = "shop";

struct Peer {
    store: Arc<dyn LedgerStore>,
    committer: Committer,
    endorser: Endorser,
    packages: Arc<PackageStore>,
    runtime: Arc<ChaincodeRuntime>,
    _dir: tempfile::TempDir,
}

fn peer(net: &Net, org: usize, name: &str) -> (Peer, Arc<SigningIdentity>) {
    let dir = tempfile::tempdir().unwrap();
    let signer = Arc::new(net.orgs[org].member(name, Role::Peer, KeyAlgorithm::EcdsaP256));
    let store: Arc<dyn LedgerStore> = Arc::new(MemLedgerStore::new());
    let mut ctx = net.context();
    ctx.chaincodes = Arc::new(LifecycleDefinitions::new());
    let ctx = Arc::new(ctx);
    let committer = Committer::new(Arc::clone(&store), Arc::clone(&ctx)).unwrap();
    committer.commit_genesis(net.genesis()).unwrap();
    let runtime = Arc::new(ChaincodeRuntime::new(RuntimeLimits::default(), None).unwrap());
    let packages = Arc::new(PackageStore::open(&dir.path().join("packages")).unwrap());
    let contract = LifecycleContract {
        msp_id: signer.msp_id().to_owned(),
        orgs: ctx.application_orgs.clone(),
    };
    let resolver = LifecycleResolver::new(Arc::clone(&packages), contract);
    let executor = Executor::new(Arc::clone(&runtime), Arc::new(resolver));
    let endorser = Endorser::new(
        CHANNEL,
        Arc::clone(&ctx.msps),
        Arc::clone(&store),
        executor,
        Arc::clone(&signer) as Arc<dyn Signer>,
        None,
        Limits::default(),
    );
    let peer = Peer {
        store,
        committer,
        endorser,
        packages,
        runtime,
        _dir: dir,
    };
    (peer, signer)
}

fn proposal(net: &Net, who: &SigningIdentity, chaincode: &str, args: &[&[u8]]) -> SignedProposal {
    let input = ProposalInput {
        channel_id: CHANNEL.into(),
        chaincode: chaincode.into(),
        args: args.iter().map(|a| a.to_vec()).collect(),
        transient: BTreeMap::new(),
        nonce: net.next_nonce(),
        timestamp: Timestamp {
            seconds: 1_800_000_000,
            nanos: 0,
        },
    };
    let unsigned = new_proposal(&input, who.creator()).unwrap();
    sign_proposal(unsigned.proposal_bytes, who).unwrap()
}

/// Endorses `signed` on `peers` and assembles the signed transaction, or says who refused why.
fn endorse(
    peers: &[&Peer],
    signed: &SignedProposal,
    who: &SigningIdentity,
) -> Result<Envelope, String> {
    let mut responses = Vec::new();
    let mut parsed = None;
    for p in peers {
        match p.endorser.endorse(signed, Purpose::Endorse) {
            Ok(e) => {
                responses.push(e.response);
                parsed = Some(e.proposal);
            }
            Err(r) => {
                let r = r.response.clone().unwrap_or_default();
                return Err(format!("{} {}", r.status, r.message));
            }
        }
    }
    let mut env = new_transaction(&parsed.unwrap(), &responses, &Limits::default())
        .map_err(|e| e.to_string())?;
    sign_envelope(&mut env, who).unwrap();
    Ok(env)
}

/// Orders `txs` into the next block, commits it on every peer, and returns the codes (which
/// every peer must agree on).
fn commit(net: &Net, peers: &[&Peer], txs: Vec<Envelope>) -> Vec<ValidationCode> {
    let height = peers[0].committer.height();
    let previous = Block::decode(
        peers[0]
            .store
            .block(height - 1)
            .unwrap()
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    let block = net.block(
        height,
        &previous,
        txs.iter().map(|t| t.encode_to_vec()).collect(),
    );
    let mut codes: Option<Vec<ValidationCode>> = None;
    for p in peers {
        let event = p.committer.commit_block(block.clone()).unwrap();
        let these: Vec<ValidationCode> = event.txs.iter().map(|t| t.code).collect();
        if let Some(c) = &codes {
            assert_eq!(c, &these, "the peers disagree on block {height}");
        }
        codes = Some(these);
    }
    codes.unwrap()
}

fn code(c: TxValidationCode) -> ValidationCode {
    c.into()
}

fn definition(sequence: u64, hash: [u8; 32], policy: &str) -> ChaincodeDefinition {
    ChaincodeDefinition {
        name: CC.into(),
        version: format!("{sequence}.0"),
        sequence,
        package_hash: hash,
        endorsement_policy: policy.into(),
    }
}

#[test]
fn install_approve_commit_invoke_and_upgrade_on_two_peers() {
    let net = Net::new(KeyAlgorithm::EcdsaP256);
    let (p1, _) = peer(&net, 0, "peer1.brand1");
    let (p2, _) = peer(&net, 1, "peer1.brand2");
    let both = [&p1, &p2];
    let admin1 = net.orgs[0].member("admin.brand1", Role::Admin, KeyAlgorithm::EcdsaP256);
    let admin2 = net.orgs[1].member("admin.brand2", Role::Admin, KeyAlgorithm::Ed25519);
    let put = |who: &SigningIdentity, key: &str| {
        proposal(&net, who, CC, &[b"put", key.as_bytes(), b"value"])
    };

    // Nothing is defined yet: a clear refusal, not a crash.
    let err = endorse(&[&p1], &put(&net.client, "k0"), &net.client).unwrap_err();
    assert!(
        err.starts_with("404") && err.contains("not defined"),
        "{err}"
    );

    // Install on both peers; the package id carries the module's hash.
    let module = wasm::testcc();
    let package = new_package("shop_1", CC, "1.0", module);
    let installed = p1.packages.install(&package, &p1.runtime).unwrap();
    assert_eq!(
        installed,
        p2.packages.install(&package, &p2.runtime).unwrap()
    );
    assert_eq!(
        installed.package_id,
        format!(
            "shop_1:{}",
            hex::encode(mercato_proto::hash::sha256(module))
        )
    );
    assert_eq!(p1.packages.list().unwrap(), vec![installed.clone()]);
    let def1 = definition(1, installed.hash, "AND('Brand1MSP.peer', 'Brand2MSP.peer')");
    let def1_bytes = def1.encode();

    // Committing before any approval is refused by the endorser, naming who has not approved.
    let err = endorse(
        &both,
        &proposal(&net, &admin1, LIFECYCLE, &[COMMIT.as_bytes(), &def1_bytes]),
        &admin1,
    )
    .unwrap_err();
    assert!(err.contains("approved by 0 of 3"), "{err}");

    // Only an admin of the peer's own org approves on it.
    let err = endorse(
        &[&p2],
        &proposal(&net, &admin1, LIFECYCLE, &[APPROVE.as_bytes(), &def1_bytes]),
        &admin1,
    )
    .unwrap_err();
    assert!(err.starts_with("403"), "{err}");
    let err = endorse(
        &[&p1],
        &proposal(
            &net,
            &net.client,
            LIFECYCLE,
            &[APPROVE.as_bytes(), &def1_bytes],
        ),
        &net.client,
    )
    .unwrap_err();
    assert!(err.starts_with("403"), "{err}");

    // Each org approves through its own peer. A forged approval for Brand2 endorsed only by
    // Brand1's peer is refused at validation.
    let approve1 = endorse(
        &[&p1],
        &proposal(&net, &admin1, LIFECYCLE, &[APPROVE.as_bytes(), &def1_bytes]),
        &admin1,
    )
    .unwrap();
    let approve2 = endorse(
        &[&p2],
        &proposal(&net, &admin2, LIFECYCLE, &[APPROVE.as_bytes(), &def1_bytes]),
        &admin2,
    )
    .unwrap();
    let forged_rw = rw::one(rw::put(
        rw::ns(LIFECYCLE),
        &approval_key(CC, 1, "Brand2MSP"),
        "0123456789abcdef0123456789abcdef",
    ));
    let (forged, _) = net.tx_spec(TxSpec {
        client: &admin1,
        chaincode: LIFECYCLE,
        endorsers: vec![&net.peer1],
        ..net.spec(forged_rw)
    });
    assert_eq!(
        commit(&net, &both, vec![approve1, approve2, forged]),
        vec![
            ValidationCode::VALID,
            ValidationCode::VALID,
            code(TxValidationCode::EndorsementPolicyFailure)
        ]
    );

    // Both approvals show; the commit is endorsed by both peers and becomes live in block 2.
    let readiness = p1
        .endorser
        .endorse(
            &proposal(
                &net,
                &admin1,
                LIFECYCLE,
                &[CHECK_COMMIT_READINESS.as_bytes(), &def1_bytes],
            ),
            Purpose::Evaluate,
        )
        .unwrap();
    let readiness =
        CommitReadiness::decode(readiness.response.response.unwrap().payload.as_slice()).unwrap();
    assert_eq!(
        readiness.approvals,
        BTreeMap::from([
            ("Brand1MSP".to_string(), true),
            ("Brand2MSP".to_string(), true),
            ("SellersMSP".to_string(), false)
        ])
    );
    let commit1 = endorse(
        &both,
        &proposal(&net, &admin1, LIFECYCLE, &[COMMIT.as_bytes(), &def1_bytes]),
        &admin1,
    )
    .unwrap();
    assert_eq!(
        commit(&net, &both, vec![commit1]),
        vec![ValidationCode::VALID]
    );
    let query = p2
        .endorser
        .endorse(
            &proposal(
                &net,
                &net.client,
                LIFECYCLE,
                &[QUERY_DEFINITION.as_bytes(), CC.as_bytes()],
            ),
            Purpose::Evaluate,
        )
        .unwrap();
    assert_eq!(
        ChaincodeDefinition::decode(&query.response.response.unwrap().payload).unwrap(),
        def1
    );

    // The chaincode runs; its policy (both brands) is enforced by validation.
    let both_endorse = endorse(&both, &put(&net.client, "k1"), &net.client).unwrap();
    let one_endorses = endorse(&[&p1], &put(&net.client, "k2"), &net.client).unwrap();
    // Endorsed under sequence 1, committed after the upgrade below: it must fail MVCC.
    let stale = endorse(&both, &put(&net.client, "k3"), &net.client).unwrap();
    assert_eq!(
        commit(&net, &both, vec![both_endorse, one_endorses]),
        vec![
            ValidationCode::VALID,
            code(TxValidationCode::EndorsementPolicyFailure)
        ]
    );
    assert_eq!(p1.store.state(CC, "k1").unwrap().unwrap().value, b"value");
    assert!(p1.store.state(CC, "k2").unwrap().is_none());

    // Upgrade to sequence 2, where one brand's peer suffices.
    let def2 = definition(2, installed.hash, "OR('Brand1MSP.peer', 'Brand2MSP.peer')");
    let def2_bytes = def2.encode();
    let err = endorse(
        &[&p1],
        &proposal(&net, &admin1, LIFECYCLE, &[APPROVE.as_bytes(), &def1_bytes]),
        &admin1,
    )
    .unwrap_err();
    assert!(err.contains("the next sequence of shop is 2"), "{err}");
    let a1 = endorse(
        &[&p1],
        &proposal(&net, &admin1, LIFECYCLE, &[APPROVE.as_bytes(), &def2_bytes]),
        &admin1,
    )
    .unwrap();
    let a2 = endorse(
        &[&p2],
        &proposal(&net, &admin2, LIFECYCLE, &[APPROVE.as_bytes(), &def2_bytes]),
        &admin2,
    )
    .unwrap();
    assert_eq!(
        commit(&net, &both, vec![a1, a2]),
        vec![ValidationCode::VALID; 2]
    );
    let upgrade = endorse(
        &both,
        &proposal(&net, &admin2, LIFECYCLE, &[COMMIT.as_bytes(), &def2_bytes]),
        &admin2,
    )
    .unwrap();
    // The upgrade and, in the same block, transactions endorsed under sequence 1.
    assert_eq!(
        commit(&net, &both, vec![upgrade, stale]),
        vec![
            ValidationCode::VALID,
            code(TxValidationCode::MvccReadConflict)
        ]
    );
    let one_now_enough = endorse(&[&p2], &put(&net.client, "k5"), &net.client).unwrap();
    assert_eq!(
        commit(&net, &both, vec![one_now_enough]),
        vec![ValidationCode::VALID]
    );

    // Both peers hold the same state.
    for ns in [CC, LIFECYCLE] {
        assert_eq!(
            p1.store.state_range(ns, "", "", 1000).unwrap(),
            p2.store.state_range(ns, "", "", 1000).unwrap()
        );
    }
}

#[test]
fn a_peer_without_the_package_says_so_and_bad_packages_are_refused() {
    let net = Net::new(KeyAlgorithm::Ed25519);
    let (p1, _) = peer(&net, 0, "peer1.brand1");
    let (p2, _) = peer(&net, 1, "peer1.brand2");
    let both = [&p1, &p2];
    let admin1 = net.orgs[0].member("admin.brand1", Role::Admin, KeyAlgorithm::Ed25519);
    let admin2 = net.orgs[1].member("admin.brand2", Role::Admin, KeyAlgorithm::Ed25519);

    // Only p1 installs; both orgs approve and commit the definition.
    let installed = p1
        .packages
        .install(&new_package("shop", CC, "1.0", wasm::testcc()), &p1.runtime)
        .unwrap();
    let def = definition(1, installed.hash, "OR('Brand1MSP.peer', 'Brand2MSP.peer')").encode();
    let approvals = vec![
        endorse(
            &[&p1],
            &proposal(&net, &admin1, LIFECYCLE, &[APPROVE.as_bytes(), &def]),
            &admin1,
        )
        .unwrap(),
        endorse(
            &[&p2],
            &proposal(&net, &admin2, LIFECYCLE, &[APPROVE.as_bytes(), &def]),
            &admin2,
        )
        .unwrap(),
    ];
    assert_eq!(
        commit(&net, &both, approvals),
        vec![ValidationCode::VALID; 2]
    );
    let c = endorse(
        &both,
        &proposal(&net, &admin2, LIFECYCLE, &[COMMIT.as_bytes(), &def]),
        &admin2,
    )
    .unwrap();
    assert_eq!(commit(&net, &both, vec![c]), vec![ValidationCode::VALID]);

    let put = proposal(&net, &net.client, CC, &[b"put", b"k", b"v"]);
    assert!(endorse(&[&p1], &put, &net.client).is_ok());
    let err = endorse(&[&p2], &put, &net.client).unwrap_err();
    assert!(
        err.starts_with("404") && err.contains("not installed on this peer"),
        "{err}"
    );

    // Garbage, an empty module and a module the sandbox refuses are each refused with the reason.
    for (package, want) in [
        (b"\xff\xff garbage".to_vec(), "invalid chaincode package"),
        (new_package("x", CC, "1", b""), "no wasm module"),
        (new_package("bad label!", CC, "1", wasm::testcc()), "label"),
        (
            new_package("x", CC, "1", &wasm::unknown_import()),
            "unknown import",
        ),
    ] {
        let err = p2.packages.install(&package, &p2.runtime).unwrap_err();
        assert!(matches!(err, LifecycleError::InvalidPackage(_)), "{err}");
        assert!(err.to_string().contains(want), "{err} should say {want}");
    }
    assert!(p2.packages.list().unwrap().is_empty());

    // An auditor may evaluate but never endorse for submission.
    let auditor = net.orgs[2].member("auditor", Role::Auditor, KeyAlgorithm::Ed25519);
    let whoami = proposal(&net, &auditor, CC, &[b"whoami"]);
    let err = p1.endorser.endorse(&whoami, Purpose::Endorse).unwrap_err();
    let r = err.response.unwrap();
    assert_eq!(r.status, 403);
    assert!(
        r.message.contains("auditors are read-only"),
        "{}",
        r.message
    );
    let evaluated = p1.endorser.endorse(&whoami, Purpose::Evaluate).unwrap();
    let payload = evaluated.response.response.unwrap().payload;
    assert!(
        String::from_utf8_lossy(&payload).contains("auditor"),
        "{payload:?}"
    );
}

#[test]
fn malformed_definitions_are_refused_with_the_reason() {
    let ok = definition(1, [7; 32], "OR('Brand1MSP.peer')");
    assert_eq!(ChaincodeDefinition::decode(&ok.encode()).unwrap(), ok);
    for (edit, want) in [
        (
            Box::new(|d: &mut ChaincodeDefinition| d.name = "_lifecycle".into())
                as Box<dyn Fn(&mut ChaincodeDefinition)>,
            "not starting with '_'",
        ),
        (Box::new(|d| d.name = "a/b".into()), "name"),
        (Box::new(|d| d.version = String::new()), "version"),
        (Box::new(|d| d.sequence = 0), "sequence 0"),
        (
            Box::new(|d| d.endorsement_policy = "AND(".into()),
            "endorsement policy",
        ),
    ] {
        let mut d = ok.clone();
        edit(&mut d);
        let err = ChaincodeDefinition::decode(&d.encode()).unwrap_err();
        assert!(err.to_string().contains(want), "{err} should say {want}");
    }
    let mut short =
        mercato_proto::pb::mercato::ChaincodeDefinition::decode(ok.encode().as_slice()).unwrap();
    short.package_hash.truncate(5);
    let err = ChaincodeDefinition::decode(&short.encode_to_vec()).unwrap_err();
    assert!(err.to_string().contains("32"), "{err}");
    assert!(ChaincodeDefinition::decode(b"\xff\xff\xff").is_err());
}
