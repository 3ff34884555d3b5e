//! The wire protocol between `vigie sync` and `vigie sync-receive`: frames
//! of `u32` length (big-endian) then one message, over the ssh channel's
//! stdin/stdout. Paths are relative byte strings (`/`-separated, not
//! necessarily UTF-8). The decoder takes any bytes: what it does not
//! understand is an error, never a panic.

use std::io::{self, Read, Write};

/// Version 3 of the protocol (2 sent block signatures in one frame,
/// which a file over about 3.2 GiB overflows, had no word of
/// set-user-ID bits and no hard links; 1 set owners in a message of their own after each
/// new entry). A receiver refuses other versions.
pub const VERSION: u16 = 3;
/// The first bytes of a `Hello`: not a vigie on the far side otherwise.
pub const MAGIC: &[u8; 8] = b"VGSYNC\r\n";
/// The largest frame either side accepts.
pub const MAX_FRAME: usize = 1 << 20;
/// How many components a path may have: deeper ones are refused, and a
/// walk of a tree stops with an error there (no walk recurses: a deep
/// tree costs no stack).
pub const MAX_DEPTH: usize = 4096;
/// File contents travel in chunks of at most this.
pub const CHUNK: usize = 256 * 1024;
/// Block signatures travel in `SumsReply` frames of at most this many
/// (20 bytes each: a frame stays under `MAX_FRAME`).
pub const SUMS_PER_FRAME: usize = (MAX_FRAME - 64) / 20;

/// What a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// One entry of a tree, as either side sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: Vec<u8>,
    pub kind: Kind,
    pub size: u64,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Owner and group (numeric).
    pub uid: u32,
    pub gid: u32,
    /// Modification time, nanoseconds since the epoch.
    pub mtime: i64,
    /// A symlink's target (empty otherwise).
    pub target: Vec<u8>,
}

