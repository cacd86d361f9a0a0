//! Growing the last GPT partition to the end of a disk that got larger
//! than its image — what `growpart` does for cloud images, here for the
//! STATE partition on a node's first boot on a bigger disk.
//!
//! The image's tables end where the image ended. On a bigger disk the
//! backup header is no longer on the last sector, so both tables are
//! rewritten: the partition's last LBA and the header's last usable LBA
//! move to the new end (the partition end stays 1 MiB aligned), the
//! backup array and header move to the last sectors, the protective MBR
//! covers the whole disk, and every CRC is recomputed. The backup copy is
//! written first and the primary header last, so an interrupted run
//! leaves a primary table that still describes the old, valid layout.

use std::io;
use std::os::unix::fs::FileExt;

use crate::gpt::{ALIGNMENT, SECTOR_SIZE};

/// A partition that was grown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grown {
    pub old_last_lba: u64,
    pub new_last_lba: u64,
}

/// Why a table was left alone or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GrowError {
    #[error("reading or writing the disk: {0}")]
    Io(#[from] io::Error),
    #[error("no valid primary GPT header: {0}")]
    BadHeader(String),
    #[error("no partition is named {0:?}")]
    NoSuchPartition(String),
    #[error("partition {0:?} is not the last one on the disk; it cannot grow")]
    NotLast(String),
}

const HEADER_SIZE: usize = 92;

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

