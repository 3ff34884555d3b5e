//! What a backup reads: the job's files, walked by rustic_core's own
//! `LocalSource` and read in large blocks, and its dumps (see `dump.rs`),
//! as one rustic_core `ReadSource`.
//!
//! Why large blocks: rustic_core 0.13's chunker reads a file 4 KiB at a
//! time once past its first 512 KiB. From a cold cache that is a disk
//! request per 4 KiB beyond the kernel's read-ahead: a 100 MiB file took
//! 0.49 s to read in 4 KiB reads here, 0.10–0.14 s in reads of 256 KiB to
//! 4 MiB (`dd`, page cache dropped), and restic reads 512 KiB at a time.
//! Each file is read through a buffer of up to [`FILE_BLOCK`], so the
//! kernel sees reads of that size whatever the chunker asks for.
//!
//! And every read is filled ([`Filled`]): the chunker shrinks its 4 KiB
//! buffer to the length of any short read, for good, so a buffered
//! reader that hands out what is left of its buffer would have it read
//! the rest of the file a few bytes at a time (measured: a third more
//! CPU on a 100 MiB file).
//!
//! The files are listed ahead ([`WALKED_AHEAD`] entries at most) by a
//! thread of their own: rustic_core's archiver keeps only four entries
//! in flight, so while it chunks a large changed file the listing of the
//! rest (a `statx` per file, from disk when the cache is cold) would
//! otherwise wait for it.
//!
//! The dumps are slotted in among the top-level entries in name order
//! (trees are sorted).

use std::ffi::OsStr;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread;

use rustic_core::{
    LocalSource, ReadSource, ReadSourceEntry, ReadSourceOpen, RusticResult,
    repofile::{Metadata, Node, NodeType},
};

use crate::dump::{Book, Dump, DumpOpen, top_name};

/// The largest read of a file (its buffer is no larger than the file).
pub(crate) const FILE_BLOCK: usize = 1 << 20;

/// How many listed entries may wait for the archiver (each a path and
/// its metadata, a few hundred bytes).
const WALKED_AHEAD: usize = 8192;

/// The smallest buffer: a file that grew since it was listed is still
/// read in blocks.
const SMALLEST_BLOCK: usize = 64 << 10;

/// The job's files and its dumps, as one source for the archiver.
pub(crate) struct Sources {
    files: Option<LocalSource>,
    /// The dumps sorted by name, each with its index in the book.
    dumps: Vec<(usize, Dump)>,
    book: Arc<Book>,
    /// The dumps' files' metadata: this time, the running user, mode
    /// 0600, and the largest size (rustic's chunker sizes its buffers
    /// by the smaller of a node's size and a chunk's: 0 would make it
    /// grow them byte by byte; and no parent's node matches it).
    /// `finish.rs` writes the real size.
    meta: Metadata,
}

impl Sources {
    pub(crate) fn new(files: Option<LocalSource>, dumps: &[Dump], book: Arc<Book>) -> Sources {
        let mut dumps: Vec<(usize, Dump)> = dumps.iter().cloned().enumerate().collect();
        dumps.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        let meta = Metadata {
            mode: Some(0o600),
            mtime: Some(rustic_core::jiff::Timestamp::now()),
            uid: Some(rustix::process::getuid().as_raw()),
            gid: Some(rustix::process::getgid().as_raw()),
            size: u64::MAX,
            ..Metadata::default()
        };
        Sources {
            files,
            dumps,
            book,
            meta,
        }
    }
}

/// The entry of a dump.
fn dump_entry(i: usize, dump: &Dump, meta: &Metadata, book: &Arc<Book>) -> ReadSourceEntry<Opener> {
    let node = Node::new_node(OsStr::new(&dump.name), NodeType::File, meta.clone());
    ReadSourceEntry {
        path: Path::new("/").join(&dump.name),
        node,
        open: Some(Opener::Dump(DumpOpen {
            index: i,
            dump: dump.clone(),
            book: Arc::clone(book),
        })),
    }
}

type FileOpen = <LocalSource as ReadSource>::Open;
type Entry = RusticResult<ReadSourceEntry<Opener>>;

/// How to open an entry: a file of the job's paths (with its size when
/// listed), or a dump.
pub(crate) enum Opener {
    File(FileOpen, u64),
    Dump(DumpOpen),
}

impl ReadSourceOpen for Opener {
    type Reader = Box<dyn Read + Send>;

    fn open(self) -> RusticResult<Self::Reader> {
        match self {
            Opener::File(file, size) => Ok(Box::new(Filled::new(BufReader::with_capacity(
                block_for(size),
                file.open()?,
            )))),
            Opener::Dump(dump) => Ok(Box::new(dump.start()?)),
        }
    }
}

impl ReadSource for Sources {
    type Open = Opener;
    type Iter = Entries;

    fn size(&self) -> RusticResult<Option<u64>> {
        match &self.files {
            // A dump's size is known at its end only.
            _ if !self.dumps.is_empty() => Ok(None),
            Some(files) => files.size(),
            None => Ok(None),
        }
    }

    fn entries(&self) -> Entries {
        Entries {
            files: self.files.as_ref().map(Walk::ahead),
            held: None,
            dumps: self.dumps.clone().into_iter().peekable(),
            meta: self.meta.clone(),
            book: Arc::clone(&self.book),
        }
    }
}

