//! A deterministic writer for `newc` cpio archives, the format of the Linux
//! initramfs.
//!
//! # Format
//!
//! The "new ASCII" (`newc`, magic `070701`) format is described in the
//! kernel's `Documentation/driver-api/early-userspace/buffer-format.rst` and in
//! `cpio(5)`. Every entry is a 110-byte header of thirteen 8-digit hexadecimal
//! fields (inode, mode, uid, gid, nlink, mtime, file size, device
//! major/minor, rdev major/minor, name size, check) followed by the
//! NUL-terminated name, padded to a multiple of four bytes, then the data
//! (file contents or symlink target), also padded to four bytes. The archive
//! ends with an entry named `TRAILER!!!`.
//!
//! # Determinism
//!
//! Nothing is taken from the build host: mode, owner and mtime are given
//! explicitly for every entry, inode numbers are assigned sequentially from 1
//! in the order entries are written, the archive's device numbers are zero
//! and every entry has a link count of 1 (2 for directories), so the kernel
//! never tries to hard-link two entries together. The same sequence of calls
//! therefore produces the same bytes.
//!
//! # Device nodes
//!
//! The builder runs unprivileged and cannot `mknod`, but it does not have to:
//! a character device is just a header with the `S_IFCHR` mode and the device
//! number in `rdevmajor`/`rdevminor`, and the kernel creates the node while
//! unpacking. The kernel needs `dev/console` (5:1) in the initramfs to give
//! `/init` its standard streams.
//!
//! # Ordering
//!
//! Entries are written in the order given; the caller sorts them. The kernel
//! unpacks in archive order, so every parent directory must come before its
//! children. The writer enforces that: a missing ancestor directory is
//! written first with [`CpioWriter::with_parent_metadata`]'s metadata, and a
//! directory given explicitly after something was already put inside it is
//! an error (it means the caller's order is wrong). Duplicate names are
//! refused.
//!
//! [`Content`] is also used by the other format writers in this crate to
//! say where a file's bytes come from.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Magic number of the `newc` format (no checksums).
const NEWC_MAGIC: &[u8; 6] = b"070701";
/// Size of a `newc` header before the name.
const HEADER_LEN: usize = 110;
/// Name of the entry that ends an archive.
const TRAILER_NAME: &str = "TRAILER!!!";

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFBLK: u32 = 0o060_000;
/// Size of the buffer files are streamed through.
const COPY_BUFFER: usize = 256 * 1024;
/// Permission bits including setuid, setgid and sticky.
const PERMISSION_MASK: u32 = 0o7777;

/// Where the bytes of a file come from: memory, or a file on the build host
/// that is streamed rather than loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// The bytes themselves.
    Bytes(Vec<u8>),
    /// A file on the build host, read when the entry is written.
    File(PathBuf),
}

impl Content {
    /// Opens the content for reading and returns it with its length.
    pub fn open(&self) -> io::Result<(Box<dyn Read + '_>, u64)> {
        match self {
            Content::Bytes(bytes) => Ok((Box::new(bytes.as_slice()), bytes.len() as u64)),
            Content::File(path) => {
                let file = File::open(path)?;
                let len = file.metadata()?.len();
                Ok((Box::new(file), len))
            }
        }
    }

    /// The length in bytes (reads the file's metadata for [`Content::File`]).
    pub fn len(&self) -> io::Result<u64> {
        match self {
            Content::Bytes(bytes) => Ok(bytes.len() as u64),
            Content::File(path) => Ok(std::fs::metadata(path)?.len()),
        }
    }

    /// Whether the content is empty.
    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A short description for error messages.
    pub fn describe(&self) -> String {
        match self {
            Content::Bytes(bytes) => format!("{} bytes in memory", bytes.len()),
            Content::File(path) => path.display().to_string(),
        }
    }
}

