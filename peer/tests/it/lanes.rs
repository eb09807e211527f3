//! The long-lived Broadcast streams against a small orderer stand-in that answers each envelope
//! with its own payload, in order, and can be told to drop a stream after some answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mercato_peer::lanes::Lanes;
use mercato_proto::pb::common::{Envelope, Status as FabricStatus};
use mercato_proto::pb::orderer::atomic_broadcast_server::{AtomicBroadcast, AtomicBroadcastServer};
use mercato_proto::pb::orderer::{BroadcastResponse, DeliverResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

/// Answers every envelope with `info` = its payload, each stream ending after `answers_per_stream`
/// answers (the orderer going away mid-stream); counts the streams opened.
struct Echo {
    answers_per_stream: usize,
    streams: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl AtomicBroadcast for Echo {
    type BroadcastStream = ReceiverStream<Result<BroadcastResponse, Status>>;
    type DeliverStream = ReceiverStream<Result<DeliverResponse, Status>>;

    async fn broadcast(
        &self,
        request: Request<Streaming<Envelope>>,
    ) -> Result<Response<Self::BroadcastStream>, Status> {
        self.streams.fetch_add(1, Ordering::SeqCst);
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let limit = self.answers_per_stream;
        tokio::spawn(async move {
            let mut answered = 0;
            while let Ok(Some(envelope)) = inbound.message().await {
                if answered == limit {
                    let _ = tx.send(Err(Status::unavailable("going away"))).await;
                    return;
                }
                let answer = BroadcastResponse {
                    status: FabricStatus::Success as i32,
                    info: String::from_utf8_lossy(&envelope.payload).into_owned(),
                };
                if tx.send(Ok(answer)).await.is_err() {
                    return;
                }
                answered += 1;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn deliver(
        &self,
        _: Request<Streaming<Envelope>>,
    ) -> Result<Response<Self::DeliverStream>, Status> {
        Err(Status::unimplemented("not here"))
    }
}

async fn echo_orderer(answers_per_stream: usize) -> (Lanes, Arc<AtomicUsize>) {
    let streams = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = Echo {
        answers_per_stream,
        streams: Arc::clone(&streams),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AtomicBroadcastServer::new(service))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    (Lanes::new(channel), streams)
}

fn envelope(i: usize) -> Envelope {
    Envelope {
        payload: format!("envelope {i}").into_bytes(),
        signature: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_envelope_gets_its_own_answer_over_a_few_streams() {
    let (lanes, streams) = echo_orderer(usize::MAX).await;
    let lanes = Arc::new(lanes);
    let calls: Vec<_> = (0..500)
        .map(|i| {
            let lanes = Arc::clone(&lanes);
            tokio::spawn(async move { (i, lanes.broadcast(envelope(i)).await) })
        })
        .collect();
    for call in calls {
        let (i, answer) = call.await.unwrap();
        assert_eq!(answer.unwrap().info, format!("envelope {i}"));
    }
    // The streams stay open: more envelopes open no new one.
    let opened = streams.load(Ordering::SeqCst);
    assert!((1..=8).contains(&opened), "{opened} streams");
    for i in 0..20 {
        assert_eq!(
            lanes.broadcast(envelope(i)).await.unwrap().info,
            format!("envelope {i}")
        );
    }
    assert_eq!(streams.load(Ordering::SeqCst), opened);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_fails_fails_its_waiting_envelopes_and_the_next_opens_anew() {
    // Every stream ends with an error after 3 answers.
    let (lanes, streams) = echo_orderer(3).await;
    let mut answered = 0;
    let mut failed = 0;
    for i in 0..60 {
        match lanes.broadcast(envelope(i)).await {
            Ok(answer) => {
                assert_eq!(answer.info, format!("envelope {i}"));
                answered += 1;
            }
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
                failed += 1;
            }
        }
    }
    // One at a time over 8 lanes of 7 or 8 envelopes each: every stream answers 3 and fails the
    // 4th, at least 12 failures in all, and a lane whose stream failed opens a new one (an
    // envelope sent while the old one was closing may fail too).
    assert!(failed >= 12, "{failed} failed");
    assert!(answered >= 36, "{answered} answered");
    // Each stream answers 3 at most: the answers came over at least 12 streams.
    assert!(streams.load(Ordering::SeqCst) >= 12);
}
