//! The Raft storage: openraft's own storage suite, and the state machine's rules for blocks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use mercato_orderer::consensus::{
    Applied, BlockProposal, ChainSource, LogStore, StateMachine, TypeConfig,
};
use mercato_orderer::ledger::Ledger;
use mercato_proto::block::new_block;
use mercato_proto::hash::block_header_hash;
use mercato_proto::pb::common::Block;
use openraft::storage::RaftStateMachine;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, StorageError,
};
use prost::Message;

fn genesis() -> Block {
    new_block(0, Vec::new(), vec![b"genesis configuration".to_vec()])
}

fn open(dir: &std::path::Path) -> (LogStore, StateMachine) {
    // sled's background threads may hold a dropped database's lock for a moment.
    let db = (0..500)
        .find_map(|_| {
            sled::Config::new().path(dir).open().ok().or_else(|| {
                std::thread::sleep(std::time::Duration::from_millis(10));
                None
            })
        })
        .unwrap_or_else(|| panic!("{} stayed locked", dir.display()));
    let ledger = Ledger::open(&db, &dir.join("blocks"), &genesis()).unwrap();
    (
        LogStore::open(&db, &dir.join("raft-log")).unwrap(),
        StateMachine::new(ledger),
    )
}

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().unwrap();
        let (log, sm) = open(dir.path());
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).unwrap();
}

fn entry(index: u64, block: &Block) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(BlockProposal {
            block: block.encode_to_vec(),
        }),
    }
}

#[tokio::test]
async fn blocks_that_continue_the_chain_are_appended_and_others_skipped_durably() {
    let dir = tempfile::tempdir().unwrap();
    let g = genesis();
    let b1 = new_block(
        1,
        block_header_hash(g.header.as_ref().unwrap()).to_vec(),
        vec![vec![1]],
    );
    let b2 = new_block(
        2,
        block_header_hash(b1.header.as_ref().unwrap()).to_vec(),
        vec![vec![2]],
    );
    let wrong_parent = new_block(2, vec![7; 32], vec![vec![3]]);
    let mut tampered = b2.clone();
    tampered.data.as_mut().unwrap().data[0].push(9);
    {
        let (_, mut sm) = open(dir.path());
        let results = sm
            .apply([
                entry(1, &b1),
                entry(2, &wrong_parent),
                entry(3, &tampered),
                entry(4, &b1),
                entry(5, &b2),
            ])
            .await
            .unwrap();
        assert_eq!(results[0], Applied::Appended { number: 1 });
        for (i, r) in results[1..4].iter().enumerate() {
            assert!(
                matches!(r, Applied::Skipped { .. }),
                "entry {}: {r:?}",
                i + 2
            );
        }
        assert_eq!(results[4], Applied::Appended { number: 2 });
        assert_eq!(sm.ledger().height(), 3);
    }
    // Reopened: the chain and the applied log id survived.
    let (_, mut sm) = open(dir.path());
    assert_eq!(sm.ledger().height(), 3);
    assert_eq!(sm.ledger().block(2).unwrap().unwrap(), b2.encode_to_vec());
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(5));
    // A ledger cannot be reopened from another genesis block.
    let db = sled::Config::new()
        .path(dir.path().join("other"))
        .open()
        .unwrap();
    let blocks = dir.path().join("other-blocks");
    Ledger::open(&db, &blocks, &g).unwrap();
    let other = new_block(0, Vec::new(), vec![b"another channel".to_vec()]);
    drop(sm);
    let e = Ledger::open(&db, &blocks, &other).unwrap_err().to_string();
    assert!(e.contains("another genesis block"), "{e}");
}

/// The block after `previous`, holding one transaction: `data`.
fn after(previous: &Block, data: Vec<u8>) -> Block {
    let header = previous.header.as_ref().unwrap();
    new_block(
        header.number + 1,
        block_header_hash(header).to_vec(),
        vec![data],
    )
}

/// A chain of `n` blocks after the genesis block, each holding `tag`.
fn chain(n: u64, tag: u8) -> Vec<Block> {
    let mut previous = genesis();
    let mut blocks = Vec::new();
    for number in 1..=n {
        let block = after(&previous, vec![tag; 100 * number as usize]);
        previous = block.clone();
        blocks.push(block);
    }
    blocks
}

/// Applies `blocks` as the log entries from index `first` on; each must be appended.
async fn apply_chain(sm: &mut StateMachine, first: u64, blocks: &[Block]) {
    let entries: Vec<_> = blocks
        .iter()
        .enumerate()
        .map(|(i, b)| entry(first + i as u64, b))
        .collect();
    let results = sm.apply(entries).await.unwrap();
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Applied::Appended { .. }))
    );
}

/// Serves a ledger's blocks two at a time, as another consenter would.
struct Serves(Ledger);

#[tonic::async_trait]
impl ChainSource for Serves {
    async fn blocks(&self, node: u64, _: &str, from: u64, to: u64) -> Result<Vec<Vec<u8>>, String> {
        assert_eq!(node, 2, "blocks are asked of the snapshot's builder first");
        (from..to.min(self.0.height()).min(from + 2))
            .map(|n| Ok(self.0.block(n).unwrap().unwrap()))
            .collect()
    }
}

