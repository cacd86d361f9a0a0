//! Unpacking a package's `data.tar` into the image root.
//!
//! See the [parent module](super) for the rules; this is their
//! implementation. Paths are handled as bytes from the archive and turned
//! into relative, normalised, usr-merged paths before anything touches the
//! disk. The set of directories already verified to be real (not symlinks)
//! is cached, so the `lstat` cost is paid once per directory, not per file.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use globset::GlobSet;
use tar::EntryType;

use super::{DebError, EntryKind, ExtractOptions, ExtractedEntry, MERGED_USR_DIRS};
use crate::profile::Architecture;
use crate::profile::types::glob_set;

/// Whether a directory is the entry being extracted or one of its parents
/// (only the wording of errors differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DirRole {
    Entry,
    Parent,
}

/// Maps a root-relative path under a merged-usr directory (`bin/sh`,
/// `lib/modules/…`) to its real place under `usr/`; other paths unchanged.
pub fn usr_merged(path: &Path) -> PathBuf {
    match path.components().next() {
        Some(Component::Normal(first))
            if MERGED_USR_DIRS.iter().any(|dir| OsStr::new(dir) == first) =>
        {
            Path::new("usr").join(path)
        }
        _ => path.to_owned(),
    }
}

/// Creates the merged-usr compatibility layout in `root`: `usr/bin`,
/// `usr/sbin`, `usr/lib` (and `usr/lib64` on amd64) as directories and
/// `bin -> usr/bin` etc. as symlinks. Idempotent; returns the entries for
/// the image's file list.
pub fn create_merged_usr_layout(
    root: &Path,
    architecture: Architecture,
) -> Result<Vec<ExtractedEntry>, DebError> {
    const LAYOUT: &str = "usr-merge layout";
    let mut dirs = vec!["bin", "sbin", "lib"];
    if architecture == Architecture::Amd64 {
        dirs.push("lib64");
    }
    let write_error = |entry: &str, path: PathBuf, source| DebError::Write {
        package: LAYOUT.to_owned(),
        entry: entry.to_owned(),
        path,
        source,
    };
    let directory = |path: &str| ExtractedEntry {
        path: PathBuf::from(path),
        kind: EntryKind::Directory,
        mode: 0o755,
        uid: 0,
        gid: 0,
        size: 0,
        link_target: None,
    };
    let mut entries = vec![directory("usr")];
    for dir in dirs {
        let real = format!("usr/{dir}");
        let host_real = root.join(&real);
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&host_real)
            .map_err(|source| write_error(&real, host_real.clone(), source))?;
        entries.push(directory(&real));

        let link = root.join(dir);
        match fs::symlink_metadata(&link) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let current = fs::read_link(&link)
                    .map_err(|source| write_error(dir, link.clone(), source))?;
                if current != Path::new(&real) {
                    return Err(DebError::Conflict {
                        package: LAYOUT.to_owned(),
                        entry: dir.to_owned(),
                        reason: format!(
                            "already a symlink to `{}`, expected `{real}`",
                            current.display()
                        ),
                    });
                }
            }
            Ok(_) => {
                return Err(DebError::Conflict {
                    package: LAYOUT.to_owned(),
                    entry: dir.to_owned(),
                    reason: format!("already exists and is not a symlink to `{real}`"),
                });
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                std::os::unix::fs::symlink(&real, &link)
                    .map_err(|source| write_error(dir, link.clone(), source))?;
            }
            Err(source) => return Err(write_error(dir, link, source)),
        }
        entries.push(ExtractedEntry {
            path: PathBuf::from(dir),
            kind: EntryKind::Symlink,
            mode: 0o777,
            uid: 0,
            gid: 0,
            size: 0,
            link_target: Some(PathBuf::from(real)),
        });
    }
    Ok(entries)
}

