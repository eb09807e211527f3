//! Hostile input: mutated and random bytes go through every parser without a panic.

use mercato_proto::Limits;
use mercato_proto::Signer;
use mercato_proto::block::{new_block, parse_block};
use mercato_proto::pb::protos::{ProposalResponse, SignedProposal};
use mercato_proto::proposal::{new_proposal, parse_signed_proposal, sign_proposal};
use mercato_proto::response::parse_proposal_response;
use mercato_proto::transaction::{parse_envelope, parse_transaction};
use prost::Message;

use crate::{HashSigner, input};

/// A small seeded generator, so a failure replays exactly.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut XorShift, seed: &[u8]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    match rng.below(4) {
        0 => {
            let n = rng.below(bytes.len() + 1);
            bytes.truncate(n);
        }
        1 => {
            for _ in 0..=rng.below(8) {
                let i = rng.below(bytes.len());
                if let Some(b) = bytes.get_mut(i) {
                    *b ^= 1 << rng.below(8);
                }
            }
        }
        2 => {
            let i = rng.below(bytes.len() + 1);
            let junk: Vec<u8> = (0..rng.below(16)).map(|_| rng.next() as u8).collect();
            bytes.splice(i..i, junk);
        }
        _ => bytes = (0..rng.below(256)).map(|_| rng.next() as u8).collect(),
    }
    bytes
}

fn feed_all(bytes: &[u8], limits: &Limits) {
    let _ = parse_transaction(bytes, limits);
    let _ = parse_envelope(bytes, limits);
    let _ = parse_block(bytes, limits);
    if let Ok(sp) = SignedProposal::decode(bytes) {
        let _ = parse_signed_proposal(&sp, limits);
    }
    if let Ok(pr) = ProposalResponse::decode(bytes) {
        let _ = parse_proposal_response(&pr, limits);
    }
}

#[test]
fn mutated_messages_never_panic() {
    let client = HashSigner::new("SellersMSP", "alice");
    let unsigned = new_proposal(&input(), client.creator()).unwrap();
    let signed = sign_proposal(unsigned.proposal_bytes, &client).unwrap();
    let block = new_block(1, vec![1; 32], vec![signed.encode_to_vec(), b"x".to_vec()]);
    let seeds = [signed.encode_to_vec(), block.encode_to_vec()];
    let limits = Limits::default();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for i in 0..4000 {
        let bytes = mutate(&mut rng, &seeds[i % seeds.len()]);
        feed_all(&bytes, &limits);
    }
}
