//! A writer for GUID Partition Table (GPT) disk images.
//!
//! # Format
//!
//! The layout follows the UEFI Specification 2.10, chapter 5 ("GUID
//! Partition Table (GPT) Disk Layout"), with 512-byte logical blocks:
//!
//! | LBA | contents |
//! |---|---|
//! | 0 | protective MBR: one partition of type `0xEE` covering the disk |
//! | 1 | primary GPT header |
//! | 2–33 | primary partition entry array: 128 entries of 128 bytes |
//! | 2048… | partitions, each starting on a 1 MiB boundary |
//! | last−32 … last−1 | backup partition entry array |
//! | last | backup GPT header |
//!
//! Both headers carry a CRC32 of their first 92 bytes (with the CRC field
//! zeroed) and a CRC32 of the entry array. GUIDs are stored in the
//! "mixed-endian" encoding of the UEFI specification (appendix A): the first
//! three fields (`u32`, `u16`, `u16`) little-endian, the last eight bytes as
//! written. [`Guid`] keeps the textual (RFC 4122) byte order and converts
//! when writing.
//!
//! # Determinism
//!
//! Disk and partition GUIDs are supplied by the caller; the builder derives
//! them from the profile digest with [`guid_from_seed`], so the same profile
//! always yields the same table. The MBR disk signature is zero and every
//! unused byte is zero.
//!
//! # Output
//!
//! The image is created at its full size with `set_len`, so regions never
//! written (empty partitions, zero blocks of the partition contents) stay
//! holes in the output file, and is renamed into place only when complete.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::cpio::{Content, set_readable_by_all};

/// Logical block size of the images the builder writes.
pub const SECTOR_SIZE: u64 = 512;
/// Every partition starts (and is sized) on this boundary, as partitioning
/// partitioning programs do, so partitions line up with any physical block or erase size.
pub const ALIGNMENT: u64 = 1024 * 1024;
/// Number of entries in the partition entry array (the specification's minimum
/// array size of 16 KiB).
const ENTRY_COUNT: u32 = 128;
/// Size of one partition entry.
const ENTRY_SIZE: u32 = 128;
/// Sectors taken by the partition entry array.
const ENTRY_ARRAY_SECTORS: u64 = (ENTRY_COUNT as u64 * ENTRY_SIZE as u64) / SECTOR_SIZE;
/// Size of the header structure covered by its CRC.
const HEADER_SIZE: u32 = 92;
/// Longest partition name, in UTF-16 code units.
const MAX_NAME_UNITS: usize = 36;
/// Largest block copied or skipped at once when writing partition contents.
const COPY_BLOCK: usize = 64 * 1024;
/// Compared against with `memcmp`, which is much faster than a byte loop.
static ZERO_BLOCK: [u8; COPY_BLOCK] = [0; COPY_BLOCK];

/// A GUID in its textual byte order (RFC 4122), e.g. the bytes `C1 2A 73 28 …`
/// for `C12A7328-F81F-11D2-BA4B-00A0C93EC93B`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid(pub [u8; 16]);

/// Partition type of an EFI System Partition.
pub const EFI_SYSTEM_PARTITION: Guid = Guid([
    0xC1, 0x2A, 0x73, 0x28, 0xF8, 0x1F, 0x11, 0xD2, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B,
]);
/// Partition type of a generic Linux filesystem.
pub const LINUX_FILESYSTEM: Guid = Guid([
    0x0F, 0xC6, 0x3D, 0xAF, 0x84, 0x83, 0x47, 0x72, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4,
]);

impl Guid {
    /// The nil GUID, which marks an unused partition entry.
    pub const NIL: Guid = Guid([0; 16]);

    /// The 16 bytes as stored on disk (first three fields little-endian).
    pub fn to_disk_bytes(self) -> [u8; 16] {
        let mut disk = self.0;
        disk[0..4].reverse();
        disk[4..6].reverse();
        disk[6..8].reverse();
        disk
    }

