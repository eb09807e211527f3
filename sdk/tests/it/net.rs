//! An in-process Mercato network from real files: three Raft orderers and one peer for each of
//! two brand organisations, each started as `mercato-orderer start` / `mercato-peer start` would
//! (genesis block, TLS certificates, MSP folders, TOML configuration), talking real gRPC over TLS
//! on 127.0.0.1; a chaincode installed, approved and committed through the SDK.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mercato_ca::authority::Revocation;
use mercato_ca::crypto::to_pem;
use mercato_ca::testing::{NOW, TestOrg, TestTls};
use mercato_ca::{KeyAlgorithm, Role, SigningIdentity};
use mercato_peer::lifecycle::{APPROVE, COMMIT, ChaincodeDefinition, LIFECYCLE, new_package};
use mercato_proto::config::new_genesis_block;
use mercato_proto::pb::mercato as pb;
use mercato_sdk::{Gateway, Proposal};
use prost::Message;

pub const CHANNEL: &str = "commerce";
pub const ORGS: [&str; 2] = ["Brand1MSP", "Brand2MSP"];

/// A free port on 127.0.0.1 (bound and released; the node binds it again at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Writes an MSP folder for a signing identity.
fn write_msp(dir: &Path, id: &SigningIdentity, pkcs8: &[u8]) {
    write(&dir.join("signcerts/cert.pem"), id.certificate_pem());
    write(
        &dir.join("keystore/key.pem"),
        to_pem("PRIVATE KEY", pkcs8).as_bytes(),
    );
}

/// One application organisation.
pub struct Org {
    pub ca: TestOrg,
    pub tls: TestTls,
    pub port: u16,
    pub admin: Arc<SigningIdentity>,
    pub client: Arc<SigningIdentity>,
    /// The client's private key, PKCS#8 DER.
    pub client_key: Vec<u8>,
}

pub struct Net {
    /// Every node's files (removed when the network is dropped).
    pub dir: tempfile::TempDir,
    pub orgs: Vec<Org>,
    pub orderer_configs: Vec<mercato_orderer::config::Config>,
    pub orderers: Vec<Option<mercato_orderer::run::Running>>,
    pub peer_configs: Vec<mercato_peer::node::Config>,
    pub peers: Vec<Option<mercato_peer::node::Running>>,
    /// A member of an organisation outside the channel.
    pub stranger: Arc<SigningIdentity>,
    /// A client of Brand1 whose certificate the channel's CRL revokes.
    pub revoked: Arc<SigningIdentity>,
    /// An auditor of Brand1 (read-only), and its key (PKCS#8 DER).
    pub auditor: Arc<SigningIdentity>,
    pub auditor_key: Vec<u8>,
}

/// Builds the test chaincode (`chaincode/testcc`) for wasm, into its own target directory.
pub fn testcc() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| {
        let root: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_owned();
        let target = root.join("target").join("chaincode");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "build",
                "-q",
                "-p",
                "mercato-testcc",
                "--target",
                "wasm32-unknown-unknown",
                "--profile",
                "wasm",
                "--target-dir",
            ])
            .arg(&target)
            .current_dir(&root)
            .output()
            .expect("run cargo");
        assert!(
            out.status.success(),
            "building testcc: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read(target.join("wasm32-unknown-unknown/wasm/mercato_testcc.wasm")).unwrap()
    })
}

