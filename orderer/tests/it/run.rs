//! A node started from its files — genesis block, TLS certificate, MSP folder, configuration —
//! as `mercato-orderer start` runs it: it elects itself (one consenter), orders over TLS, serves
//! its operations endpoint, restarts from its data, and refuses a configuration that does not
//! match the channel.

use std::path::Path;

use mercato_ca::crypto::to_pem;
use mercato_ca::testing::TestOrg;
use mercato_ca::{KeyAlgorithm, Role};
use mercato_orderer::config::Config;
use mercato_orderer::run::start;
use mercato_proto::config::new_genesis_block;
use mercato_proto::pb::common::Status;
use mercato_proto::pb::mercato as pb;
use mercato_proto::pb::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use crate::broadcast::{CHANNEL, net, tx_with_nonce};

struct Files {
    /// Each node's configuration, in id order.
    configs: Vec<Config>,
    app: TestOrg,
    tls_root_pem: String,
}

/// Writes the files of a channel with `count` consenters under `dir` (`node{i}/`: genesis
/// block, TLS certificate and key, MSP folder, `orderer.toml`) and returns their configurations.
fn files_n(dir: &Path, count: u64) -> Files {
    let app = TestOrg::new("Org1MSP");
    let orderers = TestOrg::new("OrdererMSP");
    let tls = mercato_ca::testing::TestTls::new("tlsca.orderer");
    let nodes: Vec<(u64, u16, Vec<u8>, Vec<u8>)> = (1..=count)
        .map(|id| {
            let (der, pkcs8) = tls.issue(&format!("orderer{id}"), Role::Orderer, &["127.0.0.1"]);
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            (id, port, der, pkcs8)
        })
        .collect();
    let org = |o: &TestOrg, tls: Vec<Vec<u8>>| pb::Organization {
        msp_id: o.id.clone(),
        root_certs: vec![o.ca.certificate_der().to_vec()],
        tls_root_certs: tls,
        ..Default::default()
    };
    let channel = pb::ChannelConfig {
        channel_id: CHANNEL.into(),
        application_orgs: vec![org(&app, vec![])],
        orderer_orgs: vec![org(&orderers, vec![tls.root.certificate_der().to_vec()])],
        consenters: nodes
            .iter()
            .map(|(id, port, der, _)| pb::Consenter {
                id: *id,
                host: "127.0.0.1".into(),
                port: (*port).into(),
                msp_id: "OrdererMSP".into(),
                server_tls_cert: der.clone(),
                client_tls_cert: der.clone(),
            })
            .collect(),
        batch: Some(pb::BatchSettings {
            max_message_count: 10,
            absolute_max_bytes: 1 << 20,
            preferred_max_bytes: 512 << 10,
            batch_timeout_ms: 20,
        }),
        policies: None,
    };
    let genesis = new_genesis_block(&channel).encode_to_vec();
    let configs = nodes
        .iter()
        .map(|(id, port, der, pkcs8)| {
            let home = dir.join(format!("node{id}"));
            let write = |rel: &str, bytes: &[u8]| {
                let p = home.join(rel);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, bytes).unwrap();
            };
            write("genesis.block", &genesis);
            write("tls/server.crt", to_pem("CERTIFICATE", der).as_bytes());
            write("tls/server.key", to_pem("PRIVATE KEY", pkcs8).as_bytes());
            let (signer, signer_key) =
                orderers.member_with_key(&format!("orderer{id}"), Role::Orderer, KeyAlgorithm::EcdsaP256);
            write("msp/signcerts/cert.pem", signer.certificate_pem());
            write("msp/keystore/key.pem", to_pem("PRIVATE KEY", &signer_key).as_bytes());
            let text = format!(
                "[node]\nid = {id}\ngenesis = \"genesis.block\"\ndata_dir = \"data\"\nlisten = \"127.0.0.1:{port}\"\noperations = \"127.0.0.1:0\"\n\n[raft]\nheartbeat_ms = 50\nelection_timeout_min_ms = 200\nelection_timeout_max_ms = 400\n"
            );
            write("orderer.toml", text.as_bytes());
            Config::load(&home.join("orderer.toml")).unwrap()
        })
        .collect();
    Files {
        configs,
        app,
        tls_root_pem: tls.root_pem(),
    }
}

/// A one-consenter channel.
fn files(dir: &Path) -> (Files, Config) {
    let f = files_n(dir, 1);
    let c = f.configs[0].clone();
    (f, c)
}

