//! Long-lived Broadcast streams to one orderer. The gateway's envelopes go over a few open
//! `AtomicBroadcast/Broadcast` streams, which orderers answer in the order the envelopes came
//! (Fabric's and Mercato's alike), rather than over a new stream per envelope: no stream set-up,
//! no end-of-stream exchange and fewer wake-ups per transaction.
//!
//! A stream that fails or closes fails the envelopes waiting on it, and the next envelope opens
//! a new one; [`Lanes::reset`] drops them all (after a timeout, say).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use mercato_proto::pb::common::Envelope;
use mercato_proto::pb::orderer::BroadcastResponse;
use mercato_proto::pb::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::transport::Channel;

/// How many streams one orderer's envelopes are spread over.
const LANES: usize = 8;
/// How many envelopes one stream has unanswered at most (Mercato's orderer orders 64 of a
/// stream at a time); more wait to be sent.
const IN_FLIGHT: usize = 64;

/// An orderer's answer to one envelope, or why the stream could not give it.
pub type Answer = Result<BroadcastResponse, Status>;
type Item = (Envelope, oneshot::Sender<Answer>);

/// The Broadcast streams to one orderer, opened on first use.
pub struct Lanes {
    channel: Channel,
    lanes: Vec<Mutex<Option<mpsc::Sender<Item>>>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes").finish_non_exhaustive()
    }
}

impl Lanes {
    /// Streams over `channel` (connected lazily).
    pub fn new(channel: Channel) -> Self {
        Lanes {
            channel,
            lanes: (0..LANES).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Sends one envelope and waits for the orderer's answer to it. Must be called inside a
    /// Tokio runtime (a new stream is served by a task of its own).
    pub async fn broadcast(&self, envelope: Envelope) -> Answer {
        let lane = self.lane(self.next.fetch_add(1, Ordering::Relaxed) % LANES);
        let (reply, answer) = oneshot::channel();
        if lane.send((envelope, reply)).await.is_err() {
            return Err(Status::unavailable("the Broadcast stream closed"));
        }
        answer.await.unwrap_or_else(|_| {
            Err(Status::unavailable(
                "the Broadcast stream closed before the answer",
            ))
        })
    }

    /// Drops every stream: the envelopes waiting on them fail, and the next one opens a new
    /// stream.
    pub fn reset(&self) {
        for lane in &self.lanes {
            lane.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
    }

    /// Lane `i`'s stream, opened anew if it has none or its stream ended.
    fn lane(&self, i: usize) -> mpsc::Sender<Item> {
        let mut slot = self.lanes[i].lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lane) = slot.as_ref().filter(|l| !l.is_closed()) {
            return lane.clone();
        }
        let (lane, items) = mpsc::channel(IN_FLIGHT);
        tokio::spawn(serve(
            AtomicBroadcastClient::new(self.channel.clone()),
            items,
        ));
        *slot = Some(lane.clone());
        lane
    }
}

/// Runs one stream: sends the lane's envelopes, and hands each answer to the oldest envelope not
/// yet answered. Ends when the stream fails or the lane is dropped; the envelopes still waiting
/// then get the failure.
async fn serve(mut client: AtomicBroadcastClient<Channel>, mut items: mpsc::Receiver<Item>) {
    let (out, outgoing) = mpsc::channel::<Envelope>(IN_FLIGHT);
    let mut waiting: VecDeque<oneshot::Sender<Answer>> = VecDeque::with_capacity(IN_FLIGHT);
    // The request stream is fed while the call waits for the response head: a server may send
    // its head only with its first answer.
    let call = client.broadcast(ReceiverStream::new(outgoing));
    tokio::pin!(call);
    let mut answers: Option<tonic::Streaming<BroadcastResponse>> = None;
    let failure = loop {
        tokio::select! {
            item = items.recv(), if waiting.len() < IN_FLIGHT => match item {
                Some((envelope, reply)) => {
                    waiting.push_back(reply);
                    // Room is certain: `out` holds at most the envelopes waiting.
                    if out.try_send(envelope).is_err() {
                        break Status::unavailable("the Broadcast stream closed");
                    }
                }
                // The lane was dropped.
                None => break Status::unavailable("the Broadcast stream was closed by the peer"),
            },
            head = &mut call, if answers.is_none() => match head {
                Ok(response) => answers = Some(response.into_inner()),
                Err(status) => break status,
            },
            answer = next_answer(&mut answers), if answers.is_some() && !waiting.is_empty() => {
                match answer {
                    Ok(Some(answer)) => {
                        if let Some(reply) = waiting.pop_front() {
                            // The caller may have given up waiting: nothing to do then.
                            let _ = reply.send(Ok(answer));
                        }
                    }
                    Ok(None) => break Status::unavailable("the orderer closed the Broadcast stream"),
                    Err(status) => break status,
                }
            }
        }
    };
    if !waiting.is_empty() {
        tracing::debug!(error = %failure, waiting = waiting.len(), "broadcast stream ended");
    }
    for reply in waiting {
        let _ = reply.send(Err(failure.clone()));
    }
}

async fn next_answer(
    answers: &mut Option<tonic::Streaming<BroadcastResponse>>,
) -> Result<Option<BroadcastResponse>, Status> {
    match answers {
        Some(stream) => stream.message().await,
        None => std::future::pending().await,
    }
}