impl Entry {
    /// An entry of which only the path and the kind are known yet.
    pub fn bare(path: Vec<u8>, kind: Kind) -> Entry {
        Entry {
            path,
            kind,
            size: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            target: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    /// Sender → receiver, first: who we are.
    Hello {
        version: u16,
        job: String,
    },
    /// Receiver → sender: agreed.
    Welcome {
        version: u16,
        /// The receiver runs as root: it keeps owners and groups.
        owners: bool,
        /// The receiver keeps set-user-ID and set-group-ID bits of
        /// files (it strips them otherwise: the sender compares modes
        /// without them).
        setuid: bool,
    },
    /// Ask for the receiver's whole tree: `Entry`… then `ListEnd`.
    List,
    Entry(Entry),
    ListEnd,
    /// A directory. Here and in `File`, `Delta` and `Symlink`, owner and
    /// group are set when the receiver runs as root, ignored otherwise.
    MkDir {
        id: u64,
        path: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// A whole file follows in `Data` frames, then `FileEnd`.
    File {
        id: u64,
        path: Vec<u8>,
        size: u64,
        mode: u32,
        uid: u32,
        gid: u32,
        mtime: i64,
    },
    Data(Vec<u8>),
    FileEnd {
        id: u64,
    },
    Symlink {
        id: u64,
        path: Vec<u8>,
        target: Vec<u8>,
        uid: u32,
        gid: u32,
        mtime: i64,
    },
    /// Remove a path (a directory with all it holds).
    Delete {
        id: u64,
        path: Vec<u8>,
    },
    Rename {
        id: u64,
        from: Vec<u8>,
        to: Vec<u8>,
    },
    /// Set a path's permissions and modification time (the empty path:
    /// the replicated root itself; here and in `Own` only).
    Meta {
        id: u64,
        path: Vec<u8>,
        mode: u32,
        mtime: i64,
    },
    /// Done.
    Ack {
        id: u64,
    },
    /// Not done, for a reason that may pass (disk full, permission):
    /// the session goes on.
    Fail {
        id: u64,
        message: String,
    },
    /// The session ends: a refused message, a broken stream.
    Fatal {
        message: String,
    },
    /// Ask for the block signatures of the receiver's copy of `path`.
    Sums {
        id: u64,
        path: Vec<u8>,
        block: u32,
    },
    /// The signatures: per block, a rolling checksum and a strong hash
    /// (empty when the receiver has no such file), in frames of at most
    /// `SUMS_PER_FRAME`; `more` on every frame but the last.
    SumsReply {
        id: u64,
        sums: Vec<(u32, [u8; 16])>,
        more: bool,
    },
    /// A file rebuilt from the receiver's copy (`Copy`) and new bytes
    /// (`Data`), then `DeltaEnd` with the SHA-256 of the result.
    Delta {
        id: u64,
        path: Vec<u8>,
        size: u64,
        mode: u32,
        uid: u32,
        gid: u32,
        mtime: i64,
        block: u32,
    },
    /// `count` blocks of the receiver's copy from block `index`.
    Copy {
        index: u32,
        count: u32,
    },
    DeltaEnd {
        id: u64,
        sha256: [u8; 32],
    },
    /// Make every file received so far durable and visible, and answer
    /// for each (the receiver syncs once for many files).
    Commit,
    /// Set a path's owner and group, then its mode again (a change of
    /// owner clears set-user-ID bits).
    Own {
        id: u64,
        path: Vec<u8>,
        uid: u32,
        gid: u32,
        mode: u32,
    },
    /// Ask for the SHA-256 of the receiver's copy of `path` (`checksum =
    /// true`): `HashReply`, or `Fail` when it has no such file.
    Hash {
        id: u64,
        path: Vec<u8>,
    },
    HashReply {
        id: u64,
        sha256: [u8; 32],
    },
    /// Make `path` another name of the file at `to` (a hard link),
    /// replacing what `path` was: hard links stay hard links.
    Link {
        id: u64,
        path: Vec<u8>,
        to: Vec<u8>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the other side closed the connection")]
    Closed,
    #[error("malformed message: {0}")]
    Malformed(String),
}

fn malformed<T>(what: &str) -> Result<T, ProtoError> {
    Err(ProtoError::Malformed(what.to_owned()))
}

/// A message being written.
struct Out(Vec<u8>);

/// A message being read: the bytes not read yet.
struct In<'a>(&'a [u8]);

impl In<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], ProtoError> {
        if self.0.len() < n {
            return malformed("truncated");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtoError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
}

/// A field of a message, as it travels: `put` writes it, `get` reads it
/// in place. Each message lists its fields once (`Msg::fields`), and
/// both directions walk that list.
trait Field {
    fn put(&self, o: &mut Out);
    fn get(&mut self, i: &mut In<'_>) -> Result<(), ProtoError>;
}

/// Integers: big-endian, of their own width.
macro_rules! int_fields {
    ($($t:ty),*) => {$(
        impl Field for $t {
            fn put(&self, o: &mut Out) {
                o.0.extend_from_slice(&self.to_be_bytes());
            }
            fn get(&mut self, i: &mut In<'_>) -> Result<(), ProtoError> {
                *self = <$t>::from_be_bytes(i.array()?);
                Ok(())
            }
        }
    )*};
}

int_fields!(u8, u16, u32, u64, i64);

/// One byte, 1 for true (anything else reads as false).
impl Field for bool {
    fn put(&self, o: &mut Out) {
        u8::from(*self).put(o);
    }
    fn get(&mut self, i: &mut In<'_>) -> Result<(), ProtoError> {
        *self = i.array::<1>()? == [1];
        Ok(())
    }
}

/// A hash: its bytes, no length.
impl<const N: usize> Field for [u8; N] {
    fn put(&self, o: &mut Out) {
        o.0.extend_from_slice(self);
    }
    fn get(&mut self, i: &mut In<'_>) -> Result<(), ProtoError> {
        *self = i.array()?;
        Ok(())
    }
}

/// Bytes (a path, a target): a `u32` length, then the bytes.
impl Field for Vec<u8> {
    fn put(&self, o: &mut Out) {
        u32::try_from(self.len()).unwrap_or(u32::MAX).put(o);
        o.0.extend_from_slice(self);
    }
    fn get(&mut self, i: &mut In<'_>) -> Result<(), ProtoError> {
        let mut n = 0u32;
        n.get(i)?;
        *self = i.take(n as usize)?.to_vec();
        Ok(())
    }
}

/// Text: as bytes, and UTF-8.
impl Field for String {
    fn put(&self, o: &mut Out) {
        u32::try_from(self.len()).unwrap_or(u32::MAX).put(o);
        o.0.extend_from_slice(self.as_bytes());
    }
    fn get(&mut self, i: &mut In<'_>) -> Result<(), ProtoError> {
        let mut bytes = Vec::new();
        bytes.get(i)?;
        *self = String::from_utf8(bytes).or_else(|_| malformed("text that is not UTF-8"))?;
        Ok(())
    }
}

impl Field for Kind {
    fn put(&self, o: &mut Out) {
        u8::from(*self).put(o);
    }
    fn get(&mut self, i: &mut In<'_>) -> Result<(), ProtoError> {
        let mut byte = 0u8;
        byte.get(i)?;
        *self = Kind::try_from(byte).or_else(|_| malformed("unknown entry kind"))?;
        Ok(())
    }
}

/// Block signatures: a `u32` count, then a rolling checksum and a
/// strong hash each (20 bytes).
impl Field for Vec<(u32, [u8; 16])> {
    fn put(&self, o: &mut Out) {
        u32::try_from(self.len()).unwrap_or(u32::MAX).put(o);
        for (weak, strong) in self {
            weak.put(o);
            strong.put(o);
        }
    }
    fn get(&mut self, i: &mut In<'_>) -> Result<(), ProtoError> {
        let mut n = 0u32;
        n.get(i)?;
        let n = n as usize;
        if n > i.0.len() / 20 {
            return malformed("more signatures than bytes");
        }
        *self = Vec::with_capacity(n);
        for _ in 0..n {
            let mut sum = (0u32, [0u8; 16]);
            sum.0.get(i)?;
            sum.1.get(i)?;
            self.push(sum);
        }
        Ok(())
    }
}

/// Defines the one table of message tags: `Tag` (each `Msg` variant's
/// byte on the wire), `TryFrom<u8>` for the decoder and `Msg::tag` for
/// the encoder, so that neither side lists the numbers again.
macro_rules! tags {
    ($($name:ident = $byte:literal,)*) => {
        /// The first byte of a message: which `Msg` it is.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        enum Tag {
            $($name = $byte,)*
        }

        impl TryFrom<u8> for Tag {
            type Error = u8;
            fn try_from(byte: u8) -> Result<Self, u8> {
                match byte {
                    $($byte => Ok(Tag::$name),)*
                    other => Err(other),
                }
            }
        }

        impl Msg {
            fn tag(&self) -> Tag {
                match self {
                    $(Msg::$name { .. } => Tag::$name,)*
                }
            }
        }
    };
}

// Append only: a byte once given keeps its meaning within a version.
tags! {
    Hello = 1,
    Welcome = 2,
    List = 3,
    Entry = 4,
    ListEnd = 5,
    MkDir = 6,
    File = 7,
    Data = 8,
    FileEnd = 9,
    Symlink = 10,
    Delete = 11,
    Rename = 12,
    Meta = 13,
    Ack = 14,
    Fail = 15,
    Fatal = 16,
    Sums = 17,
    SumsReply = 18,
    Delta = 19,
    Copy = 20,
    DeltaEnd = 21,
    Commit = 22,
    Own = 23,
    Hash = 24,
    HashReply = 25,
    Link = 26,
}

impl From<Tag> for u8 {
    fn from(t: Tag) -> u8 {
        t as u8
    }
}

/// The byte of each `Kind` in an `Entry`.
impl From<Kind> for u8 {
    fn from(k: Kind) -> u8 {
        match k {
            Kind::File => 0,
            Kind::Dir => 1,
            Kind::Symlink => 2,
        }
    }
}

impl TryFrom<u8> for Kind {
    type Error = u8;
    fn try_from(byte: u8) -> Result<Self, u8> {
        [Kind::File, Kind::Dir, Kind::Symlink]
            .into_iter()
            .find(|k| u8::from(*k) == byte)
            .ok_or(byte)
    }
}

impl Msg {
    /// The one description of every message: its fields in wire order,
    /// after the tag (and a `Hello`'s magic). `Data` is not listed: its
    /// bytes are the rest of the frame.
    fn fields(&mut self) -> Vec<&mut dyn Field> {
        match self {
            Msg::Hello { version, job } => vec![version, job],
            Msg::Welcome {
                version,
                owners,
                setuid,
            } => vec![version, owners, setuid],
            Msg::List | Msg::ListEnd | Msg::Commit | Msg::Data(_) => Vec::new(),
            Msg::Entry(e) => vec![
                &mut e.path,
                &mut e.kind,
                &mut e.size,
                &mut e.mode,
                &mut e.uid,
                &mut e.gid,
                &mut e.mtime,
                &mut e.target,
            ],
            Msg::MkDir {
                id,
                path,
                mode,
                uid,
                gid,
            } => vec![id, path, mode, uid, gid],
            Msg::File {
                id,
                path,
                size,
                mode,
                uid,
                gid,
                mtime,
            } => vec![id, path, size, mode, uid, gid, mtime],
            Msg::FileEnd { id } | Msg::Ack { id } => vec![id],
            Msg::Symlink {
                id,
                path,
                target,
                uid,
                gid,
                mtime,
            } => vec![id, path, target, uid, gid, mtime],
            Msg::Delete { id, path } | Msg::Hash { id, path } => vec![id, path],
            Msg::Rename { id, from, to } => vec![id, from, to],
            Msg::Link { id, path, to } => vec![id, path, to],
            Msg::Meta {
                id,
                path,
                mode,
                mtime,
            } => vec![id, path, mode, mtime],
            Msg::Fail { id, message } => vec![id, message],
            Msg::Fatal { message } => vec![message],
            Msg::Sums { id, path, block } => vec![id, path, block],
            Msg::SumsReply { id, sums, more } => vec![id, more, sums],
            Msg::Delta {
                id,
                path,
                size,
                mode,
                uid,
                gid,
                mtime,
                block,
            } => vec![id, path, size, mode, uid, gid, mtime, block],
            Msg::Copy { index, count } => vec![index, count],
            Msg::DeltaEnd { id, sha256 } | Msg::HashReply { id, sha256 } => vec![id, sha256],
            Msg::Own {
                id,
                path,
                uid,
                gid,
                mode,
            } => vec![id, path, uid, gid, mode],
        }
    }

    /// The message of a tag with every field zero or empty, for `decode`
    /// to fill in through `fields`.
    #[rustfmt::skip]
    fn blank(tag: Tag) -> Msg {
        let (id, path, s) = (0, Vec::new, String::new);
        match tag {
            Tag::Hello => Msg::Hello { version: 0, job: s() },
            Tag::Welcome => Msg::Welcome { version: 0, owners: false, setuid: false },
            Tag::List => Msg::List,
            Tag::Entry => Msg::Entry(Entry::bare(path(), Kind::File)),
            Tag::ListEnd => Msg::ListEnd,
            Tag::MkDir => Msg::MkDir { id, path: path(), mode: 0, uid: 0, gid: 0 },
            Tag::File => Msg::File { id, path: path(), size: 0, mode: 0, uid: 0, gid: 0, mtime: 0 },
            Tag::Data => Msg::Data(Vec::new()),
            Tag::FileEnd => Msg::FileEnd { id },
            Tag::Symlink => Msg::Symlink { id, path: path(), target: path(), uid: 0, gid: 0, mtime: 0 },
            Tag::Delete => Msg::Delete { id, path: path() },
            Tag::Rename => Msg::Rename { id, from: path(), to: path() },
            Tag::Meta => Msg::Meta { id, path: path(), mode: 0, mtime: 0 },
            Tag::Ack => Msg::Ack { id },
            Tag::Fail => Msg::Fail { id, message: s() },
            Tag::Fatal => Msg::Fatal { message: s() },
            Tag::Sums => Msg::Sums { id, path: path(), block: 0 },
            Tag::SumsReply => Msg::SumsReply { id, sums: Vec::new(), more: false },
            Tag::Delta => Msg::Delta { id, path: path(), size: 0, mode: 0, uid: 0, gid: 0, mtime: 0, block: 0 },
            Tag::Copy => Msg::Copy { index: 0, count: 0 },
            Tag::DeltaEnd => Msg::DeltaEnd { id, sha256: [0; 32] },
            Tag::Commit => Msg::Commit,
            Tag::Own => Msg::Own { id, path: path(), uid: 0, gid: 0, mode: 0 },
            Tag::Hash => Msg::Hash { id, path: path() },
            Tag::HashReply => Msg::HashReply { id, sha256: [0; 32] },
            Tag::Link => Msg::Link { id, path: path(), to: path() },
        }
    }

    /// The message that announces `e`, a regular file, as request `id`:
    /// whole (`File`) or, with `block`, as a delta (`Delta`).
    pub fn announce(id: u64, e: &Entry, block: Option<u32>) -> Msg {
        let Entry {
            path,
            size,
            mode,
            uid,
            gid,
            mtime,
            ..
        } = e.clone();
        match block {
            None => Msg::File {
                id,
                path,
                size,
                mode,
                uid,
                gid,
                mtime,
            },
            Some(block) => Msg::Delta {
                id,
                path,
                size,
                mode,
                uid,
                gid,
                mtime,
                block,
            },
        }
    }

    /// What a `File` or a `Delta` announces: its id, the file, and a
    /// delta's block size; any other message back.
    pub fn announced(self) -> Result<(u64, Entry, Option<u32>), Msg> {
        let (id, path, size, mode, uid, gid, mtime, block) = match self {
            Msg::File {
                id,
                path,
                size,
                mode,
                uid,
                gid,
                mtime,
            } => (id, path, size, mode, uid, gid, mtime, None),
            Msg::Delta {
                id,
                path,
                size,
                mode,
                uid,
                gid,
                mtime,
                block,
            } => (id, path, size, mode, uid, gid, mtime, Some(block)),
            other => return Err(other),
        };
        let e = Entry {
            path,
            kind: Kind::File,
            size,
            mode,
            uid,
            gid,
            mtime,
            target: Vec::new(),
        };
        Ok((id, e, block))
    }

    /// The message's bytes, without the frame length.
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Out(Vec::with_capacity(32));
        u8::from(self.tag()).put(&mut o);
        match self {
            // The hot path: the chunk is copied once, into the frame.
            Msg::Data(d) => o.0.extend_from_slice(d),
            other => {
                if let Msg::Hello { .. } = other {
                    o.0.extend_from_slice(MAGIC);
                }
                // `fields` lends them mutably, for `decode`: a copy lends
                // them here (paths and names; at most 1 MiB of signatures
                // in a `SumsReply`).
                for f in other.clone().fields() {
                    f.put(&mut o);
                }
            }
        }
        o.0
    }

    /// Read a message from its bytes (without the frame length).
    pub fn decode(buf: &[u8]) -> Result<Msg, ProtoError> {
        let mut i = In(buf);
        let mut byte = 0u8;
        byte.get(&mut i)?;
        let tag =
            Tag::try_from(byte).or_else(|t| malformed(&format!("unknown message type {t}")))?;
        let mut msg = Msg::blank(tag);
        match &mut msg {
            Msg::Data(d) => *d = std::mem::take(&mut i.0).to_vec(),
            Msg::Hello { .. } if i.take(MAGIC.len())? != MAGIC => {
                return malformed("not a vigie sync hello");
            }
            _ => {}
        }
        for f in msg.fields() {
            f.get(&mut i)?;
        }
        if !i.0.is_empty() {
            return malformed("trailing bytes");
        }
        Ok(msg)
    }
}

/// Write one framed message.
pub fn write(w: &mut impl Write, msg: &Msg) -> Result<(), ProtoError> {
    let body = msg.encode();
    w.write_all(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes())?;
    w.write_all(&body)?;
    Ok(())
}

/// Read one framed message; `Closed` at a clean end of stream.
pub fn read(r: &mut impl Read) -> Result<Msg, ProtoError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(ProtoError::Closed),
        Err(e) => return Err(e.into()),
    }
    let n = u32::from_be_bytes(len) as usize;
    if n == 0 || n > MAX_FRAME + 64 {
        return malformed(&format!("a frame of {n} bytes"));
    }
    let mut body = vec![0u8; n];
    r.read_exact(&mut body).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ProtoError::Closed
        } else {
            e.into()
        }
    })?;
    Msg::decode(&body)
}

