//! Blocks: building them (the orderer), the bytes the orderer signs, and parsing them (peers).

use crate::hash::{block_header_bytes, data_hash};
use crate::pb::common::{
    Block, BlockData, BlockHeader, BlockMetadata, BlockMetadataIndex, Metadata, MetadataSignature,
    SignatureHeader,
};
use crate::{BuildError, Limits, ParseError, Signer, ValidationCode, decode, encode};

/// The number of metadata entries a block carries (SIGNATURES through COMMIT_HASH).
pub const METADATA_ENTRIES: usize = 5;

/// Builds an unsigned block of `envelopes` following a block whose header hash is
/// `previous_hash` (empty for the genesis block).
pub fn new_block(number: u64, previous_hash: Vec<u8>, envelopes: Vec<Vec<u8>>) -> Block {
    let data_hash = data_hash(envelopes.iter().map(Vec::as_slice)).to_vec();
    Block {
        header: Some(BlockHeader {
            number,
            previous_hash,
            data_hash,
        }),
        data: Some(BlockData { data: envelopes }),
        metadata: Some(BlockMetadata {
            metadata: vec![Vec::new(); METADATA_ENTRIES],
        }),
    }
}

/// The bytes an orderer signs for a block: the metadata value ‖ the signature header ‖ the DER
/// block header.
pub fn block_signature_message(
    metadata_value: &[u8],
    signature_header: &[u8],
    header: &BlockHeader,
) -> Vec<u8> {
    let header = block_header_bytes(header);
    let mut msg = Vec::with_capacity(metadata_value.len() + signature_header.len() + header.len());
    msg.extend_from_slice(metadata_value);
    msg.extend_from_slice(signature_header);
    msg.extend_from_slice(&header);
    msg
}

/// Signs a block as an orderer: adds a signature to the SIGNATURES metadata entry over `value`
/// (the orderer's block metadata) with a signature header of the signer and `nonce`.
pub fn sign_block(
    block: &mut Block,
    value: Vec<u8>,
    signer: &dyn Signer,
    nonce: Vec<u8>,
) -> Result<(), BuildError> {
    let header = block
        .header
        .as_ref()
        .ok_or_else(|| BuildError::Invalid("cannot sign a block without a header".into()))?;
    let signature_header = encode(&SignatureHeader {
        creator: signer.creator().to_vec(),
        nonce,
    });
    let signature = signer.sign(&block_signature_message(&value, &signature_header, header))?;
    let metadata = block.metadata.get_or_insert_with(BlockMetadata::default);
    let slot = metadata_slot(metadata, BlockMetadataIndex::Signatures);
    let mut entry: Metadata = if slot.is_empty() {
        Metadata::default()
    } else {
        decode("Metadata", slot, &Limits::DEFAULT)?
    };
    entry.value = value;
    entry.signatures.push(MetadataSignature {
        signature_header,
        signature,
        identifier_header: Vec::new(),
    });
    *slot = encode(&entry);
    Ok(())
}

/// The metadata entry at `index`, growing the list to hold it.
fn metadata_slot(metadata: &mut BlockMetadata, index: BlockMetadataIndex) -> &mut Vec<u8> {
    let i = index as usize;
    if metadata.metadata.len() <= i {
        metadata
            .metadata
            .resize(METADATA_ENTRIES.max(i + 1), Vec::new());
    }
    &mut metadata.metadata[i]
}

/// Records the validation code of every transaction in the TRANSACTIONS_FILTER metadata, one
/// byte per transaction as Fabric does.
pub fn set_transactions_filter(block: &mut Block, codes: &[ValidationCode]) {
    let metadata = block.metadata.get_or_insert_with(BlockMetadata::default);
    *metadata_slot(metadata, BlockMetadataIndex::TransactionsFilter) =
        codes.iter().map(|c| c.0).collect();
}

/// Records a peer's commit hash in the COMMIT_HASH metadata, as Fabric does: an encoded
/// `Metadata` whose value is the hash.
pub fn set_commit_hash(block: &mut Block, hash: &[u8; 32]) {
    let metadata = block.metadata.get_or_insert_with(BlockMetadata::default);
    *metadata_slot(metadata, BlockMetadataIndex::CommitHash) = encode(&Metadata {
        value: hash.to_vec(),
        signatures: Vec::new(),
    });
}

/// The commit hash a peer recorded in a block, if any (an entry that is not a 32-byte hash in a
/// `Metadata` is an error).
pub fn commit_hash(block: &Block) -> Result<Option<[u8; 32]>, ParseError> {
    let Some(bytes) =
        metadata_entry(block, BlockMetadataIndex::CommitHash).filter(|b| !b.is_empty())
    else {
        return Ok(None);
    };
    let entry: Metadata = decode("Metadata", bytes, &Limits::DEFAULT)?;
    <[u8; 32]>::try_from(entry.value.as_slice())
        .map(Some)
        .map_err(|_| ParseError::Invalid {
            layer: "Block.metadata[COMMIT_HASH]",
            reason: format!("{} bytes, not a 32-byte hash", entry.value.len()),
        })
}

/// The metadata entry at `index`, if the block has one.
pub fn metadata_entry(block: &Block, index: BlockMetadataIndex) -> Option<&[u8]> {
    block
        .metadata
        .as_ref()
        .and_then(|m| m.metadata.get(index as usize))
        .map(Vec::as_slice)
}

/// A block's signatures: the signed metadata value and each orderer's signature with its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSignatures {
    /// The signed value.
    pub value: Vec<u8>,
    /// The signatures.
    pub signatures: Vec<MetadataSignature>,
}

