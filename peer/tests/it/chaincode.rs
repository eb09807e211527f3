//! The sandbox and simulation with real wasm modules: hostile modules fail cleanly and the peer
//! keeps serving; simulation records what a transaction read and wrote, deterministically.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mercato_chaincode::abi::{Creator, Invocation};
use mercato_peer::chaincode::{
    ChaincodeError, ChaincodeRuntime, ExecError, Executor, RuntimeLimits, Simulation,
    StaticResolver,
};
use mercato_peer::ledger::{BlockCommit, LedgerStore, MemLedgerStore, StateUpdate, Version};
use mercato_peer::rwset::{KeyDelta, KeyRead, KeyWrite};

use crate::wasm;

fn invocation(args: &[&str]) -> Invocation {
    Invocation {
        channel: "commerce".into(),
        txid: "tx-1".into(),
        timestamp: (1_800_000_000, 5),
        creator: Creator {
            msp_id: "Brand1MSP".into(),
            id: "acme".into(),
            role: "client".into(),
            attributes: vec![("role".into(), "brand".into())],
        },
        args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
        transient: Vec::new(),
    }
}

fn executor(limits: RuntimeLimits) -> Arc<Executor> {
    let runtime = Arc::new(ChaincodeRuntime::new(limits, None).unwrap());
    let resolver = StaticResolver::new()
        .with("testcc", wasm::testcc().to_vec())
        .with("other", wasm::testcc().to_vec());
    Executor::new(runtime, Arc::new(resolver))
}

/// A ledger at block 1 holding `keys` in namespace `testcc` (and `other`).
fn ledger(keys: &[(&str, &str)]) -> Arc<dyn LedgerStore> {
    let store = MemLedgerStore::new();
    let updates = keys
        .iter()
        .enumerate()
        .flat_map(|(i, (k, v))| {
            ["testcc", "other"].map(|ns| StateUpdate {
                namespace: ns.into(),
                key: k.to_string(),
                value: Some(v.as_bytes().to_vec()),
                version: Version {
                    block: 1,
                    tx: i as u64,
                },
            })
        })
        .collect();
    store
        .commit(&BlockCommit {
            number: 1,
            hash: [1; 32],
            block_bytes: Vec::new(),
            updates,
            txids: Vec::new(),
        })
        .unwrap();
    Arc::new(store)
}

#[test]
fn hostile_modules_fail_cleanly_and_the_next_call_succeeds() {
    let limits = RuntimeLimits {
        fuel: 50_000_000,
        memory_bytes: 32 << 20,
        max_result_bytes: 1 << 20,
        ..RuntimeLimits::default()
    };
    let exec = executor(limits);
    let store = ledger(&[("a", "1")]);
    type Case<'a> = (&'a [&'a str], fn(&ExecError) -> bool);
    let cases: Vec<Case> = vec![
        (&["spin"], |e| {
            matches!(e, ExecError::Runtime(ChaincodeError::OutOfFuel(_)))
        }),
        (&["grow"], |e| {
            matches!(e, ExecError::Runtime(ChaincodeError::OutOfMemory(_)))
        }),
        (
            &["huge", "2"],
            |e| matches!(e, ExecError::Runtime(ChaincodeError::Abi(m)) if m.contains("over the limit")),
        ),
        (&["recurse", "0"], |e| {
            matches!(e, ExecError::Runtime(ChaincodeError::StackOverflow))
        }),
        (
            &["panic", "boom"],
            |e| matches!(e, ExecError::Runtime(ChaincodeError::Panicked(m)) if m.contains("boom")),
        ),
        (&["many_calls", "1000000"], |e| {
            matches!(
                e,
                ExecError::Runtime(ChaincodeError::OutOfFuel(_) | ChaincodeError::Abi(_))
            )
        }),
    ];
    for (args, expected) in cases {
        let start = Instant::now();
        let err = exec
            .simulate(Arc::clone(&store), "testcc", &invocation(args))
            .unwrap_err();
        assert!(expected(&err), "{args:?}: {err}");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{args:?} took {:?}",
            start.elapsed()
        );
        // The runtime is unharmed: an ordinary call right after works.
        let ok = exec
            .simulate(Arc::clone(&store), "testcc", &invocation(&["get", "a"]))
            .unwrap();
        assert_eq!(
            (ok.response.status, ok.response.payload.as_slice()),
            (200, &b"1"[..]),
            "after {args:?}"
        );
    }
}

