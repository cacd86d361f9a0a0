//! A content-addressed store of verified blobs.
//!
//! Layout: `<root>/blobs/sha256/<hex>` for verified content and
//! `<root>/tmp/` for downloads in flight. A blob is moved into place with a
//! rename only after its digest matched, so every name under `blobs/` is
//! correct by construction.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "sha256 mismatch for {what}: expected {expected}, got {actual}; nothing was added to the cache"
    )]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The default cache root: `$CAIRN_CACHE`, else `$XDG_CACHE_HOME/cairn`,
/// else `~/.cache/cairn`.
pub fn default_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAIRN_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("cairn");
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join(".cache/cairn")
}

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, CacheError> {
        let root = root.into();
        for dir in [root.join("blobs/sha256"), root.join("tmp")] {
            fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        }
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with this digest lives (whether or not it exists).
    pub fn blob_path(&self, sha256_hex: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(sha256_hex)
    }

    pub fn contains(&self, sha256_hex: &str) -> bool {
        self.blob_path(sha256_hex).is_file()
    }

    /// A fresh temporary file inside the cache (same filesystem as the
    /// blobs, so a verified file can be renamed into place).
    pub fn temp_file(&self) -> Result<tempfile::NamedTempFile, CacheError> {
        let dir = self.root.join("tmp");
        tempfile::NamedTempFile::new_in(&dir).map_err(io_error(&dir))
    }

    /// Verifies `temp` against `expected` and moves it into the store.
    pub fn commit(
        &self,
        temp: tempfile::NamedTempFile,
        expected: &str,
        what: &str,
    ) -> Result<PathBuf, CacheError> {
        let actual = sha256_file(temp.path())?;
        if actual != expected {
            // Dropping `temp` deletes it.
            return Err(CacheError::DigestMismatch {
                what: what.to_owned(),
                expected: expected.to_owned(),
                actual,
            });
        }
        let target = self.blob_path(expected);
        temp.persist(&target).map_err(|e| CacheError::Io {
            path: target.clone(),
            source: e.error,
        })?;
        Ok(target)
    }

    /// Copies a local file into the store after checking its digest.
    pub fn insert_file(&self, source: &Path, expected: &str) -> Result<PathBuf, CacheError> {
        if self.contains(expected) {
            return Ok(self.blob_path(expected));
        }
        let mut temp = self.temp_file()?;
        let mut input = File::open(source).map_err(io_error(source))?;
        io::copy(&mut input, temp.as_file_mut()).map_err(io_error(source))?;
        temp.as_file_mut().flush().map_err(io_error(source))?;
        self.commit(temp, expected, &source.display().to_string())
    }
}

/// Hex sha256 of a file's contents.
pub fn sha256_file(path: &Path) -> Result<String, CacheError> {
    let mut file = File::open(path).map_err(io_error(path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file.read(&mut buffer).map_err(io_error(path))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_verified_content_enters_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(dir.path().join("cache")).expect("open");
        let source = dir.path().join("input");
        fs::write(&source, b"hello").expect("write");
        let good = hex::encode(Sha256::digest(b"hello"));
        let bad = hex::encode(Sha256::digest(b"other"));

        let err = cache.insert_file(&source, &bad).expect_err("mismatch");
        assert!(matches!(err, CacheError::DigestMismatch { .. }), "{err}");
        assert!(!cache.contains(&bad));
        assert_eq!(
            fs::read_dir(dir.path().join("cache/tmp"))
                .expect("tmp")
                .count(),
            0,
            "rejected download left behind"
        );

        let path = cache.insert_file(&source, &good).expect("insert");
        assert_eq!(fs::read(path).expect("read"), b"hello");
        assert!(cache.contains(&good));
    }
}
