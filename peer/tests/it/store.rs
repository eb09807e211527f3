//! The conformance suite every `LedgerStore` passes.

use mercato_peer::ledger::{
    BlockCommit, LedgerStore, MemLedgerStore, SledLedgerStore, StateUpdate, TxLocation, Version,
};

fn update(key: &str, value: Option<&str>, block: u64, tx: u64) -> StateUpdate {
    StateUpdate {
        namespace: "cc".into(),
        key: key.into(),
        value: value.map(|v| v.as_bytes().to_vec()),
        version: Version { block, tx },
    }
}

fn conformance(store: &dyn LedgerStore) {
    assert!(store.savepoint().unwrap().is_none());
    store
        .commit(&BlockCommit {
            number: 0,
            hash: [1; 32],
            block_bytes: b"block0".to_vec(),
            updates: vec![
                update("a", Some("1"), 0, 0),
                update("ab", Some("2"), 0, 1),
                update("b", Some("3"), 0, 1),
                update("\u{0}composite\u{0}key\u{0}", Some("4"), 0, 2),
            ],
            txids: vec![(
                "tx0".into(),
                TxLocation {
                    block: 0,
                    tx: 0,
                    code: 0,
                },
            )],
        })
        .unwrap();
    store
        .commit(&BlockCommit {
            number: 1,
            hash: [2; 32],
            block_bytes: b"block1".to_vec(),
            updates: vec![update("a", Some("5"), 1, 0), update("b", None, 1, 1)],
            txids: vec![(
                "tx1".into(),
                TxLocation {
                    block: 1,
                    tx: 1,
                    code: 11,
                },
            )],
        })
        .unwrap();
    let sp = store.savepoint().unwrap().unwrap();
    assert_eq!((sp.number, sp.hash, sp.height()), (1, [2; 32], 2));
    let a = store.state("cc", "a").unwrap().unwrap();
    assert_eq!(
        (a.value.as_slice(), a.version),
        (&b"5"[..], Version { block: 1, tx: 0 })
    );
    assert!(store.state("cc", "b").unwrap().is_none());
    assert!(store.state("other", "a").unwrap().is_none());
    let composite = store
        .state("cc", "\u{0}composite\u{0}key\u{0}")
        .unwrap()
        .unwrap();
    assert_eq!(composite.value, b"4");

    let keys = |start: &str, end: &str, limit: usize| -> Vec<String> {
        store
            .state_range("cc", start, end, limit)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    };
    assert_eq!(keys("a", "", 10), vec!["a", "ab"]);
    assert_eq!(
        keys("", "", 10),
        vec!["\u{0}composite\u{0}key\u{0}", "a", "ab"]
    );
    assert_eq!(keys("a", "ab", 10), vec!["a"]);
    assert_eq!(keys("", "", 1).len(), 1);
    // A start after the end is an empty range, not a panic (chaincodes and clients send both).
    assert!(keys("b", "a", 10).is_empty());

    // History of "a" does not include "ab".
    let history = store.history("cc", "a", None, 10).unwrap();
    assert_eq!(
        history,
        vec![Version { block: 0, tx: 0 }, Version { block: 1, tx: 0 }]
    );
    assert_eq!(store.history("cc", "b", None, 10).unwrap().len(), 2);
    assert_eq!(store.history("cc", "a", None, 1).unwrap().len(), 1);
    // A page after a version goes on past it; "ab" is still not included.
    assert_eq!(
        store
            .history("cc", "a", Some(Version { block: 0, tx: 0 }), 10)
            .unwrap(),
        vec![Version { block: 1, tx: 0 }]
    );
    assert!(
        store
            .history("cc", "a", Some(Version { block: 1, tx: 0 }), 10)
            .unwrap()
            .is_empty()
    );

    assert_eq!(store.block(1).unwrap().unwrap(), b"block1");
    assert!(store.block(2).unwrap().is_none());
    assert_eq!(store.block_number_by_hash(&[1; 32]).unwrap(), Some(0));
    assert_eq!(store.block_number_by_hash(&[9; 32]).unwrap(), None);
    assert_eq!(
        store.tx_location("tx1").unwrap(),
        Some(TxLocation {
            block: 1,
            tx: 1,
            code: 11
        })
    );
    assert!(store.tx_location("nope").unwrap().is_none());

    let snapshot = store.state_snapshot().unwrap();
    assert_eq!(snapshot.len(), 3);
    assert!(
        snapshot
            .windows(2)
            .all(|w| (&w[0].0, &w[0].1) < (&w[1].0, &w[1].1))
    );
}

