//! The verify → commit pipeline, block events, and rebuilding state from blocks.

use std::sync::{Arc, Mutex, OnceLock, Weak};

use mercato_ca::KeyAlgorithm;
use mercato_peer::committer::{Committer, rebuild, stored_commit_hash};
use mercato_peer::ledger::{
    BlockCommit, LedgerStore, MemLedgerStore, Savepoint, SledLedgerStore, TxLocation, Version,
    VersionedValue,
};
use mercato_proto::pb::common::Envelope;
use mercato_proto::{TxValidationCode, ValidationCode};
use prost::Message;

use crate::fixture::{Net, TxSpec, rw};

#[test]
fn pipeline_commits_in_order_and_notifies_with_events() {
    let net = Net::new(KeyAlgorithm::Ed25519);
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn LedgerStore> =
        Arc::new(SledLedgerStore::open(dir.path(), "commerce").unwrap());
    let committer = Arc::new(Committer::new(store, Arc::new(net.context_with(2))).unwrap());
    let mut events = committer.subscribe();
    let genesis = net.genesis();
    committer.commit_genesis(genesis.clone()).unwrap();

    let pipeline = committer.start_pipeline(2);
    let mut previous = genesis;
    let mut txids = Vec::new();
    for b in 1..=6u64 {
        let mut txs = Vec::new();
        for i in 0..20 {
            let ns = rw::add(
                rw::put(rw::ns("market"), &format!("k{b}-{i}"), "v"),
                "total",
                1,
                None,
            );
            let (env, txid) = net.tx_spec(TxSpec {
                event: Some("OrderPlaced"),
                ..net.spec(rw::one(ns))
            });
            txs.push(env.encode_to_vec());
            txids.push(txid);
        }
        let block = net.block(b, &previous, txs);
        pipeline.submit(block.clone()).unwrap();
        previous = block;
    }
    assert_eq!(pipeline.finish(), None);
    assert_eq!(committer.height(), 7);

    let genesis_event = events.try_recv().unwrap();
    assert_eq!(genesis_event.number, 0);
    for b in 1..=6u64 {
        let e = events.try_recv().unwrap();
        assert_eq!(e.number, b);
        assert_eq!(e.txs.len(), 20);
        for t in &e.txs {
            assert_eq!(t.code, ValidationCode::VALID);
            assert_eq!(t.event.as_ref().unwrap().event_name, "OrderPlaced");
        }
    }
    let store = committer.store();
    assert_eq!(
        store.state("market", "total").unwrap().unwrap().value,
        b"120"
    );
    for txid in &txids {
        assert_eq!(store.tx_location(txid).unwrap().unwrap().code, 0);
    }
}

