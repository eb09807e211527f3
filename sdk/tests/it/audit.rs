//! Auditors: the ledger query service through the SDK, and `mercato audit verify` and
//! `mercato audit export` on a live network, on an untouched copy of a peer's data and on copies
//! with one byte of a stored block or of the stored state changed.

use std::path::Path;
use std::process::Command;

use mercato_ca::crypto::to_pem;
use mercato_peer::ledger::{LedgerStore, SledLedgerStore};
use mercato_proto::pb::common::Block;
use prost::Message;

use crate::net::{CHANNEL, Net, open_stopped_ledger, testcc};

fn mercato(args: Vec<String>) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mercato"))
        .args(&args)
        .output()
        .expect("run mercato");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn run(args: &[&str]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || mercato(args))
        .await
        .unwrap()
}

/// `mercato audit verify` on a copy of a peer's data directory.
async fn verify_copy(data: &Path) -> (i32, String, String) {
    run(&[
        "--channel",
        CHANNEL,
        "audit",
        "verify",
        "--data",
        data.to_str().unwrap(),
    ])
    .await
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The file under `dir` holding `needle`, and where in it.
fn find_in_files(dir: &Path, needle: &[u8]) -> Option<(std::path::PathBuf, usize)> {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if let Some(found) = find_in_files(&path, needle) {
                return Some(found);
            }
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            return Some((path, at));
        }
    }
    None
}

/// Sets the byte at `offset` of the first occurrence of `needle` in a file under `dir` (by
/// default, flips its lowest bit).
fn change_byte(dir: &Path, needle: &[u8], offset: usize, value: Option<u8>) {
    let (path, at) = find_in_files(dir, needle)
        .unwrap_or_else(|| panic!("{} holds no such bytes", dir.display()));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[at + offset] = value.unwrap_or(bytes[at + offset] ^ 0x01);
    std::fs::write(&path, bytes).unwrap();
}

/// An MSP folder and a CLI profile for the network's auditor, on Brand1's peer.
fn auditor_profile(net: &Net) -> std::path::PathBuf {
    let home = net.dir.path().join("auditor");
    std::fs::create_dir_all(home.join("msp/signcerts")).unwrap();
    std::fs::create_dir_all(home.join("msp/keystore")).unwrap();
    std::fs::write(
        home.join("msp/signcerts/cert.pem"),
        net.auditor.certificate_pem(),
    )
    .unwrap();
    std::fs::write(
        home.join("msp/keystore/key.pem"),
        to_pem("PRIVATE KEY", &net.auditor_key),
    )
    .unwrap();
    std::fs::write(home.join("tls-ca.pem"), net.orgs[0].tls.root_pem()).unwrap();
    let profile = home.join("profile.toml");
    std::fs::write(
        &profile,
        format!(
            "peer = \"127.0.0.1:{}\"\ntls_root = \"tls-ca.pem\"\nmsp_id = \"Brand1MSP\"\nmsp_dir = \"msp\"\nchannel = \"{CHANNEL}\"\n",
            net.orgs[0].port
        ),
    )
    .unwrap();
    profile
}

