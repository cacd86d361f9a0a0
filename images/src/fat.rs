//! Builds the EFI System Partition (ESP) image: a FAT filesystem written in
//! user space with the `fatfs` crate.
//!
//! # Why in user space
//!
//! The builder runs unprivileged and on hosts whose kernel has no `vfat`, so
//! nothing is ever mounted: the filesystem is formatted and filled through
//! `fatfs`, which reads and writes the image file directly.
//!
//! # Format choices
//!
//! FAT is specified by Microsoft's "FAT: General Overview of On-Disk Format"
//! (fatgen103); the UEFI Specification 2.10, section 13.3, requires firmware
//! to read FAT12/16/32 and recommends FAT32 for system partitions. Volumes
//! larger than [`FAT16_MAX_SIZE`] are FAT32; smaller ones cannot hold the
//! 65 525 clusters FAT32 needs and are FAT16. The cluster size is the largest
//! of 4, 2, 1 KiB or 512 bytes that still gives the FAT type enough clusters,
//! so big files take few FAT operations.
//!
//! The image size is computed from its contents: every file and directory
//! rounded up to 4 KiB (the largest cluster used), plus room for the FATs,
//! plus free space kept for the second boot slot (by default twice the
//! largest file under `EFI/Linux/`, the UKIs: slot B receives the next
//! UKI during an upgrade, which may be larger than today's), rounded up to
//! a whole MiB.
//!
//! # Determinism
//!
//! The volume id and label are given by the caller, and every timestamp
//! comes from `SOURCE_DATE_EPOCH` through a fixed [`fatfs::TimeProvider`]
//! (converted to a FAT date in UTC; FAT cannot store dates before 1980 or
//! after 2107, so earlier or later epochs are clamped to those limits).
//! Files are written sorted by path, so the same inputs always give the
//! same bytes. The label is stored in the boot sector (where `blkid` and
//! firmware read it); `fatfs` does not write a root-directory label entry.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::cpio::{Content, set_readable_by_all};
use crate::gpt::read_full;

/// Largest volume formatted as FAT16; anything bigger is FAT32.
pub const FAT16_MAX_SIZE: u64 = 32 * MIB;
/// Smallest volume written (FAT16 needs at least 4085 clusters).
const MIN_SIZE: u64 = 4 * MIB;
const MIB: u64 = 1024 * 1024;
/// Largest cluster size used, and so the granularity of the size estimate.
const MAX_CLUSTER: u64 = 4096;
/// FAT32 needs more than 65 524 clusters; keep a margin for the FATs and the
/// reserved sectors, which also come out of the volume.
const FAT32_MIN_CLUSTERS: u64 = 65_525 + 2048;
/// Directory entry size; a long name takes one extra entry per 13 characters.
const DIR_ENTRY_SIZE: u64 = 32;
/// Characters that FAT long names cannot contain.
const FORBIDDEN_NAME_CHARS: &[char] = &['\\', ':', '*', '?', '"', '<', '>', '|'];
/// Directory that holds the UKIs (the boot slots), per the Boot Loader
/// Specification's type #2 entries.
pub const UKI_DIRECTORY: &str = "EFI/Linux";

/// Anything that can go wrong building an ESP image.
#[derive(Debug, thiserror::Error)]
pub enum FatError {
    /// A path inside the ESP is not acceptable.
    #[error("ESP path `{path}`: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The options are not acceptable.
    #[error("invalid ESP options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: String,
    },
    /// A file's source could not be read.
    #[error("ESP file `{path}`: cannot read {source_description}: {source}")]
    ReadSource {
        /// The path inside the ESP.
        path: String,
        /// Where the bytes come from.
        source_description: String,
        /// The underlying error.
        source: io::Error,
    },
    /// Formatting or filling the filesystem failed.
    #[error("cannot write ESP image {} ({context}): {source}", image.display())]
    Filesystem {
        /// The output path.
        image: PathBuf,
        /// What was being done, e.g. the file being written.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
}

/// One file to put into the ESP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspFile {
    /// Path inside the ESP, `/`-separated, e.g. `EFI/BOOT/BOOTX64.EFI`.
    pub path: String,
    /// The file's bytes.
    pub content: Content,
}

/// Volume identity, timestamps and free-space reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspOptions {
    /// Volume serial number (shown as `XXXX-XXXX` by `blkid` and `mdir`; derive it from
    /// the profile digest).
    pub volume_id: u32,
    /// Volume label, at most 11 characters of `A-Z 0-9 - _` and space
    /// (e.g. `ESP` or `CAIRN-ESP`).
    pub label: String,
    /// Every timestamp in the filesystem, seconds since the Unix epoch.
    pub source_date_epoch: u64,
    /// Free space to keep, in bytes; `None` keeps twice the largest file
    /// under [`UKI_DIRECTORY`] for the second boot slot.
    pub reserve: Option<u64>,
}