#[test]
fn pipeline_judges_chunked_blocks_as_a_serial_commit_does() {
    // Blocks of 150 transactions verified by 2 workers are split into 2 chunks of 75; the codes
    // must come back in transaction order, duplicates across chunks included.
    let net = Net::new(KeyAlgorithm::Ed25519);
    let peer = |threads| {
        let store: Arc<dyn LedgerStore> = Arc::new(MemLedgerStore::new());
        Arc::new(Committer::new(store, Arc::new(net.context_with(threads))).unwrap())
    };
    let (piped, serial) = (peer(2), peer(1));
    let genesis = net.genesis();
    piped.commit_genesis(genesis.clone()).unwrap();
    serial.commit_genesis(genesis.clone()).unwrap();
    let mut events = piped.subscribe();
    let pipeline = piped.start_pipeline(2);
    let mut previous = genesis;
    let mut expected = Vec::new();
    for b in 1..=3u64 {
        let mut txs = Vec::new();
        let mut repeated = Envelope::default();
        for i in 0..150usize {
            let ns = rw::put(rw::ns("market"), &format!("k{b}-{i}"), "v");
            let env = if i % 37 == 5 {
                // Endorsed by one brand only: the policy wants both.
                let rwset = rw::one(ns);
                net.tx_by(&net.client, "market", &rwset, &[&net.peer1], None)
                    .0
            } else if i == 120 {
                repeated.clone()
            } else {
                let env = net.tx(&rw::one(ns)).0;
                if i == 10 {
                    repeated = env.clone();
                }
                env
            };
            txs.push(env.encode_to_vec());
        }
        let block = net.block(b, &previous, txs);
        let outcome = serial.commit_block(block.clone()).unwrap();
        expected.push(outcome.txs.iter().map(|t| t.code).collect::<Vec<_>>());
        pipeline.submit(block.clone()).unwrap();
        previous = block;
    }
    assert_eq!(pipeline.finish(), None);
    for (b, codes) in expected.iter().enumerate() {
        let e = events.try_recv().unwrap();
        assert_eq!(e.number, b as u64 + 1);
        let got: Vec<_> = e.txs.iter().map(|t| t.code).collect();
        assert_eq!(&got, codes, "block {}", e.number);
        assert_eq!(codes[5], TxValidationCode::EndorsementPolicyFailure.into());
        assert_eq!(codes[120], TxValidationCode::DuplicateTxid.into());
        let valid = codes
            .iter()
            .filter(|c| **c == ValidationCode::VALID)
            .count();
        // Four one-brand endorsements (5, 42, 79, 116) and one duplicate.
        assert_eq!(valid, 150 - 4 - 1);
    }
    assert_eq!(piped.commit_hash(), serial.commit_hash());
}

#[test]
fn pipeline_skips_a_refused_block_and_reports_it() {
    let net = Net::new(KeyAlgorithm::EcdsaP256);
    let store: Arc<dyn LedgerStore> = Arc::new(MemLedgerStore::new());
    let committer = Arc::new(Committer::new(store, Arc::new(net.context())).unwrap());
    let genesis = net.genesis();
    committer.commit_genesis(genesis.clone()).unwrap();
    let (tx, _) = net.tx(&rw::one(rw::put(rw::ns("market"), "k", "v")));
    let good = net.block(1, &genesis, vec![tx.encode_to_vec()]);
    let mut bad = good.clone();
    bad.data.as_mut().unwrap().data[0] = b"x".to_vec();
    let pipeline = committer.start_pipeline(1);
    pipeline.submit(bad).unwrap();
    pipeline.submit(good).unwrap();
    let failure = pipeline.finish().unwrap();
    assert!(failure.contains("block 1 refused"), "{failure}");
    assert_eq!(committer.height(), 2);
}

#[test]
fn state_rebuilt_from_blocks_equals_the_committed_state() {
    let net = Net::new(KeyAlgorithm::EcdsaP256);
    let store: Arc<dyn LedgerStore> = Arc::new(MemLedgerStore::new());
    let committer = Arc::new(Committer::new(Arc::clone(&store), Arc::new(net.context())).unwrap());
    let mut previous = net.genesis();
    committer.commit_genesis(previous.clone()).unwrap();
    for b in 1..=4u64 {
        let mut txs = Vec::new();
        for i in 0..10u64 {
            // A mix of writes, conflicting reads, deletes and bounded deltas.
            let ns = rw::put(
                rw::ns("market"),
                &format!("k{}", (b + i) % 7),
                &format!("{b}-{i}"),
            );
            let ns = if i % 3 == 0 {
                rw::read(ns, "k1", Some((1, 0)))
            } else {
                ns
            };
            let ns = if i % 4 == 0 {
                rw::del(ns, &format!("gone{i}"))
            } else {
                ns
            };
            let ns = rw::add(ns, "pool", if i % 2 == 0 { 5 } else { -7 }, Some(0));
            txs.push(net.tx(&rw::one(ns)).0.encode_to_vec());
        }
        let block = net.block(b, &previous, txs);
        committer.commit_block(block.clone()).unwrap();
        previous = block;
    }
    let rebuilt = MemLedgerStore::new();
    assert_eq!(rebuild(store.as_ref(), &rebuilt).unwrap(), 5);
    assert_eq!(
        rebuilt.state_snapshot().unwrap(),
        store.state_snapshot().unwrap()
    );
    assert_eq!(rebuilt.savepoint().unwrap(), store.savepoint().unwrap());
    assert_eq!(
        stored_commit_hash(&rebuilt, 4).unwrap(),
        Some(committer.commit_hash())
    );
    assert_eq!(
        rebuilt.history("market", "k1", None, 100).unwrap(),
        store.history("market", "k1", None, 100).unwrap()
    );
}

