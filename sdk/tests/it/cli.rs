//! The `mercato` CLI against a real network: a profile file, human and JSON output, exit codes.

use std::process::Command;

use mercato_ca::crypto::to_pem;

use crate::net::{CHANNEL, Net, testcc};

fn mercato(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mercato"))
        .args(args)
        .output()
        .expect("run mercato");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn run(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        mercato(&args)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_submits_evaluates_and_streams_events_from_a_profile() {
    let net = Net::start().await;
    net.deploy("testcc", testcc(), "OR('Brand1MSP.peer', 'Brand2MSP.peer')")
        .await;
    let org = &net.orgs[0];
    let home = net.dir.path().join("seller1");
    std::fs::create_dir_all(home.join("msp/signcerts")).unwrap();
    std::fs::create_dir_all(home.join("msp/keystore")).unwrap();
    std::fs::write(
        home.join("msp/signcerts/cert.pem"),
        org.client.certificate_pem(),
    )
    .unwrap();
    std::fs::write(
        home.join("msp/keystore/key.pem"),
        to_pem("PRIVATE KEY", &org.client_key),
    )
    .unwrap();
    std::fs::write(home.join("tls-ca.pem"), org.tls.root_pem()).unwrap();
    let profile = home.join("profile.toml");
    std::fs::write(
        &profile,
        format!(
            "peer = \"127.0.0.1:{}\"\ntls_root = \"tls-ca.pem\"\nmsp_id = \"Brand1MSP\"\nmsp_dir = \"msp\"\nchannel = \"{CHANNEL}\"\n",
            org.port
        ),
    )
    .unwrap();
    let p = profile.to_str().unwrap().to_owned();
    let args = |rest: &[&str]| -> Vec<String> {
        ["--profile", p.as_str()]
            .iter()
            .chain(rest)
            .map(|s| s.to_string())
            .collect()
    };

    let (code, out, err) = run(args(&[
        "tx",
        "submit",
        "testcc",
        "put",
        "cli-key",
        "cli value",
        "--json",
    ]))
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["status"], "VALID");
    let block = v["block"].as_u64().unwrap();
    assert_eq!(v["txid"].as_str().unwrap().len(), 64);

    let (code, out, err) = run(args(&["tx", "evaluate", "testcc", "get", "cli-key"])).await;
    assert_eq!((code, out.trim()), (0, "cli value"), "{err}");

    let (code, out, _) = run(args(&["tx", "submit", "testcc", "order", "shop-1", "o-1"])).await;
    assert_eq!(code, 0);
    assert!(out.starts_with("committed "), "{out}");

    let (code, out, err) = run(args(&[
        "events",
        "testcc",
        "--from-block",
        &block.to_string(),
        "--count",
        "1",
        "--json",
    ]))
    .await;
    assert_eq!(code, 0, "{err}");
    let e: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(e["name"], "OrderPlaced");
    assert_eq!(e["payload"], "o-1");

    // A chaincode error: exit code 1, the reason, the org's failure in JSON.
    let (code, out, _) = run(args(&[
        "tx", "submit", "testcc", "fail", "no stock", "--json",
    ]))
    .await;
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["error"].as_str().unwrap().contains("no stock"), "{v}");
    assert_eq!(v["failures"][0]["msp_id"], "Brand1MSP");
    assert_eq!(v["retryable"], false);

    // Bad usage: exit code 2 and what is missing.
    let (code, _, err) = run(vec![
        "tx".into(),
        "evaluate".into(),
        "testcc".into(),
        "get".into(),
        "k".into(),
    ])
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("--peer is needed"), "{err}");
}
