//! Reading and extracting Debian binary packages in pure Rust.
//!
//! A `.deb` is an `ar` archive holding `debian-binary` (`2.0`), a
//! `control.tar[.gz|.xz|.zst]` with the package metadata, and a
//! `data.tar[.gz|.xz|.zst]` with the files. The builder never runs dpkg or
//! maintainer scripts: it reads `control` for the manifest and unpacks
//! `data.tar` into the image root itself, which keeps builds unprivileged,
//! reproducible and independent of the host's package database.
//!
//! # Safety of extraction
//!
//! Packages come from a signed repository, but the extractor still treats
//! them as untrusted input, because a single bad archive could otherwise
//! write anywhere on the build host:
//!
//! - entry names with `..` or an absolute path are refused;
//! - symlink targets are resolved lexically from the link's directory (an
//!   absolute target from the image root) and refused if they climb above
//!   the root; hardlink targets must name a regular file already extracted
//!   from the same package;
//! - nothing is ever written *through* a symlink: every parent directory of
//!   an entry must be a real directory (checked with `lstat`, created if
//!   missing), and files are created with `O_CREAT|O_EXCL`, so even a link
//!   that stays inside the image (`usr/lib/x -> /etc`) cannot redirect a
//!   later entry (`usr/lib/x/passwd`) onto the host.
//!
//! Every refusal names the package and the entry.
//!
//! # Usr-merge
//!
//! Debian 12 is merged-usr: `/bin`, `/sbin`, `/lib`, `/lib64` (and the
//! multilib variants) are symlinks into `/usr`, but many packages still ship
//! files under the old paths. Entries under those directories are moved to
//! `usr/…` before anything else happens (so `excludes` and `include` globs
//! always see the `usr/` path), and [`create_merged_usr_layout`] makes the
//! compatibility symlinks once per root.
//!
//! # Modes and ownership
//!
//! The builder runs unprivileged, so it cannot `chown` and must be able to
//! keep writing into directories a package ships read-only. The returned
//! [`ExtractedEntry`] list is therefore the authority on mode, uid and gid
//! (the squashfs writer applies them); on disk, directories also get
//! `u+rwx` and files `u+r`. Files from a later package replace those of an
//! earlier one, as with `dpkg --force-overwrite`.
//!
//! On error the root may hold a partial extraction: extract into a staging
//! root and discard it on failure.

mod ar;
mod control;
mod extract;

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

pub use control::{DebControl, Dependency};
pub use extract::{create_merged_usr_layout, usr_merged};

use crate::profile::PathGlob;
use ar::{ArError, ArReader};

/// Top-level directories that are symlinks into `usr/` on a merged-usr system.
pub const MERGED_USR_DIRS: [&str; 6] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Anything that can go wrong reading or extracting a package.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    /// The `.deb` file could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The package file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file is not a well-formed `.deb`.
    #[error("{} is not a valid Debian package: {reason}", path.display())]
    Format {
        /// The package file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A member uses a compression the extractor does not read.
    #[error("{}: member `{member}` uses an unsupported compression; expected none, .gz, .xz or .zst", path.display())]
    UnsupportedCompression {
        /// The package file.
        path: PathBuf,
        /// The member name, e.g. `data.tar.bz2`.
        member: String,
    },
    /// `control` is missing or malformed.
    #[error("{}: invalid control file: {reason}", path.display())]
    Control {
        /// The package file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A compressed stream or tar archive inside the package is corrupt.
    #[error("package {package} ({}): cannot read {member}: {source}", path.display())]
    Archive {
        /// Package name.
        package: String,
        /// The package file.
        path: PathBuf,
        /// The member being read.
        member: String,
        /// The underlying error.
        source: io::Error,
    },
    /// An entry would escape the root or write through a symlink.
    #[error("package {package}: refusing entry `{entry}`: {reason}")]
    UnsafeEntry {
        /// Package name.
        package: String,
        /// The entry as named in the archive.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// An entry cannot be placed because of what is already at its path, or
    /// is of a kind the image cannot hold.
    #[error("package {package}: cannot extract entry `{entry}`: {reason}")]
    Conflict {
        /// Package name.
        package: String,
        /// The entry as named in the archive.
        entry: String,
        /// What is in the way.
        reason: String,
    },
    /// Writing an entry into the root failed.
    #[error("package {package}: cannot write entry `{entry}` to {}: {source}", path.display())]
    Write {
        /// Package name.
        package: String,
        /// The entry as named in the archive.
        entry: String,
        /// The path on the build host.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// An include or exclude glob could not be compiled.
    #[error("cannot compile path globs: {0}")]
    Glob(#[from] globset::Error),
}

/// Which paths of a package to extract.
#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
    /// If not empty, only paths matching one of these are extracted (their
    /// parent directories are created as needed).
    pub include: Vec<PathGlob>,
    /// Paths matching any of these are skipped.
    pub exclude: Vec<PathGlob>,
}

/// What one package put into the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractedPackage {
    /// The package's control fields.
    pub control: DebControl,
    /// Every entry created or updated, in archive order, plus the parent
    /// directories that had to be created (root-owned, `0755`).
    pub entries: Vec<ExtractedEntry>,
    /// How many archive entries were skipped by `include`/`exclude`.
    pub skipped: usize,
}

/// One path in the root, with the metadata the image must give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractedEntry {
    /// Path relative to the root, usr-merged and normalised (`usr/bin/runc`).
    pub path: PathBuf,
    /// What the entry is.
    pub kind: EntryKind,
    /// Permission bits from the archive (including setuid/setgid/sticky).
    pub mode: u32,
    /// Owner from the archive.
    pub uid: u64,
    /// Group from the archive.
    pub gid: u64,
    /// Size in bytes of a regular file (or of a hardlink's target); 0 otherwise.
    pub size: u64,
    /// Symlink target as stored, or the root-relative path of a hardlink's target.
    pub link_target: Option<PathBuf>,
}

/// The kind of an extracted entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A directory.
    Directory,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// A hard link to a regular file of the same package.
    Hardlink,
}

