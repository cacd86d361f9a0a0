//! The STATE partition: where a node keeps what must survive a reboot.
//!
//! A Cairn disk carries a GPT partition named `CAIRN-STATE`, the last one
//! on the disk. When the disk is larger than the image (a VM disk or a
//! real drive), the partition is first grown to the end of the disk
//! (`growpart`-style, [`cairn_images::gpt_grow`]) and the kernel re-reads
//! the table. On first boot it holds no filesystem, so node-agent formats
//! it ext4 (with the same label) and mounts it on `/var`; later boots only
//! mount it, and an ext4 that is smaller than its grown partition is
//! resized online (`resize2fs`). A machine
//! without one (PXE, diskless) keeps the tmpfs `/var` the initramfs stage
//! mounted.

use std::io::Read;
use std::path::{Path, PathBuf};

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

/// How much of STATE's start a reset overwrites: the ext4 superblock sits
/// at 1 KiB; the first MiB also covers any other filesystem signature.
const WIPE_BYTES: usize = 1024 * 1024;

/// Zeroes the first MiB of `device` (or all of it when smaller) and
/// flushes it; returns the bytes written. [`has_ext4`] is false afterwards.
pub fn wipe_start(device: &Path) -> std::io::Result<usize> {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new().write(true).open(device)?;
    let size = file.seek(SeekFrom::End(0))?;
    file.seek(SeekFrom::Start(0))?;
    let length = usize::try_from(size).map_or(WIPE_BYTES, |size| size.min(WIPE_BYTES));
    file.write_all(&vec![0u8; length])?;
    file.sync_all()?;
    Ok(length)
}

/// What happened to STATE on this boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateOutcome {
    Formatted(PathBuf),
    Mounted(PathBuf),
    Absent,
}

/// What growing STATE did, for the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Growth {
    /// Already filled its disk.
    Unchanged,
    /// Grown from and to these sizes in bytes.
    Grown { from: u64, to: u64 },
    /// Left alone, and why.
    Failed(String),
}

/// Grows partition `name` (e.g. `vda2`) to the end of its disk and waits
/// until the kernel shows the new size.
pub fn grow_partition(name: &str) -> Growth {
    let sys = Path::new("/sys/class/block");
    let Some(disk) = std::fs::canonicalize(sys.join(name)).ok().and_then(|path| {
        path.parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
    }) else {
        return Growth::Failed(format!("no parent disk for {name} in /sys/class/block"));
    };
    let sectors = |device: &str| {
        std::fs::read_to_string(sys.join(device).join("size"))
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
    };
    let (Some(disk_sectors), Some(before)) = (sectors(&disk), sectors(name)) else {
        return Growth::Failed(format!("no size for {disk} or {name} in /sys/class/block"));
    };
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(Path::new("/dev").join(&disk))
    {
        Ok(file) => file,
        Err(error) => return Growth::Failed(format!("/dev/{disk}: {error}")),
    };
    match cairn_images::gpt_grow::grow_partition_to_end(&file, disk_sectors * 512, PARTITION_NAME) {
        Ok(None) => return Growth::Unchanged,
        Ok(Some(_)) => {}
        Err(error) => return Growth::Failed(format!("/dev/{disk}: {error}")),
    }
    if let Err(error) = file.sync_all() {
        return Growth::Failed(format!("/dev/{disk}: {error}"));
    }
    if let Err(error) = crate::blockdev::reread_partitions(&file) {
        return Growth::Failed(format!(
            "/dev/{disk}: re-reading the partition table: {error}"
        ));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(after) = sectors(name).filter(|after| *after > before)
            && Path::new("/dev").join(name).exists()
        {
            return Growth::Grown {
                from: before * 512,
                to: after * 512,
            };
        }
        if std::time::Instant::now() > deadline {
            return Growth::Failed(format!("the kernel still shows {name} at its old size"));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[derive(Debug, thiserror::Error)]
#[error("STATE partition {device}: {step}: {reason}")]
pub struct StateError {
    pub device: String,
    pub step: &'static str,
    pub reason: String,
}

/// Grows STATE to its disk, formats it when it is empty and mounts it on
/// `/var`.
pub fn mount_state() -> Result<(StateOutcome, Growth), StateError> {
    let Some(name) = find_partition(Path::new("/sys/class/block")) else {
        return Ok((StateOutcome::Absent, Growth::Unchanged));
    };
    let growth = grow_partition(&name);
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
        let output = crate::process::run(
            "/usr/sbin/mkfs.ext4",
            [
                "-q".as_ref(),
                "-F".as_ref(),
                "-L".as_ref(),
                PARTITION_NAME.as_ref(),
                device.as_os_str(),
            ],
            std::time::Duration::from_secs(300),
        )
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
    if formatted_before && matches!(growth, Growth::Grown { .. }) {
        let output = crate::process::run(
            "/usr/sbin/resize2fs",
            [device.as_os_str()],
            std::time::Duration::from_secs(300),
        )
        .map_err(|e| error("running resize2fs", e.to_string()))?;
        if !output.status.success() {
            return Err(error(
                "growing ext4 (resize2fs)",
                String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            ));
        }
    }
    let outcome = if formatted_before {
        StateOutcome::Mounted(device)
    } else {
        StateOutcome::Formatted(device)
    };
    Ok((outcome, growth))
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
    fn a_wiped_partition_has_no_filesystem_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let device = dir.path().join("vda2");
        let mut image = vec![0xAAu8; 3 * 1024 * 1024];
        image[1080] = 0x53;
        image[1081] = 0xEF;
        std::fs::write(&device, &image).expect("write image");
        assert!(has_ext4(&mut std::fs::File::open(&device).expect("open")));

        assert_eq!(wipe_start(&device).expect("wipe"), 1024 * 1024);
        let after = std::fs::read(&device).expect("read");
        assert!(!has_ext4(&mut after.as_slice()));
        assert!(after[..1024 * 1024].iter().all(|b| *b == 0));
        assert!(
            after[1024 * 1024..].iter().all(|b| *b == 0xAA),
            "only the start is touched"
        );
        assert_eq!(after.len(), image.len());

        let small = dir.path().join("small");
        std::fs::write(&small, [1u8; 4096]).expect("write small");
        assert_eq!(wipe_start(&small).expect("wipe small"), 4096);
        assert_eq!(std::fs::metadata(&small).expect("metadata").len(), 4096);
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