/// The FAT variant an image was formatted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatKind {
    /// FAT16.
    Fat16,
    /// FAT32.
    Fat32,
}

/// What [`build_esp`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspImage {
    /// Image size in bytes (a whole number of MiB).
    pub size: u64,
    /// FAT variant.
    pub kind: FatKind,
    /// Cluster size in bytes.
    pub cluster_size: u32,
    /// Free space left in the filesystem, in bytes.
    pub free_bytes: u64,
}

/// Builds an ESP image holding `files` at `out`.
///
/// The image is written under a temporary name next to `out` and renamed
/// into place when complete.
pub fn build_esp(
    files: &[EspFile],
    options: &EspOptions,
    out: &Path,
) -> Result<EspImage, FatError> {
    let label = encode_label(&options.label)?;
    let sorted = sorted_files(files)?;
    let sizes = sorted
        .iter()
        .map(|(path, file)| {
            file.content
                .len()
                .map(|len| (path.clone(), len))
                .map_err(|source| FatError::ReadSource {
                    path: file.path.clone(),
                    source_description: file.content.describe(),
                    source,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let reserve = options.reserve.unwrap_or_else(|| default_reserve(&sizes));
    let size = esp_size(&sizes, reserve);
    let (kind, cluster_size) = geometry(size);

    let fs_error = |context: String, source| FatError::Filesystem {
        image: out.to_path_buf(),
        context,
        source,
    };
    let temporary = crate::atomic::temp_file_beside(out, "esp")
        .map_err(|source| fs_error("creating a temporary file".to_owned(), source))?;
    let storage = OpenOptions::new()
        .read(true)
        .write(true)
        .open(temporary.path())
        .map_err(|source| fs_error("opening the temporary file".to_owned(), source))?;
    storage
        .set_len(size)
        .map_err(|source| fs_error("sizing the image".to_owned(), source))?;

    let format_options = fatfs::FormatVolumeOptions::new()
        .fat_type(match kind {
            FatKind::Fat16 => fatfs::FatType::Fat16,
            FatKind::Fat32 => fatfs::FatType::Fat32,
        })
        .bytes_per_cluster(cluster_size)
        .volume_id(options.volume_id)
        .volume_label(label);
    fatfs::format_volume(&storage, format_options)
        .map_err(|source| fs_error("formatting".to_owned(), source))?;

    let fs_options = fatfs::FsOptions::new()
        .update_accessed_date(false)
        .time_provider(fixed_time_provider(options.source_date_epoch));
    let filesystem = fatfs::FileSystem::new(&storage, fs_options)
        .map_err(|source| fs_error("opening the new filesystem".to_owned(), source))?;
    write_files(&filesystem, &sorted, out)?;
    let stats = filesystem
        .stats()
        .map_err(|source| fs_error("reading free space".to_owned(), source))?;
    let free_bytes = u64::from(stats.free_clusters()) * u64::from(stats.cluster_size());
    filesystem
        .unmount()
        .map_err(|source| fs_error("closing the filesystem".to_owned(), source))?;
    repair_dot_entries(&storage)
        .map_err(|source| fs_error("repairing `.` and `..` entries".to_owned(), source))?;
    if free_bytes < reserve {
        return Err(fs_error(
            "checking free space".to_owned(),
            io::Error::other(format!(
                "only {free_bytes} bytes free, {reserve} wanted for the second boot slot"
            )),
        ));
    }
    storage
        .sync_all()
        .map_err(|source| fs_error("syncing".to_owned(), source))?;
    set_readable_by_all(temporary.path())
        .map_err(|source| fs_error("setting permissions".to_owned(), source))?;
    temporary
        .persist(out)
        .map_err(|error| fs_error("renaming into place".to_owned(), error.error))?;
    Ok(EspImage {
        size,
        kind,
        cluster_size,
        free_bytes,
    })
}

/// Creates every directory and file, in the order given.
fn write_files<T: fatfs::ReadWriteSeek>(
    filesystem: &fatfs::FileSystem<T>,
    sorted: &[(String, &EspFile)],
    out: &Path,
) -> Result<(), FatError> {
    let fs_error = |context: String, source| FatError::Filesystem {
        image: out.to_path_buf(),
        context,
        source,
    };
    let root = filesystem.root_dir();
    let mut created_directories = BTreeSet::new();
    for (_, file) in sorted {
        let components: Vec<&str> = file.path.split('/').collect();
        for depth in 1..components.len() {
            let directory_path = components[..depth].join("/");
            if created_directories.insert(directory_path.to_uppercase()) {
                root.create_dir(&directory_path).map_err(|source| {
                    fs_error(format!("creating directory `{directory_path}`"), source)
                })?;
            }
        }
        let mut target = root
            .create_file(&file.path)
            .map_err(|source| fs_error(format!("creating `{}`", file.path), source))?;
        copy_content(file, &mut target, out)?;
        target
            .flush()
            .map_err(|source| fs_error(format!("writing `{}`", file.path), source))?;
    }
    Ok(())
}

/// Image size for files of the given (ESP path, length) and `reserve` bytes
/// of free space: a whole number of MiB, at least 4 MiB.
pub fn esp_size(files: &[(String, u64)], reserve: u64) -> u64 {
    let round = |bytes: u64| bytes.next_multiple_of(MAX_CLUSTER);
    // Entries per directory: `.` and `..`, plus one per child.
    let mut directory_entries: BTreeMap<String, u64> = BTreeMap::new();
    directory_entries.insert(String::new(), 0);
    let mut data = 0u64;
    for (path, len) in files {
        data += round(*len);
        let components: Vec<&str> = path.split('/').collect();
        for depth in 0..components.len() {
            let parent = components[..depth].join("/").to_uppercase();
            let name = components[depth];
            let child = components[..=depth].join("/").to_uppercase();
            let is_new_child = depth + 1 == components.len() || {
                let known = directory_entries.contains_key(&child);
                if !known {
                    directory_entries.insert(child.clone(), 2);
                }
                !known
            };
            if is_new_child {
                // One short entry plus one long-name entry per 13 UTF-16 units.
                let slots = 1 + (name.encode_utf16().count() as u64).div_ceil(13);
                *directory_entries.entry(parent).or_insert(2) += slots;
            }
        }
    }
    data += directory_entries
        .values()
        .map(|entries| round(entries * DIR_ENTRY_SIZE))
        .sum::<u64>();
    let needed = data + reserve;
    // Two FATs with 4-byte entries for 512-byte clusters cost 1/64 of the
    // volume at worst; reserved sectors and the FAT16 root directory fit in
    // the extra MiB.
    let total = needed + needed / 64 + MIB;
    total.next_multiple_of(MIB).max(MIN_SIZE)
}

/// FAT type and cluster size for a volume of `size` bytes.
fn geometry(size: u64) -> (FatKind, u32) {
    if size <= FAT16_MAX_SIZE {
        // 512-byte clusters give FAT16's minimum of 4085 clusters from 4 MiB
        // and stay under its maximum of 65 524 up to 32 MiB.
        return (FatKind::Fat16, 512);
    }
    let cluster = [4096u32, 2048, 1024]
        .into_iter()
        .find(|&cluster| size / u64::from(cluster) >= FAT32_MIN_CLUSTERS)
        .unwrap_or(512);
    (FatKind::Fat32, cluster)
}

fn default_reserve(sizes: &[(String, u64)]) -> u64 {
    let prefix = format!("{}/", UKI_DIRECTORY.to_uppercase());
    let largest_uki = sizes
        .iter()
        .filter(|(path, _)| path.starts_with(&prefix))
        .map(|(_, len)| *len)
        .max()
        .unwrap_or(0);
    2 * largest_uki
}

/// Checks paths and returns the files sorted by their upper-cased path (FAT
/// names are case-insensitive), refusing duplicates.
fn sorted_files(files: &[EspFile]) -> Result<Vec<(String, &EspFile)>, FatError> {
    let mut sorted: BTreeMap<String, &EspFile> = BTreeMap::new();
    for file in files {
        validate_path(&file.path)?;
        let key = file.path.to_uppercase();
        if let Some(previous) = sorted.insert(key, file) {
            return Err(FatError::InvalidPath {
                path: file.path.clone(),
                reason: format!("same name as `{}` (FAT ignores case)", previous.path),
            });
        }
    }
    // A file must not also be used as a directory.
    for key in sorted.keys() {
        let mut prefix = key.as_str();
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            if let Some(file) = sorted.get(parent) {
                return Err(FatError::InvalidPath {
                    path: file.path.clone(),
                    reason: "is a file but other paths use it as a directory".to_owned(),
                });
            }
            prefix = parent;
        }
    }
    Ok(sorted.into_iter().collect())
}

fn validate_path(path: &str) -> Result<(), FatError> {
    let invalid = |reason: &str| {
        Err(FatError::InvalidPath {
            path: path.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if path.is_empty() || path.starts_with('/') {
        return invalid("must be a non-empty relative path");
    }
    for component in path.split('/') {
        if component.is_empty() || component == "." || component == ".." {
            return invalid("has an empty, `.` or `..` component");
        }
        if component.encode_utf16().count() > 255 {
            return invalid("has a component longer than 255 characters");
        }
        if component.ends_with('.') || component.ends_with(' ') {
            return invalid("has a component ending in `.` or space, which FAT drops");
        }
        if component
            .chars()
            .any(|c| c.is_control() || FORBIDDEN_NAME_CHARS.contains(&c))
        {
            return invalid("has a character FAT names cannot hold (\\ : * ? \" < > | or control)");
        }
    }
    Ok(())
}

/// The 11-byte, space-padded boot-sector label.
fn encode_label(label: &str) -> Result<[u8; 11], FatError> {
    let valid = !label.is_empty()
        && label.len() <= 11
        && label
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-_ ".contains(&b));
    if !valid {
        return Err(FatError::InvalidOptions {
            reason: format!(
                "volume label `{label}` must be 1 to 11 characters of A-Z, 0-9, `-`, `_` or space"
            ),
        });
    }
    let mut encoded = [b' '; 11];
    encoded[..label.len()].copy_from_slice(label.as_bytes());
    Ok(encoded)
}

fn copy_content<W: Write>(file: &EspFile, target: &mut W, image: &Path) -> Result<(), FatError> {
    let read_error = |source| FatError::ReadSource {
        path: file.path.clone(),
        source_description: file.content.describe(),
        source,
    };
    let (mut reader, _) = file.content.open().map_err(read_error)?;
    // Large writes let fatfs allocate and write whole cluster runs at once.
    let mut buffer = vec![0u8; 1024 * 1024];
    loop {
        let filled = read_full(&mut reader, &mut buffer).map_err(read_error)?;
        if filled == 0 {
            return Ok(());
        }
        target
            .write_all(&buffer[..filled])
            .map_err(|source| FatError::Filesystem {
                image: image.to_path_buf(),
                context: format!("writing `{}`", file.path),
                source,
            })?;
    }
}

/// A [`fatfs::TimeProvider`] that always answers the same instant.
#[derive(Debug, PartialEq, Eq)]
struct FixedTime {
    date_time: fatfs::DateTime,
}

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        self.date_time.date
    }

    fn get_current_date_time(&self) -> fatfs::DateTime {
        self.date_time
    }
}

/// `fatfs` 0.3 takes its time provider as `&'static`. One provider per
/// distinct epoch is leaked and reused, which bounds the leak by the number
/// of different `SOURCE_DATE_EPOCH` values a process ever builds with.
fn fixed_time_provider(epoch: u64) -> &'static FixedTime {
    static PROVIDERS: Mutex<Vec<&'static FixedTime>> = Mutex::new(Vec::new());
    let date_time = dos_date_time(epoch);
    let mut providers = PROVIDERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(existing) = providers.iter().find(|p| p.date_time == date_time) {
        return existing;
    }
    let provider: &'static FixedTime = Box::leak(Box::new(FixedTime { date_time }));
    providers.push(provider);
    provider
}

/// Converts seconds since the Unix epoch (UTC) to a FAT date and time,
/// clamped to the range FAT can store (1980-01-01 to 2107-12-31).
fn dos_date_time(epoch: u64) -> fatfs::DateTime {
    const FAT_MIN: u64 = 315_532_800; // 1980-01-01T00:00:00Z
    const FAT_MAX: u64 = 4_354_819_199; // 2107-12-31T23:59:59Z
    let seconds = epoch.clamp(FAT_MIN, FAT_MAX);
    let days = seconds / 86_400;
    let of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    // Values are bounded by the clamp above, so the narrowing cannot truncate.
    fatfs::DateTime {
        date: fatfs::Date {
            year: year as u16,
            month: month as u16,
            day: day as u16,
        },
        time: fatfs::Time {
            hour: (of_day / 3600) as u16,
            min: (of_day / 60 % 60) as u16,
            sec: (of_day % 60) as u16,
            millis: 0,
        },
    }
}

/// Gregorian (year, month, day) of a day count since 1970-01-01, after
/// Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Fixes two defects of `fatfs` 0.3.6's `create_dir` in place.
///
/// It writes the `.` and `..` entries of a new directory with a long-name
/// slot in front of each, so the directory starts `[LFN, ., LFN, ..]`
/// where FAT requires `.` and `..` in the first two slots; and in a
/// directory directly under the FAT32 root it points `..` at the root's
/// cluster, where FAT requires 0. Both make `fsck.fat` rewrite the
/// directory. The repair walks every directory and, where it finds that
/// pattern, moves `.` and `..` to the first two slots, marks the other two
/// slots deleted, and zeroes `..`'s cluster under the root. Directories
/// already laid out correctly are left alone.
fn repair_dot_entries(storage: &File) -> io::Result<()> {
    let volume = RawVolume::read(storage)?;
    let mut pending: Vec<(u32, bool)> = Vec::new();
    let root = volume.root_directory(storage)?;
    for cluster in subdirectories(&root) {
        pending.push((cluster, true));
    }
    let mut visited = BTreeSet::new();
    while let Some((cluster, parent_is_root)) = pending.pop() {
        if !visited.insert(cluster) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("directory cluster {cluster} is reachable twice"),
            ));
        }
        let mut first = vec![0u8; volume.cluster_size as usize];
        storage.read_exact_at(&mut first, volume.cluster_offset(cluster)?)?;
        let slot = |index: usize| &first[index * 32..(index + 1) * 32];
        let is_long_name = |index: usize| slot(index)[11] == LFN_ATTRIBUTE;
        let fatfs_layout = first.len() >= 4 * 32
            && is_long_name(0)
            && &slot(1)[..11] == DOT_NAME
            && is_long_name(2)
            && &slot(3)[..11] == DOT_DOT_NAME;
        if fatfs_layout {
            let dot = slot(1).to_vec();
            let mut dot_dot = slot(3).to_vec();
            if parent_is_root {
                dot_dot[20..22].fill(0); // first cluster, high half
                dot_dot[26..28].fill(0); // first cluster, low half
            }
            first[..32].copy_from_slice(&dot);
            first[32..64].copy_from_slice(&dot_dot);
            first[64..128].fill(0);
            first[64] = DELETED_MARKER;
            first[96] = DELETED_MARKER;
            storage.write_all_at(&first, volume.cluster_offset(cluster)?)?;
        }
        let contents = volume.read_chain(storage, cluster)?;
        for child in subdirectories(&contents) {
            pending.push((child, false));
        }
    }
    Ok(())
}

