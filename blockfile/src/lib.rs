//! Append-only block files, shared by the peer's and the orderer's ledgers: blocks are written to
//! numbered segment files, and the ledger's sled index (written in the same batch as the rest of
//! what a block changes) says where each block is.
//!
//! A block is appended and synced to its file *before* the batch that indexes it commits. A crash
//! in between leaves bytes after the last indexed block; [`BlockFiles::open`] cuts them off, so
//! the index never points at a block that is not fully in its file. (Blocks an index drops, such
//! as a truncated Raft log's, stay behind as dead bytes until their segment is removed.)
//!
//! Blocks are kept out of sled because sled rewrites a whole tree node when it consolidates one:
//! a node holding a few blocks of hundreds of kilobytes is copied again and again as the chain
//! grows. Here each block is written once.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Why the block files failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The file system failed, or a block is too large to store.
    #[error("block files: {0}")]
    Storage(String),
    /// The files do not hold what the index says they hold.
    #[error("block files corrupt: {0}")]
    Corrupt(String),
}

/// The block files' result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A segment file grows to at most this size before the next one starts.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// The largest block accepted (the default message limit, `Limits::DEFAULT.max_message_bytes`, is
/// 16 MiB).
const MAX_BLOCK_BYTES: u32 = 64 * 1024 * 1024;

/// Where a block is stored; ordered by where it lies in the files (file, then offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BlockLocation {
    /// The segment file number.
    pub file: u32,
    /// The byte offset in it.
    pub offset: u64,
    /// The block's length.
    pub len: u32,
}

impl BlockLocation {
    /// Encodes as 16 bytes: file (4 BE) ‖ offset (8 BE) ‖ len (4 BE).
    pub fn encode(&self) -> [u8; 16] {
        let mut v = [0u8; 16];
        v[..4].copy_from_slice(&self.file.to_be_bytes());
        v[4..12].copy_from_slice(&self.offset.to_be_bytes());
        v[12..].copy_from_slice(&self.len.to_be_bytes());
        v
    }

    /// Decodes what [`BlockLocation::encode`] wrote.
    pub fn decode(v: &[u8]) -> Result<Self> {
        let bytes: [u8; 16] = v
            .try_into()
            .map_err(|_| Error::Corrupt(format!("block location of {} bytes", v.len())))?;
        let [
            f0,
            f1,
            f2,
            f3,
            o0,
            o1,
            o2,
            o3,
            o4,
            o5,
            o6,
            o7,
            l0,
            l1,
            l2,
            l3,
        ] = bytes;
        Ok(BlockLocation {
            file: u32::from_be_bytes([f0, f1, f2, f3]),
            offset: u64::from_be_bytes([o0, o1, o2, o3, o4, o5, o6, o7]),
            len: u32::from_be_bytes([l0, l1, l2, l3]),
        })
    }

    /// Where the block ends; a location whose end overflows is corrupt.
    fn end(&self) -> Result<u64> {
        self.offset
            .checked_add(self.len as u64)
            .ok_or_else(|| Error::Corrupt(format!("block location {self:?} ends past u64")))
    }
}

struct Appender {
    file_no: u32,
    file: File,
    size: u64,
    /// Set when a failed write could not be undone: the file's length is then unknown, and no
    /// more appends are taken.
    broken: Option<String>,
}

/// The block files of one ledger.
pub struct BlockFiles {
    dir: PathBuf,
    appender: Mutex<Appender>,
    readers: Mutex<BTreeMap<u32, Arc<File>>>,
}

impl std::fmt::Debug for BlockFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockFiles")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn segment_path(dir: &Path, file: u32) -> PathBuf {
    dir.join(format!("blockfile_{file:06}"))
}

