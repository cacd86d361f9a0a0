//! The STATE partition: where a node keeps what must survive a reboot.
//!
//! A Cairn disk carries a GPT partition named `CAIRN-STATE`. On first boot
//! it holds no filesystem, so node-agent formats it ext4 (with the same
//! label) and mounts it on `/var`; later boots only mount it. A machine
//! without one (PXE, diskless) keeps the tmpfs `/var` the initramfs stage
//! mounted.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const PARTITION_NAME: &str = "CAIRN-STATE";

/// The block device whose GPT partition name is `CAIRN-STATE`, found
/// through `<sys_class_block>/<dev>/uevent` (`PARTNAME=`).
pub fn find_partition(sys_class_block: &Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(sys_class_block)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.into_iter().find(|name| {
        std::fs::read_to_string(sys_class_block.join(name).join("uevent"))
            .map(|uevent| {
                uevent
                    .lines()
                    .any(|line| line == format!("PARTNAME={PARTITION_NAME}"))
            })
            .unwrap_or(false)
    })
}

/// Whether the device starts with an ext2/3/4 superblock (magic 0xEF53 at
/// byte 1080).
pub fn has_ext4(device: &mut impl Read) -> bool {
    let mut head = [0u8; 1082];
    device.read_exact(&mut head).is_ok() && head[1080] == 0x53 && head[1081] == 0xEF
}

/// What happened to STATE on this boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateOutcome {
    Formatted(PathBuf),
    Mounted(PathBuf),
    Absent,
}

#[derive(Debug, thiserror::Error)]
#[error("STATE partition {device}: {step}: {reason}")]
pub struct StateError {
    pub device: String,
    pub step: &'static str,
    pub reason: String,
}

/// Formats STATE when it is empty and mounts it on `/var`.
pub fn mount_state() -> Result<StateOutcome, StateError> {
    let Some(name) = find_partition(Path::new("/sys/class/block")) else {
        return Ok(StateOutcome::Absent);
    };
    let device = PathBuf::from(format!("/dev/{name}"));
    let error = |step, reason: String| StateError {
        device: device.display().to_string(),
        step,
        reason,
    };
    let formatted_before = std::fs::File::open(&device)
        .map(|mut f| has_ext4(&mut f))
        .map_err(|e| error("reading the superblock", e.to_string()))?;
    if !formatted_before {
        let output = Command::new("/usr/sbin/mkfs.ext4")
            .args(["-q", "-F", "-L", PARTITION_NAME])
            .arg(&device)
            .output()
            .map_err(|e| error("running mkfs.ext4", e.to_string()))?;
        if !output.status.success() {
            return Err(error(
                "formatting ext4",
                String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            ));
        }
    }
    nix::mount::mount(
        Some(&device),
        "/var",
        Some("ext4"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        None::<&str>,
    )
    .map_err(|e| error("mounting on /var", e.to_string()))?;
    Ok(if formatted_before {
        StateOutcome::Mounted(device)
    } else {
        StateOutcome::Formatted(device)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_partition_is_found_by_its_gpt_name() {
        let sys = tempfile::tempdir().expect("tempdir");
        for (dev, uevent) in [
            ("vda", "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n"),
            (
                "vda1",
                "DEVNAME=vda1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=EFI System Partition\n",
            ),
            (
                "vda2",
                "DEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=CAIRN-STATE\n",
            ),
        ] {
            std::fs::create_dir_all(sys.path().join(dev)).expect("mkdir");
            std::fs::write(sys.path().join(dev).join("uevent"), uevent).expect("write");
        }
        assert_eq!(find_partition(sys.path()).as_deref(), Some("vda2"));
        std::fs::remove_dir_all(sys.path().join("vda2")).expect("rm");
        assert_eq!(find_partition(sys.path()), None);
    }

    #[test]
    fn ext4_is_recognised_by_its_magic() {
        let mut blank = vec![0u8; 4096];
        assert!(!has_ext4(&mut blank.as_slice()));
        blank[1080] = 0x53;
        blank[1081] = 0xEF;
        assert!(has_ext4(&mut blank.as_slice()));
        assert!(
            !has_ext4(&mut [0u8; 100].as_slice()),
            "short devices are not ext4"
        );
    }
}