const LFN_ATTRIBUTE: u8 = 0x0F;
const DIRECTORY_ATTRIBUTE: u8 = 0x10;
const DELETED_MARKER: u8 = 0xE5;
const DOT_NAME: &[u8; 11] = b".          ";
const DOT_DOT_NAME: &[u8; 11] = b"..         ";

/// First clusters of the subdirectories listed in raw directory bytes,
/// skipping `.`, `..`, deleted and long-name entries.
fn subdirectories(directory: &[u8]) -> Vec<u32> {
    directory
        .chunks_exact(32)
        .take_while(|entry| entry[0] != 0)
        .filter(|entry| {
            entry[0] != DELETED_MARKER
                && entry[11] != LFN_ATTRIBUTE
                && entry[11] & DIRECTORY_ATTRIBUTE != 0
                && &entry[..11] != DOT_NAME
                && &entry[..11] != DOT_DOT_NAME
        })
        .map(|entry| {
            let high = u16::from_le_bytes([entry[20], entry[21]]);
            let low = u16::from_le_bytes([entry[26], entry[27]]);
            (u32::from(high) << 16) | u32::from(low)
        })
        .collect()
}

/// The few boot-sector fields needed to find directories in a FAT image.
#[derive(Debug)]
struct RawVolume {
    fat_offset: u64,
    data_offset: u64,
    cluster_size: u64,
    fat32: bool,
    /// FAT32: the root directory's first cluster.
    root_cluster: u32,
    /// FAT12/16: the fixed root directory region.
    root_region: (u64, u64),
    cluster_count: u32,
}

