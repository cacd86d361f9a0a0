//! Converts a raw disk image to qcow2, in pure Rust.
//!
//! # Format
//!
//! The layout follows QEMU's `docs/interop/qcow2.txt`, version 3, with
//! 64 KiB clusters and 16-bit refcounts. All integers are big-endian. A
//! guest offset is translated through two levels: the L1 table points at
//! L2 tables, each L2 table maps 8192 guest clusters (512 MiB) to host
//! clusters. An L2 entry of zero means "unallocated", which reads as zeros
//! when there is no backing file, so only clusters holding a non-zero byte
//! are stored. Every host cluster in use has a refcount of 1, recorded in
//! refcount blocks listed by the refcount table; L1 and L2 entries carry
//! the `COPIED` flag that says so.
//!
//! # Layout
//!
//! The raw image is scanned once to find the non-zero clusters (holes are
//! skipped with `SEEK_DATA`/`SEEK_HOLE`, so a mostly empty multi-GiB disk
//! converts in a moment). Then every host cluster's position is known
//! before anything is written, and the file is written front to back:
//!
//! ```text
//! header | L1 table | refcount table | refcount blocks | L2 tables | data clusters
//! ```
//!
//! with L2 tables in L1 order and data clusters in guest order. The
//! result depends only on the raw image's bytes, so conversions are
//! deterministic. `qemu-img check` accepts the output and `qemu-img
//! compare` finds it identical to its source.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::cpio::set_readable_by_all;

const MAGIC: u32 = 0x5146_49FB; // "QFI\xfb"
const VERSION: u32 = 3;
const CLUSTER_BITS: u32 = 16;
/// Cluster size: QEMU's default, a good balance of metadata and waste.
pub const CLUSTER_SIZE: u64 = 1 << CLUSTER_BITS;
/// Refcounts are 2^4 = 16 bits wide.
const REFCOUNT_ORDER: u32 = 4;
const REFCOUNT_BYTES: u64 = 2;
const HEADER_LENGTH: u32 = 104;
/// Entries per L2 table, refcount table or L1 cluster (8-byte entries).
const ENTRIES_PER_TABLE_CLUSTER: u64 = CLUSTER_SIZE / 8;
/// Refcounts per refcount block.
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER_SIZE / REFCOUNT_BYTES;
/// Set in L1 and L2 entries whose cluster has a refcount of exactly 1.
const COPIED: u64 = 1 << 63;
static ZERO_CLUSTER: [u8; CLUSTER_SIZE as usize] = [0; CLUSTER_SIZE as usize];

