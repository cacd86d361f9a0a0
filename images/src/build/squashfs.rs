//! The read-only root: `rootfs.squashfs`, written by `mksquashfs`.
//!
//! mksquashfs (squashfs-tools) is used rather than a Rust writer because it
//! compresses on every core (measured with `cargo bench -p cairn-images
//! --bench squashfs_writers` on the default rootfs, 2 cores: mksquashfs
//! zstd-19 20.1 s / 57.21 MiB, backhand 0.25 zstd-19 43.2 s / 56.97 MiB), honours a pseudo-file of ownership and mode
//! overrides (so the builder can stay unprivileged while the image has the
//! packages' real owners and modes), and has first-class reproducibility
//! flags (`-reproducible`, `-mkfs-time`, `-all-time`); it also sorts
//! directory entries itself.
//!
//! zstd level 19 with 1 MiB blocks is ~8% smaller than level 15 but takes
//! three times as long, so finished images are kept in the cache under a
//! digest of everything that decides their bytes (every path, type, mode,
//! owner, symlink target and file content, plus the options): a rebuild
//! whose root did not change reuses the previous squashfs.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::{BuildError, io_err};
use crate::fetch::cache::{Cache, sha256_file};

/// Ownership and mode an entry must have in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    pub path: PathBuf,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
}

#[derive(Debug, Clone)]
pub struct SquashfsOptions {
    pub source_date_epoch: u64,
    pub jobs: usize,
    pub zstd_level: u32,
}

fn quote(path: &Path) -> String {
    let text = path.to_string_lossy();
    if text.contains([' ', '"', '\\']) {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        text.into_owned()
    }
}

/// A digest of everything that decides the squashfs bytes.
pub fn tree_digest(
    root: &Path,
    pseudo: &str,
    options: &SquashfsOptions,
) -> Result<String, BuildError> {
    let mut hasher = Sha256::new();
    hasher.update(format!(
        "cairn-squashfs-v1 epoch={} level={}\n",
        options.source_date_epoch, options.zstd_level
    ));
    hasher.update(pseudo.as_bytes());
    for child in crate::atomic::sorted_tree(root).map_err(io_err(root))? {
        let full = root.join(&child);
        let meta = std::fs::symlink_metadata(&full).map_err(io_err(&full))?;
        let mode = meta.permissions().mode();
        let line = if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&full).map_err(io_err(&full))?;
            format!("L {} {:o} {}\n", child.display(), mode, target.display())
        } else if meta.is_dir() {
            format!("D {} {:o}\n", child.display(), mode)
        } else {
            format!("F {} {:o} {}\n", child.display(), mode, sha256_file(&full)?)
        };
        hasher.update(line.as_bytes());
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Writes `out` from `root`, reusing a cached squashfs of the same tree.
pub fn write(
    root: &Path,
    out: &Path,
    ownership: &[Ownership],
    options: &SquashfsOptions,
    work: &Path,
    cache: Option<&Cache>,
) -> Result<bool, BuildError> {
    let mut pseudo = String::new();
    for entry in ownership {
        let _ = writeln!(
            pseudo,
            "{} m {:o} {} {}",
            quote(&entry.path),
            entry.mode & 0o7777,
            entry.uid,
            entry.gid
        );
    }
    let cached = match cache {
        Some(cache) => {
            let digest = tree_digest(root, &pseudo, options)?;
            let dir = cache.root().join("squashfs");
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            let cached = dir.join(format!("{digest}.squashfs"));
            if cached.is_file() {
                std::fs::copy(&cached, out).map_err(io_err(&cached))?;
                return Ok(true);
            }
            Some(cached)
        }
        None => None,
    };
    let pseudo_path = work.join("squashfs.pseudo");
    std::fs::write(&pseudo_path, pseudo).map_err(io_err(&pseudo_path))?;
    let epoch = options.source_date_epoch.to_string();
    let output = Command::new("mksquashfs")
        // mksquashfs refuses SOURCE_DATE_EPOCH together with explicit times.
        .env_remove("SOURCE_DATE_EPOCH")
        .arg(root)
        .arg(out)
        .args([
            "-noappend",
            "-quiet",
            "-no-progress",
            "-no-xattrs",
            "-reproducible",
        ])
        .args(["-comp", "zstd", "-Xcompression-level"])
        .arg(options.zstd_level.to_string())
        .args(["-b", "1M"])
        .args(["-all-root", "-mkfs-time", &epoch, "-all-time", &epoch])
        .args(["-processors", &options.jobs.max(1).to_string()])
        .arg("-pf")
        .arg(&pseudo_path)
        .output()
        .map_err(|e| {
            BuildError::Tool(format!(
                "cannot run mksquashfs ({e}); install squashfs-tools"
            ))
        })?;
    if !output.status.success() {
        return Err(BuildError::Tool(format!(
            "mksquashfs failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    if let Some(cached) = cached {
        // Into the cache through a temporary name, so a crash never leaves
        // a truncated entry under a valid digest.
        let temp = cached.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::copy(out, &temp).map_err(io_err(&temp))?;
        std::fs::rename(&temp, &cached).map_err(io_err(&cached))?;
    }
    Ok(false)
}