/// A state machine of node 2 holding `blocks` after the genesis block, in a cluster of nodes
/// 1 and 2.
async fn builder(dir: &std::path::Path, blocks: &[Block]) -> StateMachine {
    let ledger = open(dir).1.ledger().clone();
    let mut sm = StateMachine::with_source(ledger.clone(), 2, Arc::new(Serves(ledger)));
    let nodes: BTreeMap<u64, BasicNode> =
        [(1, BasicNode::new("a")), (2, BasicNode::new("b"))].into();
    let membership = Membership::new(vec![nodes.keys().copied().collect::<BTreeSet<_>>()], nodes);
    sm.apply([Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 2), 1),
        payload: EntryPayload::Membership(membership),
    }])
    .await
    .unwrap();
    apply_chain(&mut sm, 2, blocks).await;
    sm
}

#[tokio::test]
async fn a_snapshot_ahead_of_the_chain_is_installed_with_fetched_blocks_and_survives_a_restart() {
    use openraft::storage::RaftSnapshotBuilder;
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let blocks = chain(5, 1);
    let mut other = builder(theirs.path(), &blocks).await;
    let snapshot = other.build_snapshot().await.unwrap();
    // The snapshot is a summary, whatever the chain's length.
    assert!(snapshot.snapshot.get_ref().len() < 100);
    let source = Arc::new(Serves(other.ledger().clone()));
    let mut sm = StateMachine::with_source(open(ours.path()).1.ledger().clone(), 1, source);
    apply_chain(&mut sm, 1, &blocks[..1]).await;
    sm.install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .unwrap();
    assert_eq!(sm.ledger().height(), 6);
    drop(sm);
    // Reopened: the fetched blocks are the chain, and what was applied is the snapshot's.
    let (_, mut sm) = open(ours.path());
    assert_eq!(sm.ledger().height(), 6);
    for (n, b) in blocks.iter().enumerate() {
        assert_eq!(
            sm.ledger().block(n as u64 + 1).unwrap().unwrap(),
            b.encode_to_vec()
        );
    }
    let (applied, membership) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(6));
    assert_eq!(membership.membership().nodes().count(), 2);
}

#[tokio::test]
async fn a_snapshot_of_another_chain_or_without_a_source_is_refused() {
    use openraft::storage::RaftSnapshotBuilder;
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut other = builder(theirs.path(), &chain(3, 2)).await;
    let snapshot = other.build_snapshot().await.unwrap();
    // Our chain is as long, but another one.
    let (_, mut sm) = open(ours.path());
    apply_chain(&mut sm, 1, &chain(3, 1)).await;
    let e = sm
        .install_snapshot(&snapshot.meta, snapshot.snapshot.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not this node's"), "{e}");
    // Behind it, fetching blocks that do not continue our chain: they are never indexed.
    let ours = tempfile::tempdir().unwrap();
    let source = Arc::new(Serves(other.ledger().clone()));
    let mut sm = StateMachine::with_source(open(ours.path()).1.ledger().clone(), 1, source)
        .with_fetch_patience(Duration::from_millis(300));
    apply_chain(&mut sm, 1, &chain(1, 1)).await;
    let e = sm
        .install_snapshot(&snapshot.meta, snapshot.snapshot.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("fetching blocks 2..4") && e.contains("node 2, block 2"),
        "{e}"
    );
    assert_eq!(sm.ledger().height(), 2);
    // Behind it, with nowhere to fetch from.
    let bare = tempfile::tempdir().unwrap();
    let (_, mut sm) = open(bare.path());
    let e = sm
        .install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no way to fetch"), "{e}");
}

/// Serves a ledger's blocks before `fails_from`, and fails from there on.
struct FailsFrom(Ledger, u64);

#[tonic::async_trait]
impl ChainSource for FailsFrom {
    async fn blocks(&self, _: u64, _: &str, from: u64, to: u64) -> Result<Vec<Vec<u8>>, String> {
        if from >= self.1 {
            return Err("unreachable".into());
        }
        (from..to.min(self.1))
            .map(|n| Ok(self.0.block(n).unwrap().unwrap()))
            .collect()
    }
}

#[tokio::test]
async fn an_install_cut_short_is_finished_when_the_node_comes_back() {
    use openraft::storage::RaftSnapshotBuilder;
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let blocks = chain(6, 1);
    let mut other = builder(theirs.path(), &blocks).await;
    let snapshot = other.build_snapshot().await.unwrap();
    {
        // Blocks 1-3 come, then every consenter fails: the install gives up, having indexed
        // nothing (blocks 1-3 lie unindexed in the files).
        let source = Arc::new(FailsFrom(other.ledger().clone(), 4));
        let mut sm = StateMachine::with_source(open(ours.path()).1.ledger().clone(), 1, source)
            .with_fetch_patience(Duration::from_millis(300));
        let e = sm
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("fetching blocks 4..7") && e.contains("unreachable"),
            "{e}"
        );
        assert_eq!(sm.ledger().height(), 1);
        // Asked what it applied, it tries to finish first, and still cannot.
        assert!(sm.applied_state().await.is_err());
    }
    // Back, with the consenters reachable: before it says what it applied, it finishes.
    let source = Arc::new(Serves(other.ledger().clone()));
    let mut sm = StateMachine::with_source(open(ours.path()).1.ledger().clone(), 1, source);
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied, snapshot.meta.last_log_id);
    assert_eq!(sm.ledger().height(), 7);
    for (n, b) in blocks.iter().enumerate() {
        assert_eq!(
            sm.ledger().block(n as u64 + 1).unwrap().unwrap(),
            b.encode_to_vec()
        );
    }
    // And it is done: a second look finds nothing pending.
    assert_eq!(
        sm.applied_state().await.unwrap().0,
        snapshot.meta.last_log_id
    );
}