#[test]
fn invalid_modules_are_refused_with_the_reason() {
    let runtime = ChaincodeRuntime::new(RuntimeLimits::default(), None).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "garbage",
            b"not wasm at all".to_vec(),
            "invalid chaincode module",
        ),
        (
            "truncated",
            wasm::testcc()[..100].to_vec(),
            "invalid chaincode module",
        ),
        (
            "empty module",
            b"\0asm\x01\0\0\0".to_vec(),
            "does not export",
        ),
        (
            "unknown import",
            wasm::unknown_import(),
            "unknown import env.evil",
        ),
    ];
    for (name, bytes, message) in cases {
        let err = runtime.load(&bytes).unwrap_err();
        assert!(err.to_string().contains(message), "{name}: {err}");
    }
    runtime.load(wasm::testcc()).unwrap();
}

#[test]
fn compiled_modules_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let first = ChaincodeRuntime::new(RuntimeLimits::default(), Some(dir.path())).unwrap();
    let code = first.load(wasm::testcc()).unwrap();
    let cached = dir.path().join(format!("{}.cwasm", hex::encode(code)));
    assert!(cached.exists());
    // A second runtime (a restarted peer) loads the artifact instead of compiling.
    let second = ChaincodeRuntime::new(RuntimeLimits::default(), Some(dir.path())).unwrap();
    assert_eq!(second.load(wasm::testcc()).unwrap(), code);
    // A corrupt artifact is recompiled, not trusted.
    std::fs::write(&cached, b"garbage").unwrap();
    let third = ChaincodeRuntime::new(RuntimeLimits::default(), Some(dir.path())).unwrap();
    assert_eq!(third.load(wasm::testcc()).unwrap(), code);
}

#[test]
fn simulation_records_reads_writes_and_deltas() {
    let exec = executor(RuntimeLimits::default());
    let store = ledger(&[("a", "10"), ("b", "5")]);
    let sim = exec
        .simulate(
            Arc::clone(&store),
            "testcc",
            &invocation(&["transfer", "a", "b", "3"]),
        )
        .unwrap();
    assert_eq!(sim.response.status, 200);
    let ns = &sim.rwset.namespaces[0];
    assert_eq!(ns.namespace, "testcc");
    assert_eq!(
        ns.reads,
        vec![
            KeyRead {
                key: "a".into(),
                version: Some(Version { block: 1, tx: 0 })
            },
            KeyRead {
                key: "b".into(),
                version: Some(Version { block: 1, tx: 1 })
            },
        ]
    );
    assert_eq!(
        ns.writes,
        vec![
            KeyWrite {
                key: "a".into(),
                value: Some(b"7".to_vec())
            },
            KeyWrite {
                key: "b".into(),
                value: Some(b"8".to_vec())
            },
        ]
    );
    // Nothing was written to the ledger.
    assert_eq!(store.state("testcc", "a").unwrap().unwrap().value, b"10");

    // A transaction reads its own writes; a key it only wrote is not a read.
    let sim = exec
        .simulate(
            Arc::clone(&store),
            "testcc",
            &invocation(&["put_then_get", "new", "v"]),
        )
        .unwrap();
    assert_eq!(sim.response.payload, b"v");
    assert!(sim.rwset.namespaces[0].reads.is_empty());

    let sim = exec
        .simulate(
            Arc::clone(&store),
            "testcc",
            &invocation(&["credit", "fee", "7"]),
        )
        .unwrap();
    assert_eq!(
        sim.rwset.namespaces[0].deltas,
        vec![KeyDelta {
            key: "fee".into(),
            amount: 7,
            lower_bound: Some(0)
        }]
    );
    assert!(sim.rwset.namespaces[0].reads.is_empty());

    // A chaincode error is a response, with no endorsable effects to speak of.
    let sim = exec
        .simulate(
            Arc::clone(&store),
            "testcc",
            &invocation(&["fail", "out of stock"]),
        )
        .unwrap();
    assert_eq!(
        (sim.response.status, sim.response.message.as_str()),
        (409, "out of stock")
    );
}

#[test]
fn ranges_page_through_bookmarks_and_are_recorded() {
    let exec = executor(RuntimeLimits::default());
    let keys: Vec<(String, String)> = (0..7).map(|i| (format!("r{i}"), "x".to_string())).collect();
    let refs: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let store = ledger(&refs);
    let sim = exec
        .simulate(
            Arc::clone(&store),
            "testcc",
            &invocation(&["scan", "r", "s", "3"]),
        )
        .unwrap();
    assert_eq!(
        sim.response.payload,
        br#"["r0","r1","r2","r3","r4","r5","r6"]"#
    );
    let ranges = &sim.rwset.namespaces[0].range_reads;
    assert_eq!(ranges.len(), 3);
    assert!(ranges.last().unwrap().exhausted);
    let recorded: Vec<String> = ranges
        .iter()
        .flat_map(|r| r.reads.iter().map(|k| k.key.clone()))
        .collect();
    assert!(recorded.contains(&"r6".to_string()));
}