/// Anything that can go wrong converting an image.
#[derive(Debug, thiserror::Error)]
pub enum Qcow2Error {
    /// The raw image could not be read, or changed during the conversion.
    #[error("cannot read raw image {}: {source}", path.display())]
    Read {
        /// The raw image.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The qcow2 image could not be written.
    #[error("cannot write qcow2 image {}: {source}", path.display())]
    Write {
        /// The output path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// What a conversion produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qcow2Summary {
    /// Guest-visible size in bytes (the raw image's size).
    pub virtual_size: u64,
    /// Clusters of guest data stored.
    pub data_clusters: u64,
    /// Size of the qcow2 file in bytes.
    pub file_size: u64,
}

/// Where every piece of metadata goes, in clusters from the start of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    l1_entries: u64,
    l1_offset: u64,
    l1_clusters: u64,
    refcount_table_offset: u64,
    refcount_table_clusters: u64,
    refcount_blocks_offset: u64,
    refcount_blocks: u64,
    l2_offset: u64,
    l2_tables: u64,
    data_offset: u64,
    total_clusters: u64,
}

impl Layout {
    fn plan(guest_clusters: u64, l2_tables: u64, data_clusters: u64) -> Self {
        let l1_entries = guest_clusters.div_ceil(ENTRIES_PER_TABLE_CLUSTER);
        let l1_clusters = (l1_entries * 8).div_ceil(CLUSTER_SIZE).max(1);
        let fixed = 1 + l1_clusters + l2_tables + data_clusters;
        // The refcount structures count themselves, so grow them until they
        // cover everything including their own clusters.
        let mut refcount_blocks = 1;
        let mut refcount_table_clusters = 1;
        loop {
            let total = fixed + refcount_table_clusters + refcount_blocks;
            let blocks = total.div_ceil(REFCOUNTS_PER_BLOCK);
            let table = (blocks * 8).div_ceil(CLUSTER_SIZE);
            if blocks <= refcount_blocks && table <= refcount_table_clusters {
                break;
            }
            refcount_blocks = refcount_blocks.max(blocks);
            refcount_table_clusters = refcount_table_clusters.max(table);
        }
        let l1_offset = 1;
        let refcount_table_offset = l1_offset + l1_clusters;
        let refcount_blocks_offset = refcount_table_offset + refcount_table_clusters;
        let l2_offset = refcount_blocks_offset + refcount_blocks;
        let data_offset = l2_offset + l2_tables;
        Self {
            l1_entries,
            l1_offset,
            l1_clusters,
            refcount_table_offset,
            refcount_table_clusters,
            refcount_blocks_offset,
            refcount_blocks,
            l2_offset,
            l2_tables,
            data_offset,
            total_clusters: data_offset + data_clusters,
        }
    }
}

/// Converts the raw image at `raw` to a qcow2 image at `out`.
///
/// The output is written under a temporary name next to `out` and renamed
/// into place when complete.
pub fn raw_to_qcow2(raw: &Path, out: &Path) -> Result<Qcow2Summary, Qcow2Error> {
    let read_error = |source| Qcow2Error::Read {
        path: raw.to_path_buf(),
        source,
    };
    let write_error = |source| Qcow2Error::Write {
        path: out.to_path_buf(),
        source,
    };
    let source = File::open(raw).map_err(read_error)?;
    let virtual_size = source.metadata().map_err(read_error)?.len();
    let nonzero = nonzero_clusters(&source, virtual_size).map_err(read_error)?;

    let guest_clusters = virtual_size.div_ceil(CLUSTER_SIZE);
    let mut used_l1_indexes: Vec<u64> = nonzero
        .iter()
        .map(|cluster| cluster / ENTRIES_PER_TABLE_CLUSTER)
        .collect();
    used_l1_indexes.dedup();
    let layout = Layout::plan(
        guest_clusters,
        used_l1_indexes.len() as u64,
        nonzero.len() as u64,
    );

    let directory = out
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temporary = tempfile::Builder::new()
        .prefix(".qcow2-")
        .tempfile_in(directory)
        .map_err(write_error)?;
    let mut writer = BufWriter::with_capacity(1 << 20, temporary.as_file());

    writer
        .write_all(&header(virtual_size, &layout))
        .map_err(write_error)?;
    writer
        .write_all(&l1_table(&layout, &used_l1_indexes))
        .map_err(write_error)?;
    writer
        .write_all(&refcount_structures(&layout))
        .map_err(write_error)?;
    writer
        .write_all(&l2_tables(&layout, &used_l1_indexes, &nonzero))
        .map_err(write_error)?;

    let mut cluster = vec![0u8; CLUSTER_SIZE as usize];
    for &index in &nonzero {
        let offset = index * CLUSTER_SIZE;
        let len = CLUSTER_SIZE.min(virtual_size - offset) as usize;
        cluster[len..].fill(0);
        source
            .read_exact_at(&mut cluster[..len], offset)
            .map_err(read_error)?;
        if cluster[..] == ZERO_CLUSTER[..] {
            return Err(read_error(io::Error::new(
                io::ErrorKind::InvalidData,
                "the image changed while it was converted",
            )));
        }
        writer.write_all(&cluster).map_err(write_error)?;
    }
    let file = writer
        .into_inner()
        .map_err(|error| write_error(error.into_error()))?;
    let file_size = file.metadata().map_err(write_error)?.len();
    if file_size != layout.total_clusters * CLUSTER_SIZE
        || source.metadata().map_err(read_error)?.len() != virtual_size
    {
        return Err(read_error(io::Error::new(
            io::ErrorKind::InvalidData,
            "the image changed while it was converted",
        )));
    }
    file.sync_all().map_err(write_error)?;
    set_readable_by_all(temporary.path()).map_err(write_error)?;
    temporary
        .persist(out)
        .map_err(|error| write_error(error.error))?;
    Ok(Qcow2Summary {
        virtual_size,
        data_clusters: nonzero.len() as u64,
        file_size,
    })
}

/// Indexes of the guest clusters holding at least one non-zero byte, in
/// increasing order. Only the file's data extents are read.
fn nonzero_clusters(source: &File, size: u64) -> io::Result<Vec<u64>> {
    let mut nonzero = Vec::new();
    let mut buffer = vec![0u8; CLUSTER_SIZE as usize];
    // The next cluster not yet examined, so a cluster shared by two extents
    // is read once.
    let mut next_cluster = 0u64;
    let mut position = 0u64;
    while position < size {
        let Some((data_start, data_end)) = next_data_extent(source, position, size)? else {
            break;
        };
        let first = (data_start / CLUSTER_SIZE).max(next_cluster);
        let end = data_end.div_ceil(CLUSTER_SIZE);
        for index in first..end {
            let offset = index * CLUSTER_SIZE;
            let len = CLUSTER_SIZE.min(size - offset) as usize;
            source.read_exact_at(&mut buffer[..len], offset)?;
            if buffer[..len] != ZERO_CLUSTER[..len] {
                nonzero.push(index);
            }
        }
        next_cluster = next_cluster.max(end);
        position = data_end;
    }
    Ok(nonzero)
}

/// The next range of `[position, size)` that may hold data, or `None` when
/// the rest of the file is a hole. Filesystems without hole support report
/// the whole file as data.
fn next_data_extent(source: &File, position: u64, size: u64) -> io::Result<Option<(u64, u64)>> {
    use rustix::fs::{SeekFrom, seek};
    let data_start = match seek(source, SeekFrom::Data(position)) {
        Ok(offset) => offset,
        Err(rustix::io::Errno::NXIO) => return Ok(None),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOTSUP) => {
            return Ok(Some((position, size)));
        }
        Err(error) => return Err(error.into()),
    };
    let data_end = match seek(source, SeekFrom::Hole(data_start)) {
        Ok(offset) => offset,
        Err(rustix::io::Errno::NXIO) => size,
        Err(error) => return Err(error.into()),
    };
    Ok(Some((data_start, data_end.min(size))))
}

