//! One case per validation code the committer produces, each in a real signed block.

use std::sync::Arc;

use mercato_ca::testing::TestOrg;
use mercato_ca::{KeyAlgorithm, Role};
use mercato_peer::committer::Committer;
use mercato_peer::ledger::{LedgerStore, MemLedgerStore};
use mercato_proto::pb::common::{ChannelHeader, Envelope, Header, HeaderType};
use mercato_proto::pb::protos::Transaction;
use mercato_proto::transaction::new_signed_envelope;
use mercato_proto::{TxValidationCode as C, ValidationCode};
use prost::Message;

use crate::fixture::{CHANNEL, Net, TxSpec, rw};

/// A committer at height 2: genesis, then block 1 setting `k1 = v1`, `n = 50`, `word = abc`,
/// `r/a`, `r/c` in `market`.
fn base(net: &Net) -> (Arc<Committer>, mercato_proto::pb::common::Block) {
    let store: Arc<dyn LedgerStore> = Arc::new(MemLedgerStore::new());
    let committer = Arc::new(Committer::new(store, Arc::new(net.context())).unwrap());
    let genesis = net.genesis();
    committer.commit_genesis(genesis.clone()).unwrap();
    let ns = rw::ns("market");
    let ns = rw::put(rw::put(rw::put(ns, "k1", "v1"), "n", "50"), "word", "abc");
    let ns = rw::put(rw::put(ns, "r/a", "1"), "r/c", "3");
    let (env, _) = net.tx(&rw::one(ns));
    let b1 = net.block(1, &genesis, vec![env.encode_to_vec()]);
    let out = committer.commit_block(b1.clone()).unwrap();
    assert_eq!(out.txs[0].code, ValidationCode::VALID);
    (committer, b1)
}

/// `env` re-signed by its client with one bit of endorsement `i`'s signature flipped: the same
/// genuine txid, an endorsement that does not verify.
fn broken_endorsement(net: &Net, env: &Envelope, i: usize) -> Envelope {
    net.resign(env, &net.client, |p| {
        use mercato_proto::pb::protos::ChaincodeActionPayload;
        let mut tx = Transaction::decode(p.data.as_slice()).unwrap();
        let mut cap = ChaincodeActionPayload::decode(tx.actions[0].payload.as_slice()).unwrap();
        let e = &mut cap.action.as_mut().unwrap().endorsements[i];
        let n = e.signature.len();
        e.signature[n - 2] ^= 1;
        tx.actions[0].payload = cap.encode_to_vec();
        p.data = tx.encode_to_vec();
    })
}

fn code_of(net: &Net, env: Vec<u8>) -> ValidationCode {
    let (committer, b1) = base(net);
    let block = net.block(2, &b1, vec![env]);
    committer.commit_block(block).unwrap().txs[0].code
}

