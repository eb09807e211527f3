//! Stage 2 inside one block: later transactions see the writes of earlier valid ones.

use std::sync::Arc;

use mercato_ca::KeyAlgorithm;
use mercato_peer::committer::Committer;
use mercato_peer::ledger::{LedgerStore, MemLedgerStore};
use mercato_proto::pb::common::Block;
use mercato_proto::{TxValidationCode as C, ValidationCode};
use prost::Message;

use crate::fixture::{Net, rw};

fn started(net: &Net, threads: usize) -> (Arc<Committer>, Block) {
    let store: Arc<dyn LedgerStore> = Arc::new(MemLedgerStore::new());
    let committer = Arc::new(Committer::new(store, Arc::new(net.context_with(threads))).unwrap());
    let genesis = net.genesis();
    committer.commit_genesis(genesis.clone()).unwrap();
    (committer, genesis)
}

fn codes(out: &mercato_peer::committer::BlockEvent) -> Vec<ValidationCode> {
    out.txs.iter().map(|t| t.code).collect()
}

#[test]
fn second_reader_of_a_key_written_in_the_same_block_conflicts() {
    let net = Net::new(KeyAlgorithm::EcdsaP256);
    let (c, g) = started(&net, 1);
    let (seed, _) = net.tx(&rw::one(rw::put(rw::ns("market"), "stock", "10")));
    let b1 = net.block(1, &g, vec![seed.encode_to_vec()]);
    c.commit_block(b1.clone()).unwrap();
    // Two buyers both read stock at (1,0) and decrement it: only the first may commit.
    let buy = |left: &str| {
        net.tx(&rw::one(rw::put(
            rw::read(rw::ns("market"), "stock", Some((1, 0))),
            "stock",
            left,
        )))
        .0
    };
    let b2 = net.block(
        2,
        &b1,
        vec![buy("9").encode_to_vec(), buy("9").encode_to_vec()],
    );
    let out = c.commit_block(b2).unwrap();
    assert_eq!(
        codes(&out),
        vec![ValidationCode::VALID, C::MvccReadConflict.into()]
    );
    assert_eq!(
        c.store().state("market", "stock").unwrap().unwrap().value,
        b"9"
    );
}

#[test]
fn insert_into_a_scanned_range_earlier_in_the_block_is_a_phantom() {
    let net = Net::new(KeyAlgorithm::EcdsaP256);
    let (c, g) = started(&net, 1);
    let (seed, _) = net.tx(&rw::one(rw::put(rw::ns("market"), "order/1", "x")));
    let b1 = net.block(1, &g, vec![seed.encode_to_vec()]);
    c.commit_block(b1.clone()).unwrap();
    let (insert, _) = net.tx(&rw::one(rw::put(rw::ns("market"), "order/2", "y")));
    let (scan, _) = net.tx(&rw::one(rw::put(
        rw::range(
            rw::ns("market"),
            "order/",
            "order0",
            true,
            &[("order/1", (1, 0))],
        ),
        "summary",
        "1 order",
    )));
    // A scan that stopped early (not exhausted) after order/1 is not affected by order/2.
    let (partial, _) = net.tx(&rw::one(rw::put(
        rw::range(
            rw::ns("market"),
            "order/",
            "order0",
            false,
            &[("order/1", (1, 0))],
        ),
        "first",
        "order/1",
    )));
    let b2 = net.block(
        2,
        &b1,
        vec![
            insert.encode_to_vec(),
            scan.encode_to_vec(),
            partial.encode_to_vec(),
        ],
    );
    let out = c.commit_block(b2).unwrap();
    assert_eq!(
        codes(&out),
        vec![
            ValidationCode::VALID,
            C::PhantomReadConflict.into(),
            ValidationCode::VALID
        ]
    );
}

#[test]
fn deleted_key_reads_as_absent_later_in_the_block() {
    let net = Net::new(KeyAlgorithm::EcdsaP256);
    let (c, g) = started(&net, 1);
    let (seed, _) = net.tx(&rw::one(rw::put(rw::ns("market"), "cart", "full")));
    let b1 = net.block(1, &g, vec![seed.encode_to_vec()]);
    c.commit_block(b1.clone()).unwrap();
    let (delete, _) = net.tx(&rw::one(rw::del(rw::ns("market"), "cart")));
    let (absent, _) = net.tx(&rw::one(rw::put(
        rw::read(rw::ns("market"), "cart", None),
        "cart",
        "new",
    )));
    let b2 = net.block(2, &b1, vec![delete.encode_to_vec(), absent.encode_to_vec()]);
    let out = c.commit_block(b2).unwrap();
    assert_eq!(
        codes(&out),
        vec![ValidationCode::VALID, ValidationCode::VALID]
    );
    assert_eq!(
        c.store().state("market", "cart").unwrap().unwrap().value,
        b"new"
    );
}