/// Turns an archive entry name into a normalised relative path; `None` for
/// the root itself (`./`).
fn normalize_archive_path(raw: &[u8]) -> Result<Option<PathBuf>, &'static str> {
    if raw.starts_with(b"/") {
        return Err("it is an absolute path; package entries must be relative to the root");
    }
    let mut path = PathBuf::new();
    for part in raw.split(|&byte| byte == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("its path contains `..`"),
            part => path.push(OsStr::from_bytes(part)),
        }
    }
    Ok((!path.as_os_str().is_empty()).then_some(path))
}

/// Whether a symlink at `entry` (root-relative) pointing to `target` would
/// resolve above the root. Relative targets start from the link's
/// directory, absolute ones from the root.
fn link_escapes_root(entry: &Path, target: &Path) -> bool {
    let mut depth = if target.is_absolute() {
        0
    } else {
        entry
            .parent()
            .map_or(0, |parent| parent.components().count())
    };
    for component in target.components() {
        match component {
            Component::ParentDir => match depth.checked_sub(1) {
                Some(up) => depth = up,
                None => return true,
            },
            Component::Normal(_) => depth += 1,
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    false
}

/// Extracts one package's data archive.
pub(crate) struct Extractor<'a> {
    root: &'a Path,
    package: &'a str,
    deb: &'a Path,
    member: &'a str,
    include: Option<GlobSet>,
    exclude: GlobSet,
    entries: Vec<ExtractedEntry>,
    /// Position of each path in `entries`, so re-listed paths update in place.
    index: HashMap<PathBuf, usize>,
    /// Directories known to be real directories, not symlinks.
    real_dirs: HashSet<PathBuf>,
    /// Paths left out by the filters, to explain dangling hardlinks.
    filtered: HashSet<PathBuf>,
}

impl<'a> Extractor<'a> {
    pub(crate) fn new(
        root: &'a Path,
        package: &'a str,
        deb: &'a Path,
        member: &'a str,
        options: &ExtractOptions,
    ) -> Result<Self, DebError> {
        let include = if options.include.is_empty() {
            None
        } else {
            Some(glob_set(&options.include)?)
        };
        Ok(Extractor {
            root,
            package,
            deb,
            member,
            include,
            exclude: glob_set(&options.exclude)?,
            entries: Vec::new(),
            index: HashMap::new(),
            real_dirs: HashSet::new(),
            filtered: HashSet::new(),
        })
    }

    /// Extracts every entry; returns the entries written and how many
    /// archive entries the filters skipped.
    pub(crate) fn run(mut self, data: impl Read) -> Result<(Vec<ExtractedEntry>, usize), DebError> {
        DirBuilder::new()
            .recursive(true)
            .create(self.root)
            .map_err(|source| self.write_error(".", self.root.to_owned(), source))?;
        let mut skipped = 0;
        let mut archive = tar::Archive::new(data);
        let entries = archive
            .entries()
            .map_err(|source| self.archive_error(source))?;
        for entry in entries {
            let entry = entry.map_err(|source| self.archive_error(source))?;
            if !self.extract_entry(entry)? {
                skipped += 1;
            }
        }
        Ok((self.entries, skipped))
    }

    /// Extracts one entry; `false` if the filters left it out.
    fn extract_entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<bool, DebError> {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let header = entry.header();
        let entry_type = header.entry_type();
        let (mode, uid, gid) = match (header.mode(), header.uid(), header.gid()) {
            (Ok(mode), Ok(uid), Ok(gid)) => (mode & 0o7777, uid, gid),
            (Err(source), _, _) | (_, Err(source), _) | (_, _, Err(source)) => {
                return Err(self.archive_error(source));
            }
        };
        if entry_type == EntryType::XGlobalHeader {
            return Ok(true);
        }
        let original = match normalize_archive_path(&raw) {
            Ok(Some(path)) => path,
            Ok(None) => return Ok(true),
            Err(reason) => return Err(self.unsafe_entry(&name, reason.to_owned())),
        };
        // A package shipping the usr-merge symlinks themselves (`bin ->
        // usr/bin`): the layout already provides them, and remapping would
        // turn them into `usr/bin -> usr/bin`.
        if entry_type == EntryType::Symlink
            && original.components().count() == 1
            && MERGED_USR_DIRS.iter().any(|dir| original == Path::new(dir))
        {
            return Ok(true);
        }
        let path = usr_merged(&original);
        if self.is_filtered(&path) {
            self.filtered.insert(path);
            return Ok(false);
        }

        let link_name = entry.link_name_bytes().map(|bytes| bytes.into_owned());
        match entry_type {
            EntryType::Directory => self.directory(&name, path, mode, uid, gid)?,
            EntryType::Regular | EntryType::Continuous => {
                self.file(&name, path, mode, uid, gid, &mut entry)?;
            }
            EntryType::Symlink => {
                let target = link_name.unwrap_or_default();
                self.symlink(&name, path, &target, uid, gid)?;
            }
            EntryType::Link => {
                let target = link_name.unwrap_or_default();
                self.hardlink(&name, path, &target, mode, uid, gid)?;
            }
            other => {
                return Err(DebError::Conflict {
                    package: self.package.to_owned(),
                    entry: name,
                    reason: format!(
                        "entries of type {other:?} (device nodes, FIFOs, sparse files) are not supported"
                    ),
                });
            }
        }
        Ok(true)
    }

    fn is_filtered(&self, path: &Path) -> bool {
        if self.exclude.is_match(path) {
            return true;
        }
        match &self.include {
            Some(include) => !include.is_match(path),
            None => false,
        }
    }

    fn directory(
        &mut self,
        name: &str,
        path: PathBuf,
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> Result<(), DebError> {
        self.prepare_parents(name, &path)?;
        let host = self.root.join(&path);
        self.ensure_real_dir(name, &path, DirRole::Entry)?;
        fs::set_permissions(&host, Permissions::from_mode(mode | 0o700))
            .map_err(|source| self.write_error(name, host.clone(), source))?;
        self.real_dirs.insert(path.clone());
        self.record(ExtractedEntry {
            path,
            kind: EntryKind::Directory,
            mode,
            uid,
            gid,
            size: 0,
            link_target: None,
        });
        Ok(())
    }

    fn file(
        &mut self,
        name: &str,
        path: PathBuf,
        mode: u32,
        uid: u64,
        gid: u64,
        contents: &mut impl Read,
    ) -> Result<(), DebError> {
        self.prepare_parents(name, &path)?;
        let host = self.root.join(&path);
        self.remove_non_directory(name, &path, &host)?;
        // O_EXCL: never follows a symlink that might have appeared at `host`.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&host)
            .map_err(|source| self.write_error(name, host.clone(), source))?;
        let mut size = 0u64;
        let mut buffer = vec![0u8; 128 * 1024];
        loop {
            let read = match contents.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(self.archive_error(source)),
            };
            file.write_all(&buffer[..read])
                .map_err(|source| self.write_error(name, host.clone(), source))?;
            size += read as u64;
        }
        file.set_permissions(Permissions::from_mode(mode | 0o400))
            .map_err(|source| self.write_error(name, host.clone(), source))?;
        self.record(ExtractedEntry {
            path,
            kind: EntryKind::File,
            mode,
            uid,
            gid,
            size,
            link_target: None,
        });
        Ok(())
    }

    fn symlink(
        &mut self,
        name: &str,
        path: PathBuf,
        target: &[u8],
        uid: u64,
        gid: u64,
    ) -> Result<(), DebError> {
        if target.is_empty() {
            return Err(self.unsafe_entry(name, "it is a symlink with an empty target".to_owned()));
        }
        let target = PathBuf::from(OsStr::from_bytes(target));
        if link_escapes_root(&path, &target) {
            return Err(self.unsafe_entry(
                name,
                format!(
                    "it is a symlink to `{}`, which resolves outside the root",
                    target.display()
                ),
            ));
        }
        self.prepare_parents(name, &path)?;
        let host = self.root.join(&path);
        self.remove_non_directory(name, &path, &host)?;
        std::os::unix::fs::symlink(&target, &host)
            .map_err(|source| self.write_error(name, host.clone(), source))?;
        self.record(ExtractedEntry {
            path,
            kind: EntryKind::Symlink,
            mode: 0o777,
            uid,
            gid,
            size: 0,
            link_target: Some(target),
        });
        Ok(())
    }

    fn hardlink(
        &mut self,
        name: &str,
        path: PathBuf,
        target: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> Result<(), DebError> {
        let shown = String::from_utf8_lossy(target).into_owned();
        let target = match normalize_archive_path(target) {
            Ok(Some(target)) => usr_merged(&target),
            Ok(None) => {
                return Err(self.unsafe_entry(name, "it is a hardlink to the root".to_owned()));
            }
            Err(reason) => {
                return Err(
                    self.unsafe_entry(name, format!("it is a hardlink to `{shown}`, and {reason}"))
                );
            }
        };
        if self.filtered.contains(&target) {
            return Err(self.conflict(
                name,
                format!(
                    "it is a hardlink to `{}`, which the include/exclude globs left out; keep both or neither",
                    target.display()
                ),
            ));
        }
        let size = match self.index.get(&target).map(|&i| &self.entries[i]) {
            Some(existing) if matches!(existing.kind, EntryKind::File | EntryKind::Hardlink) => {
                existing.size
            }
            _ => {
                return Err(self.unsafe_entry(
                    name,
                    format!(
                        "it is a hardlink to `{shown}`, which is not a regular file extracted earlier from this package"
                    ),
                ));
            }
        };
        if target == path {
            return Err(self.unsafe_entry(name, "it is a hardlink to itself".to_owned()));
        }
        self.prepare_parents(name, &path)?;
        let host = self.root.join(&path);
        self.remove_non_directory(name, &path, &host)?;
        fs::hard_link(self.root.join(&target), &host)
            .map_err(|source| self.write_error(name, host.clone(), source))?;
        self.record(ExtractedEntry {
            path,
            kind: EntryKind::Hardlink,
            mode,
            uid,
            gid,
            size,
            link_target: Some(target),
        });
        Ok(())
    }

    /// Makes sure every ancestor of `path` is a real directory inside the
    /// root, creating missing ones (root-owned, `0755`) and refusing to go
    /// through a symlink.
    fn prepare_parents(&mut self, name: &str, path: &Path) -> Result<(), DebError> {
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        let mut current = PathBuf::new();
        for component in parent.components() {
            current.push(component);
            if self.real_dirs.contains(&current) {
                continue;
            }
            if self.ensure_real_dir(name, &current, DirRole::Parent)? {
                self.record(ExtractedEntry {
                    path: current.clone(),
                    kind: EntryKind::Directory,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    size: 0,
                    link_target: None,
                });
            }
            self.real_dirs.insert(current.clone());
        }
        Ok(())
    }

    /// Makes sure `path` is a real directory inside the root, creating it
    /// (`0755`) when missing; returns whether it was created. A symlink or a
    /// file in the way is refused: writing through a link could leave the
    /// root, and replacing a file would silently lose another package's data.
    fn ensure_real_dir(&self, name: &str, path: &Path, role: DirRole) -> Result<bool, DebError> {
        let host = self.root.join(path);
        match fs::symlink_metadata(&host) {
            Ok(meta) if meta.is_dir() => Ok(false),
            Ok(meta) if meta.file_type().is_symlink() => Err(self.unsafe_entry(
                name,
                match role {
                    DirRole::Entry => format!(
                        "`{}` is already a symlink; refusing to merge a directory into it",
                        path.display()
                    ),
                    DirRole::Parent => format!(
                        "its parent `{}` is a symlink; refusing to write through it",
                        path.display()
                    ),
                },
            )),
            Ok(_) => Err(self.conflict(
                name,
                match role {
                    DirRole::Entry => {
                        format!("`{}` already exists and is not a directory", path.display())
                    }
                    DirRole::Parent => {
                        format!("its parent `{}` is not a directory", path.display())
                    }
                },
            )),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                DirBuilder::new()
                    .mode(0o755)
                    .create(&host)
                    .map_err(|source| self.write_error(name, host.clone(), source))?;
                Ok(true)
            }
            Err(source) => Err(self.write_error(name, host, source)),
        }
    }

    /// Clears the way for a non-directory entry: an earlier file or link at
    /// the same path is replaced, a directory is a conflict.
    fn remove_non_directory(&self, name: &str, path: &Path, host: &Path) -> Result<(), DebError> {
        match fs::symlink_metadata(host) {
            Ok(meta) if meta.is_dir() => {
                Err(self.conflict(name, format!("`{}` is already a directory", path.display())))
            }
            Ok(_) => fs::remove_file(host)
                .map_err(|source| self.write_error(name, host.to_owned(), source)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(self.write_error(name, host.to_owned(), source)),
        }
    }

    fn record(&mut self, entry: ExtractedEntry) {
        match self.index.get(&entry.path) {
            Some(&position) => self.entries[position] = entry,
            None => {
                self.index.insert(entry.path.clone(), self.entries.len());
                self.entries.push(entry);
            }
        }
    }

    fn unsafe_entry(&self, name: &str, reason: String) -> DebError {
        DebError::UnsafeEntry {
            package: self.package.to_owned(),
            entry: name.to_owned(),
            reason,
        }
    }

    fn conflict(&self, name: &str, reason: String) -> DebError {
        DebError::Conflict {
            package: self.package.to_owned(),
            entry: name.to_owned(),
            reason,
        }
    }

    fn write_error(&self, name: &str, path: PathBuf, source: io::Error) -> DebError {
        DebError::Write {
            package: self.package.to_owned(),
            entry: name.to_owned(),
            path,
            source,
        }
    }

    fn archive_error(&self, source: io::Error) -> DebError {
        DebError::Archive {
            package: self.package.to_owned(),
            path: self.deb.to_owned(),
            member: self.member.to_owned(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths_are_normalised_or_refused() {
        let ok = |raw: &[u8]| normalize_archive_path(raw).expect("accepted");
        assert_eq!(ok(b"./usr/bin/runc"), Some(PathBuf::from("usr/bin/runc")));
        assert_eq!(ok(b"usr//lib/./x/"), Some(PathBuf::from("usr/lib/x")));
        assert_eq!(ok(b"./"), None);
        assert!(normalize_archive_path(b"../etc/passwd").is_err());
        assert!(normalize_archive_path(b"./usr/../../etc").is_err());
        assert!(normalize_archive_path(b"/etc/passwd").is_err());
    }

    #[test]
    fn usr_merge_moves_legacy_top_level_dirs() {
        assert_eq!(usr_merged(Path::new("bin/sh")), Path::new("usr/bin/sh"));
        assert_eq!(
            usr_merged(Path::new("lib/modules/6.1/kernel")),
            Path::new("usr/lib/modules/6.1/kernel")
        );
        assert_eq!(usr_merged(Path::new("lib64")), Path::new("usr/lib64"));
        assert_eq!(usr_merged(Path::new("library/x")), Path::new("library/x"));
        assert_eq!(usr_merged(Path::new("etc/bin")), Path::new("etc/bin"));
    }

    #[test]
    fn link_targets_are_resolved_from_the_link_directory() {
        let escapes =
            |entry: &str, target: &str| link_escapes_root(Path::new(entry), Path::new(target));
        assert!(!escapes("usr/bin/sh", "dash"));
        assert!(!escapes("usr/lib/x", "../../etc"));
        assert!(escapes("usr/lib/x", "../../../etc"));
        assert!(escapes("usr/lib/x", "../../../../etc"));
        assert!(!escapes("usr/lib/x", "/etc/alternatives/x"));
        assert!(escapes("usr/lib/x", "/../etc"));
        assert!(!escapes("usr/lib/x", "a/../../.."));
        assert!(escapes("x", ".."));
    }
}