    /// A GUID from its on-disk encoding.
    pub fn from_disk_bytes(disk: [u8; 16]) -> Self {
        // The byte swap is its own inverse.
        Guid(Guid(disk).to_disk_bytes())
    }

    /// Derives a GUID from a seed; see [`guid_from_seed`].
    pub fn from_seed(seed: &[u8], label: &str) -> Self {
        Guid(guid_from_seed(seed, label))
    }
}

impl std::fmt::Display for Guid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-",
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9]
        )?;
        b[10..].iter().try_for_each(|byte| write!(f, "{byte:02X}"))
    }
}

impl std::fmt::Debug for Guid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Guid({self})")
    }
}

impl std::str::FromStr for Guid {
    type Err = GptError;

    /// Parses `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX` (either case).
    fn from_str(text: &str) -> Result<Self, GptError> {
        let invalid = || GptError::InvalidGuid {
            text: text.to_owned(),
        };
        let groups: Vec<&str> = text.split('-').collect();
        let lengths: Vec<usize> = groups.iter().map(|group| group.len()).collect();
        if lengths != [8, 4, 4, 4, 12] {
            return Err(invalid());
        }
        let hex_digits: String = groups.concat();
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(&hex_digits, &mut bytes).map_err(|_| invalid())?;
        Ok(Guid(bytes))
    }
}

/// Derives a stable GUID from `seed` (e.g. the profile digest) and a `label`
/// naming its use (`"disk"`, `"esp"`, `"state"`), in textual byte order.
///
/// The first 16 bytes of SHA-256 over the length-prefixed seed and the label
/// get the version (4) and variant (RFC 4122) bits set, so the result looks
/// like any random GUID to any program that checks.
pub fn guid_from_seed(seed: &[u8], label: &str) -> [u8; 16] {
    let mut hasher = Sha256::new();
    hasher.update(b"cairn-gpt-guid\0");
    hasher.update((seed.len() as u64).to_le_bytes());
    hasher.update(seed);
    hasher.update(label.as_bytes());
    let digest = hasher.finalize();
    let mut guid = [0u8; 16];
    guid.copy_from_slice(&digest[..16]);
    guid[6] = (guid[6] & 0x0F) | 0x40;
    guid[8] = (guid[8] & 0x3F) | 0x80;
    guid
}

/// Anything that can go wrong planning or writing a disk image.
#[derive(Debug, thiserror::Error)]
pub enum GptError {
    /// A GUID string is malformed.
    #[error("invalid GUID `{text}`: expected XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX")]
    InvalidGuid {
        /// The text as given.
        text: String,
    },
    /// A partition is described wrongly.
    #[error("partition `{partition}`: {reason}")]
    InvalidPartition {
        /// The partition name.
        partition: String,
        /// What is wrong.
        reason: String,
    },
    /// The disk as a whole is described wrongly.
    #[error("invalid disk layout: {reason}")]
    InvalidLayout {
        /// What is wrong.
        reason: String,
    },
    /// A partition's contents could not be read or do not fit.
    #[error("partition `{partition}`: cannot read contents from {source_description}: {source}")]
    ReadContent {
        /// The partition name.
        partition: String,
        /// Where the contents come from.
        source_description: String,
        /// The underlying error.
        source: io::Error,
    },
    /// Writing the image failed.
    #[error("cannot write disk image {}: {source}", path.display())]
    Write {
        /// The output path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// How big a partition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionSize {
    /// At least this many bytes (rounded up to [`ALIGNMENT`]).
    Bytes(u64),
    /// Everything up to the end of the disk (last partition only; needs an
    /// explicit disk size).
    RestOfDisk,
}

/// One partition to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSpec {
    /// Partition name (GPT label), at most 36 UTF-16 code units, e.g. `CAIRN-STATE`.
    pub name: String,
    /// Partition type, e.g. [`EFI_SYSTEM_PARTITION`].
    pub type_guid: Guid,
    /// This partition's unique GUID.
    pub unique_guid: Guid,
    /// Size of the partition.
    pub size: PartitionSize,
    /// GPT attribute bits (0 for none; bit 0 = required by the platform).
    pub attributes: u64,
    /// Bytes written at the start of the partition; `None` leaves it zeroed.
    pub content: Option<Content>,
}

