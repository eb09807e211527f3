//! Fabric's official Node Gateway client (`@hyperledger/fabric-gateway` from npm), unchanged,
//! against a Mercato peer over TLS: `sdk/tests/node/interop.mjs` submits, evaluates, submits
//! asynchronously and asks the status, reads chaincode and block events, and sees an endorsement
//! error with its details. `.ci/run` installs the client (`npm ci` in `sdk/tests/node`); on a
//! machine without it the test says so and passes only outside CI.

use std::path::Path;
use std::process::Command;

use mercato_ca::crypto::to_pem;

use crate::net::{CHANNEL, Net, testcc};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fabric_node_gateway_client_works_unchanged() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    if !dir
        .join("node_modules/@hyperledger/fabric-gateway")
        .exists()
    {
        let why = format!(
            "the Fabric Node client is not installed: run `npm ci` in {}",
            dir.display()
        );
        assert!(std::env::var_os("CI").is_none(), "{why}");
        eprintln!("skipped: {why}");
        return;
    }
    let net = Net::start().await;
    net.deploy(
        "testcc",
        testcc(),
        "AND('Brand1MSP.peer', 'Brand2MSP.peer')",
    )
    .await;
    let org = &net.orgs[0];
    let files = net.dir.path().join("node-client");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("tls-ca.pem"), org.tls.root_pem()).unwrap();
    std::fs::write(files.join("cert.pem"), org.client.certificate_pem()).unwrap();
    std::fs::write(
        files.join("key.pem"),
        to_pem("PRIVATE KEY", &org.client_key),
    )
    .unwrap();
    let peer = format!("127.0.0.1:{}", org.port);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("interop.mjs")
            .current_dir(&dir)
            .env("MERCATO_PEER", peer)
            .env("MERCATO_TLS_ROOT", files.join("tls-ca.pem"))
            .env("MERCATO_CERT", files.join("cert.pem"))
            .env("MERCATO_KEY", files.join("key.pem"))
            .env("MERCATO_MSP_ID", "Brand1MSP")
            .env("MERCATO_CHANNEL", CHANNEL)
            .env("MERCATO_CHAINCODE", "testcc")
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for check in [
        "ok - submitTransaction",
        "ok - evaluateTransaction",
        "ok - submitAsync + getStatus",
        "ok - getChaincodeEvents",
        "ok - getBlockEvents",
        "ok - a chaincode error is an EndorseError with details",
    ] {
        assert!(
            stdout.contains(check),
            "missing {check:?}:\n{stdout}\n{stderr}"
        );
    }
    // Both organisations' peers hold what the Node client wrote.
    for i in 0..2 {
        let got = net
            .gateway(i, &net.orgs[i].client)
            .await
            .network(CHANNEL)
            .contract("testcc")
            .evaluate("get", &[b"node-key"])
            .await
            .unwrap();
        assert_eq!(got, b"from node");
    }
}
