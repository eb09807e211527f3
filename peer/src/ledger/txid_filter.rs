//! A Bloom filter of the txids a ledger has indexed, kept in memory and saved beside the index,
//! so that a txid the ledger has never seen (the txid of every new transaction) is known to be
//! absent without a lookup in the txid index, which on a ledger larger than sled's cache is a
//! read from the disk.
//!
//! The filter answers "absent" only once it is complete, holding the txids of every committed
//! block: a commit adds its txids before its batch is applied, and at open the txids of the
//! blocks after the saved filter's height are added from the block files (all blocks when no
//! saved filter fits the ledger). Until then every lookup goes to the index. A false positive
//! costs the index lookup the filter would have saved, never a wrong answer, and a filter that
//! is lost, torn or stale is rebuilt from the blocks: the ledger never depends on it.
//!
//! The saved file: `MTXIDF01`, the log2 of the bit count (u32 LE), the probe count (u32 LE),
//! the height it covers (u64 LE: every block below it), the header hash of the block just
//! below that height (to recognise the chain it belongs to), the bits (u64 LE words), and the
//! SHA-256 of everything before.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// 2^27 bits = 16 MiB: ten million txids at about 0.2 % false positives; past that the rate
/// grows fast (about 58 % at fifty million), and the cost of a false positive is one index
/// lookup.
pub const LOG2_BITS: u32 = 27;
/// Bits set per txid.
const PROBES: u32 = 7;
/// Names the file format and the probe positions: a change to [`hashes`] needs a new one.
const MAGIC: &[u8; 8] = b"MTXIDF01";
const HEADER_BYTES: usize = 8 + 4 + 4 + 8 + 32;

/// The filter. Insertions and lookups may run on any threads at once.
pub struct TxidFilter {
    words: Box<[AtomicU64]>,
    mask: u64,
    complete: AtomicBool,
}

/// A filter as saved: the blocks below `height` are in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// Every block below this number is in the filter.
    pub height: u64,
    /// The header hash of block `height - 1` (zeros for height 0).
    pub last_hash: [u8; 32],
    /// The filter's bits.
    pub words: Vec<u64>,
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The two hashes the probes are drawn from (double hashing). Every byte of the txid counts, so
/// that txids alike in their first bytes still spread; the mixing is fixed, because the bits
/// are saved and read back by later processes.
fn hashes(txid: &[u8; 32]) -> (u64, u64) {
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&txid[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    let h1 = splitmix(word(0) ^ splitmix(word(1) ^ splitmix(word(2) ^ splitmix(word(3)))));
    let h2 = splitmix(h1 ^ 0x6d65_7263_6174_6f21) | 1;
    (h1, h2)
}

impl TxidFilter {
    /// An empty, incomplete filter of 2^`log2_bits` bits (at least 64).
    pub fn new(log2_bits: u32) -> Self {
        let words = 1usize << log2_bits.max(6).saturating_sub(6);
        TxidFilter::from_words(vec![0; words])
    }

    /// An incomplete filter with these bits (their count a power of two, at least one word).
    fn from_words(words: Vec<u64>) -> Self {
        debug_assert!(words.len().is_power_of_two());
        let mask = (words.len() as u64 * 64) - 1;
        TxidFilter {
            words: words.into_iter().map(AtomicU64::new).collect(),
            mask,
            complete: AtomicBool::new(false),
        }
    }

    /// The filter's bit count, as a power of two.
    pub fn log2_bits(&self) -> u32 {
        (self.mask + 1).trailing_zeros()
    }

    fn probes(&self, txid: &[u8; 32]) -> impl Iterator<Item = (usize, u64)> + '_ {
        let (h1, h2) = hashes(txid);
        (0..u64::from(PROBES)).map(move |i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) & self.mask;
            ((bit >> 6) as usize, 1u64 << (bit & 63))
        })
    }

    /// Adds a txid (by the 32 bytes its hex spells).
    pub fn insert(&self, txid: &[u8; 32]) {
        for (word, bit) in self.probes(txid) {
            self.words[word].fetch_or(bit, Ordering::Release);
        }
    }

    /// Whether the txid may have been added: `false` means it never was.
    pub fn may_contain(&self, txid: &[u8; 32]) -> bool {
        self.probes(txid)
            .all(|(word, bit)| self.words[word].load(Ordering::Acquire) & bit != 0)
    }

    /// Whether the filter holds every committed txid, so that its "absent" can be trusted.
    pub fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }

    /// Marks the filter complete (every committed block's txids are in it).
    pub fn set_complete(&self) {
        self.complete.store(true, Ordering::Release);
    }

    /// A copy of the bits, to be saved.
    pub fn snapshot(&self) -> Vec<u64> {
        self.words
            .iter()
            .map(|w| w.load(Ordering::Acquire))
            .collect()
    }
}

impl Saved {
    /// The filter these bits make (incomplete: the blocks from `height` on are still to add).
    pub fn into_filter(self) -> TxidFilter {
        TxidFilter::from_words(self.words)
    }

