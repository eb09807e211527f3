//! Crash safety: a child process committing blocks to sled is killed (SIGKILL) at random points,
//! again and again; every restart resumes at its savepoint, and in the end the stored state is
//! exactly what replaying the stored blocks gives.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mercato_ca::KeyAlgorithm;
use mercato_peer::committer::{Committer, rebuild};
use mercato_peer::ledger::{LedgerStore, MemLedgerStore, SledLedgerStore};
use mercato_proto::block::parse_block;
use prost::Message;

use crate::fixture::{Net, rw};

const CHILD_ENV: &str = "MERCATO_CRASH_CHILD_DIR";
/// How many blocks a child commits at most before it exits by itself.
const LAST_BLOCK: u64 = 400;

/// The child's side: not a test of its own (hence ignored); the parent runs it with `--ignored`.
#[test]
#[ignore = "the child process of killed_committer_recovers_to_a_state_equal_to_replay"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let run: u64 = std::env::var("MERCATO_CRASH_RUN")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let net = Net::load(&dir, (run + 1) << 32);
    let store: Arc<dyn LedgerStore> =
        Arc::new(SledLedgerStore::open(&dir.join("ledger"), "commerce").unwrap());
    let committer = Committer::new(Arc::clone(&store), Arc::new(net.context())).unwrap();
    if committer.height() == 0 {
        committer.commit_genesis(net.genesis()).unwrap();
    }
    let limits = mercato_proto::Limits::default();
    let mut previous = parse_block(
        &store.block(committer.height() - 1).unwrap().unwrap(),
        &limits,
    )
    .unwrap();
    for number in committer.height()..=LAST_BLOCK {
        let mut txs = Vec::new();
        for i in 0..8u64 {
            let key = format!("item{}", (number * 3 + i) % 11);
            let ns = rw::put(rw::ns("market"), &key, &format!("{number}.{i}"));
            let ns = rw::add(ns, "sold", 1, None);
            let ns = if i == 7 {
                rw::add(ns, "stock", -1, Some(0))
            } else {
                ns
            };
            txs.push(net.tx(&rw::one(ns)).0.encode_to_vec());
        }
        let block = net.block(number, &previous, txs);
        committer.commit_block(block.clone()).unwrap();
        println!("committed {number}");
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

#[test]
fn killed_committer_recovers_to_a_state_equal_to_replay() {
    let dir = tempfile::tempdir().unwrap();
    Net::new(KeyAlgorithm::EcdsaP256).save(dir.path());
    let exe = std::env::current_exe().unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut last_seen = 0u64;
    for run in 0..20u64 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash::crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env("MERCATO_CRASH_RUN", run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        // Let it commit a few blocks past where it resumed, then kill it somewhere inside the
        // next commit (a busy wait of up to 3 ms moves the point around).
        let target = 1 + next(&mut seed) % 4;
        let mut committed_this_run = 0;
        while committed_this_run < target {
            match lines.next() {
                Some(Ok(line)) if line.starts_with("committed ") => {
                    let n: u64 = line["committed ".len()..].parse().unwrap();
                    assert!(
                        n >= last_seen,
                        "run {run}: block {n} after {last_seen}: a committed block was lost"
                    );
                    last_seen = n;
                    committed_this_run += 1;
                }
                Some(_) => {}
                None => break,
            }
        }
        let spin = Duration::from_micros(next(&mut seed) % 3000);
        let start = Instant::now();
        while start.elapsed() < spin {
            std::hint::spin_loop();
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let store = SledLedgerStore::open(&dir.path().join("ledger"), "commerce").unwrap();
    let savepoint = store.savepoint().unwrap().unwrap();
    // Every block reported committed survived the kills.
    assert!(
        savepoint.number >= last_seen,
        "savepoint {} < last reported {last_seen}",
        savepoint.number
    );
    let rebuilt = MemLedgerStore::new();
    assert_eq!(rebuild(&store, &rebuilt).unwrap(), savepoint.number + 1);
    assert_eq!(
        rebuilt.state_snapshot().unwrap(),
        store.state_snapshot().unwrap()
    );
    // Seven of each block's eight transactions are valid: the eighth debits an empty stock below
    // its floor of 0 and is invalid, its other writes with it.
    let sold = store.state("market", "sold").unwrap().unwrap();
    assert_eq!(sold.value, (savepoint.number * 7).to_string().into_bytes());
    assert!(store.state("market", "stock").unwrap().is_none());
}