fn header(virtual_size: u64, layout: &Layout) -> Vec<u8> {
    let mut header = vec![0u8; CLUSTER_SIZE as usize];
    let mut put = |at: usize, bytes: &[u8]| header[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, &MAGIC.to_be_bytes());
    put(4, &VERSION.to_be_bytes());
    // 8: backing file offset, 16: its size: none.
    put(20, &CLUSTER_BITS.to_be_bytes());
    put(24, &virtual_size.to_be_bytes());
    // 32: no encryption.
    // The L1 size fits: it is at most 2^64 / 2^29 entries.
    put(36, &(layout.l1_entries as u32).to_be_bytes());
    put(40, &(layout.l1_offset * CLUSTER_SIZE).to_be_bytes());
    put(
        48,
        &(layout.refcount_table_offset * CLUSTER_SIZE).to_be_bytes(),
    );
    put(56, &(layout.refcount_table_clusters as u32).to_be_bytes());
    // 60: no snapshots; 72, 80, 88: no incompatible, compatible or
    // autoclear features.
    put(96, &REFCOUNT_ORDER.to_be_bytes());
    put(100, &HEADER_LENGTH.to_be_bytes());
    // 104: the header extension area starts with the end marker (type 0,
    // length 0), which the zero fill already is.
    header
}

fn l1_table(layout: &Layout, used_l1_indexes: &[u64]) -> Vec<u8> {
    let mut table = vec![0u8; (layout.l1_clusters * CLUSTER_SIZE) as usize];
    for (l2_number, &l1_index) in used_l1_indexes.iter().enumerate() {
        let l2_offset = (layout.l2_offset + l2_number as u64) * CLUSTER_SIZE;
        let at = (l1_index * 8) as usize;
        table[at..at + 8].copy_from_slice(&(l2_offset | COPIED).to_be_bytes());
    }
    table
}

/// The refcount table followed by the refcount blocks: refcount 1 for
/// every cluster of the file, 0 past its end.
fn refcount_structures(layout: &Layout) -> Vec<u8> {
    let table_len = (layout.refcount_table_clusters * CLUSTER_SIZE) as usize;
    let blocks_len = (layout.refcount_blocks * CLUSTER_SIZE) as usize;
    let mut bytes = vec![0u8; table_len + blocks_len];
    for block in 0..layout.refcount_blocks {
        let block_offset = (layout.refcount_blocks_offset + block) * CLUSTER_SIZE;
        let at = (block * 8) as usize;
        bytes[at..at + 8].copy_from_slice(&block_offset.to_be_bytes());
    }
    for cluster in 0..layout.total_clusters {
        let at = table_len + (cluster * REFCOUNT_BYTES) as usize;
        bytes[at..at + 2].copy_from_slice(&1u16.to_be_bytes());
    }
    bytes
}

