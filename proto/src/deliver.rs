//! Deliver's seek requests (`orderer.SeekInfo`), resolved against a chain's height. Shared by the
//! peer's and the orderer's Deliver services.

use crate::pb::orderer::seek_info::SeekBehavior;
use crate::pb::orderer::seek_position::Type as Seek;
use crate::pb::orderer::{SeekInfo, SeekPosition};

/// The blocks a seek request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeekRange {
    /// The first block.
    pub start: u64,
    /// The last block (inclusive).
    pub stop: u64,
    /// Whether to wait for blocks not yet committed (BLOCK_UNTIL_READY) rather than fail.
    pub wait: bool,
}

/// Resolves `info` against a chain of `height` blocks: oldest is 0, newest the last block,
/// next-commit the next one; a start after the stop is refused.
pub fn resolve_seek(info: &SeekInfo, height: u64) -> Result<SeekRange, String> {
    let newest = height.saturating_sub(1);
    let position =
        |p: &Option<SeekPosition>, what: &str| match p.as_ref().and_then(|p| p.r#type.as_ref()) {
            Some(Seek::Oldest(_)) => Ok(0),
            Some(Seek::Newest(_)) => Ok(newest),
            Some(Seek::Specified(s)) => Ok(s.number),
            Some(Seek::NextCommit(_)) => Ok(height),
            None => Err(format!("SeekInfo.{what} is missing")),
        };
    let start = position(&info.start, "start")?;
    let stop = position(&info.stop, "stop")?;
    if start > stop {
        return Err(format!("start {start} is after stop {stop}"));
    }
    let wait = SeekBehavior::try_from(info.behavior).unwrap_or(SeekBehavior::BlockUntilReady)
        == SeekBehavior::BlockUntilReady;
    Ok(SeekRange { start, stop, wait })
}
