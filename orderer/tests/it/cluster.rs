//! A 3-node ordering cluster in one process, its Raft messages going either through an
//! in-memory router or over real gRPC with mutual TLS on 127.0.0.1: envelopes broadcast to the
//! leader are acknowledged once committed, and every node holds the same chain; when the leader
//! is lost a new one is elected and ordering goes on; the old leader, restarted from its files,
//! catches up.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mercato_ca::policy::OrgPolicies;
use mercato_ca::testing::TestOrg;
use mercato_ca::{KeyAlgorithm, MspManager, Role, SigningIdentity};
use mercato_orderer::BatchConfig;
use mercato_orderer::broadcast::BroadcastChecker;
use mercato_orderer::consensus::{ChainSource, LogStore, StateMachine, TypeConfig};
use mercato_orderer::ledger::Ledger;
use mercato_orderer::node::OrdererNode;
use mercato_proto::Signer;
use mercato_proto::block::new_block;
use mercato_proto::pb::common::{Block, Status};
use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use prost::Message;

use crate::broadcast::{CHANNEL, Net, net, tx_with_nonce};

/// Delivers Raft messages between the nodes of this process; a node not in it is unreachable.
/// It also serves the nodes' blocks to a node installing a snapshot.
#[derive(Clone, Default)]
pub(crate) struct Router {
    nodes: Arc<Mutex<BTreeMap<u64, Raft<TypeConfig>>>>,
    ledgers: Arc<Mutex<BTreeMap<u64, Ledger>>>,
}

#[tonic::async_trait]
impl ChainSource for Router {
    async fn blocks(
        &self,
        node: u64,
        _addr: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Vec<u8>>, String> {
        if !self.nodes.lock().unwrap().contains_key(&node) {
            return Err(format!("node {node} is down"));
        }
        let ledger = self.ledgers.lock().unwrap().get(&node).cloned();
        let ledger = ledger.ok_or_else(|| format!("node {node} is unknown"))?;
        // Small chunks, so that a catch-up takes several.
        (from..to.min(ledger.height()).min(from + 3))
            .map(|n| {
                ledger
                    .block(n)
                    .map_err(|e| e.to_string())?
                    .ok_or("missing".into())
            })
            .collect()
    }
}

impl Router {
    fn get(&self, id: u64) -> Option<Raft<TypeConfig>> {
        self.nodes.lock().unwrap().get(&id).cloned()
    }
}

pub(crate) struct Conn {
    target: u64,
    router: Router,
}

fn unreachable<E: std::error::Error>(target: u64) -> RPCError<u64, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(format!(
        "node {target} is down"
    ))))
}

impl RaftNetworkFactory<TypeConfig> for Router {
    type Network = Conn;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Conn {
        Conn {
            target,
            router: self.clone(),
        }
    }
}

