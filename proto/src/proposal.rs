//! Signed proposals: what a client sends to be endorsed, and what the endorser and the gateway
//! read out of it.

use std::collections::BTreeMap;

use crate::hash::{proposal_hash, txid};
use crate::pb::Timestamp;
use crate::pb::common::{ChannelHeader, Header, HeaderType, SignatureHeader};
use crate::pb::protos::{
    ChaincodeHeaderExtension, ChaincodeId, ChaincodeInput, ChaincodeInvocationSpec,
    ChaincodeProposalPayload, ChaincodeSpec, Proposal, SignedProposal, chaincode_spec,
};
use crate::{BuildError, Limits, ParseError, Signer, decode, encode};

/// What a client asks for: one chaincode call on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalInput {
    /// The channel.
    pub channel_id: String,
    /// The chaincode's name.
    pub chaincode: String,
    /// The arguments; `args[0]` is the function name.
    pub args: Vec<Vec<u8>>,
    /// Private inputs that reach the chaincode but are never written into the transaction.
    pub transient: BTreeMap<String, Vec<u8>>,
    /// A fresh random nonce (Fabric's clients use 24 bytes); the caller supplies it, so this crate
    /// holds no randomness.
    pub nonce: Vec<u8>,
    /// The client's clock when it made the proposal.
    pub timestamp: Timestamp,
}

/// A proposal ready to be signed, with its txid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsignedProposal {
    /// The encoded `protos.Proposal`: the bytes the creator signs.
    pub proposal_bytes: Vec<u8>,
    /// hex(SHA-256(nonce ‖ creator)).
    pub txid: String,
}

/// Builds the proposal for `input`, made by `creator` (serialized identity bytes).
pub fn new_proposal(input: &ProposalInput, creator: &[u8]) -> Result<UnsignedProposal, BuildError> {
    if input.args.is_empty() {
        return Err(BuildError::Invalid(
            "a proposal needs at least the function name in args[0]".into(),
        ));
    }
    if input.nonce.is_empty() {
        return Err(BuildError::Invalid("a proposal needs a nonce".into()));
    }
    let txid = txid(&input.nonce, creator);
    let chaincode_id = ChaincodeId {
        name: input.chaincode.clone(),
        ..Default::default()
    };
    let channel_header = ChannelHeader {
        r#type: HeaderType::EndorserTransaction as i32,
        version: 0,
        timestamp: Some(input.timestamp),
        channel_id: input.channel_id.clone(),
        tx_id: txid.clone(),
        epoch: 0,
        extension: encode(&ChaincodeHeaderExtension {
            chaincode_id: Some(chaincode_id.clone()),
        }),
        tls_cert_hash: Vec::new(),
    };
    let signature_header = SignatureHeader {
        creator: creator.to_vec(),
        nonce: input.nonce.clone(),
    };
    let invocation = ChaincodeInvocationSpec {
        chaincode_spec: Some(ChaincodeSpec {
            r#type: chaincode_spec::Type::Undefined as i32,
            chaincode_id: Some(chaincode_id),
            input: Some(ChaincodeInput {
                args: input.args.clone(),
                decorations: BTreeMap::new(),
                is_init: false,
            }),
            timeout: 0,
        }),
    };
    let payload = ChaincodeProposalPayload {
        input: encode(&invocation),
        transient_map: input.transient.clone(),
    };
    let proposal = Proposal {
        header: encode(&Header {
            channel_header: encode(&channel_header),
            signature_header: encode(&signature_header),
        }),
        payload: encode(&payload),
        extension: Vec::new(),
    };
    Ok(UnsignedProposal {
        proposal_bytes: encode(&proposal),
        txid,
    })
}

/// Signs proposal bytes as their creator.
pub fn sign_proposal(
    proposal_bytes: Vec<u8>,
    signer: &dyn Signer,
) -> Result<SignedProposal, BuildError> {
    let signature = signer.sign(&proposal_bytes)?;
    Ok(SignedProposal {
        proposal_bytes,
        signature,
    })
}

/// The two headers every transaction and proposal carries, decoded, with the exact bytes they
/// came in (hashes and signatures cover those bytes, never a re-encoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedHeader {
    /// The decoded channel header.
    pub channel_header: ChannelHeader,
    /// The chaincode named in the channel header's extension (endorser transactions only).
    pub chaincode_id: Option<ChaincodeId>,
    /// The creator's serialized identity.
    pub creator: Vec<u8>,
    /// The creator's nonce.
    pub nonce: Vec<u8>,
    /// The channel header as it was encoded.
    pub channel_header_bytes: Vec<u8>,
    /// The signature header as it was encoded.
    pub signature_header_bytes: Vec<u8>,
}