/// Opens (creating it if need be) a segment file for appending; a new file's directory entry is
/// synced too, so that the file is still there after a power loss.
fn create_segment(dir: &Path, path: &Path) -> Result<File> {
    let existed = path.exists();
    let file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(|e| io(path, e))?;
    if !existed {
        sync_dir(dir)?;
    }
    Ok(file)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

/// The segment files under `dir`, by number (other files are not ours and are left alone).
fn segments(dir: &Path) -> Result<Vec<(u32, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let name = entry.file_name();
        let number = name
            .to_str()
            .and_then(|n| n.strip_prefix("blockfile_"))
            .and_then(|n| n.parse::<u32>().ok());
        if let Some(n) = number {
            out.push((n, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Storage(format!("{}: {e}", path.display()))
}

impl BlockFiles {
    /// Opens the block files under `dir`, cutting off whatever lies after `last` (the location of
    /// the last committed block; `None` for an empty ledger).
    pub fn open(dir: &Path, last: Option<BlockLocation>) -> Result<Self> {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        let (file_no, end) = match last {
            Some(l) => (l.file, l.end()?),
            None => (0, 0),
        };
        // Segments after the last indexed one hold only uncommitted blocks.
        for (n, p) in segments(dir)? {
            if n > file_no {
                std::fs::remove_file(&p).map_err(|e| io(&p, e))?;
            }
        }
        let path = segment_path(dir, file_no);
        let file = create_segment(dir, &path)?;
        let size = file.metadata().map_err(|e| io(&path, e))?.len();
        if size < end {
            return Err(Error::Corrupt(format!(
                "{} has {size} bytes but the index says a block ends at {end}",
                path.display()
            )));
        }
        if size > end {
            tracing::warn!(file = %path.display(), bytes = size - end, "cutting off an uncommitted block");
            file.set_len(end).map_err(|e| io(&path, e))?;
            file.sync_all().map_err(|e| io(&path, e))?;
        }
        Ok(BlockFiles {
            dir: dir.to_owned(),
            appender: Mutex::new(Appender {
                file_no,
                file,
                size: end,
                broken: None,
            }),
            readers: Mutex::new(BTreeMap::new()),
        })
    }

    /// Appends a block and syncs it to disk; returns where it is.
    pub fn append(&self, block: &[u8]) -> Result<BlockLocation> {
        let len = u32::try_from(block.len())
            .ok()
            .filter(|&l| l <= MAX_BLOCK_BYTES)
            .ok_or_else(|| {
                Error::Storage(format!(
                    "block of {} bytes is too large to store",
                    block.len()
                ))
            })?;
        let mut a = self.appender.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(why) = &a.broken {
            return Err(Error::Storage(format!(
                "the block files take no more appends after a failed write: {why}"
            )));
        }
        if a.size > 0 && a.size + len as u64 > SEGMENT_BYTES {
            let next = a.file_no + 1;
            let path = segment_path(&self.dir, next);
            let file = create_segment(&self.dir, &path)?;
            *a = Appender {
                file_no: next,
                file,
                size: 0,
                broken: None,
            };
        }
        let path = segment_path(&self.dir, a.file_no);
        let written = a
            .file
            .write_all(block)
            .and_then(|()| a.file.sync_data())
            .map_err(|e| io(&path, e));
        if let Err(e) = written {
            // Undo what part of the block reached the file, so the next append lands where
            // its location will say; if that fails too, stop taking appends.
            if let Err(undo) = a.file.set_len(a.size) {
                a.broken = Some(format!("{e}; then cutting it off: {undo}"));
            }
            return Err(e);
        }
        let location = BlockLocation {
            file: a.file_no,
            offset: a.size,
            len,
        };
        a.size += len as u64;
        Ok(location)
    }

    /// Deletes the segment files before segment `file` (never the one being appended to), once
    /// the index no longer points into them: a log purged up to some entry frees the space
    /// of the entries before it.
    pub fn remove_before(&self, file: u32) -> Result<()> {
        let current = self
            .appender
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .file_no;
        let keep_from = file.min(current);
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        for (n, p) in segments(&self.dir)? {
            if n < keep_from {
                readers.remove(&n);
                std::fs::remove_file(&p).map_err(|e| io(&p, e))?;
            }
        }
        Ok(())
    }

    /// Reads the block at `location`.
    pub fn read(&self, location: BlockLocation) -> Result<Vec<u8>> {
        if location.len > MAX_BLOCK_BYTES {
            return Err(Error::Corrupt(format!(
                "block location with length {}",
                location.len
            )));
        }
        let file = {
            let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
            match readers.get(&location.file) {
                Some(f) => Arc::clone(f),
                None => {
                    let path = segment_path(&self.dir, location.file);
                    let f = Arc::new(File::open(&path).map_err(|e| io(&path, e))?);
                    readers.insert(location.file, Arc::clone(&f));
                    f
                }
            }
        };
        let mut buf = vec![0u8; location.len as usize];
        file.read_exact_at(&mut buf, location.offset).map_err(|e| {
            let what = format!(
                "block at file {} offset {}: {e}",
                location.file, location.offset
            );
            // A file shorter than the index says is corruption; any other failure is the disk's.
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::Corrupt(what)
            } else {
                Error::Storage(what)
            }
        })?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_tail_is_cut_off_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let files = BlockFiles::open(dir.path(), None).unwrap();
        let first = files.append(b"block zero").unwrap();
        let _second = files.append(b"block one, never indexed").unwrap();
        drop(files);
        // The index knows only the first block: the second is cut off, and the next append
        // lands right after the first.
        let files = BlockFiles::open(dir.path(), Some(first)).unwrap();
        assert_eq!(files.read(first).unwrap(), b"block zero");
        let next = files.append(b"block one").unwrap();
        assert_eq!(next.offset, first.len as u64);
        assert_eq!(files.read(next).unwrap(), b"block one");
    }

    #[test]
    fn open_removes_every_later_segment_even_after_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let files = BlockFiles::open(dir.path(), None).unwrap();
        let first = files.append(b"kept").unwrap();
        drop(files);
        // Uncommitted segments 2 and 5 (1 was removed): both go, and appends land in segment 0.
        for n in [2, 5] {
            std::fs::write(segment_path(dir.path(), n), b"uncommitted").unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), b"not a segment").unwrap();
        let files = BlockFiles::open(dir.path(), Some(first)).unwrap();
        assert!(!segment_path(dir.path(), 2).exists());
        assert!(!segment_path(dir.path(), 5).exists());
        assert!(dir.path().join("notes.txt").exists());
        assert_eq!(files.append(b"next").unwrap().file, 0);
    }

    #[test]
    fn segments_before_a_file_are_removed_but_never_the_current_one() {
        let dir = tempfile::tempdir().unwrap();
        let files = BlockFiles::open(dir.path(), None).unwrap();
        let a = files.append(b"in segment 0").unwrap();
        drop(files);
        // Pretend segment 0 filled up: an indexed block in segment 1.
        std::fs::write(segment_path(dir.path(), 1), b"in segment 1").unwrap();
        let b = BlockLocation {
            file: 1,
            offset: 0,
            len: 12,
        };
        let files = BlockFiles::open(dir.path(), Some(b)).unwrap();
        assert_eq!(files.read(a).unwrap(), b"in segment 0");
        files.remove_before(7).unwrap();
        assert!(files.read(a).is_err());
        assert_eq!(files.read(b).unwrap(), b"in segment 1");
        assert_eq!(files.append(b"more").unwrap().file, 1);
    }

    #[test]
    fn index_pointing_past_the_file_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let files = BlockFiles::open(dir.path(), None).unwrap();
        let loc = files.append(b"abc").unwrap();
        drop(files);
        let beyond = BlockLocation { len: 100, ..loc };
        assert!(matches!(
            BlockFiles::open(dir.path(), Some(beyond)),
            Err(Error::Corrupt(_))
        ));
        assert!(BlockLocation::decode(&[1, 2, 3]).is_err());
    }
}
