//! Integration tests of the wire helpers: a whole transaction's life in messages, the validation
//! code of every malformed layer, golden encodings, and garbage input.

mod garbage;
mod golden;
mod lifecycle;

use mercato_proto::pb::Timestamp;
use mercato_proto::proposal::ProposalInput;
use mercato_proto::{SignError, Signer};

/// A stand-in signer: its "signature" is the SHA-256 of the message, which lets these tests check
/// what was signed without any key. Real signatures are `mercato-ca`'s and are tested there.
pub struct HashSigner {
    pub creator: Vec<u8>,
}

impl HashSigner {
    pub fn new(msp: &str, name: &str) -> Self {
        HashSigner {
            creator: mercato_proto::identity::serialize_identity(msp, name.as_bytes()),
        }
    }
}

impl Signer for HashSigner {
    fn creator(&self) -> &[u8] {
        &self.creator
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        Ok(mercato_proto::hash::sha256(message).to_vec())
    }
}

pub fn input() -> ProposalInput {
    ProposalInput {
        channel_id: "commerce".into(),
        chaincode: "market".into(),
        args: vec![b"placeOrder".to_vec(), b"sku-1".to_vec(), b"3".to_vec()],
        transient: [("secret".to_string(), b"shh".to_vec())].into(),
        nonce: vec![7; 24],
        timestamp: Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        },
    }
}
