//! Cairn's own binaries for the image, built from this workspace.
//!
//! They are linked statically (`+crt-static`, glibc) because `node-agent`
//! runs as `/init` in an initramfs that carries no C library, and one linking
//! mode for all of them keeps the image free of host-library surprises. The
//! build uses an explicit `--target`, so the flag applies only to the target
//! binaries and not to build scripts or proc-macros. They get a target
//! directory of their own (`target/image-binaries`): sharing the workspace's
//! would make these static builds and ordinary builds invalidate each
//! other's build-script outputs, so every switch rebuilt half the tree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::BuildError;

pub const TARGET: &str = "x86_64-unknown-linux-gnu";

/// Finds the Cargo workspace that contains `start` (a profile path or the
/// current directory).
pub fn find_workspace(start: &Path) -> Option<PathBuf> {
    let start = start.canonicalize().ok()?;
    start.ancestors().find_map(|dir| {
        let manifest = dir.join("Cargo.toml");
        std::fs::read_to_string(&manifest)
            .ok()
            .filter(|text| text.contains("[workspace]"))
            .map(|_| dir.to_path_buf())
    })
}

/// Builds `names` in release mode and returns name → path.
pub fn build(workspace: &Path, names: &[String]) -> Result<BTreeMap<String, PathBuf>, BuildError> {
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .current_dir(workspace)
        .args(["build", "--release", "--locked", "--target", TARGET])
        .env(
            "RUSTFLAGS",
            "-C target-feature=+crt-static -C strip=symbols",
        );
    // When the builder itself runs under cargo (tests, benches), cargo's
    // per-package variables would leak into this build; some build scripts
    // (ring, zstd-sys) rerun whenever they change, so they are removed.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_EXE_")
            || matches!(
                key.as_ref(),
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "OUT_DIR"
            )
        {
            command.env_remove(key.as_ref());
        }
    }
    // Binary names are unique in the workspace, so cargo finds each one's
    // package itself.
    for name in names {
        command.args(["--bin", name]);
    }
    tracing::info!(?names, "building workspace binaries (release, static)");
    let output = command
        .output()
        .map_err(|e| BuildError::Binaries(format!("cannot run cargo: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        return Err(BuildError::Binaries(format!(
            "cargo build failed:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )));
    }
    let dir = target_dir(workspace).join(TARGET).join("release");
    from_dir(&dir, names)
}

fn target_dir(workspace: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                workspace.join(p)
            }
        })
        .unwrap_or_else(|| workspace.join("target"))
}

/// Takes prebuilt binaries from a directory.
pub fn from_dir(dir: &Path, names: &[String]) -> Result<BTreeMap<String, PathBuf>, BuildError> {
    names
        .iter()
        .map(|name| {
            let path = dir.join(name);
            if path.is_file() {
                Ok((name.clone(), path))
            } else {
                Err(BuildError::Binaries(format!(
                    "{} does not exist; build it or give a directory that has it",
                    path.display()
                )))
            }
        })
        .collect()
}
