//! The read-only root: `rootfs.squashfs`, written by `mksquashfs`.
//!
//! mksquashfs (squashfs-tools) is used rather than a Rust writer because it
//! compresses on every core, honours a pseudo-file of ownership and mode
//! overrides (so the builder can stay unprivileged while the image has the
//! packages' real owners and modes), and has first-class reproducibility
//! flags (`-reproducible`, `-mkfs-time`, `-all-time`); it also sorts
//! directory entries itself.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::BuildError;

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

pub fn write(
    root: &Path,
    out: &Path,
    ownership: &[Ownership],
    options: &SquashfsOptions,
    work: &Path,
) -> Result<(), BuildError> {
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
    let pseudo_path = work.join("squashfs.pseudo");
    std::fs::write(&pseudo_path, pseudo).map_err(|source| BuildError::Io {
        path: pseudo_path.clone(),
        source,
    })?;
    let epoch = options.source_date_epoch.to_string();
    let output = Command::new("mksquashfs")
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
    Ok(())
}