/// A whole disk to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    /// The disk GUID.
    pub disk_guid: Guid,
    /// Total size in bytes (a multiple of 512); `None` makes the disk just
    /// large enough for its partitions plus 1 MiB for the backup table.
    pub disk_size: Option<u64>,
    /// Partitions in on-disk order.
    pub partitions: Vec<PartitionSpec>,
}

/// Where a partition ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedPartition {
    /// Partition name.
    pub name: String,
    /// First sector.
    pub first_lba: u64,
    /// Last sector (inclusive).
    pub last_lba: u64,
}

impl PlacedPartition {
    /// Byte offset of the partition in the image.
    pub fn offset(&self) -> u64 {
        self.first_lba * SECTOR_SIZE
    }

    /// Size of the partition in bytes.
    pub fn size(&self) -> u64 {
        (self.last_lba - self.first_lba + 1) * SECTOR_SIZE
    }
}

/// The computed geometry of a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskLayout {
    /// Total size in bytes.
    pub disk_size: u64,
    /// First sector a partition may use.
    pub first_usable_lba: u64,
    /// Last sector a partition may use (inclusive).
    pub last_usable_lba: u64,
    /// Partitions, in the order given.
    pub partitions: Vec<PlacedPartition>,
}

impl DiskLayout {
    fn total_sectors(&self) -> u64 {
        self.disk_size / SECTOR_SIZE
    }
}

/// Computes where every partition goes, checking the spec on the way.
pub fn plan_layout(spec: &DiskSpec) -> Result<DiskLayout, GptError> {
    let layout_error = |reason: String| GptError::InvalidLayout { reason };
    if spec.partitions.len() > ENTRY_COUNT as usize {
        return Err(layout_error(format!(
            "{} partitions; the table holds {ENTRY_COUNT}",
            spec.partitions.len()
        )));
    }
    if spec.disk_guid == Guid::NIL {
        return Err(layout_error("the disk GUID is nil".to_owned()));
    }
    let alignment_sectors = ALIGNMENT / SECTOR_SIZE;
    // LBA 0 MBR, LBA 1 header, then the entry array.
    let first_usable_lba = 2 + ENTRY_ARRAY_SECTORS;
    // Sectors the backup table takes at the end of the disk.
    let backup_sectors = 1 + ENTRY_ARRAY_SECTORS;

    let total_sectors = match spec.disk_size {
        Some(size) if size % SECTOR_SIZE != 0 => {
            return Err(layout_error(format!(
                "disk size {size} is not a multiple of {SECTOR_SIZE}"
            )));
        }
        Some(size) => Some(size / SECTOR_SIZE),
        None => None,
    };
    let last_usable_lba = total_sectors.map(|total| total.saturating_sub(backup_sectors + 1));

    let mut placed = Vec::with_capacity(spec.partitions.len());
    let mut next_free = first_usable_lba;
    for (index, partition) in spec.partitions.iter().enumerate() {
        let invalid = |reason: String| GptError::InvalidPartition {
            partition: partition.name.clone(),
            reason,
        };
        validate_partition(partition, &spec.partitions[..index]).map_err(invalid)?;
        let first_lba = next_free.next_multiple_of(alignment_sectors);
        let last_lba = match partition.size {
            PartitionSize::Bytes(0) => return Err(invalid("size is zero".to_owned())),
            PartitionSize::Bytes(bytes) => {
                let sectors = bytes.next_multiple_of(ALIGNMENT) / SECTOR_SIZE;
                first_lba + sectors - 1
            }
            PartitionSize::RestOfDisk => {
                if index + 1 != spec.partitions.len() {
                    return Err(invalid(
                        "only the last partition can take the rest of the disk".to_owned(),
                    ));
                }
                let last_usable = last_usable_lba.ok_or_else(|| {
                    invalid("taking the rest of the disk needs an explicit disk size".to_owned())
                })?;
                // End on an alignment boundary too, so the partition's size is
                // a whole number of MiB.
                let end = (last_usable + 1) / alignment_sectors * alignment_sectors;
                if end <= first_lba {
                    return Err(invalid("no room left on the disk".to_owned()));
                }
                end - 1
            }
        };
        if let Some(last_usable) = last_usable_lba
            && last_lba > last_usable
        {
            return Err(invalid(format!(
                "ends at sector {last_lba}, beyond the last usable sector {last_usable}"
            )));
        }
        placed.push(PlacedPartition {
            name: partition.name.clone(),
            first_lba,
            last_lba,
        });
        next_free = last_lba + 1;
    }

    let total_sectors = match total_sectors {
        Some(total) => total,
        None => next_free.next_multiple_of(alignment_sectors) + alignment_sectors,
    };
    if total_sectors < first_usable_lba + backup_sectors + 1 {
        return Err(layout_error(format!(
            "{} bytes is too small for a GPT",
            total_sectors * SECTOR_SIZE
        )));
    }
    Ok(DiskLayout {
        disk_size: total_sectors * SECTOR_SIZE,
        first_usable_lba,
        last_usable_lba: total_sectors - backup_sectors - 1,
        partitions: placed,
    })
}