/// A time in nanoseconds since the epoch, from seconds and nanoseconds:
/// saturated (past the year 2262 it does not fit, and a file may well
/// say it was changed in 2300).
pub fn nanos(sec: i64, nsec: i64) -> i64 {
    sec.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// A relative path's components, or why it is refused: empty, absolute,
/// `.` or `..`, empty components, NUL bytes.
pub fn components(path: &[u8]) -> Result<Vec<&[u8]>, String> {
    let shown = || String::from_utf8_lossy(path).into_owned();
    if path.is_empty() {
        return Err("an empty path".into());
    }
    if path[0] == b'/' {
        return Err(format!("an absolute path: {}", shown()));
    }
    if path.contains(&0) {
        return Err(format!("a path with a NUL byte: {}", shown()));
    }
    let parts: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
    if parts.len() > MAX_DEPTH {
        return Err(format!(
            "a path of {} components (at most {MAX_DEPTH}): {}…",
            parts.len(),
            String::from_utf8_lossy(&path[..path.len().min(64)])
        ));
    }
    for p in &parts {
        match *p {
            b"" => return Err(format!("a path with an empty component: {}", shown())),
            b"." | b".." => {
                return Err(format!(
                    "a path with `{}`: {}",
                    String::from_utf8_lossy(p),
                    shown()
                ));
            }
            _ => {}
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One message of each kind, and an empty `Data`.
    fn all() -> Vec<Msg> {
        [session(), changes(), contents()].concat()
    }

    /// The session's own messages: the handshake, the list, the answers.
    fn session() -> Vec<Msg> {
        vec![
            Msg::Hello {
                version: VERSION,
                job: "webroot".into(),
            },
            Msg::Welcome {
                version: 1,
                owners: true,
                setuid: false,
            },
            Msg::List,
            Msg::Entry(Entry {
                path: b"a/\xffb".to_vec(),
                kind: Kind::Symlink,
                size: 3,
                mode: 0o777,
                uid: 0,
                gid: 1000,
                mtime: -5,
                target: b"../x".to_vec(),
            }),
            Msg::ListEnd,
            Msg::Ack { id: 7 },
            Msg::Fail {
                id: 8,
                message: "disk full".into(),
            },
            Msg::Fatal {
                message: "refused".into(),
            },
            Msg::Commit,
        ]
    }

    /// Changes of the tree but contents.
    fn changes() -> Vec<Msg> {
        vec![
            Msg::Own {
                id: 11,
                path: b"f".to_vec(),
                uid: 33,
                gid: 33,
                mode: 0o4755,
            },
            Msg::MkDir {
                id: 1,
                path: b"d".to_vec(),
                mode: 0o755,
                uid: 33,
                gid: 34,
            },
            Msg::Symlink {
                id: 3,
                path: b"l".to_vec(),
                target: b"d/f".to_vec(),
                uid: 0,
                gid: 0,
                mtime: 0,
            },
            Msg::Delete {
                id: 4,
                path: b"d".to_vec(),
            },
            Msg::Rename {
                id: 5,
                from: b"a".to_vec(),
                to: b"b".to_vec(),
            },
            Msg::Meta {
                id: 6,
                path: b"b".to_vec(),
                mode: 0o600,
                mtime: 1,
            },
            Msg::Link {
                id: 13,
                path: b"d/b".to_vec(),
                to: b"a".to_vec(),
            },
        ]
    }

    /// Contents: whole files, deltas and their signatures, hashes.
    fn contents() -> Vec<Msg> {
        vec![
            Msg::File {
                id: 2,
                path: b"d/f".to_vec(),
                size: 10,
                mode: 0o644,
                uid: 1000,
                gid: 100,
                mtime: 1_700_000_000_123_456_789,
            },
            Msg::Data(vec![1, 2, 3]),
            Msg::Data(Vec::new()),
            Msg::FileEnd { id: 2 },
            Msg::Sums {
                id: 9,
                path: b"big".to_vec(),
                block: 65536,
            },
            Msg::SumsReply {
                id: 9,
                sums: vec![(1, [2; 16]), (3, [4; 16])],
                more: true,
            },
            Msg::Delta {
                id: 10,
                path: b"big".to_vec(),
                size: 1 << 30,
                mode: 0o644,
                uid: 7,
                gid: 8,
                mtime: 5,
                block: 65536,
            },
            Msg::Copy { index: 3, count: 7 },
            Msg::Hash {
                id: 12,
                path: b"d/f".to_vec(),
            },
            Msg::HashReply {
                id: 12,
                sha256: [3; 32],
            },
            Msg::DeltaEnd {
                id: 10,
                sha256: [9; 32],
            },
        ]
    }

    #[test]
    fn every_message_round_trips_through_a_frame() {
        for m in all() {
            let mut buf = Vec::new();
            write(&mut buf, &m).unwrap();
            assert_eq!(read(&mut buf.as_slice()).unwrap(), m);
        }
    }

    #[test]
    fn every_tag_is_tested_and_decodes_to_itself() {
        let tested: std::collections::HashSet<u8> =
            all().iter().map(|m| u8::from(m.tag())).collect();
        for byte in 0..=u8::MAX {
            match Tag::try_from(byte) {
                Ok(t) => {
                    assert_eq!(u8::from(t), byte);
                    assert!(tested.contains(&byte), "no test message of tag {byte}");
                }
                Err(b) => assert_eq!(b, byte),
            }
        }
        assert_eq!(tested.len(), 26);
        for k in [Kind::File, Kind::Dir, Kind::Symlink] {
            assert_eq!(Kind::try_from(u8::from(k)), Ok(k));
        }
        assert_eq!(Kind::try_from(3), Err(3));
    }

    /// The wire format of version 3, byte for byte: the tags and the
    /// order of the fields must not move.
    #[test]
    fn the_bytes_of_version_3_do_not_change() {
        assert_eq!(Msg::List.encode(), [3]);
        assert_eq!(Msg::Commit.encode(), [22]);
        assert_eq!(Msg::Ack { id: 7 }.encode(), [14, 0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(
            Msg::Link {
                id: 1,
                path: b"p".to_vec(),
                to: b"t".to_vec(),
            }
            .encode(),
            [
                26, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, b'p', 0, 0, 0, 1, b't'
            ]
        );
        let mut hello = vec![1];
        hello.extend_from_slice(MAGIC);
        hello.extend_from_slice(&[0, 3, 0, 0, 0, 1, b'j']);
        assert_eq!(
            Msg::Hello {
                version: VERSION,
                job: "j".into(),
            }
            .encode(),
            hello
        );
        let entry = Msg::Entry(Entry::bare(b"a".to_vec(), Kind::Symlink)).encode();
        assert_eq!(&entry[..7], [4, 0, 0, 0, 1, b'a', 2]);
    }

    #[test]
    fn a_full_frame_of_signatures_fits_a_frame() {
        let m = Msg::SumsReply {
            id: u64::MAX,
            sums: vec![(u32::MAX, [0xff; 16]); SUMS_PER_FRAME],
            more: true,
        };
        let mut buf = Vec::new();
        write(&mut buf, &m).unwrap();
        assert!(buf.len() - 4 <= MAX_FRAME, "{} bytes", buf.len());
        assert_eq!(read(&mut buf.as_slice()).unwrap(), m);
    }

    #[test]
    fn a_clean_end_is_closed_and_a_huge_frame_is_refused() {
        assert!(matches!(read(&mut &b""[..]), Err(ProtoError::Closed)));
        assert!(matches!(
            read(&mut &[0xff, 0xff, 0xff, 0xff][..]),
            Err(ProtoError::Malformed(_))
        ));
    }

    #[test]
    fn hostile_paths_are_refused() {
        for p in [
            &b""[..],
            b"/etc/passwd",
            b"../x",
            b"a/../../x",
            b"a//b",
            b"./a",
            b"a/.",
            b"a\0b",
            b"a/",
        ] {
            assert!(components(p).is_err(), "{:?}", String::from_utf8_lossy(p));
        }
        assert_eq!(components(b"a/b\xff").unwrap(), [&b"a"[..], b"b\xff"]);
    }

    proptest! {
        #[test]
        fn the_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Msg::decode(&bytes);
            let _ = read(&mut bytes.as_slice());
        }

        #[test]
        fn truncated_messages_are_errors(cut in 0usize..40) {
            for m in all() {
                let b = m.encode();
                if cut < b.len() && !matches!(m, Msg::Data(_)) {
                    prop_assert!(Msg::decode(&b[..cut]).is_err());
                }
            }
        }
    }
}
