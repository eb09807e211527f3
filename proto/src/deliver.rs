//! Deliver's seek requests (`orderer.SeekInfo`), resolved against a chain's height. Shared by the
//! peer's and the orderer's Deliver services.

use crate::pb::orderer::seek_info::SeekBehavior;
use crate::pb::orderer::seek_position::Type as Seek;
use crate::pb::orderer::{SeekInfo, SeekPosition};

/// How far a signed request's timestamp may be from the server's clock (Fabric's
/// `peer.authentication.timewindow`, 15 minutes): a captured request cannot be replayed later.
pub const TIME_WINDOW_SECS: i64 = 15 * 60;

/// The system clock, in seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Checks that a signed request (`what`, for the message) carries a timestamp within
/// [`TIME_WINDOW_SECS`] of `now`.
pub fn check_timestamp(
    what: &str,
    at: Option<&crate::pb::Timestamp>,
    now: i64,
) -> Result<(), String> {
    let at = at.ok_or_else(|| format!("{what} has no timestamp"))?;
    if at.seconds.abs_diff(now) > TIME_WINDOW_SECS.unsigned_abs() {
        return Err(format!(
            "{what}'s timestamp {} is more than {TIME_WINDOW_SECS} s from the server's clock \
             ({now})",
            at.seconds
        ));
    }
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::Timestamp;

    #[test]
    fn timestamps_outside_the_window_or_missing_are_refused() {
        let now = 1_800_000_000;
        let at = |seconds| Timestamp { seconds, nanos: 0 };
        for ok in [now, now - TIME_WINDOW_SECS, now + TIME_WINDOW_SECS] {
            check_timestamp("seek", Some(&at(ok)), now).unwrap();
        }
        for late in [now - TIME_WINDOW_SECS - 1, now + 3600, i64::MIN, i64::MAX] {
            let e = check_timestamp("seek", Some(&at(late)), now).unwrap_err();
            assert!(e.contains("more than 900 s"), "{e}");
        }
        let e = check_timestamp("seek", None, now).unwrap_err();
        assert_eq!(e, "seek has no timestamp");
    }
}
