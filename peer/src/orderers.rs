//! The peer as a client of the ordering service: Broadcast (the gateway's Submit) and Deliver
//! (the blocks the committer commits), both with fail-over between the orderer endpoints the
//! channel configuration lists.
//!
//! Every block pulled is checked before it is queued for commit: its number and previous hash
//! continue the chain, its data hash matches and its signatures satisfy the channel's
//! BlockValidation policy. An orderer that sends anything else is left for the next one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use mercato_ca::SigningIdentity;
use mercato_proto::hash::block_header_hash;
use mercato_proto::pb::common::{
    Block, ChannelHeader, Envelope, Header, HeaderType, SignatureHeader, Status as FabricStatus,
};
use mercato_proto::pb::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use mercato_proto::pb::orderer::deliver_response::Type as Reply;
use mercato_proto::pb::orderer::seek_info::SeekBehavior;
use mercato_proto::pb::orderer::seek_position::Type as Seek;
use mercato_proto::pb::orderer::{SeekInfo, SeekPosition, SeekSpecified};
use mercato_proto::transaction::new_signed_envelope;
use prost::Message;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::committer::{Committer, Pipeline};
use crate::lanes::Lanes;
use crate::validator::ValidationContext;
use crate::validator::verify::verify_block;

/// How long one Broadcast may take before the next orderer is tried.
const BROADCAST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a Broadcast goes round the orderers while none takes the envelope.
const BROADCAST_PATIENCE: Duration = Duration::from_secs(15);
/// The largest block the peer accepts from an orderer.
pub const MAX_BLOCK_BYTES: usize = 128 << 20;
/// Waits between rounds over all orderers, doubling up to the maximum.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// One orderer endpoint with its lazily connected channels: one for the Broadcast streams, one
/// for the long-lived Deliver stream, so that a connection error on one never cuts the other.
#[derive(Clone)]
struct Orderer {
    address: String,
    broadcast: Arc<Lanes>,
    deliver: Channel,
}

/// The orderer endpoints of a channel, tried in turn.
#[derive(Clone)]
pub struct Orderers {
    endpoints: Arc<Vec<Orderer>>,
    /// Where the next call starts (the last one that worked).
    preferred: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Orderers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.endpoints.iter().map(|o| &o.address))
            .finish()
    }
}

/// Why an envelope was not ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BroadcastError {
    /// An orderer refused it with a status other than SERVICE_UNAVAILABLE.
    Refused {
        address: String,
        status: FabricStatus,
        info: String,
    },
    /// No orderer could be reached or took it; each one's failure.
    Unavailable(Vec<(String, String)>),
}

