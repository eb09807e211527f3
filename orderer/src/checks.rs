//! The threads that run Broadcast's checks: one per core, fed by one bounded queue. Each takes
//! whatever envelopes are waiting, up to [`BATCH`], and checks them together, so that under
//! load the creators' Ed25519 signatures are verified in batches (about twice as fast as one by
//! one) and the node runs a few busy threads rather than a blocking thread per envelope.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use mercato_proto::pb::common::Status;
use tokio::sync::{mpsc, oneshot};

use crate::broadcast::{BroadcastChecker, Refusal};

/// The most envelopes one thread checks at once.
pub const BATCH: usize = 64;
/// How many envelopes may wait for a thread; a Broadcast waits while it is full.
const QUEUE: usize = 4096;

type Job = (Vec<u8>, oneshot::Sender<Result<Vec<u8>, Refusal>>);

/// The checking threads of one channel.
pub struct CheckPool {
    queue: mpsc::Sender<Job>,
}

impl std::fmt::Debug for CheckPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckPool").finish_non_exhaustive()
    }
}

impl CheckPool {
    /// Starts `threads` checking threads (at least one). They end once the pool is dropped and
    /// the envelopes already queued are answered.
    pub fn start(checker: Arc<BroadcastChecker>, threads: usize) -> std::io::Result<Self> {
        let (queue, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.clamp(1, 64) {
            let checker = Arc::clone(&checker);
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("check-{i}"))
                .spawn(move || work(&checker, &rx))?;
        }
        Ok(CheckPool { queue })
    }

    /// Checks one envelope; gives it back when it may be ordered.
    pub async fn check(&self, envelope: Vec<u8>) -> Result<Vec<u8>, Refusal> {
        let (reply, verdict) = oneshot::channel();
        self.queue
            .send((envelope, reply))
            .await
            .map_err(|_| stopped())?;
        verdict.await.map_err(|_| stopped())?
    }
}

fn stopped() -> Refusal {
    Refusal::new(
        Status::ServiceUnavailable,
        "the orderer's checks stopped; retry shortly",
    )
}

fn work(checker: &BroadcastChecker, rx: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let mut jobs = Vec::with_capacity(BATCH);
        {
            // The lock is held while waiting, so that one idle thread takes the next envelopes.
            let mut rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            match rx.blocking_recv() {
                Some(job) => jobs.push(job),
                None => return,
            }
            while jobs.len() < BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        }
        let (envelopes, replies): (Vec<Vec<u8>>, Vec<_>) = jobs.into_iter().unzip();
        // A panic in a check is a bug: its envelopes are refused as unavailable, and the thread
        // goes on with the next ones.
        let verdicts =
            std::panic::catch_unwind(AssertUnwindSafe(|| checker.check_batch(&envelopes)))
                .unwrap_or_default();
        let mut verdicts = verdicts.into_iter();
        for (envelope, reply) in envelopes.into_iter().zip(replies) {
            let verdict = match verdicts.next() {
                Some(v) => v.map(|_| envelope),
                None => Err(Refusal::new(
                    Status::ServiceUnavailable,
                    "a check failed unexpectedly",
                )),
            };
            // The Broadcast may have gone (its client left): nothing to answer.
            let _ = reply.send(verdict);
        }
    }
}
