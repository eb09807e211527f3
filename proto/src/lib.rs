//! Mercato's wire format: Fabric-compatible protobuf messages and gRPC services, and the one place
//! where bytes that are hashed or signed are produced.
//!
//! Client-facing messages and services (packages `common`, `msp`, `protos`, `gateway`, `orderer`,
//! `rwset`, `kvrwset`) reproduce Hyperledger Fabric's wire format, so Fabric's official Gateway SDKs
//! talk to a Mercato peer unchanged. Mercato's own services live in package `mercato` (the
//! certificate authority's `mercato.CertificateAuthority`, the chaincode lifecycle's packages and
//! definitions, and the channel configuration the genesis block carries). The `.proto` files are compiled by
//! `protox` in `build.rs`: a fresh machine needs no `protoc`.
//!
//! Everything that decodes bytes from the network takes a [`Limits`] and returns a typed
//! [`ParseError`] naming the layer that was missing or malformed; nothing here panics on input.
//! Every `ParseError` maps to the Fabric `TxValidationCode` a committer records for it.
//!
//! # Layout
//! - [`pb`]: the generated prost messages and tonic clients/servers, one module per proto package.
//! - [`hash`]: txid, proposal hash, block header hash (DER) and data hash.
//! - [`identity`]: serialize and parse `msp.SerializedIdentity`.
//! - [`signer`]: the [`Signer`] trait the builders sign with (implemented by `mercato-ca`).
//! - [`proposal`]: build and parse a signed proposal.
//! - [`response`]: build and parse a proposal response (an endorsement).
//! - [`transaction`]: assemble, sign and parse an endorsed transaction envelope.
//! - [`block`]: build and parse blocks, their metadata and the bytes the orderer signs.
//! - [`config`]: the genesis block and the channel configuration it carries.
//! - [`deliver`]: seek requests resolved to block ranges.
//! - [`status`]: the `gateway.ErrorDetail`s a failed Gateway call carries in its status details.
//! - [`validation`]: [`ValidationCode`], Fabric's codes and Mercato's own.
//! - [`limits`]: size limits on everything decoded.
//! - [`error`]: [`ParseError`] and [`BuildError`].

pub mod block;
pub mod config;
pub mod deliver;
pub mod error;
pub mod hash;
pub mod identity;
pub mod limits;
pub mod proposal;
pub mod query;
pub mod response;
pub mod signer;
pub mod status;
pub mod transaction;
pub mod validation;

pub use error::{BuildError, ParseError};
pub use limits::Limits;
pub use signer::{SignError, Signer};
pub use validation::ValidationCode;

/// The generated wire types, one module per protobuf package. Only `proto` and the service modules
/// of other crates use these directly; domain code works with the parsed views of this crate.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    pub mod common {
        include!(concat!(env!("OUT_DIR"), "/common.rs"));
    }
    pub mod msp {
        include!(concat!(env!("OUT_DIR"), "/msp.rs"));
    }
    pub mod protos {
        include!(concat!(env!("OUT_DIR"), "/protos.rs"));
    }
    pub mod gateway {
        include!(concat!(env!("OUT_DIR"), "/gateway.rs"));
    }
    pub mod orderer {
        include!(concat!(env!("OUT_DIR"), "/orderer.rs"));
    }
    pub mod rwset {
        include!(concat!(env!("OUT_DIR"), "/rwset.rs"));
    }
    pub mod kvrwset {
        include!(concat!(env!("OUT_DIR"), "/kvrwset.rs"));
    }
    /// Mercato's own messages and services (not part of Fabric's wire format): the certificate
    /// authority, the chaincode lifecycle and the ledger query service.
    pub mod mercato {
        include!(concat!(env!("OUT_DIR"), "/mercato.rs"));
    }
    pub use prost_types::Timestamp;
}

pub use pb::protos::TxValidationCode;

/// Decodes a protobuf message from untrusted bytes, naming the layer in the error.
pub(crate) fn decode<M: prost::Message + Default>(
    layer: &'static str,
    bytes: &[u8],
    limits: &Limits,
) -> Result<M, ParseError> {
    if bytes.len() > limits.max_message_bytes {
        return Err(ParseError::TooLarge {
            layer,
            size: bytes.len(),
            limit: limits.max_message_bytes,
        });
    }
    M::decode(bytes).map_err(|e| ParseError::Malformed {
        layer,
        reason: e.to_string(),
    })
}

/// Encodes a message to bytes. Encoding into a `Vec` cannot fail.
pub(crate) fn encode<M: prost::Message>(message: &M) -> Vec<u8> {
    message.encode_to_vec()
}