impl std::fmt::Display for BroadcastError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BroadcastError::Refused {
                address,
                status,
                info,
            } => write!(
                f,
                "orderer {address} refused the transaction: {} {info}",
                status.as_str_name()
            ),
            BroadcastError::Unavailable(failures) => {
                write!(f, "no orderer took the transaction:")?;
                for (address, why) in failures {
                    write!(f, " {address}: {why};")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for BroadcastError {}

impl Orderers {
    /// The endpoints `host:port`, reached over TLS trusting `tls`. Connections are made on first
    /// use. Must be called inside a Tokio runtime.
    pub fn new(addresses: &[String], tls: &ClientTlsConfig) -> Result<Self, String> {
        if addresses.is_empty() {
            return Err("the channel configuration lists no orderer endpoint".into());
        }
        let endpoints = addresses
            .iter()
            .map(|address| {
                let endpoint = Endpoint::from_shared(format!("https://{address}"))
                    .map_err(|e| format!("orderer endpoint {address:?}: {e}"))?
                    .tls_config(tls.clone())
                    .map_err(|e| format!("orderer endpoint {address:?}: {e}"))?
                    .connect_timeout(Duration::from_secs(5))
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(60));
                Ok(Orderer {
                    address: address.clone(),
                    broadcast: Arc::new(Lanes::new(endpoint.connect_lazy())),
                    deliver: endpoint.connect_lazy(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Orderers {
            endpoints: Arc::new(endpoints),
            preferred: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The endpoints in the order the next call tries them.
    fn in_turn(&self) -> impl Iterator<Item = (usize, &Orderer)> {
        let n = self.endpoints.len();
        let start = self.preferred.load(Ordering::Relaxed) % n;
        (0..n).map(move |i| {
            let at = (start + i) % n;
            (at, &self.endpoints[at])
        })
    }

    /// Broadcasts one signed envelope, trying each orderer in turn until one answers other than
    /// SERVICE_UNAVAILABLE; while none does (e.g. during a Raft election), goes round again
    /// with growing pauses for up to [`BROADCAST_PATIENCE`]. `Ok` once an orderer acknowledged
    /// it (it is then ordered).
    pub async fn broadcast(&self, envelope: Envelope) -> Result<(), BroadcastError> {
        let deadline = tokio::time::Instant::now() + BROADCAST_PATIENCE;
        let mut wait = RETRY_MIN;
        loop {
            let failures = match self.broadcast_round(&envelope).await {
                Ok(()) => return Ok(()),
                Err(BroadcastError::Unavailable(failures)) => failures,
                Err(refused) => return Err(refused),
            };
            if tokio::time::Instant::now() + wait >= deadline {
                return Err(BroadcastError::Unavailable(failures));
            }
            tracing::debug!(?failures, "no orderer took the envelope; trying again");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(1));
        }
    }

    /// One try at each orderer.
    async fn broadcast_round(&self, envelope: &Envelope) -> Result<(), BroadcastError> {
        let mut failures = Vec::new();
        for (at, orderer) in self.in_turn() {
            let call = orderer.broadcast.broadcast(envelope.clone());
            match tokio::time::timeout(BROADCAST_TIMEOUT, call).await {
                Err(_) => {
                    // A stream this slow may be stuck: the next envelopes get new ones.
                    orderer.broadcast.reset();
                    failures.push((orderer.address.clone(), "timed out".to_owned()));
                }
                Ok(Err(status)) => failures.push((
                    orderer.address.clone(),
                    format!("{:?}: {}", status.code(), status.message()),
                )),
                Ok(Ok(answer)) => {
                    let status = FabricStatus::try_from(answer.status)
                        .unwrap_or(FabricStatus::InternalServerError);
                    match status {
                        FabricStatus::Success => {
                            self.preferred.store(at, Ordering::Relaxed);
                            return Ok(());
                        }
                        FabricStatus::ServiceUnavailable => failures.push((
                            orderer.address.clone(),
                            format!("SERVICE_UNAVAILABLE {}", answer.info),
                        )),
                        status => {
                            return Err(BroadcastError::Refused {
                                address: orderer.address.clone(),
                                status,
                                info: answer.info,
                            });
                        }
                    }
                }
            }
        }
        Err(BroadcastError::Unavailable(failures))
    }

    /// Pulls blocks from the orderers into `pipeline` until `stop` turns true: from the
    /// committer's height on, each block checked (see the module doc) on the thread of `checks`
    /// before it is queued. A failing orderer is left for the next; when all fail, it waits and
    /// goes round again. When it returns, the check thread has ended: a stopped peer holds no
    /// block, and no reference to its pipeline, there.
    pub async fn pull_blocks(
        self,
        deliver: Arc<DeliverClient>,
        checks: Checks,
        stop: tokio::sync::watch::Receiver<bool>,
    ) {
        self.pull_until(&deliver, &checks.send, stop).await;
        let Checks { send, thread } = checks;
        drop(send);
        // Joined off the async threads: a block being queued may wait for the committer.
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }

    async fn pull_until(
        &self,
        deliver: &Arc<DeliverClient>,
        checks: &std::sync::mpsc::SyncSender<Check>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut wait = RETRY_MIN;
        loop {
            let mut progressed = false;
            for (at, orderer) in self
                .in_turn()
                .map(|(i, o)| (i, o.clone()))
                .collect::<Vec<_>>()
            {
                if *stop.borrow() {
                    return;
                }
                let outcome = tokio::select! {
                    r = deliver.pull_from(&orderer, checks) => r,
                    _ = stop.wait_for(|s| *s) => return,
                };
                match outcome {
                    Ok(()) => {}
                    Err((received, why)) => {
                        if received > 0 {
                            progressed = true;
                            self.preferred.store(at, Ordering::Relaxed);
                        }
                        tracing::warn!(orderer = %orderer.address, received, error = %why, "deliver from orderer failed; trying the next");
                    }
                }
            }
            wait = if progressed {
                RETRY_MIN
            } else {
                (wait * 2).min(RETRY_MAX)
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

/// What the block puller needs: the committer to continue, the checks a block must pass, the
/// identity that signs seek requests, and the pipeline the blocks go to.
pub struct DeliverClient {
    ctx: Arc<ValidationContext>,
    signer: Arc<SigningIdentity>,
    pipeline: Arc<Pipeline>,
    /// The number of the next block to queue, and the header hash of the last one queued.
    next: AtomicU64,
    last_hash: std::sync::Mutex<[u8; 32]>,
    /// Blocks refused by the checks (for the metrics).
    pub refused: AtomicU64,
    /// Sum of the time blocks waited between arriving and their checks starting (for the
    /// metrics).
    pub check_wait_micros: AtomicU64,
    /// When each queued block arrived, until it commits (bounded by [`MAX_ARRIVALS`]).
    arrivals: Arrivals,
}

/// A block for the check thread: when it arrived, and where its outcome goes.
type Check = (
    Block,
    std::time::Instant,
    tokio::sync::oneshot::Sender<Result<(), String>>,
);

/// The block check thread of a [`DeliverClient`], and the way blocks go to it; it runs until the
/// sender is dropped.
pub struct Checks {
    send: std::sync::mpsc::SyncSender<Check>,
    thread: std::thread::JoinHandle<()>,
}

/// When queued blocks arrived: (number, instant), oldest first.
pub type Arrivals = Arc<std::sync::Mutex<std::collections::VecDeque<(u64, std::time::Instant)>>>;

/// The most arrivals remembered (the pipeline holds far fewer blocks).
const MAX_ARRIVALS: usize = 1024;

impl DeliverClient {
    /// A puller continuing `committer`'s chain (whose last block has header hash `last_hash`).
    pub fn new(
        committer: &Committer,
        ctx: Arc<ValidationContext>,
        signer: Arc<SigningIdentity>,
        pipeline: Arc<Pipeline>,
        last_hash: [u8; 32],
        arrivals: Arrivals,
    ) -> Self {
        DeliverClient {
            next: AtomicU64::new(committer.height()),
            ctx,
            signer,
            pipeline,
            last_hash: std::sync::Mutex::new(last_hash),
            refused: AtomicU64::new(0),
            check_wait_micros: AtomicU64::new(0),
            arrivals,
        }
    }

    /// A signed request for every block from `start` on, waiting for new ones.
    fn seek(&self, start: u64) -> Result<Envelope, String> {
        let nonce = mercato_ca::crypto::random_nonce().map_err(|e| e.to_string())?;
        let header = Header {
            channel_header: ChannelHeader {
                r#type: HeaderType::DeliverSeekInfo as i32,
                channel_id: self.ctx.channel_id.clone(),
                timestamp: Some(now()),
                ..Default::default()
            }
            .encode_to_vec(),
            signature_header: SignatureHeader {
                creator: self.signer.serialized().to_vec(),
                nonce,
            }
            .encode_to_vec(),
        };
        let info = SeekInfo {
            start: Some(SeekPosition {
                r#type: Some(Seek::Specified(SeekSpecified { number: start })),
            }),
            stop: Some(SeekPosition {
                r#type: Some(Seek::Specified(SeekSpecified { number: u64::MAX })),
            }),
            behavior: SeekBehavior::BlockUntilReady as i32,
            ..Default::default()
        };
        new_signed_envelope(header, info.encode_to_vec(), self.signer.as_ref())
            .map_err(|e| e.to_string())
    }

    /// Streams blocks from one orderer, each checked and queued on the thread of `checks`, until
    /// it fails; the error counts the blocks it gave.
    async fn pull_from(
        &self,
        orderer: &Orderer,
        checks: &std::sync::mpsc::SyncSender<Check>,
    ) -> Result<(), (u64, String)> {
        let start = self.next.load(Ordering::Acquire);
        let seek = self.seek(start).map_err(|e| (0, e))?;
        let mut client = AtomicBroadcastClient::new(orderer.deliver.clone())
            .max_decoding_message_size(MAX_BLOCK_BYTES);
        let mut stream = client
            .deliver(tokio_stream::once(seek))
            .await
            .map_err(|s| (0, format!("{:?}: {}", s.code(), s.message())))?
            .into_inner();
        let mut received = 0u64;
        loop {
            let message = stream
                .message()
                .await
                .map_err(|s| (received, format!("{:?}: {}", s.code(), s.message())))?;
            let Some(message) = message else {
                return Err((received, "the orderer closed the stream".into()));
            };
            match message.r#type {
                Some(Reply::Block(block)) => {
                    let (reply, checked) = tokio::sync::oneshot::channel();
                    // Never waits: each block's outcome is awaited before the next is sent.
                    checks
                        .send((block, std::time::Instant::now(), reply))
                        .map_err(|_| (received, "the block check thread stopped".to_owned()))?;
                    let checked = checked
                        .await
                        .unwrap_or_else(|_| Err("the block check thread stopped".to_owned()));
                    if let Err(why) = checked {
                        self.refused.fetch_add(1, Ordering::Relaxed);
                        return Err((received, why));
                    }
                    received += 1;
                }
                Some(Reply::Status(s)) => {
                    let status =
                        FabricStatus::try_from(s).unwrap_or(FabricStatus::InternalServerError);
                    return Err((
                        received,
                        format!("the orderer ended the stream: {}", status.as_str_name()),
                    ));
                }
                None => return Err((received, "an empty deliver response".into())),
            }
        }
    }

    /// Starts the thread that checks and queues the blocks [`Orderers::pull_blocks`] receives,
    /// one at a time. The checks verify a signature and queueing for commit may wait, so they run
    /// off the async threads, on a thread of their own: the blocking pool is bounded and shared
    /// with clients' requests (chaincode runs there), which must not hold up the commits.
    pub fn start_checks(self: &Arc<Self>) -> Result<Checks, String> {
        let (send, receive) = std::sync::mpsc::sync_channel::<Check>(1);
        let me = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name("block-check".into())
            .spawn(move || {
                for (block, arrived, reply) in receive {
                    let _ = reply.send(me.accept(block, arrived));
                }
            })
            .map_err(|e| format!("starting the block check thread: {e}"))?;
        Ok(Checks { send, thread })
    }

    /// Checks one block and queues it for commit.
    fn accept(&self, block: Block, arrived: std::time::Instant) -> Result<(), String> {
        let waited = u64::try_from(arrived.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.check_wait_micros.fetch_add(waited, Ordering::Relaxed);
        let next = self.next.load(Ordering::Acquire);
        let header = block
            .header
            .as_ref()
            .ok_or_else(|| "a block without a header".to_owned())?;
        if header.number != next {
            return Err(format!("sent block {} where {next} was due", header.number));
        }
        let mut last = self.last_hash.lock().unwrap_or_else(|p| p.into_inner());
        if header.previous_hash != last.as_slice() {
            return Err(format!(
                "block {next}'s previous hash does not match block {}",
                next.saturating_sub(1)
            ));
        }
        verify_block(&block, &self.ctx).map_err(|e| e.to_string())?;
        let hash = block_header_hash(header);
        {
            let mut arrivals = self.arrivals.lock().unwrap_or_else(|p| p.into_inner());
            if arrivals.len() >= MAX_ARRIVALS {
                arrivals.pop_front();
            }
            arrivals.push_back((next, arrived));
        }
        self.pipeline
            .submit(block)
            .map_err(|e| format!("the committer stopped: {e}"))?;
        *last = hash;
        self.next.store(next + 1, Ordering::Release);
        Ok(())
    }
}

/// The wall clock as a protobuf timestamp (for request headers only; never for validation).
pub fn now() -> mercato_proto::pb::Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    mercato_proto::pb::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}
