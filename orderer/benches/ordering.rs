//! Ordering throughput and latency of a 3-node cluster in this process, Raft over gRPC with
//! mutual TLS on 127.0.0.1, clients over TLS: envelopes per second ordered into committed blocks,
//! and the time from sending an envelope to its SUCCESS, at batch sizes 100 and 500 (batch
//! timeout 100 ms). Every node writes its log and chain to its own sled files, flushed.
//!
//! Run: `cargo bench -p mercato-orderer --bench ordering`

#[path = "../tests/it/broadcast.rs"]
#[allow(dead_code, unused_imports)]
mod broadcast;
#[path = "../tests/it/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mercato_ca::{KeyAlgorithm, Role};
use mercato_orderer::BatchConfig;
use mercato_proto::pb::common::Status;
use mercato_proto::pb::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

const ENVELOPES: usize = 12_000;
const STREAMS: usize = 8;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map(|k| k / 1024.0)
        .unwrap_or(0.0)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0)
}

async fn run(batch_size: u32) {
    let batch = BatchConfig {
        max_message_count: batch_size,
        batch_timeout: Duration::from_millis(100),
        ..BatchConfig::default()
    };
    let (cluster, leader) =
        cluster::started_with(cluster::Transport::Tls(cluster::tls(&[1, 2, 3])), batch).await;
    let n = broadcast::net();
    let client = cluster
        .org
        .member("alice", Role::Client, KeyAlgorithm::Ed25519);
    let envelopes: Vec<_> = (0..ENVELOPES as u64)
        .map(|i| {
            broadcast::tx_with_nonce(
                &n,
                &client,
                broadcast::CHANNEL,
                100,
                &i.to_be_bytes().repeat(3),
            )
        })
        .collect();
    let cluster::Transport::Tls(tls) = &cluster.transport else {
        unreachable!()
    };
    let addr = tls.nodes[&leader].3;
    let tls_config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.root_pem));
    let height0 = cluster.nodes[&leader].ledger().height();

    let start = Instant::now();
    let mut tasks = Vec::new();
    for (s, share) in envelopes.chunks(ENVELOPES / STREAMS).enumerate() {
        let channel = Endpoint::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(tls_config.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let share = share.to_vec();
        // Each stream keeps at most `window` envelopes unanswered: together about two blocks.
        let window = (2 * batch_size as usize / STREAMS).max(8);
        tasks.push(tokio::spawn(async move {
            let permits = Arc::new(tokio::sync::Semaphore::new(window));
            let sent: Arc<Mutex<VecDeque<Instant>>> = Arc::default();
            let (tx, rx) = tokio::sync::mpsc::channel(window);
            let feeder = {
                let (permits, sent) = (Arc::clone(&permits), Arc::clone(&sent));
                tokio::spawn(async move {
                    for e in share {
                        permits.acquire().await.unwrap().forget();
                        sent.lock().unwrap().push_back(Instant::now());
                        if tx.send(e).await.is_err() {
                            return;
                        }
                    }
                })
            };
            let mut answers = AtomicBroadcastClient::new(channel)
                .broadcast(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .unwrap()
                .into_inner();
            let mut latencies = Vec::new();
            while let Some(r) = answers.message().await.unwrap() {
                assert_eq!(r.status, Status::Success as i32, "stream {s}: {}", r.info);
                let at = sent.lock().unwrap().pop_front().unwrap();
                latencies.push(at.elapsed());
                permits.add_permits(1);
            }
            feeder.await.unwrap();
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let wall = start.elapsed().as_secs_f64();
    latencies.sort();
    let blocks = cluster.nodes[&leader].ledger().height() - height0;
    println!(
        "batch {batch_size:>3}: {:>6.0} envelopes/s ({} envelopes in {} blocks, {wall:.2} s); broadcast → SUCCESS p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len() as f64 / wall,
        latencies.len(),
        blocks,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    println!(
        "Mercato ordering: 3 consenters in this process (Raft over gRPC + mutual TLS, durable sled), {STREAMS} client streams over TLS to the leader, ~1.3 KB envelopes (Ed25519 creators), batch timeout 100 ms, 2 cores"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for batch in [100, 500] {
            run(batch).await;
        }
    });
    println!(
        "peak RSS (this process: all 3 nodes and the clients): {:.1} MiB",
        peak_rss_mib()
    );
}