fn validate_partition(partition: &PartitionSpec, earlier: &[PartitionSpec]) -> Result<(), String> {
    if partition.name.is_empty() {
        return Err("the name is empty".to_owned());
    }
    let units = partition.name.encode_utf16().count();
    if units > MAX_NAME_UNITS {
        return Err(format!(
            "the name is {units} UTF-16 code units long; GPT allows {MAX_NAME_UNITS}"
        ));
    }
    if partition.type_guid == Guid::NIL {
        return Err("the type GUID is nil (it marks unused entries)".to_owned());
    }
    if partition.unique_guid == Guid::NIL {
        return Err("the unique GUID is nil".to_owned());
    }
    if let Some(other) = earlier
        .iter()
        .find(|other| other.unique_guid == partition.unique_guid)
    {
        return Err(format!(
            "unique GUID {} is also used by `{}`",
            partition.unique_guid, other.name
        ));
    }
    if let Some(other) = earlier.iter().find(|other| other.name == partition.name) {
        return Err(format!("the name is also used by `{}`", other.name));
    }
    Ok(())
}

/// Writes the disk image described by `spec` to `out` and returns its layout.
///
/// The image is built under a temporary name next to `out` and renamed into
/// place when complete; on error nothing is left behind.
pub fn write_disk(spec: &DiskSpec, out: &Path) -> Result<DiskLayout, GptError> {
    let layout = plan_layout(spec)?;
    let write_error = |source| GptError::Write {
        path: out.to_path_buf(),
        source,
    };
    let temporary = crate::atomic::temp_file_beside(out, "disk").map_err(write_error)?;
    let file = temporary.as_file();
    file.set_len(layout.disk_size).map_err(write_error)?;

    for (partition, placed) in spec.partitions.iter().zip(&layout.partitions) {
        if let Some(content) = &partition.content {
            copy_sparse(file, content, placed, out)?;
        }
    }

    let entries = encode_entries(spec, &layout);
    let total_sectors = layout.total_sectors();
    let backup_entries_lba = total_sectors - 1 - ENTRY_ARRAY_SECTORS;
    let primary = encode_header(spec, &layout, &entries, 1, total_sectors - 1, 2);
    let backup = encode_header(
        spec,
        &layout,
        &entries,
        total_sectors - 1,
        1,
        backup_entries_lba,
    );
    let writes: [(u64, &[u8]); 5] = [
        (0, &protective_mbr(total_sectors)),
        (SECTOR_SIZE, &primary),
        (2 * SECTOR_SIZE, &entries),
        (backup_entries_lba * SECTOR_SIZE, &entries),
        ((total_sectors - 1) * SECTOR_SIZE, &backup),
    ];
    for (offset, bytes) in writes {
        file.write_all_at(bytes, offset).map_err(write_error)?;
    }
    file.sync_all().map_err(write_error)?;
    set_readable_by_all(temporary.path()).map_err(write_error)?;
    temporary
        .persist(out)
        .map_err(|error| write_error(error.error))?;
    Ok(layout)
}