impl ParsedHeader {
    /// The header's type, or an error for a value Fabric does not define.
    pub fn header_type(&self) -> Result<HeaderType, ParseError> {
        HeaderType::try_from(self.channel_header.r#type).map_err(|_| ParseError::Invalid {
            layer: "ChannelHeader.type",
            reason: format!("unknown header type {}", self.channel_header.r#type),
        })
    }

    /// Checks that the txid is hex(SHA-256(nonce ‖ creator)).
    pub fn check_txid(&self) -> Result<(), ParseError> {
        let expected = txid(&self.nonce, &self.creator);
        if self.channel_header.tx_id == expected {
            Ok(())
        } else {
            Err(ParseError::TxidMismatch {
                got: self.channel_header.tx_id.clone(),
                expected,
            })
        }
    }
}

/// Parses a `common.Header`. For an endorser transaction the channel header must name a channel,
/// a txid, a timestamp and a chaincode.
pub fn parse_header(header: &Header, limits: &Limits) -> Result<ParsedHeader, ParseError> {
    if header.channel_header.is_empty() {
        return Err(ParseError::Missing {
            layer: "ChannelHeader",
        });
    }
    if header.signature_header.is_empty() {
        return Err(ParseError::Missing {
            layer: "SignatureHeader",
        });
    }
    let channel_header: ChannelHeader = decode("ChannelHeader", &header.channel_header, limits)?;
    let signature_header: SignatureHeader =
        decode("SignatureHeader", &header.signature_header, limits)?;
    check_name(
        "ChannelHeader.channel_id",
        &channel_header.channel_id,
        limits,
    )?;
    if signature_header.creator.is_empty() {
        return Err(ParseError::Missing {
            layer: "SignatureHeader.creator",
        });
    }
    let mut chaincode_id = None;
    if channel_header.r#type == HeaderType::EndorserTransaction as i32 {
        // The nonce makes the txid unique. Other messages (a Deliver seek request: Fabric's
        // clients send none) may go without.
        if signature_header.nonce.is_empty() {
            return Err(ParseError::Missing {
                layer: "SignatureHeader.nonce",
            });
        }
        check_name("ChannelHeader.tx_id", &channel_header.tx_id, limits)?;
        match &channel_header.timestamp {
            None => {
                return Err(ParseError::Missing {
                    layer: "ChannelHeader.timestamp",
                });
            }
            Some(ts) if !(0..1_000_000_000).contains(&ts.nanos) => {
                return Err(ParseError::Invalid {
                    layer: "ChannelHeader.timestamp",
                    reason: format!("nanos {} out of range", ts.nanos),
                });
            }
            Some(_) => {}
        }
        if channel_header.extension.is_empty() {
            return Err(ParseError::Missing {
                layer: "ChannelHeader.extension",
            });
        }
        let ext: ChaincodeHeaderExtension = decode(
            "ChaincodeHeaderExtension",
            &channel_header.extension,
            limits,
        )?;
        let id = ext.chaincode_id.ok_or(ParseError::Missing {
            layer: "ChaincodeHeaderExtension",
        })?;
        check_name("ChaincodeHeaderExtension", &id.name, limits)?;
        chaincode_id = Some(id);
    }
    Ok(ParsedHeader {
        channel_header,
        chaincode_id,
        creator: signature_header.creator,
        nonce: signature_header.nonce,
        channel_header_bytes: header.channel_header.clone(),
        signature_header_bytes: header.signature_header.clone(),
    })
}

/// A signed proposal, decoded down to the chaincode call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedProposal {
    /// The headers.
    pub header: ParsedHeader,
    /// The chaincode called (from the header extension; the invocation spec must agree).
    pub chaincode: String,
    /// The arguments; `args[0]` is the function name.
    pub args: Vec<Vec<u8>>,
    /// Whether the client flagged this as an init call.
    pub is_init: bool,
    /// The transient map, for the chaincode only.
    pub transient: BTreeMap<String, Vec<u8>>,
    /// The `ChaincodeProposalPayload` re-encoded without its TransientMap: what the transaction
    /// carries and the proposal hash covers.
    pub payload_without_transient: Vec<u8>,
    /// SHA-256(channel header ‖ signature header ‖ payload without transient).
    pub proposal_hash: [u8; 32],
    /// The signed bytes.
    pub proposal_bytes: Vec<u8>,
    /// The creator's signature over `proposal_bytes`.
    pub signature: Vec<u8>,
}