#[test]
fn a_ledger_that_kept_its_blocks_in_sled_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    // The layout of earlier orderers: the block itself under its number, no format marker.
    let tree = db.open_tree("chain").unwrap();
    tree.insert(b"m/height", &1u64.to_be_bytes()).unwrap();
    let mut key = vec![b'b'];
    key.extend_from_slice(&0u64.to_be_bytes());
    tree.insert(key, genesis().encode_to_vec()).unwrap();
    let e = Ledger::open(&db, &dir.path().join("blocks"), &genesis())
        .unwrap_err()
        .to_string();
    assert!(e.contains("older Mercato orderer"), "{e}");
}

const CRASH_CHILD_DIR: &str = "MERCATO_ORDERER_CRASH_CHILD_DIR";
/// How many blocks a child applies at most before it exits by itself.
const CRASH_LAST_BLOCK: u64 = 200;

/// The child's side of the crash test (hence ignored): applies blocks of 200 KB, one log entry
/// each (entry n carries block n), printing each once applied.
#[tokio::test]
#[ignore = "the child process of a_killed_orderer_keeps_every_applied_block_and_its_chain"]
async fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_CHILD_DIR) else {
        return;
    };
    let (_, mut sm) = open(std::path::Path::new(&dir));
    let height = sm.ledger().height();
    let mut previous =
        Block::decode(sm.ledger().block(height - 1).unwrap().unwrap().as_slice()).unwrap();
    for n in height..=CRASH_LAST_BLOCK {
        let block = after(&previous, vec![(n % 251) as u8; 200_000]);
        let results = sm.apply([entry(n, &block)]).await.unwrap();
        assert_eq!(results[0], Applied::Appended { number: n });
        println!("applied {n}");
        previous = block;
    }
}

/// A tiny deterministic generator for kill points.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// A child process appending blocks is killed (SIGKILL) at random points, again and again:
/// every block it reported applied is still there, the chain links from the genesis block to
/// its last block, what Raft was told it applied matches the chain, and it goes on appending.
#[tokio::test]
async fn a_killed_orderer_keeps_every_applied_block_and_its_chain() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut last_seen = 0u64;
    for run in 0..15 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "store::crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // A few blocks past where it resumed, then a kill somewhere inside the next append (a
        // busy wait of up to 3 ms moves the point around).
        let target = 1 + next(&mut seed) % 4;
        let mut applied = 0;
        while applied < target {
            match lines.next() {
                Some(Ok(line)) if line.starts_with("applied ") => {
                    let n: u64 = line["applied ".len()..].parse().unwrap();
                    assert!(n > last_seen, "run {run}: block {n} after {last_seen}");
                    last_seen = n;
                    applied += 1;
                }
                Some(_) => {}
                None => break,
            }
        }
        let spin = Duration::from_micros(next(&mut seed) % 3000);
        let start = std::time::Instant::now();
        while start.elapsed() < spin {
            std::hint::spin_loop();
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let (_, mut sm) = open(dir.path());
    let height = sm.ledger().height();
    assert!(
        height > last_seen,
        "height {height}, last applied {last_seen}"
    );
    let mut previous = genesis();
    assert_eq!(
        sm.ledger().block(0).unwrap().unwrap(),
        previous.encode_to_vec()
    );
    for n in 1..height {
        let block = Block::decode(sm.ledger().block(n).unwrap().unwrap().as_slice()).unwrap();
        let header = block.header.as_ref().unwrap();
        assert_eq!(header.number, n);
        assert_eq!(
            header.previous_hash,
            block_header_hash(previous.header.as_ref().unwrap()).to_vec()
        );
        assert_eq!(block.data.as_ref().unwrap().data[0][0], (n % 251) as u8);
        previous = block;
    }
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|l| l.index), Some(height - 1));
    // And it goes on from there.
    let block = after(&previous, vec![7; 10]);
    let results = sm.apply([entry(height, &block)]).await.unwrap();
    assert_eq!(results[0], Applied::Appended { number: height });
    assert_eq!(
        sm.ledger().block(height).unwrap().unwrap(),
        block.encode_to_vec()
    );
}
