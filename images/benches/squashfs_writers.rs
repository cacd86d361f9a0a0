//! Squashfs writer benchmark: `mksquashfs` against the `backhand` crate.
//!
//! Run with `cargo bench -p cairn-images --bench squashfs_writers`. It
//! prints figures and never fails on a slow machine; a writer that errors
//! or produces an image `unsquashfs` cannot list is reported, not hidden.
//!
//! Input: the root file system of the default image, unpacked once with
//! `unsquashfs` from `target/cairn-test/image/rootfs.squashfs` (left by the
//! test suite) or from the image named by `$CAIRN_BENCH_SQUASHFS`. Run as
//! root so the unpacked tree keeps its owners. Without an image it prints
//! how to build one and stops.
//!
//! What is measured on that same tree, each writer `$CAIRN_BENCH_RUNS`
//! times (default and minimum 2), printing the median wall time, the output
//! size in MiB and whether every run wrote the same bytes:
//!
//! 1. **mksquashfs zstd 19**: the image builder's exact invocation (see
//!    `images/src/build/squashfs.rs`): zstd level 19, 1 MiB blocks,
//!    `-processors` = available cores, `-noappend -no-xattrs -reproducible
//!    -all-root`, fixed `-mkfs-time`/`-all-time`, and a pseudo file giving
//!    every non-symlink entry its mode and owner from the tree, as the
//!    builder does with the packages' metadata.
//! 2. **mksquashfs zstd 15**: the same with level 15.
//! 3. **backhand zstd 19**: `backhand::FilesystemWriter` fed the same tree
//!    (sorted walk; directories, files read lazily from disk, symlinks and
//!    device nodes, with the tree's modes and owners and the same fixed
//!    mtime), zstd level 19 (set through the zstd compression options, which
//!    backhand also writes into the image), 1 MiB blocks (backhand's
//!    maximum), duplicate-file detection on. backhand compresses on one
//!    thread; the time includes the tree walk, as mksquashfs's does.
//!
//! The backhand image is checked with `unsquashfs -l` (its listing is
//! compared with the mksquashfs image's) and unpacked again with
//! `unsquashfs` to compare contents, types, modes and owners with the input. A final line gives
//! the backhand/mksquashfs (zstd 19) time and size ratios.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use backhand::compression::{CompressionOptions, Compressor, Zstd};
use backhand::{FilesystemCompressor, FilesystemWriter, NodeHeader};
use sha2::{Digest, Sha256};

const SOURCE_DATE_EPOCH: u32 = 1_700_000_000;
const BLOCK_SIZE: u32 = 1 << 20;
const MIB: f64 = 1024.0 * 1024.0;

/// The outcome of one writer measured over several runs.
struct Measured {
    label: String,
    times: Vec<Duration>,
    sizes: Vec<u64>,
    digests: Vec<String>,
    last_output: PathBuf,
}

impl Measured {
    fn median(&self) -> Duration {
        let mut times = self.times.clone();
        times.sort();
        let middle = times.len() / 2;
        if times.len().is_multiple_of(2) {
            (times[middle - 1] + times[middle]) / 2
        } else {
            times[middle]
        }
    }

    fn size_mib(&self) -> f64 {
        self.sizes.last().copied().unwrap_or(0) as f64 / MIB
    }

    fn deterministic(&self) -> bool {
        self.digests.windows(2).all(|pair| pair[0] == pair[1])
    }

    fn print(&self) {
        let runs: Vec<String> = self
            .times
            .iter()
            .map(|t| format!("{:.1}", t.as_secs_f64()))
            .collect();
        println!(
            "{:<22} median {:>7.1} s (runs: {} s)  size {:>7.2} MiB  deterministic: {}",
            self.label,
            self.median().as_secs_f64(),
            runs.join(", "),
            self.size_mib(),
            if self.deterministic() {
                "yes (same sha256 every run)".to_string()
            } else {
                format!("NO (sha256s {})", self.digests.join(" "))
            }
        );
    }
}