impl ParsedProposal {
    /// The function name (`args[0]`), lossily decoded.
    pub fn function(&self) -> String {
        self.args
            .first()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .unwrap_or_default()
    }
}

/// Parses a signed proposal for an endorser transaction. It checks structure only: the txid, the
/// creator and the signature are the endorser's to check (see [`ParsedHeader::check_txid`]).
pub fn parse_signed_proposal(
    signed: &SignedProposal,
    limits: &Limits,
) -> Result<ParsedProposal, ParseError> {
    if signed.proposal_bytes.is_empty() {
        return Err(ParseError::Missing {
            layer: "SignedProposal.proposal_bytes",
        });
    }
    if signed.signature.is_empty() {
        return Err(ParseError::Missing {
            layer: "SignedProposal.signature",
        });
    }
    let proposal: Proposal = decode("Proposal", &signed.proposal_bytes, limits)?;
    let header: Header = decode("Header", &proposal.header, limits)?;
    let header = parse_header(&header, limits)?;
    if header.channel_header.r#type != HeaderType::EndorserTransaction as i32 {
        return Err(ParseError::Invalid {
            layer: "ChannelHeader.type",
            reason: format!(
                "a proposal must be an endorser transaction (type 3), not type {}",
                header.channel_header.r#type
            ),
        });
    }
    let payload: ChaincodeProposalPayload =
        decode("ChaincodeProposalPayload", &proposal.payload, limits)?;
    if payload.transient_map.len() > limits.max_transient_entries {
        return Err(ParseError::TooLarge {
            layer: "ChaincodeProposalPayload.TransientMap",
            size: payload.transient_map.len(),
            limit: limits.max_transient_entries,
        });
    }
    let invocation: ChaincodeInvocationSpec =
        decode("ChaincodeInvocationSpec", &payload.input, limits)?;
    let spec = invocation.chaincode_spec.ok_or(ParseError::Missing {
        layer: "ChaincodeInvocationSpec.chaincode_spec",
    })?;
    let input = spec.input.ok_or(ParseError::Missing {
        layer: "ChaincodeSpec.input",
    })?;
    if input.args.is_empty() {
        return Err(ParseError::Missing {
            layer: "ChaincodeInput.args",
        });
    }
    if input.args.len() > limits.max_args {
        return Err(ParseError::TooLarge {
            layer: "ChaincodeInput.args",
            size: input.args.len(),
            limit: limits.max_args,
        });
    }
    // parse_header guarantees the extension names a chaincode for endorser transactions.
    let chaincode = header
        .chaincode_id
        .as_ref()
        .map(|id| id.name.clone())
        .unwrap_or_default();
    let spec_name = spec.chaincode_id.map(|id| id.name).unwrap_or_default();
    if !spec_name.is_empty() && spec_name != chaincode {
        return Err(ParseError::Invalid {
            layer: "ChaincodeSpec.chaincode_id",
            reason: format!("names chaincode {spec_name:?} but the header names {chaincode:?}"),
        });
    }
    let payload_without_transient = encode(&ChaincodeProposalPayload {
        input: payload.input,
        transient_map: BTreeMap::new(),
    });
    let proposal_hash = proposal_hash(
        &header.channel_header_bytes,
        &header.signature_header_bytes,
        &payload_without_transient,
    );
    Ok(ParsedProposal {
        header,
        chaincode,
        args: input.args,
        is_init: input.is_init,
        transient: payload.transient_map,
        payload_without_transient,
        proposal_hash,
        proposal_bytes: signed.proposal_bytes.clone(),
        signature: signed.signature.clone(),
    })
}

/// Requires a non-empty name within the length limit.
pub(crate) fn check_name(
    layer: &'static str,
    name: &str,
    limits: &Limits,
) -> Result<(), ParseError> {
    if name.is_empty() {
        return Err(ParseError::Missing { layer });
    }
    if name.len() > limits.max_name_len {
        return Err(ParseError::TooLarge {
            layer,
            size: name.len(),
            limit: limits.max_name_len,
        });
    }
    Ok(())
}
