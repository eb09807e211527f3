//! What running chaincode in the sandbox costs: a small contract that reads 2 keys and writes 2
//! keys, first call (compiling the module) and warm calls, against the same logic as a native
//! Rust function over the same simulation.
//!
//! Run: `cargo bench -p mercato-peer --bench chaincode`

#[path = "../tests/it/wasm.rs"]
#[allow(dead_code)]
mod wasm;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mercato_chaincode::abi::{Creator, Invocation};
use mercato_peer::chaincode::{
    ChaincodeRuntime, Executor, RuntimeLimits, Simulation, StaticResolver,
};
use mercato_peer::ledger::{BlockCommit, LedgerStore, MemLedgerStore, StateUpdate, Version};

fn per_call_us(mut f: impl FnMut()) -> f64 {
    for _ in 0..100 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        f();
        n += 1;
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map(|k| k / 1024.0)
        .unwrap_or(0.0)
}

/// The native twin of the test chaincode's `transfer`: read two numbers, write both.
fn native_transfer(sim: &mut Simulation, from: &str, to: &str, amount: i64) {
    let read = |sim: &mut Simulation, k: &str| -> i64 {
        sim.get("testcc", k)
            .unwrap()
            .map(|v| String::from_utf8_lossy(&v).parse().unwrap())
            .unwrap_or(0)
    };
    let a = read(sim, from) - amount;
    let b = read(sim, to) + amount;
    sim.put("testcc", from, Some(a.to_string().into_bytes()))
        .unwrap();
    sim.put("testcc", to, Some(b.to_string().into_bytes()))
        .unwrap();
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let module = wasm::build("mercato-testcc");
    println!(
        "Mercato chaincode runtime: a contract that reads 2 keys and writes 2 keys ({} KiB module)",
        module.len() / 1024
    );
    let store = MemLedgerStore::new();
    store
        .commit(&BlockCommit {
            number: 1,
            hash: [1; 32],
            block_bytes: Vec::new(),
            updates: ["alice", "bob"]
                .iter()
                .enumerate()
                .map(|(i, k)| StateUpdate {
                    namespace: "testcc".into(),
                    key: k.to_string(),
                    value: Some(b"1000".to_vec()),
                    version: Version {
                        block: 1,
                        tx: i as u64,
                    },
                })
                .collect(),
            txids: Vec::new(),
        })
        .unwrap();
    let store: Arc<dyn LedgerStore> = Arc::new(store);
    let invocation = Invocation {
        channel: "commerce".into(),
        txid: "t".into(),
        timestamp: (1_800_000_000, 0),
        creator: Creator {
            msp_id: "Org1MSP".into(),
            id: "alice".into(),
            role: "client".into(),
            attributes: Vec::new(),
        },
        args: ["transfer", "alice", "bob", "5"]
            .iter()
            .map(|a| a.as_bytes().to_vec())
            .collect(),
        transient: Vec::new(),
    };

    let t = Instant::now();
    let runtime = Arc::new(ChaincodeRuntime::new(RuntimeLimits::default(), None).unwrap());
    let exec = Executor::new(
        Arc::clone(&runtime),
        Arc::new(StaticResolver::new().with("testcc", module.clone())),
    );
    let first = exec
        .simulate(Arc::clone(&store), "testcc", &invocation)
        .unwrap();
    assert_eq!(first.response.status, 200);
    let first_us = t.elapsed().as_secs_f64() * 1e6;

    let dir = tempfile::tempdir().unwrap();
    ChaincodeRuntime::new(RuntimeLimits::default(), Some(dir.path()))
        .unwrap()
        .load(&module)
        .unwrap();
    let t = Instant::now();
    ChaincodeRuntime::new(RuntimeLimits::default(), Some(dir.path()))
        .unwrap()
        .load(&module)
        .unwrap();
    let cached_us = t.elapsed().as_secs_f64() * 1e6;

    let warm = per_call_us(|| {
        black_box(
            exec.simulate(Arc::clone(&store), "testcc", &invocation)
                .unwrap(),
        );
    });
    let empty_invocation = Invocation {
        args: vec![b"whoami".to_vec()],
        ..invocation.clone()
    };
    let empty = per_call_us(|| {
        black_box(
            exec.simulate(Arc::clone(&store), "testcc", &empty_invocation)
                .unwrap(),
        );
    });
    let native = per_call_us(|| {
        let mut sim = Simulation::new(Arc::clone(&store));
        native_transfer(&mut sim, "alice", "bob", 5);
        black_box(sim.rwset());
    });
    println!();
    println!(
        "first call (engine + compile + run):       {:>9.0} µs",
        first_us
    );
    println!(
        "restart with the compiled module on disk:  {:>9.0} µs",
        cached_us
    );
    println!(
        "warm call in the sandbox:                  {:>9.1} µs",
        warm
    );
    println!(
        "a call with no host calls (whoami):        {:>9.1} µs",
        empty
    );
    println!(
        "same logic as a native function:           {:>9.1} µs",
        native
    );
    println!(
        "sandbox overhead per warm call:            {:>9.1} µs  (target < 20 µs)",
        warm - native
    );
    println!();
    println!("peak RSS (this process): {:.1} MiB", peak_rss_mib());
}
