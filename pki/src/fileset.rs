//! All-or-nothing writes of a set of files.
//!
//! Everything a command produces is collected in a [`FileSet`] first. On
//! commit every file is written to a temporary sibling (same directory, so
//! the final rename is atomic), synced, and only when all of them are on disk
//! are they renamed into place. If any step before the renames fails, the
//! temporaries and any directory the commit created are removed again: a
//! failed run leaves the tree exactly as it found it.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Private keys and anything that embeds one.
pub const SECRET_MODE: u32 = 0o600;
/// Certificates and public keys.
pub const PUBLIC_MODE: u32 = 0o644;

#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

#[derive(Debug, Clone)]
struct PendingFile {
    path: PathBuf,
    contents: Vec<u8>,
    mode: u32,
}

/// Files waiting to be written together.
#[derive(Debug, Clone, Default)]
pub struct FileSet {
    files: Vec<PendingFile>,
}

impl FileSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a file. The mode is applied exactly, whatever the
    /// umask, because a key readable by others is a security bug.
    pub fn add(&mut self, path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>, mode: u32) {
        let path = path.into();
        self.files.retain(|f| f.path != path);
        self.files.push(PendingFile {
            path,
            contents: contents.into(),
            mode,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }

    /// Writes every file, or none.
    pub fn commit(self) -> Result<(), WriteError> {
        let mut created_dirs = Vec::new();
        let mut staged: Vec<(PathBuf, &PendingFile)> = Vec::new();
        let result = self.stage(&mut created_dirs, &mut staged);
        if let Err(error) = result {
            for (temp, _) in &staged {
                let _ = fs::remove_file(temp);
            }
            for dir in created_dirs.iter().rev() {
                let _ = fs::remove_dir(dir);
            }
            return Err(error);
        }
        let mut dirs_to_sync = Vec::new();
        for (temp, file) in &staged {
            fs::rename(temp, &file.path).map_err(|source| WriteError {
                path: file.path.clone(),
                source,
            })?;
            if let Some(parent) = file.path.parent()
                && !dirs_to_sync.contains(&parent)
            {
                dirs_to_sync.push(parent);
            }
        }
        for dir in dirs_to_sync {
            // A failed directory sync only weakens crash durability; the
            // files themselves are complete, so it is not reported.
            if let Ok(handle) = fs::File::open(dir) {
                let _ = handle.sync_all();
            }
        }
        Ok(())
    }

    fn stage<'a>(
        &'a self,
        created_dirs: &mut Vec<PathBuf>,
        staged: &mut Vec<(PathBuf, &'a PendingFile)>,
    ) -> Result<(), WriteError> {
        for file in &self.files {
            let parent = file
                .path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            create_dir_all_tracked(parent, created_dirs)?;
            let file_name = file
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let temp = parent.join(format!(".{file_name}.tmp-{}", std::process::id()));
            staged.push((temp.clone(), file));
            write_synced(&temp, &file.contents, file.mode).map_err(|source| WriteError {
                path: file.path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

fn create_dir_all_tracked(dir: &Path, created: &mut Vec<PathBuf>) -> Result<(), WriteError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all_tracked(parent, created)?;
    }
    match fs::DirBuilder::new().mode(0o755).create(dir) {
        Ok(()) => {
            created.push(dir.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(source) => Err(WriteError {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

fn write_synced(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn writes_all_files_with_exact_modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut set = FileSet::new();
        set.add(dir.path().join("a/key"), "secret", SECRET_MODE);
        set.add(dir.path().join("a/b/cert"), "public", PUBLIC_MODE);
        set.commit().expect("commit");
        let key = fs::metadata(dir.path().join("a/key")).expect("key");
        assert_eq!(key.mode() & 0o777, 0o600);
        let cert = fs::metadata(dir.path().join("a/b/cert")).expect("cert");
        assert_eq!(cert.mode() & 0o777, 0o644);
        assert_eq!(
            fs::read_to_string(dir.path().join("a/b/cert")).expect("read"),
            "public"
        );
    }

    #[test]
    fn failure_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("not-a-dir"), "x").expect("file");
        let mut set = FileSet::new();
        set.add(dir.path().join("good/one"), "1", PUBLIC_MODE);
        set.add(dir.path().join("not-a-dir/two"), "2", PUBLIC_MODE);
        let err = set.commit().expect_err("must fail");
        assert!(err.path.ends_with("not-a-dir"), "{err}");
        let mut left: Vec<_> = fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec!["not-a-dir"],
            "created directories must be removed"
        );
    }

    #[test]
    fn existing_files_survive_a_failed_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keep = dir.path().join("keep");
        fs::write(&keep, "old").expect("write");
        fs::write(dir.path().join("blocker"), "x").expect("write");
        let mut set = FileSet::new();
        set.add(&keep, "new", PUBLIC_MODE);
        set.add(dir.path().join("blocker/x"), "x", PUBLIC_MODE);
        assert!(set.commit().is_err());
        assert_eq!(fs::read_to_string(&keep).expect("read"), "old");
    }
}
