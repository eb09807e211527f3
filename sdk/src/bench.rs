//! A load generator for any Gateway: closed loop (N clients, each submitting its next
//! transaction when the last one committed) or open loop (a target rate, in-flight bounded),
//! after a warm-up; every transaction waits for its commit status. The report has committed
//! TPS, submit-to-commit latency percentiles, failures by kind, and a per-second timeline.
//!
//! Workloads, on a key-value chaincode with `put` and `rmw` (`chaincode/kv`, or any with the
//! same functions): `kv`, a blind write of a value to a unique key; `rmw`, read-modify-write of
//! a key chosen uniformly among a fixed number. And `orders`, on `chaincode/commerce`: each
//! client runs whole orders one after another — `place_order` (stock and the buyer's coins into
//! escrow), `ship_order`, `confirm_delivery` (the escrow settled to the brand's revenue account,
//! the shop owner's commission and the platform's fee account, the sales totals counted) — so
//! every settlement credits the same hot accounts. A step that fails before committing
//! anything (an endorsement refused because the other organisation's peer has not yet
//! committed the previous step — a Mercato peer waits up to a second to catch up before it
//! refuses, other peers may not — or an MVCC conflict) is retried up to four times, after 20,
//! 40, 80 and 160 ms; every failed attempt is counted, and an order whose step still fails is
//! abandoned. The report then also gives settled orders per second.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Mutex, Semaphore};

use crate::{Contract, Error};

/// What each transaction does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workload {
    /// `put` of `value_bytes` bytes to a key never written before.
    Kv { value_bytes: usize },
    /// `rmw` on one of `keys` keys, chosen uniformly.
    Rmw { keys: u64, value_bytes: usize },
    /// Whole commerce orders; the client on contract `i` follows `routes[i % routes.len()]`
    /// (its identity must be allowed to buy through the shop and to ship the brand's orders).
    Orders { routes: Vec<OrderRoute> },
}

/// Where a client buys: a shop listing a brand's product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRoute {
    pub shop: String,
    pub brand: String,
    pub sku: String,
}

impl Workload {
    fn name(&self) -> &'static str {
        match self {
            Workload::Kv { .. } => "kv",
            Workload::Rmw { .. } => "rmw",
            Workload::Orders { .. } => "orders",
        }
    }
}

/// How to drive the load.
#[derive(Debug, Clone)]
pub struct Options {
    pub workload: Workload,
    /// Concurrent clients (closed loop), or the bound on transactions in flight (open loop).
    pub clients: usize,
    /// Open loop: transactions per second to start; `None`: closed loop.
    pub rate: Option<f64>,
    pub warmup: Duration,
    pub duration: Duration,
    /// Print a line per second on stderr.
    pub progress: bool,
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// One second of the measured run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Second {
    pub second: u64,
    pub committed: u64,
    pub failed: u64,
    pub p50_ms: f64,
}

/// What a run measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub workload: String,
    pub mode: String,
    pub clients: usize,
    pub seconds: f64,
    pub committed: u64,
    pub tps: f64,
    pub latency_ms: Latency,
    /// Failures by kind: a validation code (`MVCC_READ_CONFLICT`), or the call that failed.
    pub failures: BTreeMap<String, u64>,
    /// The first message of each kind of failure.
    pub failure_examples: BTreeMap<String, String>,
    pub timeline: Vec<Second>,
    /// Orders settled (their last step committed) in the measured time, and per second
    /// (`orders` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orders_settled: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orders_per_s: Option<f64>,
}

/// One finished transaction: when it finished (from the start of measurement), how long it
/// took, and its failure, if any.
struct Sample {
    at: Duration,
    took: Duration,
    /// The failure's kind and message.
    failure: Option<(String, String)>,
}

fn failure_kind(e: &Error) -> String {
    match e {
        Error::Commit { code, .. } => code.name().to_owned(),
        Error::Endorse { code, .. } => format!("endorse:{code:?}"),
        Error::Submit { code, .. } => format!("submit:{code:?}"),
        Error::Status { call, code, .. } => format!("{call}:{code:?}"),
        Error::Connect { .. } => "connect".into(),
        Error::Evaluate { .. } => "evaluate".into(),
        Error::Config(_) | Error::Malformed(_) => "client".into(),
    }
}

/// A cheap per-client generator for keys (xorshift; no randomness crate needed for load).
struct Keys(u64);