impl Net {
    /// Writes every node's files and starts the network. The ports are chosen before the
    /// genesis block lists them, so another process may take one in between (an outgoing
    /// connection's ephemeral port): then the network is made again on fresh ports.
    pub async fn start() -> Net {
        let mut last = String::new();
        for _ in 0..5 {
            match Self::try_start().await {
                Ok(net) => return net,
                Err(e) if e.contains("listening on") => last = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("no free ports for the network: {last}");
    }

    async fn try_start() -> Result<Net, String> {
        let dir = tempfile::tempdir().unwrap();
        let orderer_org = TestOrg::new("OrdererMSP");
        let orderer_tls = TestTls::new("tlsca.orderer");
        let orgs: Vec<Org> = ORGS
            .iter()
            .map(|id| {
                let ca = TestOrg::new(id);
                let admin = ca.member("admin", Role::Admin, KeyAlgorithm::EcdsaP256);
                let (client, client_key) =
                    ca.member_with_key("seller1", Role::Client, KeyAlgorithm::EcdsaP256);
                Org {
                    tls: TestTls::new(&format!("tlsca.{id}")),
                    ca,
                    port: free_port(),
                    admin: Arc::new(admin),
                    client: Arc::new(client),
                    client_key,
                }
            })
            .collect();
        let revoked = orgs[0]
            .ca
            .member("revoked1", Role::Client, KeyAlgorithm::EcdsaP256);
        let (auditor, auditor_key) =
            orgs[0]
                .ca
                .member_with_key("auditor1", Role::Auditor, KeyAlgorithm::EcdsaP256);
        let stranger =
            TestOrg::new("Brand1MSP").member("impostor", Role::Client, KeyAlgorithm::EcdsaP256);
        let revoked_serial = mercato_ca::MspManager::new([orgs[0].ca.msp()])
            .identity(revoked.serialized())
            .unwrap()
            .serial()
            .to_owned();
        let crl = orgs[0]
            .ca
            .ca
            .crl(
                &[Revocation {
                    serial: hex::decode(revoked_serial).unwrap(),
                    revoked_at: NOW - 60,
                }],
                1,
                NOW - 60,
                NOW + 86_400 * 365,
            )
            .unwrap();

        let orderer_nodes: Vec<(u64, u16, Vec<u8>, Vec<u8>)> = (1..=3)
            .map(|id| {
                let (der, pkcs8) =
                    orderer_tls.issue(&format!("orderer{id}"), Role::Orderer, &["127.0.0.1"]);
                (id, free_port(), der, pkcs8)
            })
            .collect();
        let channel = pb::ChannelConfig {
            channel_id: CHANNEL.into(),
            application_orgs: orgs
                .iter()
                .enumerate()
                .map(|(i, o)| pb::Organization {
                    msp_id: o.ca.id.clone(),
                    root_certs: vec![o.ca.ca.certificate_der().to_vec()],
                    crls: if i == 0 { vec![crl.clone()] } else { vec![] },
                    tls_root_certs: vec![o.tls.root.certificate_der().to_vec()],
                    peers: vec![pb::Endpoint {
                        host: "127.0.0.1".into(),
                        port: o.port.into(),
                    }],
                    ..Default::default()
                })
                .collect(),
            orderer_orgs: vec![pb::Organization {
                msp_id: "OrdererMSP".into(),
                root_certs: vec![orderer_org.ca.certificate_der().to_vec()],
                tls_root_certs: vec![orderer_tls.root.certificate_der().to_vec()],
                orderers: orderer_nodes
                    .iter()
                    .map(|(_, port, _, _)| pb::Endpoint {
                        host: "127.0.0.1".into(),
                        port: (*port).into(),
                    })
                    .collect(),
                ..Default::default()
            }],
            consenters: orderer_nodes
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

        let orderer_configs: Vec<mercato_orderer::config::Config> = orderer_nodes
            .iter()
            .map(|(id, port, der, pkcs8)| {
                let home = dir.path().join(format!("orderer{id}"));
                write(&home.join("genesis.block"), &genesis);
                write(&home.join("tls/server.crt"), to_pem("CERTIFICATE", der).as_bytes());
                write(&home.join("tls/server.key"), to_pem("PRIVATE KEY", pkcs8).as_bytes());
                let (signer, key) = orderer_org.member_with_key(&format!("orderer{id}"), Role::Orderer, KeyAlgorithm::EcdsaP256);
                write_msp(&home.join("msp"), &signer, &key);
                let text = format!(
                    "[node]\nid = {id}\nlisten = \"127.0.0.1:{port}\"\noperations = \"127.0.0.1:0\"\n\n[identity]\nmsp_id = \"OrdererMSP\"\n\n[raft]\nheartbeat_ms = 50\nelection_timeout_min_ms = 300\nelection_timeout_max_ms = 600\n"
                );
                write(&home.join("orderer.toml"), text.as_bytes());
                mercato_orderer::config::Config::load(&home.join("orderer.toml")).unwrap()
            })
            .collect();
        let peer_configs: Vec<mercato_peer::node::Config> = orgs
            .iter()
            .map(|o| {
                let home = dir.path().join(format!("peer0.{}", o.ca.id));
                write(&home.join("genesis.block"), &genesis);
                let (der, pkcs8) = o.tls.issue("peer0", Role::Peer, &["127.0.0.1"]);
                write(&home.join("tls/server.crt"), to_pem("CERTIFICATE", &der).as_bytes());
                write(&home.join("tls/server.key"), to_pem("PRIVATE KEY", &pkcs8).as_bytes());
                let (signer, key) = o.ca.member_with_key("peer0", Role::Peer, KeyAlgorithm::EcdsaP256);
                write_msp(&home.join("msp"), &signer, &key);
                let text = format!(
                    "[node]\nlisten = \"127.0.0.1:{}\"\noperations = \"127.0.0.1:0\"\n\n[identity]\nmsp_id = \"{}\"\n\n[ledger]\nverify_threads = 2\n",
                    o.port, o.ca.id
                );
                write(&home.join("peer.toml"), text.as_bytes());
                mercato_peer::node::Config::load(&home.join("peer.toml")).unwrap()
            })
            .collect();
        let mut net = Net {
            dir,
            orgs,
            orderers: Vec::new(),
            orderer_configs,
            peer_configs,
            peers: Vec::new(),
            stranger: Arc::new(stranger),
            revoked: Arc::new(revoked),
            auditor: Arc::new(auditor),
            auditor_key,
        };
        let mut failure = None;
        for c in &net.orderer_configs {
            match mercato_orderer::run::start(c).await {
                Ok(r) => net.orderers.push(Some(r)),
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        if failure.is_none() {
            for c in &net.peer_configs {
                match mercato_peer::node::start(c).await {
                    Ok(r) => net.peers.push(Some(r)),
                    Err(e) => {
                        failure = Some(e.to_string());
                        break;
                    }
                }
            }
        }
        if let Some(e) = failure {
            for p in net.peers.iter_mut().filter_map(Option::take) {
                p.stop().await;
            }
            for o in net.orderers.iter_mut().filter_map(Option::take) {
                o.stop().await;
            }
            return Err(e);
        }
        Ok(net)
    }

    /// A gateway on org `i`'s peer, as `who`.
    pub async fn gateway(&self, i: usize, who: &Arc<SigningIdentity>) -> Gateway {
        Gateway::connect(
            &format!("127.0.0.1:{}", self.orgs[i].port),
            self.orgs[i].tls.root_pem().as_bytes(),
            Arc::clone(who),
        )
        .await
        .unwrap()
    }

    /// The running peer of org `i`.
    pub fn peer(&self, i: usize) -> &mercato_peer::node::Running {
        self.peers[i].as_ref().unwrap()
    }

    /// Waits until every running peer reaches `height`.
    pub async fn wait_height(&self, height: u64) {
        for p in self.peers.iter().flatten() {
            let mut events = p.channel.committer.subscribe();
            tokio::time::timeout(Duration::from_secs(30), async {
                while p.height() < height {
                    let _ = events.recv().await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("a peer stayed at height {} (wanted {height})", p.height()));
        }
    }

    /// Installs `wasm` as chaincode `name` on every peer and defines it with `policy` through
    /// the SDK: each org's admin approves on its own peer, then Brand1's admin commits (endorsed
    /// by both orgs, planned by the gateway).
    pub async fn deploy(&self, name: &str, wasm: &[u8], policy: &str) {
        let package = new_package(&format!("{name}_1"), name, "1.0", wasm);
        let mut hash = None;
        for c in &self.peer_configs {
            hash = Some(mercato_peer::node::install(c, &package).unwrap().hash);
        }
        let def = ChaincodeDefinition {
            name: name.into(),
            version: "1.0".into(),
            sequence: 1,
            package_hash: hash.unwrap(),
            endorsement_policy: policy.into(),
        }
        .encode();
        let mut approved = 0;
        for (i, org) in self.orgs.iter().enumerate() {
            let g = self.gateway(i, &org.admin).await;
            let done = g
                .network(CHANNEL)
                .contract(LIFECYCLE)
                .submit_proposal(&Proposal {
                    function: APPROVE.into(),
                    args: vec![def.clone()],
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("{} approves: {e}", org.ca.id));
            approved = approved.max(done.block);
        }
        // A submit waits for the commit on its gateway's peer only: the committing peer must
        // have seen every approval.
        self.wait_height(approved + 1).await;
        let g = self.gateway(0, &self.orgs[0].admin).await;
        let committed = g
            .network(CHANNEL)
            .contract(LIFECYCLE)
            .submit_proposal(&Proposal {
                function: COMMIT.into(),
                args: vec![def],
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("commit of {name}: {e}"));
        self.wait_height(committed.block + 1).await;
    }
}

/// Opens the ledger in a stopped peer's `ledger` folder, waiting (boundedly) for sled's threads
/// to let go of its lock: in production the stopped peer is a process that has exited.
pub async fn open_stopped_ledger(dir: &Path) -> mercato_peer::ledger::SledLedgerStore {
    for _ in 0..300 {
        match mercato_peer::ledger::SledLedgerStore::open(dir, CHANNEL) {
            Ok(store) => return store,
            Err(e) if e.to_string().contains("acquire lock") => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("{}: {e}", dir.display()),
        }
    }
    panic!("{} stayed locked", dir.display());
}

/// Starts a peer again on its files, waiting (boundedly) for the stopped one's sled flusher to
/// let go of them: in production a restart is a new process.
pub async fn restart_peer(config: &mercato_peer::node::Config) -> mercato_peer::node::Running {
    for _ in 0..300 {
        match mercato_peer::node::start(config).await {
            Ok(r) => return r,
            Err(e) if e.to_string().contains("acquire lock") => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the peer's files stayed locked");
}