    fn header(&self, log2_bits: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&log2_bits.to_le_bytes());
        out.extend_from_slice(&PROBES.to_le_bytes());
        out.extend_from_slice(&self.height.to_le_bytes());
        out.extend_from_slice(&self.last_hash);
        out
    }

    /// Writes the file's bytes to `out`, a block of words at a time (no second copy of the bits).
    fn write_to(&self, out: &mut impl Write, log2_bits: u32) -> std::io::Result<()> {
        let mut sum = Sha256::new();
        let header = self.header(log2_bits);
        sum.update(&header);
        out.write_all(&header)?;
        let mut buf = Vec::with_capacity(8 * 1024);
        for chunk in self.words.chunks(1024) {
            buf.clear();
            for w in chunk {
                buf.extend_from_slice(&w.to_le_bytes());
            }
            sum.update(&buf);
            out.write_all(&buf)?;
        }
        out.write_all(&sum.finalize())
    }

    /// The file's bytes.
    #[cfg(test)]
    pub fn encode(&self, log2_bits: u32) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out, log2_bits)
            .expect("writing to a Vec cannot fail");
        out
    }

    /// The length of the file of a filter of 2^`log2_bits` bits.
    pub fn file_len(log2_bits: u32) -> usize {
        HEADER_BYTES + (1usize << log2_bits.max(6).saturating_sub(6)) * 8 + 32
    }

    /// Reads a saved filter of 2^`log2_bits` bits; an error says why the bytes are not one.
    pub fn decode(bytes: &[u8], log2_bits: u32) -> Result<Saved, String> {
        let words = 1usize << log2_bits.max(6).saturating_sub(6);
        let expected = Saved::file_len(log2_bits);
        if bytes.len() != expected {
            return Err(format!("{} bytes, expected {expected}", bytes.len()));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != sum {
            return Err("checksum mismatch".into());
        }
        if &body[..8] != MAGIC {
            return Err("not a txid filter (bad magic)".into());
        }
        let u32_at = |i: usize| u32::from_le_bytes(body[i..i + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |i: usize| u64::from_le_bytes(body[i..i + 8].try_into().unwrap_or([0; 8]));
        if u32_at(8) != log2_bits || u32_at(12) != PROBES {
            return Err(format!(
                "a filter of 2^{} bits and {} probes, this peer uses 2^{log2_bits} and {PROBES}",
                u32_at(8),
                u32_at(12)
            ));
        }
        let mut last_hash = [0u8; 32];
        last_hash.copy_from_slice(&body[24..56]);
        Ok(Saved {
            height: u64_at(16),
            last_hash,
            words: (0..words).map(|i| u64_at(HEADER_BYTES + i * 8)).collect(),
        })
    }

    /// Writes the file at `path` whole or not at all: a temporary file beside it, synced, then
    /// renamed over it.
    pub fn write(&self, path: &Path, log2_bits: u32) -> std::io::Result<()> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".tmp");
        let tmp = path.with_file_name(name);
        let mut f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&tmp)?;
        self.write_to(&mut f, log2_bits)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txid(i: u64) -> [u8; 32] {
        Sha256::digest(i.to_le_bytes()).into()
    }

    #[test]
    fn added_txids_are_always_found_and_others_mostly_not() {
        let f = TxidFilter::new(20);
        for i in 0..10_000 {
            f.insert(&txid(i));
        }
        assert!((0..10_000).all(|i| f.may_contain(&txid(i))));
        let false_positives = (10_000..110_000)
            .filter(|&i| f.may_contain(&txid(i)))
            .count();
        // 2^20 bits, 10,000 txids, 7 probes: about 0.01 % expected.
        assert!(false_positives < 100, "{false_positives} of 100,000");
    }

    /// Txids alike but for their last bytes (as a test's `{i:064x}` txids are) spread too.
    #[test]
    fn txids_alike_in_their_first_bytes_are_told_apart() {
        let f = TxidFilter::new(16);
        let alike = |i: u64| {
            let mut t = [0u8; 32];
            t[24..].copy_from_slice(&i.to_be_bytes());
            t
        };
        for i in 0..100 {
            f.insert(&alike(i));
        }
        let false_positives = (100..10_100).filter(|&i| f.may_contain(&alike(i))).count();
        assert!(false_positives < 20, "{false_positives} of 10,000");
    }

    #[test]
    fn a_saved_filter_reads_back_and_a_damaged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("txid-filter");
        let f = TxidFilter::new(12);
        for i in 0..100 {
            f.insert(&txid(i));
        }
        let saved = Saved {
            height: 42,
            last_hash: [7; 32],
            words: f.snapshot(),
        };
        saved.write(&path, 12).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let back = Saved::decode(&bytes, 12).unwrap();
        assert_eq!(back, saved);
        let g = back.into_filter();
        assert!(
            !g.is_complete(),
            "a saved filter still has blocks to catch up"
        );
        assert!((0..100).all(|i| g.may_contain(&txid(i))));

        let mut torn = bytes.clone();
        torn[HEADER_BYTES + 3] ^= 1;
        assert!(Saved::decode(&torn, 12).unwrap_err().contains("checksum"));
        let short = &bytes[..bytes.len() - 1];
        assert!(Saved::decode(short, 12).unwrap_err().contains("bytes"));
        assert!(Saved::decode(&bytes, 13).is_err(), "another size");
        let mut other = saved.encode(12);
        other[0] = b'X';
        let n = other.len();
        let sum = Sha256::digest(&other[..n - 32]);
        other[n - 32..].copy_from_slice(&sum);
        assert!(Saved::decode(&other, 12).unwrap_err().contains("magic"));
    }
}
