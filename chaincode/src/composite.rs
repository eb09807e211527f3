//! Composite keys in Fabric's format: `\u{0}` type `\u{0}` attr `\u{0}` attr ... `\u{0}`, so that
//! all keys of a type (or with a prefix of attributes) form one range.

use alloc::string::String;
use alloc::vec::Vec;

use crate::error::Error;

const SEP: char = '\u{0}';
/// The largest code point: the end of a composite-key range, as Fabric uses it.
const MAX_RUNE: char = '\u{10FFFF}';

/// Builds a composite key. The type and attributes must not contain `\u{0}` or `\u{10FFFF}`.
pub fn create(object_type: &str, attributes: &[&str]) -> Result<String, Error> {
    let mut key = String::new();
    key.push(SEP);
    for part in core::iter::once(object_type).chain(attributes.iter().copied()) {
        if part.contains(SEP) || part.contains(MAX_RUNE) {
            return Err(Error::bad_request(alloc::format!(
                "composite key part {part:?} contains a reserved character"
            )));
        }
        key.push_str(part);
        key.push(SEP);
    }
    Ok(key)
}

/// Splits a composite key into its type and attributes.
pub fn split(key: &str) -> Option<(String, Vec<String>)> {
    let rest = key.strip_prefix(SEP)?.strip_suffix(SEP)?;
    let mut parts = rest.split(SEP).map(String::from);
    let object_type = parts.next()?;
    Some((object_type, parts.collect()))
}

/// The `[start, end)` range of every key of `object_type` whose first attributes are `prefix`.
pub fn range(object_type: &str, prefix: &[&str]) -> Result<(String, String), Error> {
    let start = create(object_type, prefix)?;
    let mut end = start.clone();
    end.push(MAX_RUNE);
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_range() {
        let k = create("order", &["shop1", "42"]).unwrap();
        assert_eq!(k, "\u{0}order\u{0}shop1\u{0}42\u{0}");
        assert_eq!(
            split(&k),
            Some(("order".into(), alloc::vec!["shop1".into(), "42".into()]))
        );
        let (start, end) = range("order", &["shop1"]).unwrap();
        assert!(start.as_str() <= k.as_str() && k.as_str() < end.as_str());
        let other = create("order", &["shop2", "1"]).unwrap();
        assert!(!(start.as_str() <= other.as_str() && other.as_str() < end.as_str()));
        assert!(create("a\u{0}b", &[]).is_err());
        assert_eq!(split("plain"), None);
    }
}