fn main() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the images crate sits inside the workspace")
        .to_path_buf();
    let image = match std::env::var_os("CAIRN_BENCH_SQUASHFS") {
        Some(path) => PathBuf::from(path),
        None => workspace.join("target/cairn-test/image/rootfs.squashfs"),
    };
    if !image.is_file() {
        println!(
            "squashfs_writers: no input image at {}.\n\
             Build one from the workspace root with\n  \
             bootstrap image build --profile profiles/default.toml --out target/cairn-test/image\n\
             (or run the test suite, which leaves it there), or point \
             CAIRN_BENCH_SQUASHFS at an existing rootfs.squashfs.",
            image.display()
        );
        return;
    }
    let runs = std::env::var("CAIRN_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(2)
        .max(2);
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let scratch = tempfile::Builder::new()
        .prefix("cairn-squashfs-bench-")
        .tempdir()
        .expect("a scratch directory under the system temp dir");
    let tree = scratch.path().join("root");

    println!("== squashfs writer benchmark ==");
    println!(
        "input: {} (unpacked once); host: {jobs} cores, load average {}; \
         {runs} runs each; running as uid {}",
        image.display(),
        load_average(),
        std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
    );
    let unpack = Command::new("unsquashfs")
        .args(["-no-progress", "-d"])
        .arg(&tree)
        .arg(&image)
        .output()
        .expect("unsquashfs runs (install squashfs-tools)");
    assert!(
        unpack.status.success(),
        "unsquashfs failed: {}",
        String::from_utf8_lossy(&unpack.stderr)
    );
    let entries = walk(&tree);
    let stats = TreeStats::of(&entries);
    println!(
        "tree: {} entries ({} files, {} dirs, {} symlinks, {} other), \
         {:.1} MiB of file data, {} files with more than one link, {} non-root owners",
        entries.len(),
        stats.files,
        stats.dirs,
        stats.symlinks,
        stats.other,
        stats.bytes as f64 / MIB,
        stats.hardlinked,
        stats.non_root
    );
    let pseudo = scratch.path().join("squashfs.pseudo");
    std::fs::write(&pseudo, pseudo_file(&entries)).expect("pseudo file written");

    let mut results = Vec::new();
    for level in [19, 15] {
        let measured = measure(
            &format!("mksquashfs zstd {level}"),
            runs,
            scratch.path(),
            |out| mksquashfs(&tree, out, &pseudo, level, jobs),
        );
        measured.print();
        results.push(measured);
    }
    let backhand = measure("backhand zstd 19", runs, scratch.path(), |out| {
        backhand_write(&tree, &entries, out, 19)
    });
    backhand.print();

    let reference = listing(&results[0].last_output).expect("mksquashfs output lists");
    match listing(&backhand.last_output) {
        Ok(list) => {
            let same = list == reference;
            println!(
                "unsquashfs -l on backhand's output: ok, {} entries, {} mksquashfs's listing",
                list.len(),
                if same { "same as" } else { "DIFFERENT from" }
            );
        }
        Err(message) => println!("unsquashfs -l on backhand's output: FAILED: {message}"),
    }
    println!(
        "backhand's output unpacked by unsquashfs vs the input tree: {}",
        compare_unpacked(&backhand.last_output, &tree, &scratch.path().join("check"))
    );

    let mk19 = &results[0];
    let mk15 = &results[1];
    println!(
        "summary: backhand/mksquashfs(zstd 19): time x{:.2}, size x{:.3}; \
         mksquashfs zstd 15/19: time x{:.2}, size x{:.3}; load average now {}",
        backhand.median().as_secs_f64() / mk19.median().as_secs_f64(),
        backhand.size_mib() / mk19.size_mib(),
        mk15.median().as_secs_f64() / mk19.median().as_secs_f64(),
        mk15.size_mib() / mk19.size_mib(),
        load_average()
    );
}