/// Keys written once, superseded, deleted and written again, within one block and across
/// blocks: a key's history is every version that wrote it, oldest first, deletions included.
fn history_conformance(store: &dyn LedgerStore) {
    let commit = |number: u64, updates: Vec<StateUpdate>| {
        store
            .commit(&BlockCommit {
                number,
                hash: [number as u8 + 1; 32],
                block_bytes: format!("block{number}").into_bytes(),
                updates,
                txids: vec![],
            })
            .unwrap();
    };
    let v = |block, tx| Version { block, tx };
    commit(
        0,
        vec![
            update("once", Some("1"), 0, 0),
            update("c", Some("1"), 0, 1),
            update("c", Some("2"), 0, 2),
            update("c", None, 0, 3),
            update("c", Some("3"), 0, 4),
            update("gone", None, 0, 5),
        ],
    );
    commit(
        1,
        vec![
            update("c", Some("4"), 1, 0),
            update("once-more", Some("1"), 1, 1),
        ],
    );
    commit(
        2,
        vec![update("c", None, 2, 0), update("once-more", None, 2, 1)],
    );
    commit(3, vec![update("c", Some("5"), 3, 0)]);

    let history = |key: &str, after: Option<Version>, limit: usize| {
        store.history("cc", key, after, limit).unwrap()
    };
    assert_eq!(history("once", None, 10), vec![v(0, 0)]);
    assert!(history("once", Some(v(0, 0)), 10).is_empty());
    // A deletion of a key that never existed is still the transaction that deleted it.
    assert_eq!(history("gone", None, 10), vec![v(0, 5)]);
    assert_eq!(history("once-more", None, 10), vec![v(1, 1), v(2, 1)]);
    let all = vec![
        v(0, 1),
        v(0, 2),
        v(0, 3),
        v(0, 4),
        v(1, 0),
        v(2, 0),
        v(3, 0),
    ];
    assert_eq!(history("c", None, 100), all);
    // Pages of any size, after any version, put together are the whole history.
    for limit in 1..=all.len() {
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = history("c", after, limit);
            assert!(page.len() <= limit);
            match page.last() {
                Some(last) => after = Some(*last),
                None => break,
            }
            paged.extend(page);
        }
        assert_eq!(paged, all, "pages of {limit}");
    }
    assert_eq!(history("c", Some(v(1, 5)), 2), vec![v(2, 0), v(3, 0)]);
    assert_eq!(store.state("cc", "c").unwrap().unwrap().value, b"5");
    assert!(store.state("cc", "once-more").unwrap().is_none());
}

#[test]
fn mem_store_conforms() {
    conformance(&MemLedgerStore::new());
    history_conformance(&MemLedgerStore::new());
}

#[test]
fn sled_store_keeps_every_version_in_its_history() {
    let dir = tempfile::tempdir().unwrap();
    history_conformance(&SledLedgerStore::open(dir.path(), "ch").unwrap());
}

#[test]
fn sled_store_conforms_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledLedgerStore::open(dir.path(), "ch").unwrap();
        conformance(&store);
    }
    // sled's threads let go of the lock a moment after the store is dropped.
    let reopened = (0..300)
        .find_map(|_| match SledLedgerStore::open(dir.path(), "ch") {
            Err(e) if e.to_string().contains("acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(10));
                None
            }
            other => Some(other.unwrap()),
        })
        .expect("the ledger stayed locked");
    assert_eq!(reopened.savepoint().unwrap().unwrap().number, 1);
    assert_eq!(reopened.state("cc", "a").unwrap().unwrap().value, b"5");
    // Channels are separate ledgers.
    let other = SledLedgerStore::open(&dir.path().join("x"), "other").unwrap();
    assert!(other.savepoint().unwrap().is_none());
}
