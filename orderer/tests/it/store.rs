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
    let db = sled::Config::new().path(dir).open().unwrap();
    let ledger = Ledger::open(&db, &genesis()).unwrap();
    (LogStore::open(&db).unwrap(), StateMachine::new(ledger))
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
    Ledger::open(&db, &g).unwrap();
    let other = new_block(0, Vec::new(), vec![b"another channel".to_vec()]);
    drop(sm);
    let e = Ledger::open(&db, &other).unwrap_err().to_string();
    assert!(e.contains("another genesis block"), "{e}");
}