fn partition_name(entry: &[u8]) -> String {
    let units: Vec<u16> = entry[56..128]
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .take_while(|unit| *unit != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// Grows the partition named `name` to the end of `disk` (`disk_bytes`
/// long). `Ok(None)` when it already ends within 1 MiB of the end.
pub fn grow_partition_to_end(
    disk: &impl FileExt,
    disk_bytes: u64,
    name: &str,
) -> Result<Option<Grown>, GrowError> {
    let sector = SECTOR_SIZE;
    let mut header = [0u8; SECTOR_SIZE as usize];
    disk.read_exact_at(&mut header, sector)?;
    if &header[0..8] != b"EFI PART" {
        return Err(GrowError::BadHeader(
            "no \"EFI PART\" signature at LBA 1".into(),
        ));
    }
    let header_size = u32_at(&header, 12) as usize;
    if !(HEADER_SIZE..=SECTOR_SIZE as usize).contains(&header_size) {
        return Err(GrowError::BadHeader(format!("header size {header_size}")));
    }
    let mut zeroed = header;
    zeroed[16..20].fill(0);
    if crc32fast::hash(&zeroed[..header_size]) != u32_at(&header, 16) {
        return Err(GrowError::BadHeader("header CRC mismatch".into()));
    }
    let entries_lba = u64_at(&header, 72);
    let entry_count = u32_at(&header, 80) as usize;
    let entry_size = u32_at(&header, 84) as usize;
    if entry_size < 128 || entry_count == 0 || entry_count * entry_size > 1 << 20 {
        return Err(GrowError::BadHeader(format!(
            "{entry_count} entries of {entry_size} bytes"
        )));
    }
    let mut entries = vec![0u8; entry_count * entry_size];
    disk.read_exact_at(&mut entries, entries_lba * sector)?;
    if crc32fast::hash(&entries) != u32_at(&header, 88) {
        return Err(GrowError::BadHeader(
            "partition entry array CRC mismatch".into(),
        ));
    }
    let used = |index: usize| {
        let entry = &entries[index * entry_size..(index + 1) * entry_size];
        entry[0..16].iter().any(|b| *b != 0)
    };
    let target = (0..entry_count)
        .filter(|i| used(*i))
        .find(|i| partition_name(&entries[i * entry_size..(i + 1) * entry_size]) == name)
        .ok_or_else(|| GrowError::NoSuchPartition(name.to_owned()))?;
    let last_lba_of = |index: usize| u64_at(&entries, index * entry_size + 40);
    let old_last_lba = last_lba_of(target);
    if (0..entry_count).any(|i| used(i) && i != target && last_lba_of(i) > old_last_lba) {
        return Err(GrowError::NotLast(name.to_owned()));
    }

    let array_sectors = (entries.len() as u64).div_ceil(sector);
    let disk_sectors = disk_bytes / sector;
    let backup_header_lba = disk_sectors - 1;
    let backup_entries_lba = backup_header_lba - array_sectors;
    let last_usable = backup_entries_lba - 1;
    let alignment = ALIGNMENT / sector;
    let new_last_lba = ((last_usable + 1) / alignment) * alignment - 1;
    if new_last_lba < old_last_lba + alignment {
        return Ok(None);
    }

    let at = target * entry_size + 40;
    entries[at..at + 8].copy_from_slice(&new_last_lba.to_le_bytes());
    let entries_crc = crc32fast::hash(&entries);
    let encode = |my_lba: u64, alternate_lba: u64, array_lba: u64| {
        let mut out = header;
        out[24..32].copy_from_slice(&my_lba.to_le_bytes());
        out[32..40].copy_from_slice(&alternate_lba.to_le_bytes());
        out[48..56].copy_from_slice(&last_usable.to_le_bytes());
        out[72..80].copy_from_slice(&array_lba.to_le_bytes());
        out[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        out[16..20].fill(0);
        let crc = crc32fast::hash(&out[..header_size]);
        out[16..20].copy_from_slice(&crc.to_le_bytes());
        out
    };
    disk.write_all_at(&entries, backup_entries_lba * sector)?;
    disk.write_all_at(
        &encode(backup_header_lba, 1, backup_entries_lba),
        backup_header_lba * sector,
    )?;
    disk.write_all_at(&entries, entries_lba * sector)?;
    let protective_size = u32::try_from(disk_sectors - 1).unwrap_or(u32::MAX);
    disk.write_all_at(&protective_size.to_le_bytes(), 446 + 12)?;
    disk.write_all_at(&encode(1, backup_header_lba, entries_lba), sector)?;
    Ok(Some(Grown {
        old_last_lba,
        new_last_lba,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::{
        DiskSpec, EFI_SYSTEM_PARTITION, Guid, LINUX_FILESYSTEM, PartitionSize, PartitionSpec,
        write_disk,
    };
    use std::process::Command;

    const MIB: u64 = 1024 * 1024;

    fn partition(name: &str, type_guid: Guid, size: u64) -> PartitionSpec {
        PartitionSpec {
            name: name.to_owned(),
            type_guid,
            unique_guid: Guid::from_seed(b"grow", name),
            size: PartitionSize::Bytes(size),
            attributes: 0,
            content: None,
        }
    }

    fn image(dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("disk.raw");
        let spec = DiskSpec {
            disk_guid: Guid::from_seed(b"grow", "disk"),
            disk_size: None,
            partitions: vec![
                partition("ESP", EFI_SYSTEM_PARTITION, 4 * MIB),
                partition("CAIRN-STATE", LINUX_FILESYSTEM, 8 * MIB),
            ],
        };
        write_disk(&spec, &path).expect("disk");
        path
    }

    #[test]
    fn the_last_partition_grows_and_sgdisk_finds_no_problem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = image(dir.path());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        let size = 100 * MIB;
        file.set_len(size).expect("grow file");
        let grown = grow_partition_to_end(&file, size, "CAIRN-STATE")
            .expect("grow")
            .expect("it grew");
        assert_eq!(
            (grown.new_last_lba + 1) % (MIB / 512),
            0,
            "1 MiB aligned end"
        );
        assert!(grown.new_last_lba > size / 512 - 2048 - 34, "{grown:?}");
        assert_eq!(
            grow_partition_to_end(&file, size, "CAIRN-STATE").expect("again"),
            None,
            "a second run changes nothing"
        );
        let verify = Command::new("sgdisk")
            .arg("-v")
            .arg(&path)
            .output()
            .expect("sgdisk");
        let text = String::from_utf8_lossy(&verify.stdout);
        assert!(
            verify.status.success() && text.contains("No problems found"),
            "sgdisk -v: {text}{}",
            String::from_utf8_lossy(&verify.stderr)
        );
        let json = Command::new("sfdisk")
            .arg("--json")
            .arg(&path)
            .output()
            .expect("sfdisk");
        let text = String::from_utf8_lossy(&json.stdout);
        let expected_sectors = grown.new_last_lba - (grown.old_last_lba + 1 - 8 * MIB / 512) + 1;
        assert!(
            text.contains(&format!("\"size\":{expected_sectors}"))
                || text.contains(&format!("\"size\": {expected_sectors}")),
            "sfdisk sees STATE with {expected_sectors} sectors: {text}"
        );
    }

    #[test]
    fn only_the_last_partition_may_grow_and_bad_tables_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = image(dir.path());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        file.set_len(64 * MIB).expect("grow file");
        assert!(matches!(
            grow_partition_to_end(&file, 64 * MIB, "ESP"),
            Err(GrowError::NotLast(_))
        ));
        assert!(matches!(
            grow_partition_to_end(&file, 64 * MIB, "NOPE"),
            Err(GrowError::NoSuchPartition(_))
        ));
        file.write_all_at(b"XXXX", 512 + 60).expect("corrupt");
        assert!(matches!(
            grow_partition_to_end(&file, 64 * MIB, "CAIRN-STATE"),
            Err(GrowError::BadHeader(_))
        ));
    }
}