/// Copies a partition's contents to its offset, skipping all-zero blocks so
/// they stay holes in the freshly `set_len` image.
fn copy_sparse(
    file: &File,
    content: &Content,
    placed: &PlacedPartition,
    out: &Path,
) -> Result<(), GptError> {
    let read_error = |source| GptError::ReadContent {
        partition: placed.name.clone(),
        source_description: content.describe(),
        source,
    };
    let (mut reader, len) = content.open().map_err(read_error)?;
    if len > placed.size() {
        return Err(GptError::InvalidPartition {
            partition: placed.name.clone(),
            reason: format!(
                "contents ({}, {len} bytes) are larger than the partition ({} bytes)",
                content.describe(),
                placed.size()
            ),
        });
    }
    let mut buffer = vec![0u8; COPY_BLOCK];
    let mut copied = 0u64;
    loop {
        let filled = read_full(&mut reader, &mut buffer).map_err(read_error)?;
        if filled == 0 {
            break;
        }
        if copied + filled as u64 > placed.size() {
            return Err(read_error(io::Error::new(
                io::ErrorKind::InvalidData,
                "contents grew past the partition size while being copied",
            )));
        }
        let block = &buffer[..filled];
        if block != &ZERO_BLOCK[..filled] {
            file.write_all_at(block, placed.offset() + copied)
                .map_err(|source| GptError::Write {
                    path: out.to_path_buf(),
                    source,
                })?;
        }
        copied += filled as u64;
    }
    Ok(())
}