fn l2_tables(layout: &Layout, used_l1_indexes: &[u64], nonzero: &[u64]) -> Vec<u8> {
    let mut tables = vec![0u8; (layout.l2_tables * CLUSTER_SIZE) as usize];
    let mut l2_number = 0usize;
    for (data_number, &guest_cluster) in nonzero.iter().enumerate() {
        let l1_index = guest_cluster / ENTRIES_PER_TABLE_CLUSTER;
        while used_l1_indexes[l2_number] != l1_index {
            l2_number += 1;
        }
        let host_offset = (layout.data_offset + data_number as u64) * CLUSTER_SIZE;
        let entry = (guest_cluster % ENTRIES_PER_TABLE_CLUSTER) as usize;
        let at = l2_number * CLUSTER_SIZE as usize + entry * 8;
        tables[at..at + 8].copy_from_slice(&(host_offset | COPIED).to_be_bytes());
    }
    tables
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const MIB: u64 = 1024 * 1024;

    /// An independent qcow2 reader for the subset written here: resolves
    /// every guest cluster through L1/L2 and checks refcounts.
    fn read_qcow2(image: &[u8]) -> Vec<u8> {
        let be64 = |at: u64| {
            let at = at as usize;
            u64::from_be_bytes(image[at..at + 8].try_into().expect("8 bytes"))
        };
        let be32 = |at: u64| {
            let at = at as usize;
            u32::from_be_bytes(image[at..at + 4].try_into().expect("4 bytes"))
        };
        assert_eq!(be32(0), MAGIC);
        assert_eq!(be32(4), 3);
        let cluster_bits = be32(20);
        let cluster = 1u64 << cluster_bits;
        let size = be64(24);
        let l1_size = u64::from(be32(36));
        let l1_offset = be64(40);
        let refcount_table = be64(48);
        assert_eq!(be32(96), 4, "16-bit refcounts");
        assert_eq!(image.len() as u64 % cluster, 0);
        let host_clusters = image.len() as u64 / cluster;
        let mut referenced = vec![0u16; host_clusters as usize];
        referenced[0] += 1;
        let mut mark = |offset: u64, count: u64| {
            for c in offset / cluster..offset / cluster + count {
                referenced[c as usize] += 1;
            }
        };
        mark(l1_offset, (l1_size * 8).div_ceil(cluster));
        mark(refcount_table, u64::from(be32(56)));
        let mut guest = vec![0u8; size as usize];
        let per_l2 = cluster / 8;
        for l1_index in 0..l1_size {
            let l1_entry = be64(l1_offset + l1_index * 8);
            if l1_entry == 0 {
                continue;
            }
            assert_ne!(l1_entry & COPIED, 0);
            let l2 = l1_entry & 0x00FF_FFFF_FFFF_FE00;
            mark(l2, 1);
            for l2_index in 0..per_l2 {
                let entry = be64(l2 + l2_index * 8);
                if entry == 0 {
                    continue;
                }
                assert_ne!(entry & COPIED, 0);
                let host = entry & 0x00FF_FFFF_FFFF_FE00;
                mark(host, 1);
                let guest_offset = (l1_index * per_l2 + l2_index) * cluster;
                let len = cluster.min(size - guest_offset) as usize;
                guest[guest_offset as usize..guest_offset as usize + len]
                    .copy_from_slice(&image[host as usize..host as usize + len]);
            }
        }
        // Refcount blocks: check every cluster's stored refcount.
        let table_entries = u64::from(be32(56)) * cluster / 8;
        for table_index in 0..table_entries {
            let block = be64(refcount_table + table_index * 8);
            if block == 0 {
                continue;
            }
            mark(block, 1);
        }
        for c in 0..host_clusters {
            let block = be64(refcount_table + (c / (cluster / 2)) * 8);
            let at = (block + (c % (cluster / 2)) * 2) as usize;
            let stored = u16::from_be_bytes([image[at], image[at + 1]]);
            assert_eq!(
                stored, referenced[c as usize],
                "refcount of host cluster {c}"
            );
            assert_eq!(stored, 1, "host cluster {c} unused or shared");
        }
        guest
    }

    /// A raw image with data in scattered clusters, a partial last cluster
    /// and large holes.
    fn write_raw(path: &Path, size: u64) -> Vec<u8> {
        let mut raw = vec![0u8; size as usize];
        for (offset, byte) in [
            (0u64, 0xEBu8),
            (CLUSTER_SIZE - 1, 1),
            (3 * CLUSTER_SIZE + 17, 2),
            (MIB + 5, 3),
            (size - 1, 4),
        ] {
            raw[offset as usize] = byte;
        }
        raw[(2 * MIB) as usize..(2 * MIB + 200_000) as usize].fill(0x5A);
        std::fs::write(path, &raw).expect("write raw");
        raw
    }

    #[test]
    fn layout_grows_refcount_structures_to_cover_themselves() {
        let small = Layout::plan(16, 1, 3);
        assert_eq!(small.refcount_blocks, 1);
        assert_eq!(small.total_clusters, 1 + 1 + 1 + 1 + 1 + 3);
        // 100 GiB fully allocated: 1.6 M clusters need 50 refcount blocks.
        let guest = 100 * 1024 * MIB / CLUSTER_SIZE;
        let big = Layout::plan(guest, guest / 8192, guest);
        assert_eq!(big.l1_entries, 200);
        assert!(big.refcount_blocks * REFCOUNTS_PER_BLOCK >= big.total_clusters);
        assert_eq!(
            big.refcount_blocks,
            big.total_clusters.div_ceil(REFCOUNTS_PER_BLOCK)
        );
    }

    #[test]
    fn converts_and_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw_path = dir.path().join("disk.raw");
        // Not a multiple of the cluster size.
        let size = 5 * MIB + 3 * 512;
        let raw = write_raw(&raw_path, size);
        let out = dir.path().join("disk.qcow2");
        let summary = raw_to_qcow2(&raw_path, &out).expect("convert");
        assert_eq!(summary.virtual_size, size);
        // Clusters 0, 3, 16, 32..35 and the last one.
        assert_eq!(summary.data_clusters, 1 + 1 + 1 + 4 + 1);
        let image = std::fs::read(&out).expect("read");
        assert_eq!(image.len() as u64, summary.file_size);
        assert_eq!(read_qcow2(&image), raw);
        qemu_img_agrees(&raw_path, &out);
    }

    #[test]
    fn sparse_multi_gib_image_uses_several_l2_tables() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw_path = dir.path().join("disk.raw");
        let size = 3 * 1024 * MIB;
        let file = File::create(&raw_path).expect("create");
        file.set_len(size).expect("set_len");
        for (offset, bytes) in [
            (0u64, &b"first"[..]),
            (600 * MIB, &b"second"[..]),
            (size - 512, &b"last"[..]),
        ] {
            file.write_all_at(bytes, offset).expect("write");
        }
        drop(file);
        let out = dir.path().join("disk.qcow2");
        let summary = raw_to_qcow2(&raw_path, &out).expect("convert");
        assert_eq!(summary.data_clusters, 3);
        // Header, L1, refcount table, refcount block, 3 L2 tables, 3 data.
        assert_eq!(summary.file_size, 10 * CLUSTER_SIZE);
        qemu_img_agrees(&raw_path, &out);
    }

    #[test]
    fn same_input_gives_same_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw_path = dir.path().join("disk.raw");
        write_raw(&raw_path, 4 * MIB);
        let first = dir.path().join("a.qcow2");
        let second = dir.path().join("b.qcow2");
        raw_to_qcow2(&raw_path, &first).expect("first");
        raw_to_qcow2(&raw_path, &second).expect("second");
        assert_eq!(
            std::fs::read(&first).expect("read"),
            std::fs::read(&second).expect("read")
        );
    }

    #[test]
    fn missing_input_fails_without_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("disk.qcow2");
        let error = raw_to_qcow2(&dir.path().join("missing.raw"), &out).expect_err("missing input");
        assert!(error.to_string().contains("missing.raw"), "{error}");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }

    /// `qemu-img check` and `qemu-img compare`, when qemu-utils is installed.
    fn qemu_img_agrees(raw: &Path, qcow2: &Path) {
        let Ok(check) = Command::new("qemu-img")
            .args(["check", "-f", "qcow2"])
            .arg(qcow2)
            .output()
        else {
            eprintln!("skipped qemu-img cross-check: qemu-img not installed");
            return;
        };
        assert!(check.status.success(), "qemu-img check: {check:?}");
        let report = String::from_utf8_lossy(&check.stdout);
        assert!(report.contains("No errors were found"), "{report}");
        let compare = Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", "qcow2"])
            .arg(raw)
            .arg(qcow2)
            .output()
            .expect("qemu-img ran a moment ago");
        assert!(compare.status.success(), "qemu-img compare: {compare:?}");
    }
}