fn measure(
    label: &str,
    runs: usize,
    scratch: &Path,
    mut write: impl FnMut(&Path) -> Result<(), String>,
) -> Measured {
    let mut measured = Measured {
        label: label.to_string(),
        times: Vec::new(),
        sizes: Vec::new(),
        digests: Vec::new(),
        last_output: PathBuf::new(),
    };
    for run in 0..runs {
        let out = scratch.join(format!("{}-{run}.squashfs", label.replace(' ', "-")));
        let start = Instant::now();
        if let Err(message) = write(&out) {
            panic!("{label} failed: {message}");
        }
        measured.times.push(start.elapsed());
        measured.sizes.push(
            std::fs::metadata(&out)
                .expect("the writer left its output")
                .len(),
        );
        measured.digests.push(sha256(&out));
        // Keep only the last image, so the scratch directory stays small.
        if run + 1 < runs {
            std::fs::remove_file(&out).expect("scratch image removed");
        }
        measured.last_output = out;
    }
    measured
}

fn mksquashfs(
    tree: &Path,
    out: &Path,
    pseudo: &Path,
    level: u32,
    jobs: usize,
) -> Result<(), String> {
    let epoch = SOURCE_DATE_EPOCH.to_string();
    let output = Command::new("mksquashfs")
        .env_remove("SOURCE_DATE_EPOCH")
        .arg(tree)
        .arg(out)
        .args([
            "-noappend",
            "-quiet",
            "-no-progress",
            "-no-xattrs",
            "-reproducible",
        ])
        .args(["-comp", "zstd", "-Xcompression-level"])
        .arg(level.to_string())
        .args(["-b", "1M"])
        .args(["-all-root", "-mkfs-time", &epoch, "-all-time", &epoch])
        .args(["-processors", &jobs.to_string()])
        .arg("-pf")
        .arg(pseudo)
        .output()
        .map_err(|e| format!("cannot run mksquashfs: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

fn backhand_write(tree: &Path, entries: &[Entry], out: &Path, level: u32) -> Result<(), String> {
    let mut fs = FilesystemWriter::default();
    fs.set_block_size(BLOCK_SIZE);
    fs.set_time(SOURCE_DATE_EPOCH);
    let compressor = FilesystemCompressor::new(
        Compressor::Zstd,
        Some(CompressionOptions::Zstd(Zstd {
            compression_level: level,
        })),
    )
    .map_err(|e| e.to_string())?;
    fs.set_compressor(compressor);
    let root = std::fs::symlink_metadata(tree).map_err(|e| e.to_string())?;
    fs.set_root_mode((root.mode() & 0o7777) as u16);
    fs.set_root_uid(root.uid());
    fs.set_root_gid(root.gid());
    for entry in entries {
        let meta = &entry.meta;
        let header = NodeHeader::new(
            (meta.mode() & 0o7777) as u16,
            meta.uid(),
            meta.gid(),
            SOURCE_DATE_EPOCH,
        );
        let kind = meta.file_type();
        let path = Path::new("/").join(&entry.relative);
        let pushed = if kind.is_dir() {
            fs.push_dir(&path, header)
        } else if kind.is_symlink() {
            let target = std::fs::read_link(tree.join(&entry.relative))
                .map_err(|e| format!("{}: {e}", entry.relative.display()))?;
            fs.push_symlink(target, &path, header)
        } else if kind.is_file() {
            fs.push_file_from_path(tree.join(&entry.relative), &path, header)
        } else if kind.is_char_device() {
            fs.push_char_device(meta.rdev() as u32, &path, header)
        } else if kind.is_block_device() {
            fs.push_block_device(meta.rdev() as u32, &path, header)
        } else if kind.is_fifo() {
            fs.push_fifo(&path, header)
        } else {
            fs.push_socket(&path, header)
        };
        pushed.map_err(|e| format!("{}: {e}", entry.relative.display()))?;
    }
    let file = File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    fs.write(&mut writer).map_err(|e| e.to_string())?;
    let file = writer.into_inner().map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| e.to_string())
}

/// One entry of the tree, below its root, in sorted (parents first) order.
struct Entry {
    relative: PathBuf,
    meta: std::fs::Metadata,
}

fn walk(root: &Path) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(relative) = stack.pop() {
        let dir = root.join(&relative);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").file_name())
            .collect();
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let child = relative.join(&name);
            let meta = std::fs::symlink_metadata(root.join(&child))
                .unwrap_or_else(|e| panic!("{}: {e}", child.display()));
            if meta.is_dir() {
                subdirs.push(child.clone());
            }
            entries.push(Entry {
                relative: child,
                meta,
            });
        }
        // Reverse so the stack visits subdirectories in sorted order.
        stack.extend(subdirs.into_iter().rev());
    }
    entries
}