/// Reads until `buffer` is full or the reader ends; returns the bytes read.
pub(crate) fn read_full<R: Read + ?Sized>(reader: &mut R, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// A protective MBR: one partition of type `0xEE` from LBA 1 to the end of
/// the disk (capped at what 32 bits can say), so MBR-only programs see the disk
/// as in use.
fn protective_mbr(total_sectors: u64) -> [u8; SECTOR_SIZE as usize] {
    let mut mbr = [0u8; SECTOR_SIZE as usize];
    let entry = &mut mbr[446..462];
    entry[0] = 0x00; // not bootable
    entry[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    entry[4] = 0xEE; // GPT protective
    entry[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]); // CHS beyond addressable
    entry[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = u32::try_from(total_sectors - 1).unwrap_or(u32::MAX);
    entry[12..16].copy_from_slice(&size.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    mbr
}

fn encode_entries(spec: &DiskSpec, layout: &DiskLayout) -> Vec<u8> {
    let mut entries = vec![0u8; (ENTRY_COUNT * ENTRY_SIZE) as usize];
    for (index, (partition, placed)) in spec.partitions.iter().zip(&layout.partitions).enumerate() {
        let entry = &mut entries[index * ENTRY_SIZE as usize..(index + 1) * ENTRY_SIZE as usize];
        entry[0..16].copy_from_slice(&partition.type_guid.to_disk_bytes());
        entry[16..32].copy_from_slice(&partition.unique_guid.to_disk_bytes());
        entry[32..40].copy_from_slice(&placed.first_lba.to_le_bytes());
        entry[40..48].copy_from_slice(&placed.last_lba.to_le_bytes());
        entry[48..56].copy_from_slice(&partition.attributes.to_le_bytes());
        for (unit_index, unit) in partition.name.encode_utf16().enumerate() {
            let at = 56 + unit_index * 2;
            entry[at..at + 2].copy_from_slice(&unit.to_le_bytes());
        }
    }
    entries
}

fn encode_header(
    spec: &DiskSpec,
    layout: &DiskLayout,
    entries: &[u8],
    my_lba: u64,
    alternate_lba: u64,
    entries_lba: u64,
) -> [u8; SECTOR_SIZE as usize] {
    let mut header = [0u8; SECTOR_SIZE as usize];
    header[0..8].copy_from_slice(b"EFI PART");
    header[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes()); // revision 1.0
    header[12..16].copy_from_slice(&HEADER_SIZE.to_le_bytes());
    // 16..20: header CRC, filled in last; 20..24 reserved.
    header[24..32].copy_from_slice(&my_lba.to_le_bytes());
    header[32..40].copy_from_slice(&alternate_lba.to_le_bytes());
    header[40..48].copy_from_slice(&layout.first_usable_lba.to_le_bytes());
    header[48..56].copy_from_slice(&layout.last_usable_lba.to_le_bytes());
    header[56..72].copy_from_slice(&spec.disk_guid.to_disk_bytes());
    header[72..80].copy_from_slice(&entries_lba.to_le_bytes());
    header[80..84].copy_from_slice(&ENTRY_COUNT.to_le_bytes());
    header[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
    header[88..92].copy_from_slice(&crc32fast::hash(entries).to_le_bytes());
    let header_crc = crc32fast::hash(&header[..HEADER_SIZE as usize]);
    header[16..20].copy_from_slice(&header_crc.to_le_bytes());
    header
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::process::Command;
    use std::str::FromStr;

    const MIB: u64 = 1024 * 1024;

    fn sample_spec(esp_content: Content) -> DiskSpec {
        let seed = b"profile digest";
        DiskSpec {
            disk_guid: Guid::from_seed(seed, "disk"),
            disk_size: Some(64 * MIB),
            partitions: vec![
                PartitionSpec {
                    name: "ESP".to_owned(),
                    type_guid: EFI_SYSTEM_PARTITION,
                    unique_guid: Guid::from_seed(seed, "esp"),
                    size: PartitionSize::Bytes(8 * MIB),
                    attributes: 0,
                    content: Some(esp_content),
                },
                PartitionSpec {
                    name: "CAIRN-STATE".to_owned(),
                    type_guid: LINUX_FILESYSTEM,
                    unique_guid: Guid::from_seed(seed, "state"),
                    size: PartitionSize::RestOfDisk,
                    attributes: 0,
                    content: None,
                },
            ],
        }
    }

    fn esp_bytes() -> Vec<u8> {
        let mut bytes = vec![0u8; 3 * MIB as usize + 5];
        bytes[0] = 0xEB;
        bytes[2 * MIB as usize] = 0x42;
        *bytes.last_mut().expect("non-empty") = 0x99;
        bytes
    }

    #[test]
    fn guid_text_and_disk_encoding() {
        assert_eq!(
            EFI_SYSTEM_PARTITION.to_string(),
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
        );
        assert_eq!(
            LINUX_FILESYSTEM.to_string(),
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
        );
        let parsed =
            Guid::from_str("c12a7328-f81f-11d2-ba4b-00a0c93ec93b").expect("valid GUID text");
        assert_eq!(parsed, EFI_SYSTEM_PARTITION);
        assert_eq!(
            EFI_SYSTEM_PARTITION.to_disk_bytes(),
            [
                0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E,
                0xC9, 0x3B
            ]
        );
        assert_eq!(
            Guid::from_disk_bytes(EFI_SYSTEM_PARTITION.to_disk_bytes()),
            EFI_SYSTEM_PARTITION
        );
        for bad in [
            "",
            "C12A7328F81F11D2BA4B00A0C93EC93B",
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93G",
        ] {
            assert!(Guid::from_str(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn seeded_guids_are_stable_version_4_and_distinct() {
        let esp = guid_from_seed(b"seed", "esp");
        assert_eq!(esp, guid_from_seed(b"seed", "esp"));
        assert_ne!(esp, guid_from_seed(b"seed", "state"));
        assert_ne!(esp, guid_from_seed(b"seed2", "esp"));
        // The length prefix keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(guid_from_seed(b"ab", "c"), guid_from_seed(b"a", "bc"));
        assert_eq!(esp[6] >> 4, 4, "version nibble");
        assert_eq!(esp[8] >> 6, 0b10, "RFC 4122 variant");
    }

    #[test]
    fn plans_aligned_layout() {
        let spec = sample_spec(Content::Bytes(vec![1]));
        let layout = plan_layout(&spec).expect("layout");
        assert_eq!(layout.first_usable_lba, 34);
        assert_eq!(layout.last_usable_lba, 64 * 2048 - 34);
        assert_eq!(layout.partitions[0].first_lba, 2048);
        assert_eq!(layout.partitions[0].last_lba, 2048 + 8 * 2048 - 1);
        assert_eq!(layout.partitions[1].first_lba, 9 * 2048);
        assert_eq!(layout.partitions[1].last_lba, 63 * 2048 - 1);

        let mut fitted = spec.clone();
        fitted.disk_size = None;
        fitted.partitions[1].size = PartitionSize::Bytes(MIB + 1);
        let layout = plan_layout(&fitted).expect("layout");
        assert_eq!(layout.partitions[1].size(), 2 * MIB);
        assert_eq!(layout.disk_size, (1 + 8 + 2 + 1) * MIB);
    }

    #[test]
    fn rejects_bad_specs() {
        let base = sample_spec(Content::Bytes(vec![1]));
        let mut no_size = base.clone();
        no_size.disk_size = None;
        let mut too_small = base.clone();
        too_small.disk_size = Some(8 * MIB);
        let mut long_name = base.clone();
        long_name.partitions[0].name = "x".repeat(37);
        let mut same_guid = base.clone();
        same_guid.partitions[1].unique_guid = same_guid.partitions[0].unique_guid;
        let mut rest_first = base.clone();
        rest_first.partitions.swap(0, 1);
        let mut odd_size = base.clone();
        odd_size.disk_size = Some(64 * MIB + 1);
        for (what, spec) in [
            ("rest of disk without disk size", no_size),
            ("disk too small", too_small),
            ("37-unit name", long_name),
            ("duplicate unique GUID", same_guid),
            ("rest of disk not last", rest_first),
            ("disk size not sector multiple", odd_size),
        ] {
            assert!(plan_layout(&spec).is_err(), "{what} accepted");
        }
    }

    /// Parses one header and checks its CRCs and entries against `entries`.
    fn check_header(image: &[u8], lba: u64, expected_entries_lba: u64) -> Vec<u8> {
        let at = (lba * SECTOR_SIZE) as usize;
        let header = &image[at..at + SECTOR_SIZE as usize];
        assert_eq!(&header[..8], b"EFI PART");
        let u32_at = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(header[i..i + 8].try_into().expect("8 bytes"));
        let mut zeroed = header[..92].to_vec();
        zeroed[16..20].fill(0);
        assert_eq!(u32_at(16), crc32fast::hash(&zeroed), "header CRC");
        assert_eq!(u64_at(24), lba);
        assert_eq!(u64_at(72), expected_entries_lba);
        let entries_at = (expected_entries_lba * SECTOR_SIZE) as usize;
        let entries = image[entries_at..entries_at + 128 * 128].to_vec();
        assert_eq!(u32_at(88), crc32fast::hash(&entries), "entry array CRC");
        assert!(header[92..].iter().all(|&b| b == 0));
        entries
    }

    #[test]
    fn writes_valid_tables_and_contents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let esp_path = dir.path().join("esp.img");
        std::fs::write(&esp_path, esp_bytes()).expect("write esp");
        let out = dir.path().join("disk.raw");
        let spec = sample_spec(Content::File(esp_path));
        let layout = write_disk(&spec, &out).expect("write disk");
        let image = std::fs::read(&out).expect("read image");
        assert_eq!(image.len() as u64, 64 * MIB);

        assert_eq!(&image[510..512], &[0x55, 0xAA]);
        assert_eq!(image[446 + 4], 0xEE);
        let primary = check_header(&image, 1, 2);
        let total = 64 * 2048;
        let backup = check_header(&image, total - 1, total - 33);
        assert_eq!(primary, backup);
        assert_eq!(&primary[..16], &EFI_SYSTEM_PARTITION.to_disk_bytes());
        let name: Vec<u8> = "ESP".encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(&primary[56..62], &name[..]);
        assert_eq!(&primary[128..144], &LINUX_FILESYSTEM.to_disk_bytes());
        assert!(primary[256..].iter().all(|&b| b == 0));

        let esp = &layout.partitions[0];
        let start = esp.offset() as usize;
        let expected = esp_bytes();
        assert_eq!(&image[start..start + expected.len()], &expected[..]);
        assert!(
            image[start + expected.len()..(esp.offset() + esp.size()) as usize]
                .iter()
                .all(|&b| b == 0)
        );

        let allocated = std::fs::metadata(&out).expect("stat").blocks() * 512;
        assert!(
            allocated < 16 * MIB,
            "image is not sparse: {allocated} bytes allocated"
        );
        assert_eq!(std::fs::metadata(&out).expect("stat").mode() & 0o777, 0o644);

        // Cross-check with sfdisk and sgdisk when the host has them.
        if let Ok(output) = Command::new("sfdisk").arg("--dump").arg(&out).output() {
            assert!(output.status.success(), "sfdisk --dump: {output:?}");
            let dump = String::from_utf8_lossy(&output.stdout);
            assert!(dump.contains("label: gpt"), "{dump}");
            assert!(
                dump.contains(&format!("label-id: {}", spec.disk_guid)),
                "{dump}"
            );
            assert!(
                dump.contains(&format!(
                    "start=        2048, size=       16384, type={EFI_SYSTEM_PARTITION}, uuid={}, name=\"ESP\"",
                    spec.partitions[0].unique_guid
                )),
                "{dump}"
            );
            assert!(dump.contains("name=\"CAIRN-STATE\""), "{dump}");
        } else {
            eprintln!("skipped cross-check: sfdisk not installed");
        }
        if let Ok(output) = Command::new("sgdisk").arg("-v").arg(&out).output() {
            let report = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success(), "sgdisk -v: {report}");
            assert!(report.contains("No problems found"), "{report}");
        } else {
            eprintln!("skipped cross-check: sgdisk not installed");
        }
    }

    #[test]
    fn same_spec_gives_same_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = sample_spec(Content::Bytes(esp_bytes()));
        let first = dir.path().join("a.raw");
        let second = dir.path().join("b.raw");
        write_disk(&spec, &first).expect("first");
        write_disk(&spec, &second).expect("second");
        assert_eq!(
            std::fs::read(&first).expect("read"),
            std::fs::read(&second).expect("read")
        );
    }

    #[test]
    fn oversized_contents_fail_without_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = sample_spec(Content::Bytes(vec![1u8; 9 * MIB as usize]));
        spec.partitions[0].size = PartitionSize::Bytes(8 * MIB);
        let out = dir.path().join("disk.raw");
        let error = write_disk(&spec, &out).expect_err("contents larger than partition");
        assert!(error.to_string().contains("partition `ESP`"), "{error}");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }
}