#[test]
fn every_code_the_committer_produces() {
    let net = Net::new(KeyAlgorithm::EcdsaP256);
    let stranger_org = TestOrg::new("StrangerMSP");
    let stranger = stranger_org.member("eve", Role::Client, KeyAlgorithm::EcdsaP256);
    let brand1_client = net.orgs[0].member("brand1-app", Role::Client, KeyAlgorithm::EcdsaP256);
    let put = || rw::one(rw::put(rw::ns("market"), "k2", "v2"));
    let (valid, _) = net.tx(&put());
    let valid_payload =
        mercato_proto::pb::common::Payload::decode(valid.payload.as_slice()).unwrap();
    let header = valid_payload.header.clone().unwrap();
    let edit_channel_header = |f: &dyn Fn(&mut ChannelHeader)| {
        net.resign(&valid, &net.client, |p| {
            let h = p.header.as_mut().unwrap();
            let mut ch = ChannelHeader::decode(h.channel_header.as_slice()).unwrap();
            f(&mut ch);
            h.channel_header = ch.encode_to_vec();
        })
        .encode_to_vec()
    };

    let cases: Vec<(&str, Vec<u8>, ValidationCode)> = vec![
        ("valid put", valid.encode_to_vec(), ValidationCode::VALID),
        ("empty envelope", Vec::new(), C::NilEnvelope.into()),
        (
            "garbage payload",
            Envelope {
                payload: vec![0xff; 9],
                signature: vec![1],
            }
            .encode_to_vec(),
            C::BadPayload.into(),
        ),
        (
            "no header",
            net.resign(&valid, &net.client, |p| p.header = None)
                .encode_to_vec(),
            C::BadCommonHeader.into(),
        ),
        (
            "tampered payload",
            Envelope {
                payload: {
                    let mut p = valid.payload.clone();
                    let n = p.len();
                    p[n - 1] ^= 1;
                    p
                },
                signature: valid.signature.clone(),
            }
            .encode_to_vec(),
            C::BadCreatorSignature.into(),
        ),
        (
            "creator from an org outside the channel",
            net.tx_spec(TxSpec {
                client: &stranger,
                ..net.spec(put())
            })
            .0
            .encode_to_vec(),
            C::BadCreatorSignature.into(),
        ),
        (
            "txid that is not hash(nonce, creator)",
            net.tx_spec(TxSpec {
                edit_txid: Some("00ff"),
                ..net.spec(put())
            })
            .0
            .encode_to_vec(),
            C::BadProposalTxid.into(),
        ),
        (
            "other channel",
            net.tx_spec(TxSpec {
                channel: "elsewhere",
                ..net.spec(put())
            })
            .0
            .encode_to_vec(),
            C::TargetChainNotFound.into(),
        ),
        (
            "config transaction",
            new_signed_envelope(
                Header {
                    channel_header: ChannelHeader {
                        r#type: HeaderType::Config as i32,
                        channel_id: CHANNEL.into(),
                        ..Default::default()
                    }
                    .encode_to_vec(),
                    signature_header: header.signature_header.clone(),
                },
                Vec::new(),
                &net.client,
            )
            .unwrap()
            .encode_to_vec(),
            C::UnknownTxType.into(),
        ),
        (
            "no chaincode extension",
            edit_channel_header(&|ch| ch.extension.clear()),
            C::BadHeaderExtension.into(),
        ),
        (
            "no timestamp",
            edit_channel_header(&|ch| ch.timestamp = None),
            C::BadChannelHeader.into(),
        ),
        (
            "no actions",
            net.resign(&valid, &net.client, |p| {
                p.data = Transaction::default().encode_to_vec()
            })
            .encode_to_vec(),
            C::NilTxaction.into(),
        ),
        (
            "endorsed error response",
            net.tx_spec(TxSpec {
                edit_action: Some(Box::new(|a| a.response.as_mut().unwrap().status = 500)),
                ..net.spec(put())
            })
            .0
            .encode_to_vec(),
            C::BadResponsePayload.into(),
        ),
        (
            "garbage read/write set",
            net.tx_spec(TxSpec {
                edit_action: Some(Box::new(|a| a.results = vec![0xff; 5])),
                ..net.spec(put())
            })
            .0
            .encode_to_vec(),
            C::BadRwset.into(),
        ),
        (
            "key written twice",
            net.tx(&rw::one(rw::put(
                rw::put(rw::ns("market"), "x", "1"),
                "x",
                "2",
            )))
            .0
            .encode_to_vec(),
            C::BadRwset.into(),
        ),
        (
            "action names another chaincode",
            net.tx_spec(TxSpec {
                edit_action: Some(Box::new(|a| {
                    a.chaincode_id.as_mut().unwrap().name = "notes".into()
                })),
                ..net.spec(put())
            })
            .0
            .encode_to_vec(),
            C::InvalidEndorserTransaction.into(),
        ),
        (
            "undefined chaincode",
            net.tx_spec(TxSpec {
                chaincode: "ghost",
                ..net.spec(rw::one(rw::put(rw::ns("ghost"), "a", "b")))
            })
            .0
            .encode_to_vec(),
            C::InvalidChaincode.into(),
        ),
        (
            "writes into an undefined namespace",
            net.tx(&rw::one(rw::put(rw::ns("ghost"), "a", "b")))
                .0
                .encode_to_vec(),
            C::InvalidChaincode.into(),
        ),
        (
            "one brand endorses a 2-of-2 chaincode",
            net.tx_spec(TxSpec {
                endorsers: vec![&net.peer1],
                ..net.spec(put())
            })
            .0
            .encode_to_vec(),
            C::EndorsementPolicyFailure.into(),
        ),
        (
            "a client endorses instead of a peer",
            net.tx_spec(TxSpec {
                endorsers: vec![&net.peer1, &brand1_client],
                ..net.spec(put())
            })
            .0
            .encode_to_vec(),
            C::EndorsementPolicyFailure.into(),
        ),
        (
            "tampered endorsement signature",
            broken_endorsement(&net, &valid, 1).encode_to_vec(),
            C::EndorsementPolicyFailure.into(),
        ),
        (
            "stale read",
            net.tx(&rw::one(rw::put(
                rw::read(rw::ns("market"), "k1", Some((0, 0))),
                "k1",
                "v9",
            )))
            .0
            .encode_to_vec(),
            C::MvccReadConflict.into(),
        ),
        (
            "read of a key believed absent",
            net.tx(&rw::one(rw::read(rw::ns("market"), "k1", None)))
                .0
                .encode_to_vec(),
            C::MvccReadConflict.into(),
        ),
        (
            "range that missed a key",
            net.tx(&rw::one(rw::range(
                rw::ns("market"),
                "r/",
                "r0",
                true,
                &[("r/a", (1, 0))],
            )))
            .0
            .encode_to_vec(),
            C::PhantomReadConflict.into(),
        ),
        (
            "delta below its bound",
            net.tx(&rw::one(rw::add(rw::ns("market"), "n", -51, Some(0))))
                .0
                .encode_to_vec(),
            ValidationCode::DELTA_BOUND_VIOLATION,
        ),
        (
            "delta on a non-number",
            net.tx(&rw::one(rw::add(rw::ns("market"), "word", 1, None)))
                .0
                .encode_to_vec(),
            ValidationCode::DELTA_INVALID_VALUE,
        ),
        (
            "delta that overflows",
            net.tx(&rw::one(rw::add(rw::ns("market"), "n", i64::MAX, None)))
                .0
                .encode_to_vec(),
            ValidationCode::DELTA_INVALID_VALUE,
        ),
    ];
    for (name, env, expected) in cases {
        assert_eq!(code_of(&net, env), expected, "{name}");
    }
}