#[test]
fn range_pages_of_large_values_end_at_the_byte_budget_and_lose_no_key() {
    use mercato_chaincode::abi::HostResponse;
    use mercato_peer::chaincode::simulator::PAGE_BYTES;
    // Six committed values of 1.5 MiB: a page of 100 keys would hold 9 MiB.
    let big = "x".repeat(3 << 19);
    let keys: Vec<(String, String)> = (0..6).map(|i| (format!("r{i}"), big.clone())).collect();
    let refs: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut sim = Simulation::new(ledger(&refs));
    // The transaction's own write inside the range is served in its place.
    sim.put("testcc", "r25", Some(b"own".to_vec())).unwrap();
    let mut seen = Vec::new();
    let mut bookmark = String::new();
    let mut pages = 0;
    loop {
        let HostResponse::Page {
            entries,
            bookmark: next,
        } = sim.range("testcc", "r", "s", 100, &bookmark).unwrap()
        else {
            panic!("a range answers with a page");
        };
        pages += 1;
        let bytes: usize = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(
            bytes <= PAGE_BYTES + big.len() + 2,
            "a page of {bytes} bytes"
        );
        assert!(
            !entries.is_empty(),
            "a page with more to come is never empty"
        );
        seen.extend(entries.into_iter().map(|(k, _)| k));
        if next.is_empty() {
            break;
        }
        bookmark = next;
    }
    assert_eq!(seen, ["r0", "r1", "r2", "r25", "r3", "r4", "r5"]);
    assert!(pages >= 3, "{pages} pages");
    let rwset = sim.rwset();
    let ranges = &rwset.namespaces[0].range_reads;
    assert_eq!(ranges.len(), pages);
    assert!(ranges.last().unwrap().exhausted);
    // The first page stopped at the budget with committed keys left.
    assert!(!ranges[0].exhausted);
    assert_eq!(ranges[0].reads.len(), 4, "three values and the look-ahead");
}

#[test]
fn events_identity_clock_and_cross_chaincode_calls() {
    let exec = executor(RuntimeLimits::default());
    let store = ledger(&[("k", "from other")]);
    let sim = exec
        .simulate(
            Arc::clone(&store),
            "testcc",
            &invocation(&["order", "shop1", "42"]),
        )
        .unwrap();
    let (cc, name, payload) = sim.event.unwrap();
    assert_eq!(
        (cc.as_str(), name.as_str(), payload.as_slice()),
        ("testcc", "OrderPlaced", &b"42"[..])
    );
    let key = &sim.rwset.namespaces[0].writes[0];
    assert_eq!(key.key, "\u{0}order\u{0}shop1\u{0}42\u{0}");
    assert_eq!(key.value.as_deref(), Some(&b"tx-1"[..]));

    let who = exec
        .simulate(Arc::clone(&store), "testcc", &invocation(&["whoami"]))
        .unwrap();
    assert_eq!(who.response.payload, b"Brand1MSP acme client role=brand");
    let now = exec
        .simulate(Arc::clone(&store), "testcc", &invocation(&["now"]))
        .unwrap();
    assert_eq!(now.response.payload, b"1800000000");

    // testcc calls other's `get`: the read is recorded in other's namespace.
    let sim = exec
        .simulate(
            Arc::clone(&store),
            "testcc",
            &invocation(&["call_get", "other", "k"]),
        )
        .unwrap();
    assert_eq!(sim.response.payload, b"from other");
    assert_eq!(sim.rwset.namespaces.len(), 1);
    assert_eq!(sim.rwset.namespaces[0].namespace, "other");
    let sim = exec
        .simulate(
            Arc::clone(&store),
            "testcc",
            &invocation(&["call_get", "ghost", "k"]),
        )
        .unwrap();
    assert_eq!(sim.response.status, 500);
    assert!(
        sim.response.message.contains("ghost is not defined"),
        "{}",
        sim.response.message
    );
}

#[test]
fn the_same_proposal_gives_identical_rwset_bytes_on_two_peers() {
    // Two peers: separate runtimes and separate ledgers holding the same state.
    let state = [("a", "10"), ("b", "5"), ("r1", "x"), ("r2", "y")];
    let peers: Vec<(Arc<Executor>, Arc<dyn LedgerStore>)> = (0..2)
        .map(|_| (executor(RuntimeLimits::default()), ledger(&state)))
        .collect();
    for args in [
        &["transfer", "a", "b", "2"][..],
        &["scan", "r", "s", "1"],
        &["credit", "fee", "3"],
        &["order", "s", "1"],
    ] {
        let results: Vec<Vec<u8>> = peers
            .iter()
            .map(|(exec, store)| {
                exec.simulate(Arc::clone(store), "testcc", &invocation(args))
                    .unwrap()
                    .rwset
                    .encode()
            })
            .collect();
        assert_eq!(results[0], results[1], "{args:?}");
        assert!(!results[0].is_empty());
    }
}