impl RaftNetwork<TypeConfig> for Conn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let raft = self
            .router
            .get(self.target)
            .ok_or_else(|| unreachable(self.target))?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        let raft = self
            .router
            .get(self.target)
            .ok_or_else(|| unreachable(self.target))?;
        raft.install_snapshot(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let raft = self
            .router
            .get(self.target)
            .ok_or_else(|| unreachable(self.target))?;
        raft.vote(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// How the consenters reach each other.
pub(crate) enum Transport {
    Local(Router),
    Tls(Tls),
}

/// A TLS root valid now (TLS checks the wall clock) and each node's certificate, key and port.
pub(crate) struct Tls {
    pub(crate) root_pem: String,
    pub(crate) nodes: BTreeMap<u64, (String, String, Vec<u8>, std::net::SocketAddr)>,
    stops: BTreeMap<u64, tokio::sync::oneshot::Sender<()>>,
}

pub(crate) fn tls(ids: &[u64]) -> Tls {
    use mercato_ca::crypto::to_pem;
    let ca = mercato_ca::testing::TestTls::new("tlsca.orderer");
    let nodes = ids
        .iter()
        .map(|&id| {
            let (der, pkcs8) = ca.issue(&format!("orderer{id}"), Role::Orderer, &["127.0.0.1"]);
            // A free port, taken again when the node starts.
            let addr = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            (
                id,
                (
                    to_pem("CERTIFICATE", &der),
                    to_pem("PRIVATE KEY", &pkcs8),
                    der,
                    addr,
                ),
            )
        })
        .collect();
    Tls {
        root_pem: ca.root_pem(),
        nodes,
        stops: BTreeMap::new(),
    }
}

pub(crate) struct Cluster {
    pub(crate) transport: Transport,
    pub(crate) nodes: BTreeMap<u64, Arc<OrdererNode>>,
    dirs: BTreeMap<u64, PathBuf>,
    _root: tempfile::TempDir,
    pub(crate) org: TestOrg,
    orderers: TestOrg,
    genesis: Block,
    batch: BatchConfig,
}

/// Raft's settings: quick elections for tests, and a snapshot every 8 entries with the log
/// purged behind it, so that a node that was away is brought back by a snapshot.
fn raft_config() -> Arc<openraft::Config> {
    let config = openraft::Config {
        cluster_name: "market".into(),
        heartbeat_interval: 50,
        election_timeout_min: 200,
        election_timeout_max: 400,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(8),
        max_in_snapshot_log_to_keep: 0,
        ..Default::default()
    };
    Arc::new(config.validate().unwrap())
}

/// Opens sled, waiting (boundedly) for a node that just stopped to release its lock.
async fn open_db(dir: &Path) -> sled::Db {
    for _ in 0..500 {
        match sled::Config::new().path(dir).open() {
            Ok(db) => return db,
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    panic!("{} stayed locked", dir.display());
}

impl Cluster {
    async fn start_node(&mut self, id: u64) {
        use mercato_orderer::consensus::{GrpcNetwork, RaftTransportService};
        use mercato_orderer::service::{AtomicBroadcastService, ReadPolicy};
        use mercato_proto::pb::mercato::raft_transport_server::RaftTransportServer;
        use mercato_proto::pb::orderer::atomic_broadcast_server::AtomicBroadcastServer;
        use tonic::transport::{Certificate, ClientTlsConfig, Identity, Server, ServerTlsConfig};
        let db = open_db(&self.dirs[&id]).await;
        let ledger = Ledger::open(&db, &self.dirs[&id].join("blocks"), &self.genesis).unwrap();
        let log = LogStore::open(&db, &self.dirs[&id].join("raft-log")).unwrap();
        let raft = match &self.transport {
            Transport::Local(router) => {
                let sm = StateMachine::with_source(ledger.clone(), id, Arc::new(router.clone()));
                let raft = Raft::new(id, raft_config(), router.clone(), log, sm)
                    .await
                    .unwrap();
                router.nodes.lock().unwrap().insert(id, raft.clone());
                router.ledgers.lock().unwrap().insert(id, ledger.clone());
                raft
            }
            Transport::Tls(tls) => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                let (cert, key, _, _) = &tls.nodes[&id];
                let client_tls = ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&tls.root_pem))
                    .identity(Identity::from_pem(cert, key));
                let network = GrpcNetwork::new(CHANNEL, client_tls);
                let sm = StateMachine::with_source(ledger.clone(), id, Arc::new(network.clone()));
                Raft::new(id, raft_config(), network, log, sm)
                    .await
                    .unwrap()
            }
        };
        // As `mercato-orderer` does when it starts.
        mercato_orderer::consensus::purge_on_start(&raft)
            .await
            .unwrap();
        let msps = Arc::new(MspManager::new([self.org.msp()]));
        let checker = BroadcastChecker::new(
            CHANNEL,
            Arc::clone(&msps),
            OrgPolicies::defaults(&["Org1MSP"]),
            "ANY Writers".parse().unwrap(),
            16 << 10,
        );
        let signer: Arc<dyn Signer> = Arc::new(self.orderers.member(
            &format!("orderer{id}"),
            Role::Orderer,
            KeyAlgorithm::EcdsaP256,
        ));
        let batch = self.batch;
        let node = Arc::new(
            OrdererNode::new(id, raft.clone(), ledger.clone(), checker, batch, signer).unwrap(),
        );
        if let Transport::Tls(tls) = &mut self.transport {
            let (cert, key, _, addr) = tls.nodes[&id].clone();
            let consenters = tls.nodes.values().map(|n| n.2.clone()).collect();
            let raft_service = RaftTransportServer::new(RaftTransportService::new(
                CHANNEL,
                raft,
                ledger.clone(),
                consenters,
            ));
            let read = ReadPolicy {
                channel_id: CHANNEL.into(),
                msps,
                org_policies: OrgPolicies::defaults(&["Org1MSP"]),
                readers: "ANY Readers".parse().unwrap(),
            };
            let forward =
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.root_pem));
            let (closing_tx, closing) = tokio::sync::watch::channel(false);
            let broadcast = AtomicBroadcastServer::new(AtomicBroadcastService::new(
                Arc::clone(&node),
                read,
                forward,
                closing,
            ));
            // Clients need no certificate on this port; the Raft service demands one.
            let server_tls = ServerTlsConfig::new()
                .identity(Identity::from_pem(&cert, &key))
                .client_ca_root(Certificate::from_pem(&tls.root_pem))
                .client_auth_optional(true);
            let listener = loop {
                // The port of a node that just stopped may take a moment to be free again.
                match tokio::net::TcpListener::bind(addr).await {
                    Ok(l) => break l,
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            };
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            tls.stops.insert(id, stop);
            tokio::spawn(
                Server::builder()
                    .tls_config(server_tls)
                    .unwrap()
                    .add_service(raft_service)
                    .add_service(broadcast)
                    .serve_with_incoming_shutdown(
                        tonic::transport::server::TcpIncoming::from(listener),
                        async move {
                            let _ = stopped.await;
                            let _ = closing_tx.send(true);
                        },
                    ),
            );
        }
        self.nodes.insert(id, node);
    }

    /// Broadcasts `count` envelopes to `leader`, each after the last one was ordered: a block
    /// each.
    async fn order_one_by_one(&self, leader: u64, n: &Net, client: &SigningIdentity, count: u32) {
        for i in 0..count {
            let e = tx_with_nonce(n, client, CHANNEL, 8, &i.to_be_bytes().repeat(6));
            self.nodes[&leader]
                .broadcast(e.encode_to_vec())
                .await
                .unwrap();
        }
    }

    async fn stop_node(&mut self, id: u64) {
        match &mut self.transport {
            Transport::Local(router) => {
                router.nodes.lock().unwrap().remove(&id);
                router.ledgers.lock().unwrap().remove(&id);
            }
            Transport::Tls(tls) => {
                if let Some(stop) = tls.stops.remove(&id) {
                    let _ = stop.send(());
                }
            }
        }
        if let Some(node) = self.nodes.remove(&id) {
            node.shutdown().await;
        }
    }

    async fn leader(&self, not: Option<u64>) -> u64 {
        let any = self.nodes.values().next().unwrap();
        let m = any
            .raft()
            .wait(Some(Duration::from_secs(10)))
            .metrics(
                |m| {
                    m.current_leader
                        .is_some_and(|l| Some(l) != not && self.nodes.contains_key(&l))
                },
                "a leader",
            )
            .await
            .unwrap();
        m.current_leader.unwrap()
    }

    /// Waits until every running node's chain is `height` blocks high.
    async fn settled(&self, height: u64) {
        for node in self.nodes.values() {
            let mut h = node.ledger().watch_height();
            tokio::time::timeout(Duration::from_secs(10), h.wait_for(|h| *h >= height))
                .await
                .unwrap_or_else(|_| panic!("a node stayed below height {height}"))
                .unwrap();
        }
    }

    fn chains(&self) -> Vec<Vec<Vec<u8>>> {
        self.nodes
            .values()
            .map(|n| {
                (0..n.ledger().height())
                    .map(|b| n.ledger().block(b).unwrap().unwrap())
                    .collect()
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_orders_survives_its_leader_and_catches_up() {
    scenario(Transport::Local(Router::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_over_grpc_with_mutual_tls() {
    scenario(Transport::Tls(tls(&[1, 2, 3]))).await;
}

/// Starts a 3-node cluster over `transport` and waits for its first leader: blocks of at most 10
/// envelopes, cut after 20 ms.
async fn started(transport: Transport) -> (Cluster, u64) {
    let batch = BatchConfig {
        max_message_count: 10,
        batch_timeout: Duration::from_millis(20),
        ..BatchConfig::default()
    };
    started_with(transport, batch).await
}

/// The same with these batch settings.
pub(crate) async fn started_with(transport: Transport, batch: BatchConfig) -> (Cluster, u64) {
    let root = tempfile::tempdir().unwrap();
    let peers: Vec<(u64, String)> = match &transport {
        Transport::Local(_) => (1..=3).map(|i| (i, format!("node{i}"))).collect(),
        Transport::Tls(t) => t.nodes.iter().map(|(i, n)| (*i, n.3.to_string())).collect(),
    };
    let mut cluster = Cluster {
        transport,
        nodes: BTreeMap::new(),
        dirs: (1..=3)
            .map(|i| (i, root.path().join(format!("node{i}"))))
            .collect(),
        _root: root,
        org: TestOrg::new("Org1MSP"),
        orderers: TestOrg::new("OrdererMSP"),
        genesis: new_block(0, Vec::new(), vec![b"genesis configuration".to_vec()]),
        batch,
    };
    for id in 1..=3 {
        cluster.start_node(id).await;
    }
    let members: BTreeMap<u64, BasicNode> = peers
        .into_iter()
        .map(|(i, addr)| (i, BasicNode::new(addr)))
        .collect();
    cluster.nodes[&1].raft().initialize(members).await.unwrap();
    let leader = cluster.leader(None).await;
    // Every node knows it, so a follower can forward at once.
    for node in cluster.nodes.values() {
        node.raft()
            .wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.current_leader == Some(leader), "the leader known")
            .await
            .unwrap();
    }
    (cluster, leader)
}

async fn scenario(transport: Transport) {
    let n = net();
    let (mut cluster, leader) = started(transport).await;
    // The envelopes are checked against the cluster's MSP: issue the client from it.
    let client = cluster
        .org
        .member("alice", Role::Client, KeyAlgorithm::Ed25519);

    let envelope =
        |i: u32| tx_with_nonce(&n, &client, CHANNEL, 8, &i.to_be_bytes().repeat(6)).encode_to_vec();
    let mut sent = Vec::new();
    // Broadcast 25 envelopes at once to the leader: each is acknowledged with its block.
    let acks = futures_join(
        &cluster.nodes[&leader],
        (0..25).map(envelope).collect(),
        &mut sent,
    )
    .await;
    assert!(acks.iter().all(|a| *a >= 1), "{acks:?}");
    // A follower refuses and names the leader.
    let follower = *cluster.nodes.keys().find(|id| **id != leader).unwrap();
    let r = cluster.nodes[&follower]
        .broadcast(envelope(99))
        .await
        .unwrap_err();
    assert_eq!(r.status, Status::ServiceUnavailable);
    assert!(
        r.message.contains(&format!("node {leader} is")),
        "{}",
        r.message
    );

    let height = cluster.nodes[&leader].ledger().height();
    cluster.settled(height).await;
    let chains = cluster.chains();
    assert!(
        chains.windows(2).all(|w| w[0] == w[1]),
        "the nodes' chains differ"
    );

    // The leader goes away with 40 broadcasts in flight: some are acknowledged, the others fail;
    // the others elect a new leader and go on ordering.
    let node = Arc::clone(&cluster.nodes[&leader]);
    let in_flight: Vec<_> = (200..240)
        .map(envelope)
        .map(|e| {
            let node = Arc::clone(&node);
            tokio::spawn(async move {
                let r = node.broadcast(e.clone()).await;
                (e, r)
            })
        })
        .collect();
    // Let the first of them reach a block before the leader stops.
    let mut h = node.ledger().watch_height();
    let _ = tokio::time::timeout(Duration::from_secs(5), h.wait_for(|x| *x > height)).await;
    cluster.stop_node(leader).await;
    drop(node);
    // Whether each of them made it is a race; the acknowledged ones must be in the chain.
    for task in in_flight {
        let (e, r) = task.await.unwrap();
        if r.is_ok() {
            sent.push(e);
        }
    }
    let new_leader = cluster.leader(Some(leader)).await;
    assert_ne!(new_leader, leader);
    let acks = futures_join(
        &cluster.nodes[&new_leader],
        (100..110).map(envelope).collect(),
        &mut sent,
    )
    .await;
    assert!(acks.iter().all(|a| *a >= height), "{acks:?}");

    // The old leader restarts from its files and catches up.
    cluster.start_node(leader).await;
    let height = cluster.nodes[&new_leader].ledger().height();
    cluster.settled(height).await;
    let chains = cluster.chains();
    assert_eq!(chains.len(), 3);
    assert!(
        chains.windows(2).all(|w| w[0] == w[1]),
        "the nodes' chains differ after the restart"
    );

    // Every acknowledged envelope is in the chain exactly once.
    let mut seen = BTreeSet::new();
    for block in &chains[0][1..] {
        let block = Block::decode(block.as_slice()).unwrap();
        for env in block.data.unwrap().data {
            assert!(seen.insert(env), "an envelope is in the chain twice");
        }
    }
    for env in &sent {
        assert!(seen.contains(env), "an acknowledged envelope is missing");
    }
    // Unacknowledged envelopes may or may not have made it; none is there twice.
    assert!(seen.len() >= sent.len());
}

/// Broadcasts all `envelopes` concurrently to `node`; returns the block numbers acknowledged and
/// records the envelopes as sent.
async fn futures_join(
    node: &OrdererNode,
    envelopes: Vec<Vec<u8>>,
    sent: &mut Vec<Vec<u8>>,
) -> Vec<u64> {
    let calls = envelopes.iter().map(|e| node.broadcast(e.clone()));
    let mut out = Vec::new();
    for r in futures::future::join_all(calls).await {
        out.push(r.unwrap_or_else(|r| panic!("refused: {r}")));
    }
    sent.extend(envelopes);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_broadcast_to_any_node_and_deliver_blocks_over_tls() {
    use mercato_proto::pb::common::{ChannelHeader, Header, HeaderType, SignatureHeader};
    use mercato_proto::pb::orderer::atomic_broadcast_client::AtomicBroadcastClient;
    use mercato_proto::pb::orderer::deliver_response::Type as Reply;
    use mercato_proto::pb::orderer::seek_position::Type as Seek;
    use mercato_proto::pb::orderer::{SeekInfo, SeekOldest, SeekPosition, SeekSpecified};
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

    let n = net();
    let transport = Transport::Tls(tls(&[1, 2, 3]));
    let (cluster, leader) = started(transport).await;
    let client = cluster
        .org
        .member("alice", Role::Client, KeyAlgorithm::Ed25519);
    let Transport::Tls(t) = &cluster.transport else {
        unreachable!()
    };
    let follower = *cluster.nodes.keys().find(|id| **id != leader).unwrap();
    // A client with no TLS certificate of its own, at a follower.
    let channel = Endpoint::from_shared(format!("https://{}", t.nodes[&follower].3))
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&t.root_pem)))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut ab = AtomicBroadcastClient::new(channel);

    // Five envelopes on one stream: forwarded to the leader, each answered SUCCESS in order.
    let envelopes: Vec<_> = (0..5u32)
        .map(|i| tx_with_nonce(&n, &client, CHANNEL, 8, &i.to_be_bytes().repeat(6)))
        .collect();
    let mut garbage = envelopes[0].clone();
    garbage.signature = b"not a signature".to_vec();
    let mut requests = envelopes.clone();
    requests.push(garbage);
    let mut answers = ab
        .broadcast(futures::stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    for i in 0..5 {
        let r = answers.message().await.unwrap().unwrap();
        assert_eq!(r.status, Status::Success as i32, "envelope {i}: {}", r.info);
    }
    // A forged signature is refused where it arrives, with its reason.
    let r = answers.message().await.unwrap().unwrap();
    assert_eq!(r.status, Status::Forbidden as i32, "{}", r.info);
    assert!(r.info.contains("signature"), "{}", r.info);

    // Deliver from the follower: every block from the oldest to the leader's newest.
    let height = cluster.nodes[&leader].ledger().height();
    cluster.settled(height).await;
    let header = Header {
        channel_header: ChannelHeader {
            r#type: HeaderType::DeliverSeekInfo as i32,
            channel_id: CHANNEL.into(),
            timestamp: Some(mercato_proto::pb::Timestamp {
                seconds: mercato_proto::deliver::unix_now(),
                nanos: 0,
            }),
            ..Default::default()
        }
        .encode_to_vec(),
        signature_header: SignatureHeader {
            creator: client.creator().to_vec(),
            nonce: b"deliver nonce".to_vec(),
        }
        .encode_to_vec(),
    };
    let info = SeekInfo {
        start: Some(SeekPosition {
            r#type: Some(Seek::Oldest(SeekOldest {})),
        }),
        stop: Some(SeekPosition {
            r#type: Some(Seek::Specified(SeekSpecified { number: height - 1 })),
        }),
        ..Default::default()
    };
    let seek =
        mercato_proto::transaction::new_signed_envelope(header, info.encode_to_vec(), &client)
            .unwrap();
    let mut blocks = ab
        .deliver(futures::stream::iter([seek]))
        .await
        .unwrap()
        .into_inner();
    let mut delivered = Vec::new();
    loop {
        match blocks.message().await.unwrap().unwrap().r#type.unwrap() {
            Reply::Block(b) => delivered.push(b.encode_to_vec()),
            Reply::Status(s) => {
                assert_eq!(s, Status::Success as i32);
                break;
            }
        }
    }
    let chain: Vec<Vec<u8>> = (0..height)
        .map(|b| cluster.nodes[&follower].ledger().block(b).unwrap().unwrap())
        .collect();
    assert_eq!(delivered, chain);
    let all: BTreeSet<Vec<u8>> = chain[1..]
        .iter()
        .flat_map(|b| Block::decode(b.as_slice()).unwrap().data.unwrap().data)
        .collect();
    for e in &envelopes {
        assert!(
            all.contains(&e.encode_to_vec()),
            "an acknowledged envelope is missing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_the_purged_log_is_brought_back_by_a_snapshot() {
    brought_back_by_a_snapshot(Transport::Local(Router::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_the_purged_log_fetches_the_blocks_it_lacks_over_tls() {
    brought_back_by_a_snapshot(Transport::Tls(tls(&[1, 2, 3]))).await;
}

/// A node restarted before its log reached the snapshot threshold still purges its log: the
/// snapshot taken at start covers it. (Before, the threshold counted from each start, so an
/// orderer restarted more often than every `snapshot_every` blocks kept every block twice, for
/// ever.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_purges_the_log_its_snapshot_covers() {
    let n = net();
    let (mut cluster, leader) = started(Transport::Local(Router::default())).await;
    let client = cluster
        .org
        .member("alice", Role::Client, KeyAlgorithm::Ed25519);
    // A few blocks, fewer than the 8 entries after which the policy takes a snapshot.
    cluster.order_one_by_one(leader, &n, &client, 4).await;
    let height = cluster.nodes[&leader].ledger().height();
    cluster.settled(height).await;
    let follower = *cluster.nodes.keys().find(|id| **id != leader).unwrap();
    let before = cluster.nodes[&follower].raft().metrics().borrow().clone();
    assert!(before.purged.is_none(), "purged before the restart");
    cluster.stop_node(follower).await;
    cluster.start_node(follower).await;
    cluster.nodes[&follower]
        .raft()
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index + 1 >= height),
            "the log purged up to the chain's height",
        )
        .await
        .unwrap();
    cluster.settled(height).await;
}

/// A node stopped while the others order on past a snapshot and purge their logs: restarted, it
/// installs the snapshot (a summary of the chain) and fetches the blocks it lacks.
async fn brought_back_by_a_snapshot(transport: Transport) {
    let n = net();
    let (mut cluster, leader) = started(transport).await;
    let client = cluster
        .org
        .member("alice", Role::Client, KeyAlgorithm::Ed25519);
    let away = *cluster.nodes.keys().find(|id| **id != leader).unwrap();
    cluster.stop_node(away).await;
    // One envelope at a time: a block each, well past the snapshot threshold.
    cluster.order_one_by_one(leader, &n, &client, 30).await;
    // The leader has snapshotted and purged the entries the absent node lacks.
    let m = cluster.nodes[&leader]
        .raft()
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.purged.is_some_and(|p| p.index > 8), "a purge")
        .await
        .unwrap();
    assert!(m.snapshot.is_some());
    cluster.start_node(away).await;
    let height = cluster.nodes[&leader].ledger().height();
    assert!(height >= 31);
    cluster.settled(height).await;
    let chains = cluster.chains();
    assert!(chains.windows(2).all(|w| w[0] == w[1]), "the chains differ");
    // It came back through a snapshot, not by replaying the purged entries.
    cluster.nodes[&away]
        .raft()
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.snapshot.is_some(), "an installed snapshot")
        .await
        .unwrap();
}
