//! `msp.SerializedIdentity`: the creator and endorser bytes that every signed message carries.

use crate::pb::msp::SerializedIdentity;
use crate::{Limits, ParseError, decode, encode};

/// Serializes an identity as Fabric does: the MSP id and the PEM certificate.
pub fn serialize_identity(msp_id: &str, certificate_pem: &[u8]) -> Vec<u8> {
    encode(&SerializedIdentity {
        mspid: msp_id.to_owned(),
        id_bytes: certificate_pem.to_vec(),
    })
}

/// Parses serialized identity bytes, requiring both an MSP id and certificate bytes.
pub fn parse_serialized_identity(
    bytes: &[u8],
    limits: &Limits,
) -> Result<SerializedIdentity, ParseError> {
    const LAYER: &str = "SerializedIdentity";
    if bytes.is_empty() {
        return Err(ParseError::Missing { layer: LAYER });
    }
    let id: SerializedIdentity = decode(LAYER, bytes, limits)?;
    if id.mspid.is_empty() {
        return Err(ParseError::Missing {
            layer: "SerializedIdentity.mspid",
        });
    }
    if id.mspid.len() > limits.max_name_len {
        return Err(ParseError::TooLarge {
            layer: "SerializedIdentity.mspid",
            size: id.mspid.len(),
            limit: limits.max_name_len,
        });
    }
    if id.id_bytes.is_empty() {
        return Err(ParseError::Missing {
            layer: "SerializedIdentity.id_bytes",
        });
    }
    Ok(id)
}