/// Where the TRANSACTIONS_FILTER entry's bytes start in an encoded block: after the header and
/// the data come the metadata's entries, each a length-prefixed field 1 (SIGNATURES,
/// LAST_CONFIG, TRANSACTIONS_FILTER, ...).
fn filter_offset(encoded: &[u8]) -> usize {
    let block = Block::decode(encoded).unwrap();
    let mut pos = Block {
        metadata: None,
        ..block
    }
    .encoded_len();
    let varint = |pos: &mut usize| {
        let mut rest = &encoded[*pos..];
        let before = rest.len();
        let v = prost::encoding::decode_varint(&mut rest).unwrap() as usize;
        *pos += before - rest.len();
        v
    };
    assert_eq!(encoded[pos], 0x1a, "Block.metadata");
    pos += 1;
    varint(&mut pos);
    for _ in 0..2 {
        assert_eq!(encoded[pos], 0x0a, "BlockMetadata.metadata");
        pos += 1;
        let len = varint(&mut pos);
        pos += len;
    }
    assert_eq!(encoded[pos], 0x0a);
    pos += 1;
    varint(&mut pos);
    pos
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auditor_queries_verifies_and_exports_the_ledger_and_finds_tampering() {
    let mut net = Net::start().await;
    net.deploy(
        "testcc",
        testcc(),
        "AND('Brand1MSP.peer', 'Brand2MSP.peer')",
    )
    .await;
    let seller = net.gateway(0, &net.orgs[0].client).await;
    let cc = seller.network(CHANNEL).contract("testcc");
    let first = cc
        .submit("put", &[b"item-1", b"first-value"])
        .await
        .unwrap();
    let second = cc
        .submit("put", &[b"item-1", b"tamper-me-0123456789"])
        .await
        .unwrap();
    let third = cc.submit("put", &[b"item-2", b"x"]).await.unwrap();
    // The height the last commit makes (the peers' own counters may trail their stores by an
    // instant).
    let height = third.block + 1;
    net.wait_height(height).await;

    // The query service, as the auditor.
    let ledger = net.gateway(0, &net.auditor).await.network(CHANNEL).ledger();
    let info = ledger.chain_info().await.unwrap();
    assert_eq!(info.height, height);
    assert_eq!(info.commit_hash.len(), 32);
    let on_other_peer = net.gateway(1, &net.auditor).await.network(CHANNEL).ledger();
    assert_eq!(
        on_other_peer.chain_info().await.unwrap().commit_hash,
        info.commit_hash,
        "two peers that committed the same blocks agree on the commit hash"
    );
    let block = ledger.block(second.block).await.unwrap();
    assert_eq!(block.number, second.block);
    assert_eq!(
        ledger.block_by_hash(&block.hash).await.unwrap().block,
        block.block
    );
    assert_eq!(
        ledger.block_by_txid(&second.txid).await.unwrap().number,
        second.block
    );
    let tx = ledger.transaction(&second.txid).await.unwrap();
    assert_eq!(tx.validation_code_name, "VALID");
    assert_eq!(tx.block_number, second.block);
    let creator = tx.creator.as_ref().unwrap();
    assert_eq!(
        (creator.msp_id.as_str(), creator.name.as_str()),
        ("Brand1MSP", "seller1")
    );
    let mut endorsers: Vec<&str> = tx.endorsers.iter().map(|e| e.msp_id.as_str()).collect();
    endorsers.sort();
    assert_eq!(endorsers, ["Brand1MSP", "Brand2MSP"]);
    assert_eq!(tx.chaincode, "testcc");
    assert_eq!(tx.args[0], b"put");
    assert_eq!(tx.writes.len(), 1);
    assert_eq!(tx.writes[0].key, "item-1");
    assert_eq!(tx.writes[0].value, b"tamper-me-0123456789");
    assert!(tx.timestamp.is_some());

    let history = ledger.history("testcc", "item-1").await.unwrap();
    let seen: Vec<(&str, &[u8])> = history
        .iter()
        .map(|h| (h.txid.as_str(), h.value.as_slice()))
        .collect();
    assert_eq!(
        seen,
        [
            (first.txid.as_str(), &b"first-value"[..]),
            (second.txid.as_str(), &b"tamper-me-0123456789"[..])
        ]
    );
    let page = ledger
        .history_page("testcc", "item-1", None, 1)
        .await
        .unwrap();
    assert!(page.more && page.entries.len() == 1);
    let page = ledger
        .history_page("testcc", "item-1", page.entries[0].version, 1)
        .await
        .unwrap();
    assert_eq!(page.entries[0].txid, second.txid);
    let state = ledger.state("testcc", "item-1").await.unwrap().unwrap();
    assert_eq!(state.value, b"tamper-me-0123456789");
    assert_eq!(state.version.unwrap().block, second.block);
    assert!(ledger.state("testcc", "nothing").await.unwrap().is_none());
    let page = ledger.state_range("testcc", "", "", 1).await.unwrap();
    assert_eq!(page.entries[0].key, "item-1");
    assert!(page.more);
    let page = ledger
        .state_range("testcc", &page.next_start_key, "", 1)
        .await
        .unwrap();
    assert_eq!(page.entries[0].key, "item-2");
    assert!(!page.more);
    let missing = ledger.transaction("no-such-tx").await.unwrap_err();
    assert!(missing.to_string().contains("NotFound"), "{missing}");
    let stranger = net
        .gateway(0, &net.stranger)
        .await
        .network(CHANNEL)
        .ledger();
    let refused = stranger.chain_info().await.unwrap_err();
    assert!(
        refused.to_string().contains("PermissionDenied"),
        "{refused}"
    );
    let oversized = ledger
        .state_range("testcc", "", "", 5000)
        .await
        .unwrap_err();
    assert!(oversized.to_string().contains("limit"), "{oversized}");
    let reversed = ledger.state_range("testcc", "b", "a", 0).await.unwrap_err();
    assert!(reversed.to_string().contains("after its end"), "{reversed}");

    // The CLI, with the auditor's profile.
    let profile = auditor_profile(&net);
    let p = profile.to_str().unwrap();
    let (rc, out, err) = run(&["--profile", p, "audit", "verify"]).await;
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("OK: no findings"), "{out}");
    assert_eq!(
        out.matches("agrees").count(),
        3,
        "the audited peer and both listed: {out}"
    );
    let (rc, out, err) = run(&["--profile", p, "ledger", "tx", &second.txid, "--json"]).await;
    assert_eq!(rc, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["function"], "put");
    assert_eq!(v["writes"][0]["value"], "tamper-me-0123456789");

    // Copies of Brand2's peer's data, taken once it has stopped (a running peer locks them).
    let data = net.peer_configs[1].node.data_dir.clone();
    net.peers[1].take().unwrap().stop().await;
    drop(open_stopped_ledger(&data.join("ledger")).await);
    let copies = tempfile::tempdir().unwrap();
    let (good, bad_block, bad_state, bad_code) = (
        copies.path().join("good"),
        copies.path().join("block"),
        copies.path().join("state"),
        copies.path().join("code"),
    );
    for c in [&good, &bad_block, &bad_state, &bad_code] {
        copy_dir(&data, c);
    }
    let dir = |d: &Path| d.to_str().unwrap().to_owned();
    let (rc, out, err) = run(&[
        "--channel",
        CHANNEL,
        "--json",
        "audit",
        "verify",
        "--data",
        &dir(&good),
    ])
    .await;
    assert_eq!(rc, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["blocks"], height);
    assert_eq!(report["commit_hash"], hex::encode(&info.commit_hash));
    let transactions = report["transactions"].as_u64().unwrap();

    let csv = copies.path().join("tx.csv");
    let (rc, _, err) = run(&[
        "--channel",
        CHANNEL,
        "audit",
        "export",
        "--data",
        &dir(&good),
        "--format",
        "csv",
        "--out",
        csv.to_str().unwrap(),
    ])
    .await;
    assert_eq!(rc, 0, "{err}");
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(
        text.starts_with("block,tx,txid,timestamp_ms,code,"),
        "{text}"
    );
    assert_eq!(text.lines().count() as u64, transactions + 1);
    let row = text.lines().find(|l| l.contains(&second.txid)).unwrap();
    assert!(
        row.contains(",VALID,Brand1MSP,seller1,testcc,put,"),
        "{row}"
    );
    let (rc, out, err) = run(&[
        "--channel",
        CHANNEL,
        "audit",
        "export",
        "--data",
        &dir(&good),
        "--from-block",
        &second.block.to_string(),
        "--to-block",
        &second.block.to_string(),
    ])
    .await;
    assert_eq!(rc, 0, "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        rows.iter().any(|r| r["txid"] == second.txid.as_str()),
        "{out}"
    );

    // One byte of a stored block: the replay refuses that block and names it.
    change_byte(
        &bad_block.join("ledger").join("blocks"),
        b"tamper-me-0123456789",
        0,
        None,
    );
    let (rc, out, err) = verify_copy(&bad_block).await;
    assert_eq!(rc, 1, "{out}{err}");
    assert!(out.contains(&format!("block {}:", second.block)), "{out}");

    // One byte of a stored state value: the state comparison names the block that wrote it.
    {
        let db = sled::open(bad_state.join("ledger").join("index")).unwrap();
        let tree = db.open_tree(format!("ledger/{CHANNEL}")).unwrap();
        let (key, mut value) = tree
            .iter()
            .map(Result::unwrap)
            .find(|(_, v)| v.windows(9).any(|w| w == b"tamper-me"))
            .map(|(k, v)| (k, v.to_vec()))
            .expect("the state entry of item-1");
        let at = value.windows(9).position(|w| w == b"tamper-me").unwrap();
        value[at] ^= 0x01;
        tree.insert(key, value).unwrap();
        db.flush().unwrap();
    }
    let (rc, out, err) = verify_copy(&bad_state).await;
    assert_eq!(rc, 1, "{out}{err}");
    assert!(
        out.contains(&format!(
            "block {} transaction {}: state testcc/\"item-1\"",
            second.block, tx.tx_index
        )),
        "{out}"
    );
    // One validation code in a stored block's TRANSACTIONS_FILTER: the replay disagrees with it.
    let stored = {
        let store = SledLedgerStore::open(&bad_code.join("ledger"), CHANNEL).unwrap();
        store.block(second.block).unwrap().unwrap()
    };
    let at = filter_offset(&stored) + tx.tx_index as usize;
    assert_eq!(stored[at], 0, "VALID");
    // 11 is MVCC_READ_CONFLICT.
    change_byte(
        &bad_code.join("ledger").join("blocks"),
        &stored,
        at,
        Some(11),
    );
    let (rc, out, err) = verify_copy(&bad_code).await;
    assert_eq!(rc, 1, "{out}{err}");
    assert!(
        out.contains(&format!(
            "block {} transaction {}: recorded as MVCC_READ_CONFLICT, but validation gives VALID",
            second.block, tx.tx_index
        )),
        "{out}"
    );

    // A directory that is not a peer's is refused as usage.
    let (rc, _, err) = verify_copy(copies.path()).await;
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("not a peer's data directory"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_verify_names_the_block_from_which_a_peer_diverges() {
    let mut net = Net::start().await;
    net.deploy(
        "testcc",
        testcc(),
        "AND('Brand1MSP.peer', 'Brand2MSP.peer')",
    )
    .await;
    let cc = net
        .gateway(0, &net.orgs[0].client)
        .await
        .network(CHANNEL)
        .contract("testcc");
    let done = cc.submit("put", &[b"a", b"1"]).await.unwrap();
    net.wait_height(done.block + 1).await;

    // Brand2's peer stops, and the commit hash recorded in its last block is changed, as by an
    // operator editing its files; restarted, it goes on from that hash.
    let last = done.block;
    let data = net.peer_configs[1].node.data_dir.clone();
    net.peers[1].take().unwrap().stop().await;
    let recorded = {
        let store = open_stopped_ledger(&data.join("ledger")).await;
        let block = Block::decode(store.block(last).unwrap().unwrap().as_slice()).unwrap();
        mercato_proto::block::commit_hash(&block).unwrap().unwrap()
    };
    change_byte(&data.join("ledger").join("blocks"), &recorded, 0, None);
    net.peers[1] = Some(crate::net::restart_peer(&net.peer_configs[1]).await);
    let next = cc.submit("put", &[b"b", b"2"]).await.unwrap();
    net.wait_height(next.block + 1).await;

    let profile = auditor_profile(&net);
    let (rc, out, err) = run(&["--profile", profile.to_str().unwrap(), "audit", "verify"]).await;
    assert_eq!(rc, 1, "{out}{err}");
    let diverging = format!("127.0.0.1:{}", net.orgs[1].port);
    assert!(
        out.contains(&format!(
            "block {last}: peer {diverging}'s commit hash differs from the replay's"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "peer {diverging}: height {}, DIVERGES at block {last}",
            next.block + 1
        )),
        "{out}"
    );
    // The audited peer, Brand1's, agrees with the replay.
    assert!(out.contains("peer (the audited peer)"), "{out}");
    assert!(out.contains("agrees"), "{out}");
}