impl Keys {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

/// Runs the load on `contracts` (clients take them in turn: several gateways, or several
/// connections to one) and reports.
pub async fn run(contracts: Vec<Contract>, options: Options) -> Report {
    assert!(
        !contracts.is_empty(),
        "a benchmark needs at least one contract"
    );
    let start = Instant::now();
    let measure_from = start + options.warmup;
    let end = measure_from + options.duration;
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let run_id = start.elapsed().as_nanos() as u64 ^ u64::from(std::process::id()) << 32;

    let settled = Arc::new(AtomicU64::new(0));
    // Submits one transaction and records it.
    let submit = {
        let samples = Arc::clone(&samples);
        let done = Arc::clone(&done);
        let failed = Arc::clone(&failed);
        move |contract: Contract, function: &'static str, args: Vec<Vec<u8>>| {
            let samples = Arc::clone(&samples);
            let done = Arc::clone(&done);
            let failed = Arc::clone(&failed);
            async move {
                let t0 = Instant::now();
                let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                let outcome = contract.submit(function, &refs).await;
                let now = Instant::now();
                let failure = outcome
                    .as_ref()
                    .err()
                    .map(|e| (failure_kind(e), e.to_string()));
                if failure.is_some() {
                    failed.fetch_add(1, Ordering::Relaxed);
                } else {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                if t0 >= measure_from && now <= end {
                    samples.lock().await.push(Sample {
                        at: now - measure_from,
                        took: now - t0,
                        failure,
                    });
                }
                outcome.map(|_| ())
            }
        }
    };
    let one = {
        let workload = options.workload.clone();
        let settled = Arc::clone(&settled);
        move |contract: Contract, slot: usize, n: u64, key_pick: u64| {
            let workload = workload.clone();
            let submit = submit.clone();
            let settled = Arc::clone(&settled);
            async move {
                match &workload {
                    Workload::Kv { value_bytes } => {
                        let key = format!("k{run_id:x}-{n}");
                        let value = "v".repeat(*value_bytes);
                        let _ = submit(contract, "put", vec![key.into_bytes(), value.into_bytes()])
                            .await;
                    }
                    Workload::Rmw { keys, value_bytes } => {
                        let key = format!("r{}", key_pick % keys.max(&1));
                        let value = "v".repeat(*value_bytes);
                        let _ = submit(contract, "rmw", vec![key.into_bytes(), value.into_bytes()])
                            .await;
                    }
                    Workload::Orders { routes } => {
                        let Some(r) = routes.get(slot % routes.len().max(1)) else {
                            return;
                        };
                        let id = format!("o{run_id:x}-{n:x}");
                        let steps: [(&'static str, Vec<Vec<u8>>); 3] = [
                            (
                                "place_order",
                                vec![
                                    id.clone().into_bytes(),
                                    r.shop.clone().into_bytes(),
                                    r.brand.clone().into_bytes(),
                                    r.sku.clone().into_bytes(),
                                    b"1".to_vec(),
                                ],
                            ),
                            (
                                "ship_order",
                                vec![id.clone().into_bytes(), b"BENCH".to_vec()],
                            ),
                            ("confirm_delivery", vec![id.into_bytes()]),
                        ];
                        for (function, args) in steps {
                            let mut pause = Duration::from_millis(20);
                            loop {
                                match submit(contract.clone(), function, args.clone()).await {
                                    Ok(()) => break,
                                    Err(e) if pause <= STEP_RETRY_MAX && retry_step(&e) => {
                                        tokio::time::sleep(pause).await;
                                        pause *= 2;
                                    }
                                    Err(_) => return,
                                }
                            }
                        }
                        let now = Instant::now();
                        if now >= measure_from && now <= end {
                            settled.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
    };

    let progress = options.progress.then(|| {
        let done = Arc::clone(&done);
        let failed = Arc::clone(&failed);
        tokio::spawn(async move {
            let mut last = 0;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = done.load(Ordering::Relaxed);
                let phase = if Instant::now() < measure_from {
                    "warm-up"
                } else {
                    "measuring"
                };
                eprintln!(
                    "  {:>4} s {phase}: {now} committed ({} /s), {} failed",
                    start.elapsed().as_secs(),
                    now - last,
                    failed.load(Ordering::Relaxed)
                );
                last = now;
            }
        })
    });

    match options.rate {
        None => {
            let mut tasks = Vec::new();
            let contracts_len = contracts.len();
            for c in 0..options.clients {
                let contract = contracts[c % contracts.len()].clone();
                let one = one.clone();
                tasks.push(tokio::spawn(async move {
                    let mut keys = Keys(0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1));
                    let mut n = 0u64;
                    let slot = c % contracts_len;
                    while Instant::now() < end {
                        one(contract.clone(), slot, (c as u64) << 40 | n, keys.next()).await;
                        n += 1;
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        }
        Some(rate) => {
            let in_flight = Arc::new(Semaphore::new(options.clients.max(1)));
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut keys = Keys(0x9E37_79B9_7F4A_7C15);
            let mut n = 0u64;
            let mut tasks = tokio::task::JoinSet::new();
            while Instant::now() < end {
                tick.tick().await;
                // At the bound, the generator waits: the offered rate drops and the report
                // shows it, rather than memory growing without end.
                let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
                    break;
                };
                let slot = (n as usize) % contracts.len();
                let job = one(contracts[slot].clone(), slot, n, keys.next());
                tasks.spawn(async move {
                    job.await;
                    drop(permit);
                });
                while tasks.try_join_next().is_some() {}
                n += 1;
            }
            while tasks.join_next().await.is_some() {}
        }
    }
    if let Some(p) = progress {
        p.abort();
    }

    let samples = std::mem::take(&mut *samples.lock().await);
    let seconds = options.duration.as_secs_f64();
    let mut ok: Vec<Duration> = samples
        .iter()
        .filter(|s| s.failure.is_none())
        .map(|s| s.took)
        .collect();
    ok.sort_unstable();
    let mut failures = BTreeMap::new();
    let mut failure_examples = BTreeMap::new();
    for s in &samples {
        if let Some((kind, message)) = &s.failure {
            *failures.entry(kind.clone()).or_insert(0) += 1;
            failure_examples
                .entry(kind.clone())
                .or_insert_with(|| message.clone());
        }
    }
    let mut timeline: Vec<Second> = (0..options.duration.as_secs().max(1))
        .map(|second| Second {
            second,
            ..Default::default()
        })
        .collect();
    let mut per_second: Vec<Vec<Duration>> = vec![Vec::new(); timeline.len()];
    for s in &samples {
        let i = (s.at.as_secs() as usize).min(timeline.len() - 1);
        if s.failure.is_none() {
            timeline[i].committed += 1;
            per_second[i].push(s.took);
        } else {
            timeline[i].failed += 1;
        }
    }
    for (t, mut lat) in timeline.iter_mut().zip(per_second) {
        lat.sort_unstable();
        t.p50_ms = percentile(&lat, 0.5);
    }
    Report {
        workload: options.workload.name().into(),
        mode: match options.rate {
            None => format!("closed loop, {} clients", options.clients),
            Some(r) => format!(
                "open loop, {r} tx/s offered, at most {} in flight",
                options.clients
            ),
        },
        clients: options.clients,
        seconds,
        committed: ok.len() as u64,
        tps: ok.len() as f64 / seconds,
        latency_ms: Latency {
            p50: percentile(&ok, 0.5),
            p95: percentile(&ok, 0.95),
            p99: percentile(&ok, 0.99),
            max: percentile(&ok, 1.0),
        },
        failures,
        failure_examples,
        timeline,
        orders_settled: matches!(options.workload, Workload::Orders { .. })
            .then(|| settled.load(Ordering::Relaxed)),
        orders_per_s: matches!(options.workload, Workload::Orders { .. })
            .then(|| settled.load(Ordering::Relaxed) as f64 / seconds),
    }
}

/// Whether an order's step may be tried again: it failed before anything committed.
/// The longest pause before an order step's last retry (20, 40, 80, then 160 ms).
const STEP_RETRY_MAX: Duration = Duration::from_millis(160);

fn retry_step(e: &Error) -> bool {
    matches!(e, Error::Endorse { .. }) || e.is_retryable()
}

/// The report's timeline as an SVG plot: committed TPS (bars) and p50 latency (line) per
/// second.
pub fn svg(report: &Report) -> String {
    let (w, h, pad) = (800.0, 320.0, 50.0);
    let n = report.timeline.len().max(1) as f64;
    let max_tps = report
        .timeline
        .iter()
        .map(|s| s.committed)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let max_lat = report.timeline.iter().map(|s| s.p50_ms).fold(1.0, f64::max);
    let bw = (w - 2.0 * pad) / n;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{pad}\" y=\"20\">{} — {}: {:.0} TPS, p50 {:.1} ms, p99 {:.1} ms</text>\n",
        report.workload, report.mode, report.tps, report.latency_ms.p50, report.latency_ms.p99
    );
    for (i, s) in report.timeline.iter().enumerate() {
        let bh = (s.committed as f64 / max_tps) * (h - 2.0 * pad);
        out.push_str(&format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#8ab\"/>\n",
            pad + i as f64 * bw,
            h - pad - bh,
            (bw - 1.0).max(1.0)
        ));
    }
    let points: Vec<String> = report
        .timeline
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "{:.1},{:.1}",
                pad + (i as f64 + 0.5) * bw,
                h - pad - (s.p50_ms / max_lat) * (h - 2.0 * pad)
            )
        })
        .collect();
    out.push_str(&format!(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#c33\" stroke-width=\"2\"/>\n",
        points.join(" ")
    ));
    out.push_str(&format!(
        "<text x=\"5\" y=\"{pad}\">{max_tps:.0} tx/s</text>\n<text x=\"{:.0}\" y=\"{pad}\" fill=\"#c33\">{max_lat:.0} ms</text>\n<text x=\"{pad}\" y=\"{:.0}\">seconds →  (bars: committed per second; red: p50 latency)</text>\n</svg>\n",
        w - pad + 5.0,
        h - 15.0
    ));
    out
}
