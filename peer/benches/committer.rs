//! Validate + commit throughput of the committer, against the floor set by signature checks and
//! the bare sled write, measured in the same run.
//!
//! Blocks of 500 transactions, each signed by a client and endorsed by two orgs' peers, each
//! writing 2 keys of ~200 bytes, committed through the pipeline into a durable sled ledger.
//!
//! The floor is the cores over CPU time: the signature checks' on the thread that runs them, the
//! sled batch's across the process, because sled writes its log and frees the node versions a
//! batch replaced on threads of its own.
//!
//! Run: `cargo bench -p mercato-peer --bench committer`

#[path = "../tests/it/fixture.rs"]
#[allow(dead_code)]
mod fixture;

/// The peer binary's allocator, so that the figures are the node's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fixture::{Net, rw};
use mercato_ca::KeyAlgorithm;
use mercato_peer::committer::Committer;
use mercato_peer::ledger::{LedgerStore, SledLedgerStore};
use mercato_peer::validator::EndorsementMemo;
use mercato_proto::Signer;
use mercato_proto::pb::common::Block;
use mercato_proto::response::endorsement_message;
use mercato_proto::transaction::parse_transaction;
use prost::Message;
use sha2::{Digest, Sha256};

const TXS_PER_BLOCK: usize = 500;
const BLOCKS: u64 = 16;

fn cpu_seconds() -> f64 {
    // utime + stime of this process, from /proc (Linux); clock ticks are 100 Hz there.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map(|k| k / 1024.0)
        .unwrap_or(0.0)
}

/// How many times each measurement is repeated; the best is kept. This machine is shared, and
/// a neighbour's load only ever makes a run slower, so the best of a few is the least disturbed
/// (for the floor and the runs alike, so that their ratio stays fair).
const TRIES: usize = 3;

/// Whose CPU time a floor measurement counts.
#[derive(Clone, Copy)]
enum Clock {
    /// The calling thread's: a computation that runs on it alone (signature checks).
    Thread,
    /// The whole process's: work that other threads share (sled writes its log and frees the
    /// node versions a batch replaced on its own threads, about a fifth more CPU than the
    /// writing thread spends).
    Process,
}