/// Anything that can go wrong writing an archive.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// An entry name is not a clean relative path.
    #[error("cpio entry `{name}`: invalid name: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A value does not fit the format or is not allowed.
    #[error("cpio entry `{name}`: {reason}")]
    InvalidEntry {
        /// The entry name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The same name was given twice.
    #[error("cpio entry `{name}` is given twice")]
    Duplicate {
        /// The entry name.
        name: String,
    },
    /// A directory was given after entries inside it were written.
    #[error(
        "cpio directory `{name}` is given after entries inside it; sort entries so parents come first"
    )]
    DirectoryAfterChildren {
        /// The directory name.
        name: String,
    },
    /// A file's source could not be read, or changed while it was read.
    #[error("cpio entry `{name}`: cannot read {source_description}: {source}")]
    ReadSource {
        /// The entry name.
        name: String,
        /// Where the bytes were coming from.
        source_description: String,
        /// The underlying error.
        source: io::Error,
    },
    /// Writing the archive failed.
    #[error("cannot write cpio archive{}: {source}", entry_context(name))]
    Write {
        /// The entry being written, if any.
        name: Option<String>,
        /// The underlying error.
        source: io::Error,
    },
    /// The output file could not be created or moved into place.
    #[error("cannot create {}: {source}", path.display())]
    Output {
        /// The output path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

fn entry_context(name: &Option<String>) -> String {
    name.as_ref()
        .map(|name| format!(" (entry `{name}`)"))
        .unwrap_or_default()
}

/// Mode, ownership and modification time of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMetadata {
    /// Permission bits (`0o7777` at most; the file type is added by the writer).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the Unix epoch (usually `SOURCE_DATE_EPOCH`).
    pub mtime: u32,
}

impl EntryMetadata {
    /// Root-owned entry with the given permission bits and mtime.
    pub fn root(mode: u32, mtime: u32) -> Self {
        Self {
            mode,
            uid: 0,
            gid: 0,
            mtime,
        }
    }
}

/// One entry for [`write_archive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive, relative, `/`-separated (`usr/bin/runc`).
    pub name: String,
    /// Mode, ownership and mtime.
    pub metadata: EntryMetadata,
    /// What the entry is.
    pub kind: EntryKind,
}

/// The kind of an [`Entry`] and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Directory,
    /// A regular file.
    File(Content),
    /// A symbolic link to the given target (stored as is).
    Symlink(String),
    /// A character device node.
    CharDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A block device node.
    BlockDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
}

/// Streams a `newc` archive into `W`.
///
/// Call the entry methods in archive order, then [`CpioWriter::finish`] to
/// write the trailer. Wrap `W` in a compressor to produce e.g.
/// `initramfs.cpio.zst`.
#[derive(Debug)]
pub struct CpioWriter<W: Write> {
    out: W,
    next_inode: u32,
    parent_metadata: EntryMetadata,
    /// Every name written so far, to refuse duplicates.
    written: HashSet<String>,
    /// Directories that already have something inside them.
    populated_directories: HashSet<String>,
}

impl<W: Write> CpioWriter<W> {
    /// A writer whose automatically created parent directories are
    /// root-owned, `0755`, with mtime 0.
    pub fn new(out: W) -> Self {
        Self {
            out,
            next_inode: 1,
            parent_metadata: EntryMetadata::root(0o755, 0),
            written: HashSet::new(),
            populated_directories: HashSet::new(),
        }
    }

    /// Sets the metadata given to parent directories that the caller did not
    /// list before their children (use `SOURCE_DATE_EPOCH` as mtime).
    pub fn with_parent_metadata(mut self, metadata: EntryMetadata) -> Self {
        self.parent_metadata = metadata;
        self
    }

    /// Writes a directory.
    pub fn directory(&mut self, name: &str, metadata: EntryMetadata) -> Result<(), CpioError> {
        validate_name(name)?;
        if self.populated_directories.contains(name) {
            return Err(CpioError::DirectoryAfterChildren {
                name: name.to_owned(),
            });
        }
        self.begin_entry(name)?;
        self.write_header(name, S_IFDIR, metadata, 2, 0, (0, 0))
    }

    /// Writes a regular file from memory.
    pub fn file_from_bytes(
        &mut self,
        name: &str,
        metadata: EntryMetadata,
        data: &[u8],
    ) -> Result<(), CpioError> {
        self.file_from_reader(name, metadata, data.len() as u64, data)
    }