/// Starts a node, waiting (boundedly) for a node of the same files that just stopped to
/// release them: in one process sled's flusher lets go a moment later; in production a restart
/// is a new process.
async fn start_when_free(config: &Config) -> mercato_orderer::run::Running {
    for _ in 0..300 {
        match start(config).await {
            Ok(r) => return r,
            Err(e) if e.to_string().contains("could not acquire lock") => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the node's files stayed locked");
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_runs_from_its_files_and_restarts_from_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let (f, config) = files(dir.path());
    let n = net();
    let client = f.app.member("alice", Role::Client, KeyAlgorithm::Ed25519);
    let mut height = 0;
    for round in 0..2u32 {
        let running = start_when_free(&config).await;
        running
            .node
            .raft()
            .wait(Some(std::time::Duration::from_secs(10)))
            .metrics(|m| m.current_leader == Some(1), "leader")
            .await
            .unwrap();
        if round == 1 {
            // The chain survived the restart.
            assert_eq!(running.node.ledger().height(), height);
        }
        let channel = Endpoint::from_shared(format!("https://{}", running.listen))
            .unwrap()
            .tls_config(
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&f.tls_root_pem)),
            )
            .unwrap()
            .connect()
            .await
            .unwrap();
        let env = tx_with_nonce(&n, &client, CHANNEL, 8, &round.to_be_bytes().repeat(6));
        let mut answers = AtomicBroadcastClient::new(channel)
            .broadcast(futures::stream::iter([env]))
            .await
            .unwrap()
            .into_inner();
        let r = answers.message().await.unwrap().unwrap();
        assert_eq!(r.status, Status::Success as i32, "{}", r.info);
        height = running.node.ledger().height();
        assert_eq!(height, 2 + u64::from(round));

        let health = http_get(running.operations, "/healthz").await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        let metrics = http_get(running.operations, "/metrics").await;
        assert!(
            metrics.contains(&format!("mercato_orderer_height {height}")),
            "{metrics}"
        );
        assert!(
            metrics.contains("mercato_orderer_raft_leader 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("mercato_orderer_broadcast_ordered_total 1"),
            "{metrics}"
        );
        assert!(
            http_get(running.operations, "/nope")
                .await
                .starts_with("HTTP/1.1 404")
        );
        running.stop().await;
    }
}

#[tokio::test]
async fn a_configuration_that_does_not_match_the_channel_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, config) = files(dir.path());
    let mut c = config.clone();
    c.node.id = 7;
    let e = start(&c).await.unwrap_err().to_string();
    assert!(e.contains("node 7 is not a consenter"), "{e}");
    let mut c = config.clone();
    c.tls.cert = dir.path().join("node1/msp/signcerts/cert.pem");
    let e = start(&c).await.unwrap_err().to_string();
    assert!(e.contains("is not the TLS certificate"), "{e}");
    let mut c = config.clone();
    c.node.listen = "nowhere".into();
    let e = start(&c).await.unwrap_err().to_string();
    assert!(e.contains("node.listen"), "{e}");
    let mut c = config.clone();
    c.apply_env([("MERCATO_ORDERER_ID".to_string(), "x".to_string())])
        .unwrap_err();
    c.apply_env([("MERCATO_ORDERER_BOGUS".to_string(), "1".to_string())])
        .unwrap_err();
    c.apply_env([("MERCATO_ORDERER_ID".to_string(), "3".to_string())])
        .unwrap();
    assert_eq!(c.node.id, 3);
}

#[test]
fn the_sample_configuration_parses_and_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/orderer.toml");
    let c = Config::load(&path).unwrap();
    c.validate().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_started_from_their_files_form_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let f = files_n(dir.path(), 3);
    let n = net();
    let client = f.app.member("alice", Role::Client, KeyAlgorithm::Ed25519);
    // Started in reverse: node 1, the lowest id, starts the cluster when it comes up.
    let mut running = Vec::new();
    for c in f.configs.iter().rev() {
        running.push(start(c).await.unwrap());
    }
    for r in &running {
        r.node
            .raft()
            .wait(Some(std::time::Duration::from_secs(10)))
            .metrics(|m| m.current_leader.is_some(), "a leader known")
            .await
            .unwrap();
    }
    // A client at node 3 (whichever node leads, node 3 answers).
    let at = running[0].listen;
    let channel = Endpoint::from_shared(format!("https://{at}"))
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&f.tls_root_pem)))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let envelopes: Vec<_> = (0..5u32)
        .map(|i| tx_with_nonce(&n, &client, CHANNEL, 8, &i.to_be_bytes().repeat(6)))
        .collect();
    let mut answers = AtomicBroadcastClient::new(channel)
        .broadcast(futures::stream::iter(envelopes))
        .await
        .unwrap()
        .into_inner();
    for i in 0..5 {
        let r = answers.message().await.unwrap().unwrap();
        assert_eq!(r.status, Status::Success as i32, "envelope {i}: {}", r.info);
    }
    let leader = running[0]
        .node
        .raft()
        .metrics()
        .borrow()
        .current_leader
        .unwrap();
    let height = running
        .iter()
        .find(|r| r.node.id() == leader)
        .unwrap()
        .node
        .ledger()
        .height();
    for r in &running {
        let mut h = r.node.ledger().watch_height();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            h.wait_for(|x| *x >= height),
        )
        .await
        .unwrap()
        .unwrap();
    }
    let chain = |r: &mercato_orderer::run::Running| -> Vec<Vec<u8>> {
        (0..height)
            .map(|b| r.node.ledger().block(b).unwrap().unwrap())
            .collect()
    };
    assert!(running.windows(2).all(|w| chain(&w[0]) == chain(&w[1])));
    for r in running {
        r.stop().await;
    }
}