/// Reads only the `control` file of a package.
pub fn read_control(deb: &Path) -> Result<DebControl, DebError> {
    let mut reader = DebReader::open(deb)?;
    reader.control()
}

/// Extracts a package's data archive into `root` (created if missing) and
/// returns its control fields and what was written.
pub fn extract(
    deb: &Path,
    root: &Path,
    options: &ExtractOptions,
) -> Result<ExtractedPackage, DebError> {
    let mut reader = DebReader::open(deb)?;
    let control = reader.control()?;
    let package = control.package.to_string();
    let (member, compression) = reader.next_tar("data.tar")?;
    let data = decompress(compression, reader.ar.member(), deb, &member)?;
    let (entries, skipped) =
        extract::Extractor::new(root, &package, deb, &member, options)?.run(data)?;
    Ok(ExtractedPackage {
        control,
        entries,
        skipped,
    })
}

/// Compression of a tar member, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

/// Walks the members of a `.deb` in the order dpkg requires.
struct DebReader {
    path: PathBuf,
    ar: ArReader<BufReader<File>>,
}

impl DebReader {
    fn open(path: &Path) -> Result<DebReader, DebError> {
        let file = File::open(path).map_err(|source| DebError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut ar = ArReader::new(BufReader::with_capacity(256 * 1024, file))
            .map_err(|error| ar_error(path, error))?;
        match ar.next_member().map_err(|error| ar_error(path, error))? {
            Some((name, _)) if name == "debian-binary" => {}
            Some((name, _)) => {
                return Err(format_error(
                    path,
                    format!("first member is `{name}`, expected `debian-binary`"),
                ));
            }
            None => return Err(format_error(path, "empty ar archive".to_owned())),
        }
        let mut version = String::new();
        ar.member()
            .take(64)
            .read_to_string(&mut version)
            .map_err(|source| DebError::Read {
                path: path.to_owned(),
                source,
            })?;
        if !version.starts_with("2.") {
            return Err(format_error(
                path,
                format!(
                    "unsupported format version `{}`, expected 2.x",
                    version.trim()
                ),
            ));
        }
        Ok(DebReader {
            path: path.to_owned(),
            ar,
        })
    }

    /// Advances to the next member named `<stem>[.gz|.xz|.zst]`, skipping
    /// `_`-prefixed members (reserved for additions, e.g. signatures).
    fn next_tar(&mut self, stem: &str) -> Result<(String, Compression), DebError> {
        loop {
            let Some((name, _)) = self
                .ar
                .next_member()
                .map_err(|error| ar_error(&self.path, error))?
            else {
                return Err(format_error(&self.path, format!("no `{stem}` member")));
            };
            if name.starts_with('_') {
                continue;
            }
            let Some(suffix) = name.strip_prefix(stem) else {
                return Err(format_error(
                    &self.path,
                    format!("found member `{name}` where `{stem}` was expected"),
                ));
            };
            let compression = match suffix {
                "" => Compression::None,
                ".gz" => Compression::Gzip,
                ".xz" => Compression::Xz,
                ".zst" => Compression::Zstd,
                _ => {
                    return Err(DebError::UnsupportedCompression {
                        path: self.path.clone(),
                        member: name,
                    });
                }
            };
            return Ok((name, compression));
        }
    }

    fn control(&mut self) -> Result<DebControl, DebError> {
        let (member, compression) = self.next_tar("control.tar")?;
        let path = self.path.clone();
        let reader = decompress(compression, self.ar.member(), &path, &member)?;
        let archive_error = |source| DebError::Archive {
            package: "(unknown)".to_owned(),
            path: path.clone(),
            member: member.clone(),
            source,
        };
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(archive_error)? {
            let mut entry = entry.map_err(archive_error)?;
            let name = entry.path_bytes();
            let name = name.strip_prefix(b"./").unwrap_or(&name);
            if name != b"control" {
                continue;
            }
            // Real control files are a few KiB; the cap stops a hostile
            // archive from making us buffer gigabytes.
            let mut text = String::new();
            (&mut entry)
                .take(1024 * 1024)
                .read_to_string(&mut text)
                .map_err(archive_error)?;
            return DebControl::parse(&text).map_err(|reason| DebError::Control {
                path: path.clone(),
                reason,
            });
        }
        Err(DebError::Control {
            path,
            reason: format!("`{member}` has no `control` file"),
        })
    }
}

fn decompress<'a, R: Read + 'a>(
    compression: Compression,
    reader: R,
    path: &Path,
    member: &str,
) -> Result<Box<dyn Read + 'a>, DebError> {
    Ok(match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(reader)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new(reader)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(reader).map_err(|source| {
                DebError::Archive {
                    package: "(unknown)".to_owned(),
                    path: path.to_owned(),
                    member: member.to_owned(),
                    source,
                }
            })?)
        }
    })
}

fn format_error(path: &Path, reason: String) -> DebError {
    DebError::Format {
        path: path.to_owned(),
        reason,
    }
}

fn ar_error(path: &Path, error: ArError) -> DebError {
    match error {
        ArError::Io(source) => DebError::Read {
            path: path.to_owned(),
            source,
        },
        ArError::Malformed(reason) => format_error(path, reason),
    }
}

#[cfg(test)]
mod tests;
