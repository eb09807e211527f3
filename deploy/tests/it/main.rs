//! The launcher end to end: `up --demo` in a temporary directory brings up CAs, orderers and
//! peers as processes, defines the commerce chaincode and runs the demo; the outcome is checked
//! through the SDK; `up` again resumes the same network; `down --purge` stops and deletes it.

use std::path::Path;
use std::process::Command;

use mercato_deploy::demo::gateway;
use mercato_deploy::network::{Kind, State, http_get, metric};

fn deploy(args: &[&str], data: &Path) -> (bool, String, String) {
    let exe = Path::new(env!("CARGO_BIN_EXE_mercato-deploy"));
    // The node binaries this test run built, beside the launcher: a nested cargo build would
    // wait on the one running the tests.
    let out = Command::new(exe)
        .env("MERCATO_BIN_DIR", exe.parent().unwrap())
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .expect("run mercato-deploy");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the `mercato` CLI built beside the launcher (by `cargo test --workspace`).
fn mercato(args: &[&str]) -> (bool, String, String) {
    let exe = Path::new(env!("CARGO_BIN_EXE_mercato-deploy"))
        .parent()
        .unwrap()
        .join("mercato");
    let out = Command::new(&exe).args(args).output().unwrap_or_else(|e| {
        panic!(
            "{}: {e} (build it: cargo build -p mercato-sdk)",
            exe.display()
        )
    });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Stops the network however the test ends.
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = deploy(&["down"], self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_the_demo_and_the_network_it_leaves_agrees_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("net");
    let _down = Down(&data);
    // 16 consecutive ports, below Linux's ephemeral range (32768 on), so that no connection's
    // own port can take one.
    let base = 20_000 + (std::process::id() % 750) * 16;
    let (ok, out, err) = tokio::task::spawn_blocking({
        let data = data.clone();
        move || {
            deploy(
                &["up", "--demo", "--json", "--base-port", &base.to_string()],
                &data,
            )
        }
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    let outcome: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(outcome["order_status"], "settled", "{outcome}");
    assert_eq!(outcome["personal_shop"], "@PlatformMSP:bob");
    // 1000 coins - 100 paid + 10 purchase reward + 2 of the review's 5 (daily cap 12).
    assert_eq!(outcome["buyer_balance"], 912);
    // 100 coins: 10 % commission to sam, 2 % fee, the brand the rest.
    assert_eq!(outcome["seller_commission"], 10);
    assert_eq!(outcome["platform_fees"], 2);
    assert_eq!(outcome["brand_revenue"], 88);
    assert!(outcome["blocks_verified"].as_u64().unwrap() > 10);

    // Every peer at the same height, answering the same state through the SDK.
    let state = State::load(&data).unwrap().unwrap();
    let mut heights = Vec::new();
    for n in state.nodes.iter().filter(|n| n.kind == Kind::Peer) {
        let (_, m) = http_get(n.operations.as_ref().unwrap(), "/metrics")
            .await
            .unwrap();
        heights.push(metric(&m, "mercato_peer_height").unwrap());
    }
    assert_eq!(heights.len(), 3);
    assert!(heights.windows(2).all(|w| w[0] == w[1]), "{heights:?}");
    for user in ["sam", "acme-ops", "zeta-ops"] {
        let g = gateway(&state, user).await.unwrap();
        let c = g.network("commerce").contract("commerce");
        assert_eq!(
            c.evaluate("balance", &[b"PlatformMSP:bob"]).await.unwrap(),
            b"912",
            "via {user}"
        );
        let order: serde_json::Value =
            serde_json::from_slice(&c.evaluate("get_order", &[b"order-1"]).await.unwrap()).unwrap();
        assert_eq!(order["status"], "settled");
    }

    // The auditor replays and checks the whole chain and compares every peer's commit hash;
    // then exports the sales.
    let eve = data.join("profiles").join("eve.toml");
    let (ok, out, err) = mercato(&[
        "--profile",
        eve.to_str().unwrap(),
        "--json",
        "audit",
        "verify",
    ]);
    assert!(ok, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    let peers = report["peers"].as_array().unwrap();
    // The audited peer, then the three peers the channel lists.
    assert_eq!(peers.len(), 4, "{report}");
    assert!(
        peers.iter().all(|p| p.as_str().unwrap().contains("agrees")),
        "{report}"
    );
    let (ok, out, err) = mercato(&[
        "--profile",
        eve.to_str().unwrap(),
        "audit",
        "export",
        "--what",
        "sales",
        "--format",
        "csv",
    ]);
    assert!(ok, "{err}");
    assert!(out.starts_with("block,tx,txid,timestamp_ms,event,order,status,shop,brand,total\n"));
    let settled = out
        .lines()
        .find(|l| l.contains("order.settled"))
        .expect(&out);
    assert!(settled.contains(",order-1,settled,"), "{settled}");

    // Again on the same directory: the same network, resumed (same identities and ledger).
    let (ok, out, err) = tokio::task::spawn_blocking({
        let data = data.clone();
        move || deploy(&["up", "--demo", "--json"], &data)
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(err.contains("resuming the network"), "{err}");
    let again: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(again["run"], 2);
    assert!(again["blocks_verified"].as_u64() > outcome["blocks_verified"].as_u64());

    let (ok, _, err) = deploy(&["down", "--purge"], &data);
    assert!(ok, "{err}");
    assert!(!data.exists());
}

#[test]
fn up_refuses_a_directory_that_is_not_a_network() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), "keep me").unwrap();
    let (ok, _, err) = deploy(&["up", "--demo"], dir.path());
    assert!(!ok);
    assert!(err.contains("is not a Mercato network"), "{err}");
    let (ok, _, err) = deploy(&["down", "--purge"], dir.path());
    assert!(!ok);
    assert!(err.contains("not deleting it"), "{err}");
    assert!(dir.path().join("precious.txt").exists());
}

/// `bench` starts from a new network by deleting only a benchmark network of its own spec: a
/// network of another spec is left alone, and a reused one of another signature scheme is
/// refused rather than measured under the wrong name.
#[test]
fn bench_deletes_only_its_own_network_and_refuses_another_scheme() {
    use mercato_deploy::spec::{BENCH, DEFAULT, Scheme, Spec};
    let record = |dir: &Path, spec: Spec| {
        std::fs::create_dir_all(dir).unwrap();
        State {
            spec,
            nodes: vec![],
            users: Default::default(),
            committed: vec![],
            demo_runs: 0,
        }
        .save(dir)
        .unwrap();
        std::fs::write(dir.join("precious.txt"), "keep me").unwrap();
    };
    let dir = tempfile::tempdir().unwrap();

    let demo = dir.path().join("demo");
    record(&demo, Spec::parse(DEFAULT).unwrap());
    let (ok, _, err) = deploy(&["bench", "--duration-secs", "1"], &demo);
    assert!(!ok);
    assert!(err.contains("holds a network of another spec"), "{err}");
    assert!(demo.join("precious.txt").exists());

    let other_scheme = dir.path().join("bench");
    let mut spec = Spec::parse(BENCH).unwrap();
    spec.scheme = Scheme::Ed25519;
    record(&other_scheme, spec);
    let (ok, _, err) = deploy(
        &[
            "bench",
            "--reuse",
            "--scheme",
            "p256",
            "--duration-secs",
            "1",
        ],
        &other_scheme,
    );
    assert!(!ok);
    assert!(err.contains("Ed25519 identities, not P256"), "{err}");
    assert!(other_scheme.join("precious.txt").exists());
}