/// Reads the SIGNATURES metadata entry of a block.
pub fn block_signatures(block: &Block, limits: &Limits) -> Result<BlockSignatures, ParseError> {
    let bytes = metadata_entry(block, BlockMetadataIndex::Signatures)
        .filter(|b| !b.is_empty())
        .ok_or(ParseError::Missing {
            layer: "BlockMetadata.SIGNATURES",
        })?;
    let entry: Metadata = decode("BlockMetadata.SIGNATURES", bytes, limits)?;
    if entry.signatures.is_empty() {
        return Err(ParseError::Missing {
            layer: "BlockMetadata.SIGNATURES",
        });
    }
    Ok(BlockSignatures {
        value: entry.value,
        signatures: entry.signatures,
    })
}

/// Parses a block and checks its structure: a header, data within the transaction limit, metadata,
/// and a data hash that matches the data. Signatures and the hash chain are the validator's.
pub fn parse_block(bytes: &[u8], limits: &Limits) -> Result<Block, ParseError> {
    let block: Block = decode("Block", bytes, limits)?;
    check_block(&block, limits)?;
    Ok(block)
}

/// Checks the structure of a decoded block (see [`parse_block`]).
pub fn check_block(block: &Block, limits: &Limits) -> Result<(), ParseError> {
    let header = block.header.as_ref().ok_or(ParseError::Missing {
        layer: "Block.header",
    })?;
    let data = block.data.as_ref().ok_or(ParseError::Missing {
        layer: "Block.data",
    })?;
    if block.metadata.is_none() {
        return Err(ParseError::Missing {
            layer: "Block.metadata",
        });
    }
    if data.data.len() > limits.max_block_transactions {
        return Err(ParseError::TooLarge {
            layer: "Block.data",
            size: data.data.len(),
            limit: limits.max_block_transactions,
        });
    }
    if header.data_hash != data_hash(data.data.iter().map(Vec::as_slice)) {
        return Err(ParseError::Invalid {
            layer: "BlockHeader.data_hash",
            reason: format!("does not match the data of block {}", header.number),
        });
    }
    Ok(())
}

/// Just the fields of a block that lead to its transactions' txids, decoded by prost with the
/// same rules as the full messages (unknown fields skipped, the last of a repeated singular
/// field kept, embedded messages merged), so that whatever txid a full decode finds, these find
/// too. Byte fields borrow from the block's buffer instead of being copied.
mod txid_path {
    use prost::bytes::Bytes;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Block {
        #[prost(message, optional, tag = "2")]
        pub data: Option<BlockData>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BlockData {
        #[prost(bytes = "bytes", repeated, tag = "1")]
        pub data: Vec<Bytes>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Envelope {
        #[prost(bytes = "bytes", tag = "1")]
        pub payload: Bytes,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Payload {
        #[prost(message, optional, tag = "1")]
        pub header: Option<Header>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Header {
        #[prost(bytes = "bytes", tag = "1")]
        pub channel_header: Bytes,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ChannelHeader {
        #[prost(string, tag = "5")]
        pub tx_id: String,
    }
}

/// The txid every envelope of an encoded block names in its channel header, in block order, for
/// rebuilding a txid index or filter from stored blocks: a superset of the txids validation
/// could have indexed (an envelope that does not decode that far is left out, as validation
/// leaves it out). Faster than [`parse_block`], as it copies none of the transactions.
pub fn block_txids(block: Vec<u8>) -> Result<Vec<String>, ParseError> {
    use prost::Message;
    let block = txid_path::Block::decode(prost::bytes::Bytes::from(block)).map_err(|e| {
        ParseError::Malformed {
            layer: "Block",
            reason: e.to_string(),
        }
    })?;
    let envelopes = block.data.map(|d| d.data).unwrap_or_default();
    Ok(envelopes
        .into_iter()
        .filter_map(|env| {
            let env = txid_path::Envelope::decode(env).ok()?;
            let header = txid_path::Payload::decode(env.payload).ok()?.header?;
            Some(
                txid_path::ChannelHeader::decode(header.channel_header)
                    .ok()?
                    .tx_id,
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::common::{ChannelHeader, Envelope, Header, Payload};
    use prost::Message;

    fn envelope(channel_header: Vec<u8>) -> Vec<u8> {
        Envelope {
            payload: Payload {
                header: Some(Header {
                    channel_header,
                    signature_header: vec![1, 2],
                }),
                data: vec![7; 1000],
            }
            .encode_to_vec(),
            signature: vec![3; 64],
        }
        .encode_to_vec()
    }

    /// The txids found without decoding whole transactions are those a full decode finds,
    /// down to a field given twice (the last one counts, as for prost's full messages).
    #[test]
    fn block_txids_agree_with_a_full_decode() {
        let named = |t: &str| {
            ChannelHeader {
                tx_id: t.into(),
                ..Default::default()
            }
            .encode_to_vec()
        };
        let mut twice = named("first");
        twice.extend(named("second"));
        let envelopes = vec![
            envelope(named("a")),
            vec![0xff, 0xff],
            envelope(twice),
            vec![],
        ];
        let block = new_block(3, vec![9; 32], envelopes.clone());
        let found = block_txids(block.encode_to_vec()).unwrap();
        // The messages validation decodes, whole.
        let full: Vec<String> = envelopes
            .iter()
            .filter_map(|e| {
                let env = Envelope::decode(e.as_slice()).ok()?;
                let header = Payload::decode(env.payload.as_slice()).ok()?.header?;
                Some(
                    ChannelHeader::decode(header.channel_header.as_slice())
                        .ok()?
                        .tx_id,
                )
            })
            .collect();
        assert_eq!(found, ["a", "second"]);
        assert_eq!(full, found);
        assert!(block_txids(vec![0xff; 10]).is_err());
    }
}
