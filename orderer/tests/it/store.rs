//! The Raft storage: openraft's own storage suite, and the state machine's rules for blocks.

use mercato_orderer::consensus::{Applied, BlockProposal, LogStore, StateMachine, TypeConfig};
use mercato_orderer::ledger::Ledger;
use mercato_proto::block::new_block;
use mercato_proto::hash::block_header_hash;
use mercato_proto::pb::common::Block;
use openraft::storage::RaftStateMachine;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, StorageError};
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

/// A chain of `n` blocks after the genesis block, each holding `tag`.
fn chain(n: u64, tag: u8) -> Vec<Block> {
    let mut previous = genesis();
    let mut blocks = Vec::new();
    for number in 1..=n {
        let block = new_block(
            number,
            block_header_hash(previous.header.as_ref().unwrap()).to_vec(),
            vec![vec![tag; 100 * number as usize]],
        );
        previous = block.clone();
        blocks.push(block);
    }
    blocks
}

async fn apply_chain(sm: &mut StateMachine, blocks: &[Block]) {
    let entries: Vec<_> = blocks
        .iter()
        .enumerate()
        .map(|(i, b)| entry(i as u64 + 1, b))
        .collect();
    let results = sm.apply(entries).await.unwrap();
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Applied::Appended { .. }))
    );
}

#[tokio::test]
async fn an_installed_snapshot_replaces_a_diverging_chain_and_survives_a_restart() {
    use openraft::storage::RaftSnapshotBuilder;
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    let (_, mut sm) = open(ours.path());
    apply_chain(&mut sm, &chain(3, 1)).await;
    // The other chain shares no block after the genesis block, and is shorter.
    let (_, mut other) = open(theirs.path());
    let replacement = chain(1, 2);
    apply_chain(&mut other, &replacement).await;
    let snapshot = other.build_snapshot().await.unwrap();
    sm.install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .unwrap();
    assert_eq!(sm.ledger().height(), 2);
    assert_eq!(
        sm.ledger().block(1).unwrap().unwrap(),
        replacement[0].encode_to_vec()
    );
    assert_eq!(sm.ledger().block(2).unwrap(), None);
    drop(sm);
    // Reopened: the replacement is the chain, and it goes on from its last block.
    let (_, mut sm) = open(ours.path());
    assert_eq!(sm.ledger().height(), 2);
    assert_eq!(
        sm.ledger().block(0).unwrap().unwrap(),
        genesis().encode_to_vec()
    );
    assert_eq!(
        sm.ledger().block(1).unwrap().unwrap(),
        replacement[0].encode_to_vec()
    );
    let next = new_block(
        2,
        block_header_hash(replacement[0].header.as_ref().unwrap()).to_vec(),
        vec![vec![3]],
    );
    let results = sm.apply([entry(9, &next)]).await.unwrap();
    assert_eq!(results[0], Applied::Appended { number: 2 });
    assert_eq!(sm.ledger().block(2).unwrap().unwrap(), next.encode_to_vec());
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