/// The files' entries as rustic's walker yields them (sorted, lazily),
/// each dump slotted in before the first entry whose top-level name
/// sorts after its name.
pub(crate) struct Entries {
    files: Option<Walk>,
    /// The next file entry, held back while dumps that sort before it go.
    held: Option<Entry>,
    dumps: std::iter::Peekable<std::vec::IntoIter<(usize, Dump)>>,
    meta: Metadata,
    book: Arc<Book>,
}

impl Iterator for Entries {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        if self.held.is_none() {
            self.held = self.files.as_mut().and_then(Iterator::next);
        }
        let first = match &self.held {
            // An error goes at once (the archiver logs and skips it).
            Some(Err(_)) => None,
            Some(Ok(e)) => top_name(&e.path).map(OsStr::to_owned),
            // No file left: the dumps left, in order.
            None => {
                let (i, dump) = self.dumps.next()?;
                return Some(Ok(dump_entry(i, &dump, &self.meta, &self.book)));
            }
        };
        if let Some(top) = first
            && let Some((i, dump)) = self
                .dumps
                .next_if(|(_, d)| OsStr::new(&d.name) < top.as_os_str())
        {
            return Some(Ok(dump_entry(i, &dump, &self.meta, &self.book)));
        }
        self.held.take()
    }
}

type Listing = <LocalSource as ReadSource>::Iter;

/// The job's files as rustic_core's walker lists them, in its order.
enum Walk {
    /// Listed by a thread of their own, ahead of the archiver.
    Ahead(mpsc::Receiver<Entry>),
    /// Listed as the archiver asks (no thread could be started).
    Inline(Box<Listing>),
}

impl Walk {
    fn ahead(files: &LocalSource) -> Walk {
        let listing = Arc::new(Mutex::new(Some(files.entries())));
        let (tx, rx) = mpsc::sync_channel(WALKED_AHEAD);
        let taken = Arc::clone(&listing);
        let started = thread::Builder::new()
            .name("vigie-walk".to_owned())
            .spawn(move || {
                let Some(listing) = taken.lock().unwrap_or_else(PoisonError::into_inner).take()
                else {
                    return;
                };
                for entry in listing {
                    // The archiver stopped (done or failed): so does the walk.
                    if tx.send(file_entry(entry)).is_err() {
                        break;
                    }
                }
            });
        match started {
            Ok(_) => Walk::Ahead(rx),
            Err(e) => {
                tracing::debug!("listing the files inline: cannot start a thread: {e}");
                let listing = listing
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                Walk::Inline(Box::new(listing.expect("the thread never started")))
            }
        }
    }
}

impl Iterator for Walk {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        match self {
            Walk::Ahead(rx) => rx.recv().ok(),
            Walk::Inline(listing) => listing.next().map(file_entry),
        }
    }
}

/// A file entry of the walker's, to be opened through a [`Filled`]
/// buffer the size of the file.
fn file_entry(entry: RusticResult<ReadSourceEntry<FileOpen>>) -> Entry {
    entry.map(|e| {
        let size = e.node.meta.size;
        ReadSourceEntry {
            path: e.path,
            node: e.node,
            open: e.open.map(|open| Opener::File(open, size)),
        }
    })
}

/// The buffer a file of `size` bytes is read through.
fn block_for(size: u64) -> usize {
    usize::try_from(size)
        .unwrap_or(usize::MAX)
        .clamp(SMALLEST_BLOCK, FILE_BLOCK)
}

/// A reader whose reads are filled: a read returns less than asked
/// only at the end of the file. An error after part of a read is kept
/// for the next read (the part goes first).
pub(crate) struct Filled<R> {
    inner: R,
    error: Option<io::Error>,
}

impl<R: Read> Filled<R> {
    pub(crate) fn new(inner: R) -> Filled<R> {
        Filled { inner, error: None }
    }
}

impl<R: Read> Read for Filled<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if filled == 0 => return Err(e),
                Err(e) => {
                    self.error = Some(e);
                    break;
                }
            }
        }
        Ok(filled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_read_in_blocks_no_larger_than_them_nor_than_a_mebibyte() {
        assert_eq!(block_for(0), SMALLEST_BLOCK);
        assert_eq!(block_for(3_000), SMALLEST_BLOCK);
        assert_eq!(block_for(300_000), 300_000);
        assert_eq!(block_for(100 << 20), FILE_BLOCK);
        assert_eq!(block_for(u64::MAX), FILE_BLOCK);
    }

    /// Hands out at most 3 bytes a read, and fails once after `fail_at`.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        fail_at: Option<usize>,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.fail_at == Some(self.at) {
                self.fail_at = None;
                return Err(io::Error::other("disk on fire"));
            }
            let n = buf.len().min(3).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    #[test]
    fn every_read_is_filled_but_at_the_end() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut r = Filled::new(Trickle {
            data: data.clone(),
            at: 0,
            fail_at: None,
        });
        let mut buf = [0u8; 32];
        let mut got = Vec::new();
        let mut lengths = Vec::new();
        loop {
            let n = r.read(&mut buf).unwrap();
            lengths.push(n);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, data);
        assert_eq!(lengths, [32, 32, 32, 4, 0]);
    }

    #[test]
    fn an_error_midway_comes_after_what_was_read_before_it() {
        let mut r = Filled::new(Trickle {
            data: (0..100u8).collect(),
            at: 0,
            fail_at: Some(9),
        });
        let mut buf = [0u8; 32];
        assert_eq!(r.read(&mut buf).unwrap(), 9);
        assert_eq!(&buf[..9], &[0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(r.read(&mut buf).unwrap_err().to_string(), "disk on fire");
        assert_eq!(r.read(&mut buf).unwrap(), 32);
        assert_eq!(buf[0], 9);
    }
}