    /// Writes a regular file by streaming it from a path on the build host.
    pub fn file_from_path(
        &mut self,
        name: &str,
        metadata: EntryMetadata,
        path: &Path,
    ) -> Result<(), CpioError> {
        let read_error = |source| CpioError::ReadSource {
            name: name.to_owned(),
            source_description: path.display().to_string(),
            source,
        };
        let file = File::open(path).map_err(read_error)?;
        let len = file.metadata().map_err(read_error)?.len();
        self.file_from_reader(name, metadata, len, file)
            .map_err(|error| match error {
                CpioError::ReadSource { name, source, .. } => CpioError::ReadSource {
                    name,
                    source_description: path.display().to_string(),
                    source,
                },
                other => other,
            })
    }

    /// Writes a regular file from [`Content`].
    pub fn file(
        &mut self,
        name: &str,
        metadata: EntryMetadata,
        content: &Content,
    ) -> Result<(), CpioError> {
        match content {
            Content::Bytes(bytes) => self.file_from_bytes(name, metadata, bytes),
            Content::File(path) => self.file_from_path(name, metadata, path),
        }
    }

    /// Writes a regular file of exactly `len` bytes read from `reader`.
    ///
    /// Fails if the reader ends early or has more than `len` bytes (a file
    /// that changed while the archive was written).
    pub fn file_from_reader<R: Read>(
        &mut self,
        name: &str,
        metadata: EntryMetadata,
        len: u64,
        mut reader: R,
    ) -> Result<(), CpioError> {
        validate_name(name)?;
        let size = u32::try_from(len).map_err(|_| CpioError::InvalidEntry {
            name: name.to_owned(),
            reason: format!("{len} bytes is more than the 4 GiB newc allows"),
        })?;
        self.begin_entry(name)?;
        self.write_header(name, S_IFREG, metadata, 1, size, (0, 0))?;
        let read_error = |source| CpioError::ReadSource {
            name: name.to_owned(),
            source_description: "source".to_owned(),
            source,
        };
        // Copy by hand rather than with `io::copy` so a read failure and a
        // write failure are reported as what they are.
        let mut buffer = vec![0u8; COPY_BUFFER.min(len as usize).max(1)];
        let mut copied = 0u64;
        loop {
            let want = (len - copied).min(buffer.len() as u64) as usize;
            // After `len` bytes, read one more to detect a file that grew.
            let want = want.max(1);
            let read = match reader.read(&mut buffer[..want]) {
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(read_error(error)),
            };
            if read == 0 {
                break;
            }
            if copied + read as u64 > len {
                copied += read as u64;
                break;
            }
            self.write_raw(&buffer[..read], Some(name))?;
            copied += read as u64;
        }
        if copied != len {
            return Err(read_error(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("expected {len} bytes; the file changed while it was read"),
            )));
        }
        self.pad(len as usize, Some(name))
    }

    /// Writes a symbolic link pointing at `target`.
    pub fn symlink(
        &mut self,
        name: &str,
        metadata: EntryMetadata,
        target: &str,
    ) -> Result<(), CpioError> {
        validate_name(name)?;
        if target.is_empty() || target.contains('\0') {
            return Err(CpioError::InvalidEntry {
                name: name.to_owned(),
                reason: "symlink target must be non-empty and contain no NUL".to_owned(),
            });
        }
        let size = u32::try_from(target.len()).map_err(|_| CpioError::InvalidEntry {
            name: name.to_owned(),
            reason: "symlink target is too long".to_owned(),
        })?;
        self.begin_entry(name)?;
        self.write_header(name, S_IFLNK, metadata, 1, size, (0, 0))?;
        self.write_raw(target.as_bytes(), Some(name))?;
        self.pad(target.len(), Some(name))
    }

    /// Writes a character device node (e.g. `dev/console`, 5:1).
    pub fn char_device(
        &mut self,
        name: &str,
        metadata: EntryMetadata,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        validate_name(name)?;
        self.begin_entry(name)?;
        self.write_header(name, S_IFCHR, metadata, 1, 0, (major, minor))
    }

    /// Writes a block device node.
    pub fn block_device(
        &mut self,
        name: &str,
        metadata: EntryMetadata,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        validate_name(name)?;
        self.begin_entry(name)?;
        self.write_header(name, S_IFBLK, metadata, 1, 0, (major, minor))
    }

    /// Writes one [`Entry`].
    pub fn entry(&mut self, entry: &Entry) -> Result<(), CpioError> {
        let Entry {
            name,
            metadata,
            kind,
        } = entry;
        match kind {
            EntryKind::Directory => self.directory(name, *metadata),
            EntryKind::File(content) => self.file(name, *metadata, content),
            EntryKind::Symlink(target) => self.symlink(name, *metadata, target),
            EntryKind::CharDevice { major, minor } => {
                self.char_device(name, *metadata, *major, *minor)
            }
            EntryKind::BlockDevice { major, minor } => {
                self.block_device(name, *metadata, *major, *minor)
            }
        }
    }

    /// Writes the trailer and returns the underlying writer (flushed).
    pub fn finish(mut self) -> Result<W, CpioError> {
        // The trailer is a plain header; it does not take an inode number.
        let trailer = EntryMetadata::root(0, 0);
        self.write_header_fields(TRAILER_NAME, 0, 0, trailer, 1, 0, (0, 0))?;
        self.out
            .flush()
            .map_err(|source| CpioError::Write { name: None, source })?;
        Ok(self.out)
    }

    /// Refuses duplicates and writes any missing ancestor directories.
    fn begin_entry(&mut self, name: &str) -> Result<(), CpioError> {
        if self.written.contains(name) {
            return Err(CpioError::Duplicate {
                name: name.to_owned(),
            });
        }
        let ancestors: Vec<&str> = name
            .match_indices('/')
            .map(|(index, _)| &name[..index])
            .collect();
        for ancestor in ancestors {
            if !self.written.contains(ancestor) {
                self.written.insert(ancestor.to_owned());
                let metadata = self.parent_metadata;
                self.write_header(ancestor, S_IFDIR, metadata, 2, 0, (0, 0))?;
            }
            self.populated_directories.insert(ancestor.to_owned());
        }
        self.written.insert(name.to_owned());
        Ok(())
    }

    fn write_header(
        &mut self,
        name: &str,
        file_type: u32,
        metadata: EntryMetadata,
        nlink: u32,
        file_size: u32,
        rdev: (u32, u32),
    ) -> Result<(), CpioError> {
        if metadata.mode & !PERMISSION_MASK != 0 {
            return Err(CpioError::InvalidEntry {
                name: name.to_owned(),
                reason: format!(
                    "mode {:o} has bits outside the permission bits 7777",
                    metadata.mode
                ),
            });
        }
        let inode = self.next_inode;
        self.next_inode = inode
            .checked_add(1)
            .ok_or_else(|| CpioError::InvalidEntry {
                name: name.to_owned(),
                reason: "more entries than newc inode numbers".to_owned(),
            })?;
        self.write_header_fields(name, inode, file_type, metadata, nlink, file_size, rdev)
    }

    #[allow(clippy::too_many_arguments)] // one argument per header field
    fn write_header_fields(
        &mut self,
        name: &str,
        inode: u32,
        file_type: u32,
        metadata: EntryMetadata,
        nlink: u32,
        file_size: u32,
        (rdev_major, rdev_minor): (u32, u32),
    ) -> Result<(), CpioError> {
        let name_size = name.len() + 1;
        let mut header = Vec::with_capacity(HEADER_LEN + name_size + 3);
        header.extend_from_slice(NEWC_MAGIC);
        let fields = [
            inode,
            file_type | metadata.mode,
            metadata.uid,
            metadata.gid,
            nlink,
            metadata.mtime,
            file_size,
            0, // devmajor of the archive's filesystem: none
            0, // devminor
            rdev_major,
            rdev_minor,
            // Names are validated to be far shorter than 4 GiB.
            u32::try_from(name_size).unwrap_or(u32::MAX),
            0, // check: only used by the `070702` CRC format
        ];
        for field in fields {
            header.extend_from_slice(format!("{field:08X}").as_bytes());
        }
        header.extend_from_slice(name.as_bytes());
        header.push(0);
        let padded = header.len().next_multiple_of(4);
        header.resize(padded, 0);
        self.write_raw(&header, Some(name))
    }

    fn write_raw(&mut self, bytes: &[u8], name: Option<&str>) -> Result<(), CpioError> {
        self.out
            .write_all(bytes)
            .map_err(|source| CpioError::Write {
                name: name.map(str::to_owned),
                source,
            })
    }

    fn pad(&mut self, written: usize, name: Option<&str>) -> Result<(), CpioError> {
        let padding = written.next_multiple_of(4) - written;
        self.write_raw(&[0u8; 3][..padding], name)
    }
}

