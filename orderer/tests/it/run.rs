//! A node started from its files — genesis block, TLS certificate, MSP folder, configuration —
//! as `mercato-orderer start` runs it: it elects itself (one consenter), orders over TLS, serves
//! its operations endpoint, restarts from its data, and refuses a configuration that does not
//! match the channel.

use std::path::Path;

use mercato_ca::authority::{Authority, SubjectKey, TlsRequest, Validity};
use mercato_ca::crypto::to_pem;
use mercato_ca::testing::TestOrg;
use mercato_ca::{KeyAlgorithm, Role, SigningKey};
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
    config: Config,
    app: TestOrg,
    tls_root_pem: String,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Writes a one-consenter channel's files under `dir` and returns the node's configuration.
fn files(dir: &Path) -> Files {
    let app = TestOrg::new("Org1MSP");
    let orderers = TestOrg::new("OrdererMSP");
    let tls_root = Authority::new_root(
        "tlsca.orderer",
        "Orderer",
        Validity::days_from(now() - 86_400, 30),
    )
    .unwrap();
    let (key, pkcs8) = SigningKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let tls_der = tls_root
        .issue_tls(&TlsRequest {
            common_name: "orderer1".into(),
            role: Some(Role::Orderer),
            key: SubjectKey {
                algorithm: KeyAlgorithm::EcdsaP256,
                bytes: key.public_key_bytes().to_vec(),
            },
            validity: Validity::days_from(now() - 3_600, 7),
            serial: vec![0x51],
            hosts: vec!["127.0.0.1".into()],
        })
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let org = |o: &TestOrg, tls: Vec<Vec<u8>>| pb::Organization {
        msp_id: o.id.clone(),
        root_certs: vec![o.ca.certificate_der().to_vec()],
        tls_root_certs: tls,
        ..Default::default()
    };
    let channel = pb::ChannelConfig {
        channel_id: CHANNEL.into(),
        application_orgs: vec![org(&app, vec![])],
        orderer_orgs: vec![org(&orderers, vec![tls_root.certificate_der().to_vec()])],
        consenters: vec![pb::Consenter {
            id: 1,
            host: "127.0.0.1".into(),
            port: port.into(),
            msp_id: "OrdererMSP".into(),
            server_tls_cert: tls_der.clone(),
            client_tls_cert: tls_der.clone(),
        }],
        batch: Some(pb::BatchSettings {
            max_message_count: 10,
            absolute_max_bytes: 1 << 20,
            preferred_max_bytes: 512 << 10,
            batch_timeout_ms: 20,
        }),
        policies: None,
    };
    let write = |rel: &str, bytes: &[u8]| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    };
    write(
        "genesis.block",
        &new_genesis_block(&channel).encode_to_vec(),
    );
    write("tls/server.crt", to_pem("CERTIFICATE", &tls_der).as_bytes());
    write("tls/server.key", to_pem("PRIVATE KEY", &pkcs8).as_bytes());
    let (signer, signer_key) =
        orderers.member_with_key("orderer1", Role::Orderer, KeyAlgorithm::EcdsaP256);
    write("msp/signcerts/cert.pem", signer.certificate_pem());
    write(
        "msp/keystore/key.pem",
        to_pem("PRIVATE KEY", &signer_key).as_bytes(),
    );
    let text = format!(
        "[node]\nid = 1\ngenesis = \"genesis.block\"\ndata_dir = \"data\"\nlisten = \"127.0.0.1:{port}\"\noperations = \"127.0.0.1:0\"\n\n[raft]\nheartbeat_ms = 50\nelection_timeout_min_ms = 150\nelection_timeout_max_ms = 300\n"
    );
    write("orderer.toml", text.as_bytes());
    Files {
        config: Config::load(&dir.join("orderer.toml")).unwrap(),
        app,
        tls_root_pem: to_pem("CERTIFICATE", tls_root.certificate_der()),
    }
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
    let f = files(dir.path());
    let n = net();
    let client = f.app.member("alice", Role::Client, KeyAlgorithm::Ed25519);
    let mut height = 0;
    for round in 0..2u32 {
        // In one process the stopped node's sled files are released a moment after it stops
        // (its flusher thread); a restart is a new process in production.
        let mut tries = 0;
        let running = loop {
            match start(&f.config).await {
                Ok(r) => break r,
                Err(e) if e.to_string().contains("could not acquire lock") && tries < 300 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err(e) => panic!("{e}"),
            }
        };
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
    let f = files(dir.path());
    let mut c = f.config.clone();
    c.node.id = 7;
    let e = start(&c).await.unwrap_err().to_string();
    assert!(e.contains("node 7 is not a consenter"), "{e}");
    let mut c = f.config.clone();
    c.tls.cert = dir.path().join("msp/signcerts/cert.pem");
    let e = start(&c).await.unwrap_err().to_string();
    assert!(e.contains("is not the TLS certificate"), "{e}");
    let mut c = f.config.clone();
    c.node.listen = "nowhere".into();
    let e = start(&c).await.unwrap_err().to_string();
    assert!(e.contains("node.listen"), "{e}");
    let mut c = f.config.clone();
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