#[test]
fn peers_committing_the_same_blocks_agree_on_the_commit_hash() {
    let net = Net::new(KeyAlgorithm::Ed25519);
    let peer = || {
        let store: Arc<dyn LedgerStore> = Arc::new(MemLedgerStore::new());
        Committer::new(store, Arc::new(net.context())).unwrap()
    };
    let (a, b, other) = (peer(), peer(), peer());
    let genesis = net.genesis();
    for c in [&a, &b, &other] {
        c.commit_genesis(genesis.clone()).unwrap();
    }
    assert_eq!(a.commit_hash(), b.commit_hash());
    let write = |value: &str| {
        let ns = rw::put(rw::ns("market"), "k", value);
        net.tx(&rw::one(ns)).0.encode_to_vec()
    };
    let block = net.block(1, &genesis, vec![write("v1"), write("v2")]);
    a.commit_block(block.clone()).unwrap();
    b.commit_block(block).unwrap();
    // The same block number and codes with another value written: another hash.
    other
        .commit_block(net.block(1, &genesis, vec![write("v1"), write("v3")]))
        .unwrap();
    assert_eq!(a.commit_hash(), b.commit_hash());
    assert_ne!(a.commit_hash(), other.commit_hash());
    assert_ne!(a.commit_hash(), [0; 32]);
    // Each block records it, and a committer resuming on the ledger goes on from it.
    assert_eq!(
        stored_commit_hash(a.store().as_ref(), 1).unwrap(),
        Some(a.commit_hash())
    );
    let resumed = Committer::new(Arc::clone(a.store()), Arc::new(net.context())).unwrap();
    assert_eq!(resumed.commit_hash(), a.commit_hash());
}