/// Checks that `name` is a clean relative path: not empty, not absolute, no
/// empty, `.` or `..` components, no trailing slash and no NUL.
pub fn validate_name(name: &str) -> Result<(), CpioError> {
    let invalid = |reason| {
        Err(CpioError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("name is empty");
    }
    if name.starts_with('/') {
        return invalid("name must be relative");
    }
    if name.contains('\0') {
        return invalid("name contains NUL");
    }
    if name == TRAILER_NAME {
        return invalid("name is reserved for the archive trailer");
    }
    if name.len() > 4096 {
        return invalid("name is longer than PATH_MAX");
    }
    for component in name.split('/') {
        match component {
            "" => return invalid("name has an empty component (`//` or trailing `/`)"),
            "." => return invalid("name has a `.` component"),
            ".." => return invalid("name has a `..` component"),
            _ => {}
        }
    }
    Ok(())
}

/// Writes `entries` in the given order to a new archive at `out`.
///
/// The archive is written next to `out` under a temporary name and renamed
/// into place, so a failure leaves no partial file. Parent directories the
/// caller did not list get `parent_metadata`.
pub fn write_archive(
    entries: &[Entry],
    parent_metadata: EntryMetadata,
    out: &Path,
) -> Result<(), CpioError> {
    let output_error = |source| CpioError::Output {
        path: out.to_path_buf(),
        source,
    };
    let temporary = crate::atomic::temp_file_beside(out, "cpio").map_err(output_error)?;
    let mut writer =
        CpioWriter::new(BufWriter::new(temporary.as_file())).with_parent_metadata(parent_metadata);
    for entry in entries {
        writer.entry(entry)?;
    }
    writer.finish()?;
    temporary.as_file().sync_all().map_err(output_error)?;
    set_readable_by_all(temporary.path()).map_err(output_error)?;
    temporary
        .persist(out)
        .map_err(|error| output_error(error.error))?;
    Ok(())
}

/// Gives an output file the usual `0644` mode (temporary files start as
/// `0600`).
pub(crate) fn set_readable_by_all(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry as read back by [`parse`].
    #[derive(Debug, PartialEq, Eq)]
    struct Parsed {
        inode: u32,
        mode: u32,
        uid: u32,
        gid: u32,
        nlink: u32,
        mtime: u32,
        rdev: (u32, u32),
        name: String,
        data: Vec<u8>,
    }

    /// A minimal independent `newc` reader: checks magic, padding and the
    /// trailer, and fails on anything after the trailer.
    fn parse(archive: &[u8]) -> Vec<Parsed> {
        let mut entries = Vec::new();
        let mut offset = 0;
        loop {
            assert_eq!(offset % 4, 0, "header not 4-aligned");
            let header = &archive[offset..offset + HEADER_LEN];
            assert_eq!(&header[..6], b"070701", "bad magic at {offset}");
            let field = |index: usize| {
                let text = std::str::from_utf8(&header[6 + index * 8..14 + index * 8])
                    .expect("header is ASCII");
                u32::from_str_radix(text, 16).expect("header field is hex")
            };
            let name_size = field(11) as usize;
            let name_start = offset + HEADER_LEN;
            let name_bytes = &archive[name_start..name_start + name_size];
            assert_eq!(name_bytes.last(), Some(&0), "name not NUL-terminated");
            let name = String::from_utf8(name_bytes[..name_size - 1].to_vec()).expect("utf-8");
            let data_start = (name_start + name_size).next_multiple_of(4);
            assert!(
                archive[name_start + name_size..data_start]
                    .iter()
                    .all(|&b| b == 0)
            );
            let size = field(6) as usize;
            let data = archive[data_start..data_start + size].to_vec();
            offset = (data_start + size).next_multiple_of(4);
            if name == TRAILER_NAME {
                assert_eq!(offset, archive.len(), "bytes after the trailer");
                return entries;
            }
            entries.push(Parsed {
                inode: field(0),
                mode: field(1),
                uid: field(2),
                gid: field(3),
                nlink: field(4),
                mtime: field(5),
                rdev: (field(9), field(10)),
                name,
                data,
            });
        }
    }

    const MTIME: u32 = 1_700_000_000;

    fn sample_archive(file_on_disk: &Path) -> Vec<u8> {
        let mut writer =
            CpioWriter::new(Vec::new()).with_parent_metadata(EntryMetadata::root(0o755, MTIME));
        writer
            .directory("dev", EntryMetadata::root(0o755, MTIME))
            .expect("dev");
        writer
            .char_device("dev/console", EntryMetadata::root(0o600, MTIME), 5, 1)
            .expect("console");
        writer
            .file_from_bytes("init", EntryMetadata::root(0o755, MTIME), b"#!/bin/sh\n")
            .expect("init");
        writer
            .file_from_path(
                "usr/lib/cairn/payload",
                EntryMetadata {
                    mode: 0o4750,
                    uid: 1000,
                    gid: 100,
                    mtime: MTIME,
                },
                file_on_disk,
            )
            .expect("payload");
        writer
            .symlink("bin", EntryMetadata::root(0o777, MTIME), "usr/bin")
            .expect("symlink");
        writer.finish().expect("finish")
    }

    #[test]
    fn writes_parseable_archive_with_parents_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let payload = dir.path().join("payload");
        std::fs::write(&payload, b"seven b").expect("write payload");
        let archive = sample_archive(&payload);
        let entries = parse(&archive);
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "init",
                "usr",
                "usr/lib",
                "usr/lib/cairn",
                "usr/lib/cairn/payload",
                "bin"
            ]
        );
        let inodes: Vec<u32> = entries.iter().map(|e| e.inode).collect();
        assert_eq!(inodes, (1..=8).collect::<Vec<_>>());
        let console = &entries[1];
        assert_eq!(console.mode, 0o020_600);
        assert_eq!(console.rdev, (5, 1));
        assert!(console.data.is_empty());
        assert_eq!(entries[0].mode, 0o040_755);
        assert_eq!(entries[0].nlink, 2);
        assert_eq!(entries[2].data, b"#!/bin/sh\n");
        assert_eq!(entries[2].mode, 0o100_755);
        let payload_entry = &entries[6];
        assert_eq!(payload_entry.data, b"seven b");
        assert_eq!(payload_entry.mode, 0o104_750);
        assert_eq!((payload_entry.uid, payload_entry.gid), (1000, 100));
        assert_eq!(payload_entry.nlink, 1);
        assert_eq!(entries[3].mode, 0o040_755, "implicit parent directory");
        assert_eq!(entries[7].mode, 0o120_777);
        assert_eq!(entries[7].data, b"usr/bin");
        assert!(entries.iter().all(|e| e.mtime == MTIME));
    }

    #[test]
    fn same_calls_give_same_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let payload = dir.path().join("payload");
        std::fs::write(&payload, vec![7u8; 10_001]).expect("write payload");
        let first = sample_archive(&payload);
        // A different on-disk mtime and mode must not leak into the archive.
        std::fs::set_permissions(
            &payload,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
        )
        .expect("chmod");
        let second = sample_archive(&payload);
        assert_eq!(first, second);
    }

    #[test]
    fn known_header_bytes() {
        let mut writer = CpioWriter::new(Vec::new());
        writer
            .file_from_bytes("a", EntryMetadata::root(0o644, 0x10), b"xy")
            .expect("file");
        let archive = writer.finish().expect("finish");
        let expected_first = concat!(
            "070701", "00000001", "000081A4", "00000000", "00000000", "00000001", "00000010",
            "00000002", "00000000", "00000000", "00000000", "00000000", "00000002", "00000000",
        );
        assert_eq!(&archive[..HEADER_LEN], expected_first.as_bytes());
        // name "a\0" padded to 112, data "xy" padded to 116.
        assert_eq!(&archive[HEADER_LEN..116], b"a\0xy\0\0");
        assert_eq!(&archive[116..122], b"070701");
        assert_eq!(archive.len() % 4, 0);
    }

    #[test]
    fn refuses_bad_names() {
        for name in [
            "",
            "/etc",
            "a/../b",
            "..",
            "a//b",
            "a/",
            "./a",
            "a/./b",
            "TRAILER!!!",
        ] {
            let mut writer = CpioWriter::new(Vec::new());
            let result = writer.file_from_bytes(name, EntryMetadata::root(0o644, 0), b"");
            assert!(
                matches!(result, Err(CpioError::InvalidName { .. })),
                "{name:?} was accepted"
            );
        }
    }

    #[test]
    fn refuses_duplicates_and_late_directories() {
        let meta = EntryMetadata::root(0o755, 0);
        let mut writer = CpioWriter::new(Vec::new());
        writer
            .file_from_bytes("etc/hosts", meta, b"")
            .expect("file");
        assert!(matches!(
            writer.file_from_bytes("etc/hosts", meta, b""),
            Err(CpioError::Duplicate { .. })
        ));
        assert!(matches!(
            writer.directory("etc", meta),
            Err(CpioError::DirectoryAfterChildren { .. })
        ));
        assert!(matches!(
            writer.file_from_bytes("bad", EntryMetadata::root(0o100_644, 0), b""),
            Err(CpioError::InvalidEntry { .. })
        ));
    }

    #[test]
    fn detects_a_source_shorter_than_announced() {
        let mut writer = CpioWriter::new(Vec::new());
        let result = writer.file_from_reader("f", EntryMetadata::root(0o644, 0), 10, &b"short"[..]);
        assert!(matches!(result, Err(CpioError::ReadSource { .. })));
        let mut writer = CpioWriter::new(Vec::new());
        let result = writer.file_from_reader("f", EntryMetadata::root(0o644, 0), 2, &b"longer"[..]);
        assert!(matches!(result, Err(CpioError::ReadSource { .. })));
    }

    #[test]
    fn write_archive_renames_into_place_and_cpio_lists_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("initramfs.cpio");
        let entries = vec![
            Entry {
                name: "dev/console".to_owned(),
                metadata: EntryMetadata::root(0o600, MTIME),
                kind: EntryKind::CharDevice { major: 5, minor: 1 },
            },
            Entry {
                name: "init".to_owned(),
                metadata: EntryMetadata::root(0o755, MTIME),
                kind: EntryKind::File(Content::Bytes(b"hello".to_vec())),
            },
        ];
        write_archive(&entries, EntryMetadata::root(0o755, MTIME), &out).expect("write");
        let bytes = std::fs::read(&out).expect("read");
        let names: Vec<String> = parse(&bytes).into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["dev", "dev/console", "init"]);
        let leftovers = std::fs::read_dir(dir.path()).expect("list").count();
        assert_eq!(leftovers, 1, "temporary file left behind");

        // Cross-check with GNU cpio when the host has it.
        let listing = std::process::Command::new("cpio")
            .args(["-i", "-t", "-v", "--quiet"])
            .stdin(std::fs::File::open(&out).expect("open"))
            .output();
        if let Ok(output) = listing {
            assert!(output.status.success(), "cpio -t failed: {output:?}");
            let text = String::from_utf8_lossy(&output.stdout);
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 3, "{text}");
            assert!(lines[1].starts_with("crw-------"), "{text}");
            assert!(
                lines[1].contains("5,") && lines[1].ends_with("dev/console"),
                "{text}"
            );
            assert!(lines[2].starts_with("-rwxr-xr-x") && lines[2].ends_with("init"));
        } else {
            eprintln!("skipped cross-check: cpio not installed");
        }
    }

    #[test]
    fn failed_write_leaves_no_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("initramfs.cpio");
        let entries = vec![Entry {
            name: "missing".to_owned(),
            metadata: EntryMetadata::root(0o644, 0),
            kind: EntryKind::File(Content::File(dir.path().join("does-not-exist"))),
        }];
        let error = write_archive(&entries, EntryMetadata::root(0o755, 0), &out)
            .expect_err("missing source");
        assert!(error.to_string().contains("does-not-exist"), "{error}");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }
}