#[test]
fn valid_reads_ranges_and_deltas_commit() {
    let net = Net::new(KeyAlgorithm::Ed25519);
    let (committer, b1) = base(&net);
    let ns = rw::read(rw::ns("market"), "k1", Some((1, 0)));
    let ns = rw::range(ns, "r/", "r0", true, &[("r/a", (1, 0)), ("r/c", (1, 0))]);
    let ns = rw::add(rw::put(ns, "k1", "v2"), "n", -50, Some(0));
    let (env, txid) = net.tx(&rw::one(ns));
    let out = committer
        .commit_block(net.block(2, &b1, vec![env.encode_to_vec()]))
        .unwrap();
    assert_eq!(out.txs[0].code, ValidationCode::VALID);
    assert_eq!(out.txs[0].txid.as_deref(), Some(txid.as_str()));
    let store = committer.store();
    assert_eq!(store.state("market", "k1").unwrap().unwrap().value, b"v2");
    assert_eq!(store.state("market", "n").unwrap().unwrap().value, b"0");
    let loc = store.tx_location(&txid).unwrap().unwrap();
    assert_eq!((loc.block, loc.tx, loc.code), (2, 0, 0));
    let history = store.history("market", "k1", None, 10).unwrap();
    assert_eq!(
        history.iter().map(|v| (v.block, v.tx)).collect::<Vec<_>>(),
        vec![(1, 0), (2, 0)]
    );
}

#[test]
fn duplicate_txid_in_the_block_and_in_the_ledger() {
    let net = Net::new(KeyAlgorithm::EcdsaP256);
    let (committer, b1) = base(&net);
    let (env, txid) = net.tx(&rw::one(rw::put(rw::ns("market"), "d", "1")));
    let b2 = net.block(2, &b1, vec![env.encode_to_vec(), env.encode_to_vec()]);
    let out = committer.commit_block(b2.clone()).unwrap();
    assert_eq!(out.txs[0].code, ValidationCode::VALID);
    assert_eq!(out.txs[1].code, C::DuplicateTxid.into());
    let out = committer
        .commit_block(net.block(3, &b2, vec![env.encode_to_vec()]))
        .unwrap();
    assert_eq!(out.txs[0].code, C::DuplicateTxid.into());
    // The index still points at the first, valid occurrence.
    let loc = committer.store().tx_location(&txid).unwrap().unwrap();
    assert_eq!((loc.block, loc.tx, loc.code), (2, 0, 0));
}

#[test]
fn a_repeated_txid_is_a_duplicate_whatever_else_is_wrong_with_it() {
    // The client re-signs its committed transaction with a broken endorsement: same nonce and
    // creator, so the same genuine txid. It is a duplicate (Fabric checks duplicates before
    // endorsements), and the index keeps pointing at the valid original.
    let net = Net::new(KeyAlgorithm::EcdsaP256);
    let (committer, b1) = base(&net);
    let (env, txid) = net.tx(&rw::one(rw::put(rw::ns("market"), "p", "1")));
    let broken = broken_endorsement(&net, &env, 0).encode_to_vec();
    assert_eq!(
        code_of(&net, broken.clone()),
        C::EndorsementPolicyFailure.into()
    );
    // In the same block after the original, and in a later block.
    let b2 = net.block(2, &b1, vec![env.encode_to_vec(), broken.clone()]);
    let out = committer.commit_block(b2.clone()).unwrap();
    assert_eq!(out.txs[0].code, ValidationCode::VALID);
    assert_eq!(out.txs[1].code, C::DuplicateTxid.into());
    let out = committer
        .commit_block(net.block(3, &b2, vec![broken]))
        .unwrap();
    assert_eq!(out.txs[0].code, C::DuplicateTxid.into());
    let loc = committer.store().tx_location(&txid).unwrap().unwrap();
    assert_eq!((loc.block, loc.tx, loc.code), (2, 0, 0));
}

#[test]
fn forged_txid_is_not_indexed() {
    // A transaction whose creator signature fails must not claim its txid: the real client's
    // transaction with that txid must still commit afterwards.
    let net = Net::new(KeyAlgorithm::EcdsaP256);
    let (committer, b1) = base(&net);
    let (env, txid) = net.tx(&rw::one(rw::put(rw::ns("market"), "f", "1")));
    let mut forged = env.clone();
    forged.signature = net.peer1.key().sign(&forged.payload).unwrap();
    let b2 = net.block(2, &b1, vec![forged.encode_to_vec()]);
    let out = committer.commit_block(b2.clone()).unwrap();
    assert_eq!(out.txs[0].code, C::BadCreatorSignature.into());
    assert!(committer.store().tx_location(&txid).unwrap().is_none());
    let out = committer
        .commit_block(net.block(3, &b2, vec![env.encode_to_vec()]))
        .unwrap();
    assert_eq!(out.txs[0].code, ValidationCode::VALID);
}