/// CPU seconds spent so far on `clock`.
fn cpu_time(clock: Clock) -> f64 {
    let id = match clock {
        Clock::Thread => libc::CLOCK_THREAD_CPUTIME_ID,
        Clock::Process => libc::CLOCK_PROCESS_CPUTIME_ID,
    };
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// CPU µs on `clock` per call of `f`, the best of [`TRIES`] windows of 300 ms.
fn per_call_us(clock: Clock, mut f: impl FnMut()) -> f64 {
    (0..TRIES)
        .map(|_| {
            let start = Instant::now();
            let cpu0 = cpu_time(clock);
            let mut n = 0u64;
            while start.elapsed() < Duration::from_millis(300) {
                f();
                n += 1;
            }
            (cpu_time(clock) - cpu0) * 1e6 / n as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// The best (highest-throughput) of [`TRIES`] runs: (transactions per second, CPU µs per tx).
fn best_run(mut run: impl FnMut() -> (f64, f64)) -> (f64, f64) {
    (0..TRIES)
        .map(|_| run())
        .fold((0.0, 0.0), |best, r| if r.0 > best.0 { r } else { best })
}

/// The blocks to commit, after a genesis block.
fn make_blocks(net: &Net) -> (Block, Vec<Block>) {
    let value = "v".repeat(200);
    let genesis = net.genesis();
    let mut previous = genesis.clone();
    let mut blocks = Vec::new();
    for b in 1..=BLOCKS {
        let txs = (0..TXS_PER_BLOCK)
            .map(|i| {
                let ns = rw::put(
                    rw::put(rw::ns("market"), &format!("order/{b}/{i}"), &value),
                    &format!("item/{b}/{i}"),
                    &value,
                );
                net.tx(&rw::one(ns)).0.encode_to_vec()
            })
            .collect();
        let block = net.block(b, &previous, txs);
        previous = block.clone();
        blocks.push(block);
    }
    (genesis, blocks)
}

/// Commits the blocks through the pipeline; returns (transactions per second, CPU µs per tx).
fn run(
    net: &Net,
    genesis: &Block,
    blocks: &[Block],
    memo: Option<Arc<EndorsementMemo>>,
    threads: usize,
) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn LedgerStore> =
        Arc::new(SledLedgerStore::open(dir.path(), "commerce").unwrap());
    let mut ctx = net.context_with(threads);
    ctx.own_endorsements = memo;
    let committer = Arc::new(Committer::new(store, Arc::new(ctx)).unwrap());
    committer.commit_genesis(genesis.clone()).unwrap();
    // Copied before the clock starts: the copying is the bench's, not the committer's.
    let blocks = blocks.to_vec();
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let pipeline = committer.start_pipeline(2);
    for block in blocks {
        pipeline.submit(block).unwrap();
    }
    if let Some(failure) = pipeline.finish() {
        panic!("a block failed: {failure}");
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    assert_eq!(committer.height(), BLOCKS + 1);
    let n = BLOCKS as usize * TXS_PER_BLOCK;
    (n as f64 / wall, cpu * 1e6 / n as f64)
}

/// Where one core's time goes per transaction, stage by stage (single-threaded).
fn breakdown(net: &Net, genesis: &Block, blocks: &[Block]) {
    use mercato_peer::validator::mvcc::{Mode, apply_block};
    use mercato_peer::validator::verify::{verify_block, verify_transactions};
    let ctx = net.context_with(1);
    let n = (blocks.len() * TXS_PER_BLOCK) as f64;
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64() * 1e6 / n
    };
    let parse = time(&mut || {
        for b in blocks {
            for env in &b.data.as_ref().unwrap().data {
                black_box(parse_transaction(env, &ctx.limits).unwrap());
            }
        }
    });
    let parsed: Vec<_> = blocks
        .iter()
        .flat_map(|b| b.data.as_ref().unwrap().data.iter())
        .map(|env| parse_transaction(env, &ctx.limits).unwrap())
        .collect();
    let identities = time(&mut || {
        for tx in &parsed {
            black_box(ctx.msps.identity(&tx.header.creator).unwrap());
            for e in &tx.endorsements {
                black_box(ctx.msps.identity(&e.endorser).unwrap());
            }
        }
    });
    let messages = time(&mut || {
        for tx in &parsed {
            for e in &tx.endorsements {
                black_box(endorsement_message(
                    &tx.proposal_response_payload,
                    &e.endorser,
                ));
            }
        }
    });
    let rwsets = time(&mut || {
        for tx in &parsed {
            black_box(mercato_peer::rwset::TxRwSet::decode(&tx.action.results).unwrap());
        }
    });
    println!(
        "  per tx on one core: identity lookups {identities:.1} µs, endorsement messages {messages:.1} µs, rwset decode {rwsets:.1} µs"
    );
    let mut checked = Vec::new();
    let stage1 = time(&mut || {
        for b in blocks {
            verify_block(b, &ctx).unwrap();
            checked.push(verify_transactions(&b.data.as_ref().unwrap().data, &ctx));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let store = SledLedgerStore::open(dir.path(), "commerce").unwrap();
    let committer = Committer::new(
        Arc::new(SledLedgerStore::open(&dir.path().join("g"), "c").unwrap()),
        Arc::new(net.context_with(1)),
    )
    .unwrap();
    committer.commit_genesis(genesis.clone()).unwrap();
    let mut applied = Vec::new();
    let stage2 = time(&mut || {
        for (i, c) in checked.iter().enumerate() {
            applied.push(apply_block(&store, i as u64 + 1, c, Mode::Validate(&ctx)).unwrap());
        }
    });
    let commit = time(&mut || {
        for (i, (a, b)) in applied.iter().zip(blocks).enumerate() {
            store
                .commit(&mercato_peer::ledger::BlockCommit {
                    number: i as u64 + 1,
                    hash: [0; 32],
                    block_bytes: b.encode_to_vec(),
                    updates: a.updates.clone(),
                    txids: a.txids.clone(),
                })
                .unwrap();
        }
    });
    println!(
        "  per tx on one core: parse {parse:.1} µs, stage 1 (incl. parse + signatures) {stage1:.1} µs, stage 2 {stage2:.1} µs, sled commit {commit:.1} µs"
    );
}

/// µs per transaction to verify its 3 signatures (the client's over the payload, each endorser's
/// over the response payload and its identity) over the real messages of one block: P-256 one by
/// one, Ed25519 in one batch per block, as the validator does.
fn signatures_floor_us(net: &Net, block: &Block, algorithm: KeyAlgorithm) -> f64 {
    let ctx = net.context();
    let mut checks: Vec<(Arc<mercato_ca::Identity>, Vec<u8>, Vec<u8>)> = Vec::new();
    for env in &block.data.as_ref().unwrap().data {
        let tx = parse_transaction(env, &ctx.limits).unwrap();
        checks.push((
            ctx.msps.identity(&tx.header.creator).unwrap(),
            tx.payload_bytes.clone(),
            tx.signature.clone(),
        ));
        for e in &tx.endorsements {
            let msg = endorsement_message(&tx.proposal_response_payload, &e.endorser);
            checks.push((
                ctx.msps.identity(&e.endorser).unwrap(),
                msg,
                e.signature.clone(),
            ));
        }
    }
    let per_block = match algorithm {
        KeyAlgorithm::EcdsaP256 => per_call_us(Clock::Thread, || {
            for (id, msg, sig) in &checks {
                id.verify(black_box(msg), black_box(sig)).unwrap();
            }
        }),
        KeyAlgorithm::Ed25519 => {
            let items: Vec<_> = checks
                .iter()
                .map(|(id, msg, sig)| match id.public_key() {
                    mercato_ca::PublicKey::Ed25519(key) => mercato_ca::crypto::Ed25519Item {
                        key,
                        message: msg,
                        signature: sig,
                    },
                    _ => unreachable!("Ed25519 network"),
                })
                .collect();
            per_call_us(Clock::Thread, || {
                black_box(mercato_ca::crypto::verify_ed25519_batch(&items));
            })
        }
    };
    per_block / TXS_PER_BLOCK as f64
}

/// CPU µs per transaction of a bare sled batch of 500 transactions, flushed like a committed
/// block, counting sled's own threads: with `indexes` false, only the 2 state keys of ~200
/// bytes; with `indexes` true, also the txid entry every committed transaction needs.
fn sled_floor_us(indexes: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    let tree = db.open_tree("bare").unwrap();
    let value = vec![b'v'; 216];
    let mut b = 0u64;
    let us_per_batch = per_call_us(Clock::Process, || {
        let mut batch = sled::Batch::default();
        for i in 0..TXS_PER_BLOCK {
            batch.insert(
                format!("smarket\0order/{b}/{i}").into_bytes(),
                value.as_slice(),
            );
            batch.insert(
                format!("smarket\0item/{b}/{i}").into_bytes(),
                value.as_slice(),
            );
            if indexes {
                // The txid entry, keyed as the ledger keys it: by the hash's 32 bytes, so in no
                // order. The keys are new, so no version is superseded and no history entry is
                // written.
                let txid = Sha256::digest((b * 1_000_000 + i as u64).to_be_bytes());
                let mut key = vec![b'u'];
                key.extend_from_slice(&txid);
                batch.insert(key, &[0u8; 17][..]);
            }
        }
        tree.apply_batch(batch).unwrap();
        db.flush().unwrap();
        b += 1;
    });
    us_per_batch / TXS_PER_BLOCK as f64
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    // `cargo bench --bench committer -- ed25519` (or `p256`) runs one scheme only.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(|a| a.to_ascii_lowercase())
        .collect();
    if let Some(unknown) = only
        .iter()
        .find(|a| !["p256", "ed25519"].contains(&a.as_str()))
    {
        eprintln!("unknown scheme {unknown:?}: p256 or ed25519");
        std::process::exit(2);
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "Mercato committer: validate + commit, {BLOCKS} blocks of {TXS_PER_BLOCK} transactions, {cores} cores"
    );
    println!(
        "each tx: 1 client signature + 2 endorsements (2 orgs), 2 keys of ~200 bytes written; durable sled"
    );
    println!("every figure is the best of {TRIES} tries (a shared machine only ever slows a try)");
    println!();
    let sled_us = sled_floor_us(false);
    let sled_indexed_us = sled_floor_us(true);
    println!(
        "bare sled batch write: {sled_us:.1} µs of CPU per transaction (2 state keys; sled's threads counted); {sled_indexed_us:.1} µs with the txid entry (the keys are new: no history entry)"
    );
    for algorithm in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        if !only.is_empty() && !only.contains(&algorithm.to_string()) {
            continue;
        }
        let net = Net::new(algorithm);
        let (genesis, blocks) = make_blocks(&net);
        let verify_us = signatures_floor_us(&net, &blocks[0], algorithm);
        let floor = cores as f64 * 1e6 / (verify_us + sled_us);
        // The committing peer is brand1's peer0, which endorsed every transaction.
        let memo = Arc::new(EndorsementMemo::new(net.peer1.creator().to_vec(), 1 << 20));
        for block in &blocks {
            for env in &block.data.as_ref().unwrap().data {
                let tx = parse_transaction(env, &mercato_proto::Limits::default()).unwrap();
                for e in &tx.endorsements {
                    if e.endorser == net.peer1.creator() {
                        memo.record(
                            &endorsement_message(&tx.proposal_response_payload, &e.endorser),
                            &e.signature,
                        );
                    }
                }
            }
        }
        breakdown(&net, &genesis, &blocks);
        // A first, unreported run warms the allocator, the page cache and sled's files.
        run(&net, &genesis, &blocks, None, cores);
        let (tps_all, cpu_all) = best_run(|| run(&net, &genesis, &blocks, None, cores));
        let (tps_own, cpu_own) =
            best_run(|| run(&net, &genesis, &blocks, Some(Arc::clone(&memo)), cores));
        println!();
        println!(
            "{algorithm}: the 3 signatures of a transaction cost {verify_us:.1} µs of CPU to verify ({})",
            if algorithm == KeyAlgorithm::Ed25519 {
                "batched per block"
            } else {
                "one by one"
            }
        );
        let floor_indexed = cores as f64 * 1e6 / (verify_us + sled_indexed_us);
        println!("  floor = {cores} cores / ({verify_us:.1} + {sled_us:.1}) µs = {floor:.0} tx/s");
        println!(
            "  floor with the index entries = {cores} / ({verify_us:.1} + {sled_indexed_us:.1}) µs = {floor_indexed:.0} tx/s"
        );
        println!(
            "  all 3 signatures verified:   {tps_all:>7.0} tx/s  ({cpu_all:.0} µs CPU/tx)  ratio {:.2} (with indexes {:.2})",
            tps_all / floor,
            tps_all / floor_indexed
        );
        println!(
            "  own endorsement recognised:  {tps_own:>7.0} tx/s  ({cpu_own:.0} µs CPU/tx)  ratio {:.2} (with indexes {:.2})",
            tps_own / floor,
            tps_own / floor_indexed
        );
    }
    println!();
    println!(
        "peak RSS (this process, blocks held in memory): {:.1} MiB",
        peak_rss_mib()
    );
}
