//! NoCloud config drives: a small FAT image labelled `cidata` holding
//! `user-data` (the machine config) and `meta-data` (instance id and host
//! name, as cloud-init's NoCloud source expects).
//!
//! The image is made with `mkfs.vfat` and filled with `mcopy` (dosfstools,
//! mtools): nothing is mounted, so this works on hosts without vfat.
//! The label is written in lower case, as NoCloud documents it; FAT
//! readers see it as written (`blkid` shows `LABEL="cidata"`).

use std::path::Path;
use std::process::{Command, Stdio};

use super::LabError;

/// Size of the image in KiB: plenty for a config, small enough to be
/// instant.
const SIZE_KIB: u32 = 1024;

fn run(command: &mut Command, what: &str, hint: &str) -> Result<(), LabError> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::Command {
            command: what.to_owned(),
            message: format!("{e}; {hint}"),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(LabError::Command {
            command: what.to_owned(),
            message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Writes a `cidata` image at `image` with `user_data` as `user-data`.
pub fn write(image: &Path, user_data: &str, node_name: &str) -> Result<(), LabError> {
    let _ = std::fs::remove_file(image);
    let staging = tempfile::tempdir().map_err(|e| LabError::io(Path::new("/tmp"), e))?;
    let user_data_path = staging.path().join("user-data");
    let meta_data_path = staging.path().join("meta-data");
    std::fs::write(&user_data_path, user_data).map_err(|e| LabError::io(&user_data_path, e))?;
    std::fs::write(
        &meta_data_path,
        format!("instance-id: {node_name}\nlocal-hostname: {node_name}\n"),
    )
    .map_err(|e| LabError::io(&meta_data_path, e))?;
    run(
        Command::new("mkfs.vfat")
            .args(["-C", "-n", "cidata"])
            .arg(image)
            .arg(SIZE_KIB.to_string()),
        "mkfs.vfat",
        "install dosfstools",
    )?;
    run(
        Command::new("mcopy")
            .arg("-i")
            .arg(image)
            .arg(&user_data_path)
            .arg(&meta_data_path)
            .arg("::"),
        "mcopy",
        "install mtools",
    )
}