#[derive(Default)]
struct TreeStats {
    files: usize,
    dirs: usize,
    symlinks: usize,
    other: usize,
    bytes: u64,
    hardlinked: usize,
    non_root: usize,
}

impl TreeStats {
    fn of(entries: &[Entry]) -> Self {
        let mut stats = Self::default();
        for entry in entries {
            let meta = &entry.meta;
            if meta.is_file() {
                stats.files += 1;
                stats.bytes += meta.len();
                if meta.nlink() > 1 {
                    stats.hardlinked += 1;
                }
            } else if meta.is_dir() {
                stats.dirs += 1;
            } else if meta.file_type().is_symlink() {
                stats.symlinks += 1;
            } else {
                stats.other += 1;
            }
            if meta.uid() != 0 || meta.gid() != 0 {
                stats.non_root += 1;
            }
        }
        stats
    }
}

/// The mksquashfs pseudo file the builder would write for this tree: mode
/// and owner of every entry but symlinks.
fn pseudo_file(entries: &[Entry]) -> String {
    let mut pseudo = String::new();
    for entry in entries {
        let meta = &entry.meta;
        if meta.file_type().is_symlink() {
            continue;
        }
        let text = entry.relative.to_string_lossy();
        let path = if text.contains([' ', '"', '\\']) {
            format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
        } else {
            text.into_owned()
        };
        let _ = writeln!(
            pseudo,
            "{path} m {:o} {} {}",
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid()
        );
    }
    pseudo
}

/// The sorted paths `unsquashfs -l` prints for an image.
fn listing(image: &Path) -> Result<Vec<String>, String> {
    let output = Command::new("unsquashfs")
        .args(["-l", "-no-progress"])
        .arg(image)
        .output()
        .map_err(|e| format!("cannot run unsquashfs: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
    }
    let mut lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with("squashfs-root"))
        .map(str::to_string)
        .collect();
    lines.sort();
    Ok(lines)
}

/// Unpacks `image` with `unsquashfs` and compares it with `tree`: contents
/// and symlink targets (`diff -r`), and every entry's type, mode and owner.
fn compare_unpacked(image: &Path, tree: &Path, dest: &Path) -> String {
    let unpack = Command::new("unsquashfs")
        .args(["-no-progress", "-d"])
        .arg(dest)
        .arg(image)
        .output();
    match unpack {
        Ok(output) if output.status.success() => {}
        Ok(output) => {
            return format!(
                "unsquashfs FAILED: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Err(e) => return format!("cannot run unsquashfs: {e}"),
    }
    let diff = Command::new("diff")
        .args(["-r", "--no-dereference", "-q"])
        .arg(tree)
        .arg(dest)
        .output();
    let contents_same = matches!(&diff, Ok(output) if output.status.success());
    let key = |entry: &Entry| {
        let meta = &entry.meta;
        (entry.relative.clone(), meta.mode(), meta.uid(), meta.gid())
    };
    let expected: Vec<_> = walk(tree).iter().map(key).collect();
    let found: Vec<_> = walk(dest).iter().map(key).collect();
    let _ = std::fs::remove_dir_all(dest);
    format!(
        "contents {}, types/modes/owners {}",
        if contents_same { "identical" } else { "DIFFER" },
        if expected == found {
            "identical"
        } else {
            "DIFFER"
        }
    )
}

fn sha256(path: &Path) -> String {
    let mut file = File::open(path).expect("output readable");
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).expect("output readable");
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    hex::encode(hasher.finalize())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}