/// Two hundred orders in one block all credit the platform fee account and the brand's revenue:
/// with deltas none of them conflicts, and the totals add up.
#[test]
fn two_hundred_concurrent_credits_to_one_fee_account_all_commit() {
    let net = Net::new(KeyAlgorithm::Ed25519);
    let (c, g) = started(&net, 2);
    let mut txs = Vec::new();
    for i in 0..200 {
        let ns = rw::put(rw::ns("market"), &format!("order/{i:03}"), "paid");
        let ns = rw::add(
            rw::add(ns, "fee/platform", 3, None),
            "revenue/brand1",
            97,
            None,
        );
        txs.push(net.tx(&rw::one(ns)).0.encode_to_vec());
    }
    let out = c.commit_block(net.block(1, &g, txs)).unwrap();
    assert!(
        out.txs.iter().all(|t| t.code.is_valid()),
        "{:?}",
        codes(&out)
    );
    let store = c.store();
    assert_eq!(
        store
            .state("market", "fee/platform")
            .unwrap()
            .unwrap()
            .value,
        b"600"
    );
    assert_eq!(
        store
            .state("market", "revenue/brand1")
            .unwrap()
            .unwrap()
            .value,
        b"19400"
    );
}

#[test]
fn debits_stop_exactly_at_the_bound() {
    let net = Net::new(KeyAlgorithm::EcdsaP256);
    let (c, g) = started(&net, 1);
    let (seed, _) = net.tx(&rw::one(rw::add(rw::ns("market"), "wallet/bob", 25, None)));
    let b1 = net.block(1, &g, vec![seed.encode_to_vec()]);
    c.commit_block(b1.clone()).unwrap();
    // Three debits of 10 with a floor of 0: the third would go to -5.
    let debit = || {
        net.tx(&rw::one(rw::add(
            rw::ns("market"),
            "wallet/bob",
            -10,
            Some(0),
        )))
        .0
        .encode_to_vec()
    };
    let out = c
        .commit_block(net.block(2, &b1, vec![debit(), debit(), debit()]))
        .unwrap();
    assert_eq!(
        codes(&out),
        vec![
            ValidationCode::VALID,
            ValidationCode::VALID,
            ValidationCode::DELTA_BOUND_VIOLATION
        ]
    );
    assert_eq!(
        c.store()
            .state("market", "wallet/bob")
            .unwrap()
            .unwrap()
            .value,
        b"5"
    );
}

#[test]
fn tampered_blocks_are_refused_and_change_nothing() {
    let net = Net::new(KeyAlgorithm::EcdsaP256);
    let (c, g) = started(&net, 1);
    let (tx, _) = net.tx(&rw::one(rw::put(rw::ns("market"), "k", "v")));
    let good = net.block(1, &g, vec![tx.encode_to_vec()]);

    // Signed by someone who is not an orderer.
    let mut by_client = mercato_proto::block::new_block(
        1,
        good.header.as_ref().unwrap().previous_hash.clone(),
        vec![tx.encode_to_vec()],
    );
    mercato_proto::block::sign_block(&mut by_client, Vec::new(), &net.client, vec![1]).unwrap();
    // A transaction swapped after signing: the data hash no longer matches.
    let mut swapped = good.clone();
    swapped.data.as_mut().unwrap().data[0] = b"other".to_vec();
    // A block that does not continue the chain.
    let unchained = net.block(1, &good, vec![tx.encode_to_vec()]);
    // A number that skips ahead.
    let ahead = net.block(2, &g, vec![tx.encode_to_vec()]);
    // No signature at all.
    let unsigned = mercato_proto::block::new_block(
        1,
        good.header.as_ref().unwrap().previous_hash.clone(),
        vec![tx.encode_to_vec()],
    );

    for (name, block) in [
        ("signed by a client", by_client),
        ("data swapped", swapped),
        ("broken hash chain", unchained),
        ("skips a number", ahead),
        ("unsigned", unsigned),
    ] {
        let err = c.commit_block(block).unwrap_err();
        assert!(
            matches!(err, mercato_peer::Error::InvalidBlock { .. }),
            "{name}: {err}"
        );
        assert_eq!(c.height(), 1, "{name}");
        assert!(c.store().state("market", "k").unwrap().is_none(), "{name}");
    }
    c.commit_block(good).unwrap();
    assert_eq!(c.height(), 2);
}