#[test]
fn rebuild_command_checks_a_ledger_directory() {
    let net = Net::new(KeyAlgorithm::Ed25519);
    let dir = tempfile::tempdir().unwrap();
    {
        let store: Arc<dyn LedgerStore> =
            Arc::new(SledLedgerStore::open(dir.path(), "commerce").unwrap());
        let committer = Committer::new(store, Arc::new(net.context())).unwrap();
        let genesis = net.genesis();
        committer.commit_genesis(genesis.clone()).unwrap();
        let txs = (0..5)
            .map(|i| {
                net.tx(&rw::one(rw::add(
                    rw::put(rw::ns("market"), &format!("k{i}"), "v"),
                    "n",
                    2,
                    None,
                )))
                .0
                .encode_to_vec()
            })
            .collect();
        committer.commit_block(net.block(1, &genesis, txs)).unwrap();
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mercato-peer"))
        .args(["rebuild", "--channel", "commerce", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("rebuilt 2 blocks: 6 keys, identical to the stored state"),
        "{stdout}"
    );
    // A channel name that cannot be a directory is refused with a clear message.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mercato-peer"))
        .args(["rebuild", "--channel", "bad/name", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid channel name"));
}

/// A store that notes, as each block is written, the heights its committer then reports.
#[derive(Default)]
struct Watched {
    inner: MemLedgerStore,
    committer: OnceLock<Weak<Committer>>,
    /// (block, visible height, height) while the block was being written.
    seen: Mutex<Vec<(u64, u64, u64)>>,
    /// Whether the next commit fails, as a full disk would make it.
    fail: std::sync::atomic::AtomicBool,
}

impl LedgerStore for Watched {
    fn savepoint(&self) -> mercato_peer::Result<Option<Savepoint>> {
        self.inner.savepoint()
    }
    fn commit(&self, c: &BlockCommit) -> mercato_peer::Result<()> {
        if let Some(committer) = self.committer.get().and_then(Weak::upgrade) {
            let heights = (c.number, committer.visible_height(), committer.height());
            self.seen.lock().unwrap().push(heights);
        }
        if self.fail.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(mercato_peer::Error::Storage("the disk is full".into()));
        }
        self.inner.commit(c)
    }
    fn state(&self, ns: &str, key: &str) -> mercato_peer::Result<Option<VersionedValue>> {
        self.inner.state(ns, key)
    }
    fn state_range(
        &self,
        ns: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> mercato_peer::Result<Vec<(String, VersionedValue)>> {
        self.inner.state_range(ns, start, end, limit)
    }
    fn state_range_versions(
        &self,
        ns: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> mercato_peer::Result<Vec<(String, Version)>> {
        self.inner.state_range_versions(ns, start, end, limit)
    }
    fn block(&self, number: u64) -> mercato_peer::Result<Option<Vec<u8>>> {
        self.inner.block(number)
    }
    fn block_number_by_hash(&self, hash: &[u8]) -> mercato_peer::Result<Option<u64>> {
        self.inner.block_number_by_hash(hash)
    }
    fn tx_location(&self, txid: &str) -> mercato_peer::Result<Option<TxLocation>> {
        self.inner.tx_location(txid)
    }
    fn history(
        &self,
        ns: &str,
        key: &str,
        after: Option<Version>,
        limit: usize,
    ) -> mercato_peer::Result<Vec<Version>> {
        self.inner.history(ns, key, after, limit)
    }
    fn state_snapshot(&self) -> mercato_peer::Result<Vec<(String, String, VersionedValue)>> {
        self.inner.state_snapshot()
    }
}

/// A block's writes and txids are readable in the store before its commit returns and the
/// height moves. A client told by the txid index that its transaction committed may submit the
/// next one at once, and the gateway then tells the other endorsers the height to wait for: that
/// must be the block's, already while the store is writing it.
#[test]
fn the_visible_height_covers_a_block_while_it_is_written() {
    let net = Net::new(KeyAlgorithm::Ed25519);
    let store = Arc::new(Watched::default());
    let committer = Arc::new(
        Committer::new(
            Arc::clone(&store) as Arc<dyn LedgerStore>,
            Arc::new(net.context()),
        )
        .unwrap(),
    );
    assert!(store.committer.set(Arc::downgrade(&committer)).is_ok());
    let genesis = net.genesis();
    committer.commit_genesis(genesis.clone()).unwrap();
    assert_eq!(committer.visible_height(), 1);
    let mut previous = genesis;
    for b in 1..=3u64 {
        let ns = rw::put(rw::ns("market"), &format!("k{b}"), "v");
        let block = net.block(b, &previous, vec![net.tx(&rw::one(ns)).0.encode_to_vec()]);
        committer.commit_block(block.clone()).unwrap();
        assert_eq!(
            (committer.visible_height(), committer.height()),
            (b + 1, b + 1)
        );
        previous = block;
    }
    // A block that does not continue the chain is refused before anything is written.
    let stray = net.block(9, &previous, vec![]);
    assert!(committer.commit_block(stray).is_err());
    assert_eq!(committer.visible_height(), 4);
    // A block the store fails to write was never visible.
    store.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let ns = rw::put(rw::ns("market"), "k4", "v");
    let block = net.block(4, &previous, vec![net.tx(&rw::one(ns)).0.encode_to_vec()]);
    assert!(committer.commit_block(block).is_err());
    assert_eq!((committer.visible_height(), committer.height()), (4, 4));
    let seen = store.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [(0, 1, 0), (1, 2, 1), (2, 3, 2), (3, 4, 3), (4, 5, 4)]
    );
}