impl RawVolume {
    fn read(storage: &File) -> io::Result<Self> {
        let mut boot = [0u8; 512];
        storage.read_exact_at(&mut boot, 0)?;
        let u16_at = |at: usize| u64::from(u16::from_le_bytes([boot[at], boot[at + 1]]));
        let u32_at = |at: usize| {
            u64::from(u32::from_le_bytes([
                boot[at],
                boot[at + 1],
                boot[at + 2],
                boot[at + 3],
            ]))
        };
        let bytes_per_sector = u16_at(11);
        let sectors_per_cluster = u64::from(boot[13]);
        let reserved_sectors = u16_at(14);
        let fats = u64::from(boot[16]);
        let root_entries = u16_at(17);
        let total_sectors = if u16_at(19) != 0 {
            u16_at(19)
        } else {
            u32_at(32)
        };
        let fat32 = u16_at(22) == 0;
        let sectors_per_fat = if fat32 { u32_at(36) } else { u16_at(22) };
        if bytes_per_sector == 0 || sectors_per_cluster == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "boot sector has a zero sector or cluster size",
            ));
        }
        let root_sectors = (root_entries * 32).div_ceil(bytes_per_sector);
        let data_sector = reserved_sectors + fats * sectors_per_fat + root_sectors;
        let cluster_count = total_sectors.saturating_sub(data_sector) / sectors_per_cluster;
        Ok(Self {
            fat_offset: reserved_sectors * bytes_per_sector,
            data_offset: data_sector * bytes_per_sector,
            cluster_size: sectors_per_cluster * bytes_per_sector,
            fat32,
            root_cluster: u32::try_from(u32_at(44)).unwrap_or(0),
            root_region: (
                (reserved_sectors + fats * sectors_per_fat) * bytes_per_sector,
                root_sectors * bytes_per_sector,
            ),
            cluster_count: u32::try_from(cluster_count).unwrap_or(u32::MAX),
        })
    }

    fn cluster_offset(&self, cluster: u32) -> io::Result<u64> {
        if cluster < 2 || cluster - 2 >= self.cluster_count {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("cluster {cluster} is outside the data region"),
            ));
        }
        Ok(self.data_offset + u64::from(cluster - 2) * self.cluster_size)
    }

    fn next_cluster(&self, storage: &File, cluster: u32) -> io::Result<Option<u32>> {
        let next = if self.fat32 {
            let mut entry = [0u8; 4];
            storage.read_exact_at(&mut entry, self.fat_offset + u64::from(cluster) * 4)?;
            u32::from_le_bytes(entry) & 0x0FFF_FFFF
        } else {
            let mut entry = [0u8; 2];
            storage.read_exact_at(&mut entry, self.fat_offset + u64::from(cluster) * 2)?;
            u32::from(u16::from_le_bytes(entry))
        };
        let end_of_chain = if self.fat32 { 0x0FFF_FFF8 } else { 0xFFF8 };
        Ok((2..end_of_chain).contains(&next).then_some(next))
    }

    fn read_chain(&self, storage: &File, first: u32) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        let mut cluster = Some(first);
        while let Some(current) = cluster {
            if bytes.len() as u64 >= u64::from(self.cluster_count) * self.cluster_size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("cluster chain from {first} loops"),
                ));
            }
            let start = bytes.len();
            bytes.resize(start + self.cluster_size as usize, 0);
            storage.read_exact_at(&mut bytes[start..], self.cluster_offset(current)?)?;
            cluster = self.next_cluster(storage, current)?;
        }
        Ok(bytes)
    }

    fn root_directory(&self, storage: &File) -> io::Result<Vec<u8>> {
        if self.fat32 {
            self.read_chain(storage, self.root_cluster)
        } else {
            let (offset, len) = self.root_region;
            let mut bytes = vec![0u8; len as usize];
            storage.read_exact_at(&mut bytes, offset)?;
            Ok(bytes)
        }
    }
}

