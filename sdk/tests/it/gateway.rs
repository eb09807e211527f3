//! The SDK against a real network: submits land on both organisations' peers, queries, async
//! submits with their status, chaincode events, and the errors a client must be able to tell
//! apart.

use mercato_proto::Signer;
use mercato_proto::pb::Timestamp;
use mercato_proto::pb::gateway::EndorseRequest;
use mercato_proto::pb::gateway::gateway_client::GatewayClient;
use mercato_proto::proposal::{ProposalInput, new_proposal, sign_proposal};
use mercato_proto::status::decode_error_details;
use mercato_sdk::{Error, EventsFrom};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use crate::net::{CHANNEL, Net, testcc};

const BOTH: &str = "AND('Brand1MSP.peer', 'Brand2MSP.peer')";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn submit_through_the_gateway_commits_the_same_state_on_both_peers() {
    let net = Net::start().await;
    net.deploy("testcc", testcc(), BOTH).await;
    let seller = net.gateway(0, &net.orgs[0].client).await;
    let contract = seller.network(CHANNEL).contract("testcc");

    // Events from the next block on, opened before anything is submitted.
    let mut events = seller
        .network(CHANNEL)
        .chaincode_events("testcc", EventsFrom::default())
        .await
        .unwrap();

    let put = contract
        .submit("put", &[b"sku-1", b"red shoes"])
        .await
        .unwrap();
    assert!(put.block > 0);
    // A submit through the other organisation's gateway, waited for separately.
    let buyer = net.gateway(1, &net.orgs[1].client).await;
    let pending = buyer
        .network(CHANNEL)
        .contract("testcc")
        .submit_async("order", &[b"shop-1", b"order-7"])
        .await
        .unwrap();
    let ordered = pending.status().await.unwrap();
    assert!(ordered.block >= put.block);

    net.wait_height(ordered.block + 1).await;
    for i in 0..2 {
        let g = net.gateway(i, &net.orgs[i].client).await;
        let value = g
            .network(CHANNEL)
            .contract("testcc")
            .evaluate("get", &[b"sku-1"])
            .await
            .unwrap();
        assert_eq!(value, b"red shoes", "peer of org {i}");
    }
    // Evaluated on the other organisation's peer, through this one's gateway.
    let mut remote = mercato_sdk::Proposal::new("get", &[b"sku-1"]);
    remote.endorsing_orgs = vec!["Brand2MSP".into()];
    assert_eq!(
        contract.evaluate_proposal(&remote).await.unwrap(),
        b"red shoes"
    );
    let states: Vec<_> = (0..2)
        .map(|i| net.peer(i).channel.store.state_snapshot().unwrap())
        .collect();
    assert_eq!(states[0], states[1], "the peers' world states differ");

    // The order's event arrives on the stream, from the block it committed in.
    let (block, got) = loop {
        let (block, got) = events.next().await.unwrap().unwrap();
        if !got.is_empty() {
            break (block, got);
        }
    };
    assert_eq!(block, ordered.block);
    assert_eq!(got[0].event_name, "OrderPlaced");
    assert_eq!(got[0].payload, b"order-7");
    assert_eq!(got[0].tx_id, ordered.txid);

    // A stream resumed after that transaction does not repeat it.
    let mut resumed = seller
        .network(CHANNEL)
        .chaincode_events(
            "testcc",
            EventsFrom {
                block: Some(ordered.block),
                after_txid: Some(ordered.txid.clone()),
            },
        )
        .await
        .unwrap();
    contract
        .submit("order", &[b"shop-1", b"order-8"])
        .await
        .unwrap();
    let (_, next) = resumed.next().await.unwrap().unwrap();
    assert_eq!(next[0].payload, b"order-8");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_get_the_right_errors() {
    let net = Net::start().await;
    net.deploy("testcc", testcc(), BOTH).await;

    // A chaincode error: refused at endorsement, with the org's message attached.
    let seller = net.gateway(0, &net.orgs[0].client).await;
    let contract = seller.network(CHANNEL).contract("testcc");
    let e = contract
        .submit("fail", &[b"out of stock"])
        .await
        .unwrap_err();
    match &e {
        Error::Endorse {
            failures, message, ..
        } => {
            assert!(message.contains("out of stock"), "{e}");
            assert!(
                failures.iter().any(|f| f.message.contains("out of stock")),
                "{e}"
            );
        }
        other => panic!("expected an endorsement failure, got {other}"),
    }
    assert!(!e.is_retryable());
    let e = contract.evaluate("fail", &[b"nope"]).await.unwrap_err();
    assert!(
        matches!(&e, Error::Evaluate { message, .. } if message.contains("nope")),
        "{e}"
    );

    // An identity the channel does not know, and a revoked one.
    for who in [&net.stranger, &net.revoked] {
        let g = net.gateway(0, who).await;
        let e = g
            .network(CHANNEL)
            .contract("testcc")
            .submit("put", &[b"k", b"v"])
            .await
            .unwrap_err();
        match &e {
            Error::Endorse { code, message, .. } => {
                assert_eq!(*code, tonic::Code::PermissionDenied, "{e}");
                assert!(message.contains("not a valid member"), "{e}");
            }
            other => panic!("expected a refusal, got {other}"),
        }
    }

    // An auditor reads but may not write.
    contract.submit("put", &[b"k", b"v"]).await.unwrap();
    let audit = net.gateway(0, &net.auditor).await;
    let c = audit.network(CHANNEL).contract("testcc");
    assert_eq!(c.evaluate("get", &[b"k"]).await.unwrap(), b"v");
    let e = c.submit("put", &[b"k", b"v"]).await.unwrap_err();
    assert!(e.to_string().contains("auditors are read-only"), "{e}");

    // A chaincode that is not defined.
    let e = seller
        .network(CHANNEL)
        .contract("nosuch")
        .submit("put", &[b"k", b"v"])
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Endorse {
                code: tonic::Code::FailedPrecondition,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("not defined"), "{e}");

    // A policy the network cannot satisfy: no peer of Brand3MSP exists.
    net.deploy(
        "lonely",
        testcc(),
        "AND('Brand1MSP.peer', 'Brand3MSP.peer')",
    )
    .await;
    let e = seller
        .network(CHANNEL)
        .contract("lonely")
        .submit("put", &[b"k", b"v"])
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Endorse {
                code: tonic::Code::FailedPrecondition,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("satisfies the endorsement policy"),
        "{e}"
    );

    // A tampered proposal: signed, then altered.
    let who = &net.orgs[0].client;
    let input = ProposalInput {
        channel_id: CHANNEL.into(),
        chaincode: "testcc".into(),
        args: vec![b"put".to_vec(), b"k".to_vec(), b"v".to_vec()],
        transient: Default::default(),
        nonce: mercato_ca::crypto::random_nonce().unwrap(),
        timestamp: Timestamp {
            seconds: 1_800_000_000,
            nanos: 0,
        },
    };
    let unsigned = new_proposal(&input, who.creator()).unwrap();
    let mut signed = sign_proposal(unsigned.proposal_bytes, who.as_ref()).unwrap();
    let at = signed.proposal_bytes.len() - 1;
    signed.proposal_bytes[at] ^= 1;
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{}", net.orgs[0].port))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(net.orgs[0].tls.root_pem())),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = GatewayClient::new(channel)
        .endorse(EndorseRequest {
            transaction_id: unsigned.txid,
            channel_id: CHANNEL.into(),
            proposed_transaction: Some(signed),
            endorsing_organizations: vec![],
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            status.code(),
            tonic::Code::PermissionDenied | tonic::Code::InvalidArgument
        ),
        "{status:?}"
    );
    let details = decode_error_details(status.details());
    assert!(
        status.message().contains("signature does not verify")
            || status.message().contains("malformed")
            || details.iter().any(|d| d.message.contains("signature")),
        "{status:?}"
    );
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orderer_fail_over_and_a_peer_catching_up_after_a_restart() {
    let mut net = Net::start().await;
    net.deploy("testcc", testcc(), "OR('Brand1MSP.peer', 'Brand2MSP.peer')")
        .await;
    let seller = net.gateway(0, &net.orgs[0].client).await;
    let contract = seller.network(CHANNEL).contract("testcc");
    contract.submit("put", &[b"a", b"1"]).await.unwrap();

    // One orderer goes away (perhaps the leader): the gateway's submits and both peers'
    // deliveries move to the others.
    net.orderers[0].take().unwrap().stop().await;
    contract.submit("put", &[b"b", b"2"]).await.unwrap();

    // Brand2's peer stops; blocks commit without it; it comes back from its own ledger and
    // pulls what it missed.
    net.peers[1].take().unwrap().stop().await;
    let mut last = 0;
    for i in 0..5u8 {
        let key = [b'c', b'0' + i];
        last = contract.submit("put", &[&key, b"3"]).await.unwrap().block;
    }
    let restarted = crate::net::restart_peer(&net.peer_configs[1]).await;
    net.peers[1] = Some(restarted);
    net.wait_height(last + 1).await;
    assert_eq!(
        net.peer(0).channel.store.state_snapshot().unwrap(),
        net.peer(1).channel.store.state_snapshot().unwrap()
    );
    let buyer = net.gateway(1, &net.orgs[1].client).await;
    let got = buyer
        .network(CHANNEL)
        .contract("testcc")
        .evaluate("get", &[b"c4"])
        .await
        .unwrap();
    assert_eq!(got, b"3");

    // The operations port tells the same story.
    let ops = net.peer(1).operations;
    assert!(http_get(ops, "/healthz").await.starts_with("HTTP/1.1 200"));
    let metrics = http_get(ops, "/metrics").await;
    assert!(
        metrics.contains(&format!("mercato_peer_height {}", last + 1)),
        "{metrics}"
    );
    assert!(
        metrics.contains("mercato_peer_transactions_total{code=\"VALID\"}"),
        "{metrics}"
    );
    assert!(http_get(ops, "/nope").await.starts_with("HTTP/1.1 404"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conflicting_transaction_fails_its_commit_as_retryable() {
    let net = Net::start().await;
    net.deploy("testcc", testcc(), "OR('Brand1MSP.peer', 'Brand2MSP.peer')")
        .await;
    let seller = net.gateway(0, &net.orgs[0].client).await;
    let contract = seller.network(CHANNEL).contract("testcc");
    contract
        .submit("credit", &[b"alice", b"100"])
        .await
        .unwrap();
    // Both read alice's balance before either commits.
    let first = contract
        .endorse(&mercato_sdk::Proposal::new(
            "transfer",
            &[b"alice", b"bob", b"60"],
        ))
        .await
        .unwrap();
    let second = contract
        .endorse(&mercato_sdk::Proposal::new(
            "transfer",
            &[b"alice", b"carol", b"60"],
        ))
        .await
        .unwrap();
    first.submit().await.unwrap().status().await.unwrap();
    let e = second.submit().await.unwrap().status().await.unwrap_err();
    match &e {
        Error::Commit { code, .. } => assert_eq!(code.name(), "MVCC_READ_CONFLICT", "{e}"),
        other => panic!("expected a commit failure, got {other}"),
    }
    assert!(e.is_retryable(), "{e}");
    // Retried as a new transaction, it runs against the balance the first one left (the test
    // chaincode lets it go negative) and commits.
    contract
        .submit("transfer", &[b"alice", b"carol", b"60"])
        .await
        .unwrap();
    assert_eq!(contract.evaluate("get", &[b"alice"]).await.unwrap(), b"-20");
    assert_eq!(contract.evaluate("get", &[b"carol"]).await.unwrap(), b"60");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_load_generator_reports_what_committed() {
    let net = Net::start().await;
    net.deploy("testcc", testcc(), "OR('Brand1MSP.peer', 'Brand2MSP.peer')")
        .await;
    let seller = net.gateway(0, &net.orgs[0].client).await;
    let contract = seller.network(CHANNEL).contract("testcc");
    let report = mercato_sdk::bench::run(
        vec![contract.clone()],
        mercato_sdk::bench::Options {
            workload: mercato_sdk::bench::Workload::Kv { value_bytes: 10 },
            clients: 4,
            rate: None,
            // The first submits (connections, the chaincode's first instance) fall in the
            // warm-up, so that the measured second holds whole ones even on a loaded machine.
            warmup: std::time::Duration::from_secs(1),
            duration: std::time::Duration::from_secs(1),
            progress: false,
        },
    )
    .await;
    assert!(report.committed > 0, "{report:?}");
    assert!(report.failures.is_empty(), "{report:?}");
    assert_eq!(report.timeline.len(), 1);
    assert!(report.latency_ms.p50 > 0.0 && report.latency_ms.p50 <= report.latency_ms.max);
    let committed: u64 = report.timeline.iter().map(|s| s.committed).sum();
    assert_eq!(committed, report.committed);
    // What it wrote is on the ledger: as many keys under the run's prefix as it counted, or
    // more (transactions that finished after the window are not counted).
    let keys = net
        .peer(0)
        .channel
        .store
        .state_snapshot()
        .unwrap()
        .into_iter()
        .filter(|(ns, k, _)| ns == "testcc" && k.starts_with('k'))
        .count() as u64;
    assert!(
        keys >= report.committed,
        "{keys} keys, {} counted",
        report.committed
    );
    assert!(mercato_sdk::bench::svg(&report).starts_with("<svg"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_refuses_to_start_with_the_wrong_identity_or_another_channels_ledger() {
    let net = Net::start().await;
    let org = &net.orgs[0];
    // A client's identity is not a peer's.
    let mut config = net.peer_configs[0].clone();
    let msp = net.dir.path().join("client-msp");
    std::fs::create_dir_all(msp.join("signcerts")).unwrap();
    std::fs::create_dir_all(msp.join("keystore")).unwrap();
    std::fs::write(msp.join("signcerts/cert.pem"), org.client.certificate_pem()).unwrap();
    std::fs::write(
        msp.join("keystore/key.pem"),
        mercato_ca::crypto::to_pem("PRIVATE KEY", &org.client_key),
    )
    .unwrap();
    config.identity.msp_dir = msp;
    config.node.listen = "127.0.0.1:0".into();
    config.node.data_dir = net.dir.path().join("other-data");
    let e = mercato_peer::node::start(&config).await.unwrap_err();
    assert!(e.to_string().contains("needs a peer identity"), "{e}");

    // A ledger made from another genesis block is not taken for this channel's.
    let mut config = net.peer_configs[0].clone();
    config.node.listen = "127.0.0.1:0".into();
    config.node.operations = "127.0.0.1:0".into();
    config.node.data_dir = net.dir.path().join("foreign-ledger");
    {
        use mercato_peer::ledger::LedgerStore;
        let (_, channel) = mercato_peer::node::read_genesis(&config.node.genesis).unwrap();
        let ctx = mercato_peer::validator::ValidationContext::from_channel(
            &channel,
            std::sync::Arc::new(mercato_peer::validator::StaticChaincodes::default()),
            None,
            1,
        )
        .unwrap();
        let store: std::sync::Arc<dyn LedgerStore> = std::sync::Arc::new(
            mercato_peer::ledger::SledLedgerStore::open(&config.ledger_dir(), CHANNEL).unwrap(),
        );
        let committer =
            mercato_peer::committer::Committer::new(store, std::sync::Arc::new(ctx)).unwrap();
        let foreign = mercato_proto::block::new_block(0, vec![], vec![b"another chain".to_vec()]);
        committer.commit_genesis(foreign).unwrap();
    }
    let mut refused = None;
    for _ in 0..300 {
        match mercato_peer::node::start(&config).await {
            Ok(_) => panic!("a peer started on another genesis block's ledger"),
            // The store just closed above; sled lets go of its lock a moment later.
            Err(e) if e.to_string().contains("acquire lock") => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(e) => {
                refused = Some(e.to_string());
                break;
            }
        }
    }
    let refused = refused.expect("the ledger stayed locked");
    assert!(
        refused.contains("holds the ledger of another channel or genesis block"),
        "{refused}"
    );
}
