//! The channel configuration in the genesis block: one envelope whose payload has a CONFIG
//! channel header and a `mercato.ChannelConfig` as its data. Unsigned, as Fabric's genesis
//! blocks are: a node trusts the genesis block it is given, and every later block chains to it.

use crate::block::{check_block, new_block};
use crate::pb::common::{ChannelHeader, Envelope, Header, HeaderType, Payload, SignatureHeader};
use crate::pb::mercato::ChannelConfig;
use crate::proposal::check_name;
use crate::{Limits, ParseError, decode, encode};

/// Builds the genesis block (block 0) of the channel `config` describes.
pub fn new_genesis_block(config: &ChannelConfig) -> crate::pb::common::Block {
    let payload = Payload {
        header: Some(Header {
            channel_header: encode(&ChannelHeader {
                r#type: HeaderType::Config as i32,
                channel_id: config.channel_id.clone(),
                ..Default::default()
            }),
            signature_header: encode(&SignatureHeader::default()),
        }),
        data: encode(config),
    };
    let envelope = Envelope {
        payload: encode(&payload),
        signature: Vec::new(),
    };
    new_block(0, Vec::new(), vec![encode(&envelope)])
}

/// Reads the channel configuration out of a genesis block, checking its structure: block 0, its
/// data hash, exactly one CONFIG envelope, and a channel id that matches the configuration's.
pub fn parse_genesis_block(
    block: &crate::pb::common::Block,
    limits: &Limits,
) -> Result<ChannelConfig, ParseError> {
    check_block(block, limits)?;
    let number = block.header.as_ref().map(|h| h.number).unwrap_or_default();
    if number != 0 {
        return Err(ParseError::Invalid {
            layer: "BlockHeader.number",
            reason: format!("a genesis block is block 0, not {number}"),
        });
    }
    let data = block
        .data
        .as_ref()
        .map(|d| d.data.as_slice())
        .unwrap_or_default();
    let [envelope] = data else {
        return Err(ParseError::Invalid {
            layer: "BlockData",
            reason: format!("a genesis block holds one envelope, not {}", data.len()),
        });
    };
    let envelope: Envelope = decode("Envelope", envelope, limits)?;
    let payload: Payload = decode("Payload", &envelope.payload, limits)?;
    let header = payload.header.ok_or(ParseError::Missing {
        layer: "Payload.header",
    })?;
    let channel_header: ChannelHeader = decode("ChannelHeader", &header.channel_header, limits)?;
    if channel_header.r#type != HeaderType::Config as i32 {
        return Err(ParseError::Invalid {
            layer: "ChannelHeader.type",
            reason: format!(
                "a genesis block's envelope is a configuration (type 1), not type {}",
                channel_header.r#type
            ),
        });
    }
    let config: ChannelConfig = decode("ChannelConfig", &payload.data, limits)?;
    check_name("ChannelConfig.channel_id", &config.channel_id, limits)?;
    if channel_header.channel_id != config.channel_id {
        return Err(ParseError::Invalid {
            layer: "ChannelHeader.channel_id",
            reason: format!(
                "the header names channel {:?} and the configuration {:?}",
                channel_header.channel_id, config.channel_id
            ),
        });
    }
    Ok(config)
}