/// Reads a whole file out of an ESP image (used by tests and by callers
/// that want to check what they built).
pub fn read_file(image: &Path, path: &str) -> Result<Vec<u8>, FatError> {
    let fs_error = |source| FatError::Filesystem {
        image: image.to_path_buf(),
        context: format!("reading `{path}`"),
        source,
    };
    let storage = File::open(image).map_err(fs_error)?;
    let filesystem =
        fatfs::FileSystem::new(ReadOnly(storage), fatfs::FsOptions::new()).map_err(fs_error)?;
    let mut file = filesystem.root_dir().open_file(path).map_err(fs_error)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(fs_error)?;
    Ok(bytes)
}

/// Storage for reading an image without write access; `fatfs` wants
/// `Write` in its bounds but only writes when something changes.
#[derive(Debug)]
struct ReadOnly(File);

impl Read for ReadOnly {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for ReadOnly {
    fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "image opened read-only",
        ))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl io::Seek for ReadOnly {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        self.0.seek(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// 2023-11-14T22:13:20Z
    const EPOCH: u64 = 1_700_000_000;

    fn sample_files(uki: &Path) -> Vec<EspFile> {
        vec![
            EspFile {
                path: "loader/loader.conf".to_owned(),
                content: Content::Bytes(b"timeout 0\ndefault cairn-a.efi\n".to_vec()),
            },
            EspFile {
                path: "EFI/BOOT/BOOTX64.EFI".to_owned(),
                content: Content::Bytes(vec![0x4D; 90_000]),
            },
            EspFile {
                path: "EFI/systemd/systemd-bootx64.efi".to_owned(),
                content: Content::Bytes(vec![0x4D; 90_000]),
            },
            EspFile {
                path: "EFI/Linux/cairn-a.efi".to_owned(),
                content: Content::File(uki.to_path_buf()),
            },
        ]
    }

    fn options() -> EspOptions {
        EspOptions {
            volume_id: 0xCA1B_0001,
            label: "CAIRN-ESP".to_owned(),
            source_date_epoch: EPOCH,
            reserve: None,
        }
    }

    fn uki_bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn converts_epochs_to_fat_dates() {
        let dt = dos_date_time(EPOCH);
        assert_eq!((dt.date.year, dt.date.month, dt.date.day), (2023, 11, 14));
        assert_eq!((dt.time.hour, dt.time.min, dt.time.sec), (22, 13, 20));
        let early = dos_date_time(0);
        assert_eq!(
            (early.date.year, early.date.month, early.date.day),
            (1980, 1, 1)
        );
        let leap = dos_date_time(951_782_400); // 2000-02-29T00:00:00Z
        assert_eq!(
            (leap.date.year, leap.date.month, leap.date.day),
            (2000, 2, 29)
        );
        let late = dos_date_time(u64::MAX);
        assert_eq!(
            (late.date.year, late.date.month, late.date.day),
            (2107, 12, 31)
        );
    }

    #[test]
    fn picks_fat_type_and_cluster_size() {
        assert_eq!(geometry(4 * MIB), (FatKind::Fat16, 512));
        assert_eq!(geometry(32 * MIB), (FatKind::Fat16, 512));
        assert_eq!(geometry(33 * MIB), (FatKind::Fat32, 512));
        assert_eq!(geometry(100 * MIB), (FatKind::Fat32, 1024));
        assert_eq!(geometry(200 * MIB), (FatKind::Fat32, 2048));
        assert_eq!(geometry(300 * MIB), (FatKind::Fat32, 4096));
        // Every size the builder can pick must format.
        let dir = tempfile::tempdir().expect("tempdir");
        for mib in [
            4, 5, 31, 32, 33, 34, 35, 64, 67, 68, 130, 131, 132, 259, 260, 261, 262, 263, 600,
        ] {
            let size = mib * MIB;
            let (kind, cluster) = geometry(size);
            let path = dir.path().join(format!("{mib}.img"));
            let storage = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .expect("create");
            storage.set_len(size).expect("set_len");
            let fat_type = match kind {
                FatKind::Fat16 => fatfs::FatType::Fat16,
                FatKind::Fat32 => fatfs::FatType::Fat32,
            };
            fatfs::format_volume(
                &storage,
                fatfs::FormatVolumeOptions::new()
                    .fat_type(fat_type)
                    .bytes_per_cluster(cluster),
            )
            .unwrap_or_else(|error| panic!("{mib} MiB as {kind:?}/{cluster}: {error}"));
        }
    }

    #[test]
    fn builds_readable_esp_with_room_for_slot_b() {
        let dir = tempfile::tempdir().expect("tempdir");
        let uki = dir.path().join("cairn.efi");
        let uki_len = 5 * MIB as usize + 123;
        std::fs::write(&uki, uki_bytes(uki_len)).expect("write uki");
        let out = dir.path().join("esp.img");
        let image = build_esp(&sample_files(&uki), &options(), &out).expect("build");
        assert_eq!(image.size % MIB, 0);
        assert_eq!(std::fs::metadata(&out).expect("stat").len(), image.size);
        assert!(image.free_bytes >= 2 * uki_len as u64, "{image:?}");
        assert_eq!(image.kind, FatKind::Fat16, "{image:?}");

        assert_eq!(
            read_file(&out, "EFI/Linux/cairn-a.efi").expect("uki"),
            uki_bytes(uki_len)
        );
        assert_eq!(
            read_file(&out, "loader/loader.conf").expect("loader.conf"),
            b"timeout 0\ndefault cairn-a.efi\n"
        );

        let storage = File::open(&out).expect("open");
        let filesystem =
            fatfs::FileSystem::new(ReadOnly(storage), fatfs::FsOptions::new()).expect("mount");
        assert_eq!(filesystem.volume_id(), 0xCA1B_0001);
        assert_eq!(filesystem.volume_label(), "CAIRN-ESP");
        let expected_time = dos_date_time(EPOCH);
        let root = filesystem.root_dir();
        let efi = root.open_dir("EFI").expect("EFI");
        let mut names = Vec::new();
        for entry in efi.iter() {
            let entry = entry.expect("entry");
            if entry.file_name() != "." && entry.file_name() != ".." {
                names.push(entry.file_name());
                assert_eq!(entry.modified(), expected_time);
                assert_eq!(entry.created(), expected_time);
            }
        }
        assert_eq!(names, ["BOOT", "Linux", "systemd"]);
        let boot = root.open_dir("EFI/BOOT").expect("EFI/BOOT");
        let bootx64 = boot
            .iter()
            .filter_map(Result::ok)
            .find(|entry| entry.file_name() == "BOOTX64.EFI")
            .expect("BOOTX64.EFI listed");
        assert_eq!(bootx64.len(), 90_000);
        assert_eq!(bootx64.modified(), expected_time);
        drop((bootx64, boot, efi, root));
        drop(filesystem);

        // Cross-check with dosfstools and mtools when the host has them.
        if let Ok(output) = Command::new("fsck.fat").arg("-n").arg(&out).output() {
            assert!(output.status.success(), "fsck.fat -n: {output:?}");
        } else {
            eprintln!("skipped cross-check: fsck.fat not installed");
        }
        if let Ok(output) = Command::new("mdir")
            .args(["-i"])
            .arg(&out)
            .arg("::/EFI/Linux")
            .output()
        {
            let listing = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success(), "mdir: {output:?}");
            assert!(listing.contains("cairn-a.efi"), "{listing}");
            assert!(listing.contains("CAIRN-ESP"), "{listing}");
            assert!(
                listing.contains("2023-11-14") || listing.contains("11-14-2023"),
                "{listing}"
            );
        } else {
            eprintln!("skipped cross-check: mdir not installed");
        }
    }

    #[test]
    fn large_esp_is_fat32_and_readable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let uki = dir.path().join("cairn.efi");
        let uki_len = 20 * MIB as usize + 7;
        std::fs::write(&uki, uki_bytes(uki_len)).expect("write uki");
        let out = dir.path().join("esp.img");
        let image = build_esp(&sample_files(&uki), &options(), &out).expect("build");
        assert_eq!(image.kind, FatKind::Fat32, "{image:?}");
        assert!(image.free_bytes >= 2 * uki_len as u64, "{image:?}");
        assert_eq!(
            read_file(&out, "EFI/Linux/cairn-a.efi").expect("uki"),
            uki_bytes(uki_len)
        );
        if let Ok(output) = Command::new("fsck.fat").arg("-n").arg(&out).output() {
            assert!(output.status.success(), "fsck.fat -n: {output:?}");
        } else {
            eprintln!("skipped cross-check: fsck.fat not installed");
        }
    }

    /// Checks every directory's first two slots, whatever the FAT type,
    /// without relying on host programs.
    #[test]
    fn directories_start_with_dot_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        for uki_len in [100_000usize, 20 * MIB as usize] {
            let uki = dir.path().join("cairn.efi");
            std::fs::write(&uki, uki_bytes(uki_len)).expect("write uki");
            let out = dir.path().join("esp.img");
            build_esp(&sample_files(&uki), &options(), &out).expect("build");
            let storage = File::open(&out).expect("open");
            let volume = RawVolume::read(&storage).expect("boot sector");
            let root = volume.root_directory(&storage).expect("root");
            let mut pending: Vec<(u32, u32)> = subdirectories(&root)
                .into_iter()
                .map(|cluster| (cluster, 0))
                .collect();
            let mut seen = 0;
            while let Some((cluster, parent)) = pending.pop() {
                seen += 1;
                let bytes = volume.read_chain(&storage, cluster).expect("directory");
                assert_eq!(&bytes[..11], DOT_NAME, "first slot of cluster {cluster}");
                assert_eq!(
                    &bytes[32..43],
                    DOT_DOT_NAME,
                    "second slot of cluster {cluster}"
                );
                let dot_dot_cluster = subdirectory_cluster(&bytes[32..64]);
                assert_eq!(dot_dot_cluster, parent, "`..` of cluster {cluster}");
                assert_eq!(
                    subdirectory_cluster(&bytes[..32]),
                    cluster,
                    "`.` of {cluster}"
                );
                pending.extend(
                    subdirectories(&bytes)
                        .into_iter()
                        .map(|child| (child, cluster)),
                );
            }
            assert_eq!(seen, 5, "EFI, EFI/BOOT, EFI/Linux, EFI/systemd, loader");
        }
    }

    fn subdirectory_cluster(entry: &[u8]) -> u32 {
        (u32::from(u16::from_le_bytes([entry[20], entry[21]])) << 16)
            | u32::from(u16::from_le_bytes([entry[26], entry[27]]))
    }

    #[test]
    fn same_inputs_give_same_bytes_in_any_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let uki = dir.path().join("cairn.efi");
        std::fs::write(&uki, uki_bytes(300_000)).expect("write uki");
        let files = sample_files(&uki);
        let mut reversed = files.clone();
        reversed.reverse();
        let first = dir.path().join("a.img");
        let second = dir.path().join("b.img");
        build_esp(&files, &options(), &first).expect("first");
        build_esp(&reversed, &options(), &second).expect("second");
        assert_eq!(
            std::fs::read(&first).expect("read"),
            std::fs::read(&second).expect("read")
        );
        let mut later = options();
        later.source_date_epoch += 86_400;
        let third = dir.path().join("c.img");
        build_esp(&files, &later, &third).expect("third");
        assert_ne!(
            std::fs::read(&first).expect("read"),
            std::fs::read(&third).expect("read"),
            "the epoch must reach the timestamps"
        );
    }

    #[test]
    fn rejects_bad_input_without_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("esp.img");
        let file = |path: &str| EspFile {
            path: path.to_owned(),
            content: Content::Bytes(vec![1]),
        };
        let cases: Vec<(Vec<EspFile>, EspOptions)> = vec![
            (vec![file("/EFI/x")], options()),
            (vec![file("EFI/../x")], options()),
            (vec![file("EFI/a:b")], options()),
            (vec![file("efi/x"), file("EFI/X")], options()),
            (vec![file("EFI"), file("EFI/x")], options()),
            (
                vec![file("x")],
                EspOptions {
                    label: "lowercase".to_owned(),
                    ..options()
                },
            ),
            (
                vec![EspFile {
                    path: "x".to_owned(),
                    content: Content::File(dir.path().join("missing")),
                }],
                options(),
            ),
        ];
        for (files, options) in cases {
            assert!(
                build_esp(&files, &options, &out).is_err(),
                "{files:?} accepted"
            );
        }
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }
}
