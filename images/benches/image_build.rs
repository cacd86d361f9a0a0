//! Image build benchmark: Cairn's builder against Debian's `mkosi`.
//!
//! Run with `cargo bench -p cairn-images --bench image_build`. It prints
//! figures and never fails on a slow machine; only a broken Cairn build
//! (something the other tests catch too) stops it.
//!
//! What is measured, all for `profiles/default.toml` with a fixed
//! `SOURCE_DATE_EPOCH`:
//!
//! 1. **Cold build**: a fresh, empty cache directory, so apt's package
//!    lists and every package are downloaded, and `no_reuse` so the squashfs
//!    is compressed from scratch. The download stages ("fetching ...") are
//!    reported apart from the rest. Cairn's own binaries are built once,
//!    untimed, before the cold build, so the cargo step inside it is warm (a
//!    no-op check). Every build prints its cargo step and its total without
//!    it, and says when cargo did recompile (the workspace was edited during
//!    the run) or when Cairn's binaries changed between builds (which
//!    changes the root, so the squashfs cannot be reused).
//! 2. **Warm rebuilds** with the now populated cache and reuse allowed:
//!    the first one still compresses the squashfs (the cold build ran with
//!    `no_reuse`, so nothing was stored), the second one is the rebuild users
//!    normally hit after a first build (packages cached, unchanged root
//!    reused). Target: under 30 s.
//! 3. **Output sizes**, from the build report (target for
//!    `initramfs.cpio.zst`: at most 60 MiB).
//! 4. **mkosi** (Debian 12's mkosi 14; installed with apt-get when
//!    missing): the same package set (the resolved profile's kernel package
//!    and package list), Debian bookworm, from the Debian mirror the host's
//!    apt configuration names (read at run time), no package cache. mkosi's
//!    bootable GPT formats loop-mount a FAT ESP, which this kind of host
//!    cannot do, so it builds `plain_squashfs` (its unbootable root image)
//!    through a wrapper that gives mksquashfs the same zstd level 19 and
//!    1 MiB blocks as Cairn, so the squashfs sizes compare like for like.
//!    mkosi runs with `--base-packages=no` (Cairn carries no systemd), an
//!    empty `etc/kernel/install.d` skeleton (mkosi 14 writes a hook there
//!    that only systemd would create) and `--nspawn-keep-unit` (no system
//!    bus in a container, so systemd-nspawn cannot register a scope). It
//!    prints mkosi's time and size and their ratios to Cairn's cold build and
//!    squashfs; if mkosi fails, the tail of its output is printed instead.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cairn_images::build::{BuildOptions, BuildReport, PackageSource, binaries, build};
use cairn_images::profile::Profile;

const SOURCE_DATE_EPOCH: u64 = 1_700_000_000;
const DEBIAN_RELEASE: &str = "bookworm";
const WARM_TARGET: Duration = Duration::from_secs(30);
const INITRAMFS_TARGET_MIB: f64 = 60.0;
/// A cargo step faster than this only checked that nothing changed.
const CARGO_WARM: Duration = Duration::from_secs(10);

fn main() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the images crate sits inside the workspace")
        .to_path_buf();
    let profile_path = workspace.join("profiles/default.toml");
    let profile = Profile::load(&profile_path).expect("profiles/default.toml loads");
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let scratch = tempfile::Builder::new()
        .prefix("cairn-image-bench-")
        .tempdir()
        .expect("a scratch directory under the system temp dir");

    println!("== image build benchmark: {} ==", profile_path.display());
    println!(
        "host: {jobs} cores, load average {}; SOURCE_DATE_EPOCH={SOURCE_DATE_EPOCH}",
        load_average()
    );

    let binary_names: Vec<String> = profile
        .workspace_binaries
        .iter()
        .map(|b| b.name.to_string())
        .collect();
    let started = Instant::now();
    binaries::build(&workspace, &binary_names)
        .expect("Cairn's binaries build (cargo build --release) before timing starts");
    println!(
        "cargo step warmed before timing ({}: {}); in the builds below it only re-checks",
        binary_names.join(", "),
        secs(started.elapsed())
    );

    let options = BuildOptions {
        profile: profile_path.clone(),
        out: scratch.path().join("out"),
        cache: scratch.path().join("cache"),
        jobs,
        source_date_epoch: SOURCE_DATE_EPOCH,
        packages: PackageSource::Apt,
        binaries_dir: None,
        workspace: Some(workspace.clone()),
        refresh: false,
        no_reuse: true,
    };

    // 1. Cold build.
    println!();
    println!("-- 1. cold build (fresh empty cache, no reuse) --");
    let cold = timed_build(&options, None);
    let download = cold.fetch_time();
    println!(
        "cold total {}: downloads (apt lists + packages + artifacts) {}, everything else {}",
        secs(cold.total),
        secs(download),
        secs(cold.total.saturating_sub(download))
    );
    println!(
        "cold total without the cargo step: {}; packages in the image: {}",
        secs(cold.total.saturating_sub(cold.cargo)),
        cold.report.packages
    );

    // 2. Warm rebuilds.
    let warm_options = BuildOptions {
        no_reuse: false,
        ..options
    };
    println!();
    println!(
        "-- 2a. warm rebuild: cache populated, squashfs not stored yet (cold ran no-reuse) --"
    );
    let first_warm = timed_build(&warm_options, Some(&cold));
    println!(
        "first warm rebuild: {} (without the cargo step {})",
        secs(first_warm.total),
        secs(first_warm.total.saturating_sub(first_warm.cargo))
    );
    println!();
    println!(
        "-- 2b. warm rebuild: the usual rebuild path (packages cached, unchanged root reused) --"
    );
    let warm = timed_build(&warm_options, Some(&first_warm));
    let verdict = if warm.total < WARM_TARGET {
        "met"
    } else {
        "missed"
    };
    println!(
        "warm rebuild: {} (target < {}: {verdict}); without the cargo step {}",
        secs(warm.total),
        secs(WARM_TARGET),
        secs(warm.total.saturating_sub(warm.cargo))
    );

    // 3. Output sizes.
    println!();
    println!("-- 3. outputs --");
    for (name, size) in &warm.report.outputs {
        let mut note = String::new();
        if name == "initramfs.cpio.zst" {
            note.push_str(&format!("  (target <= {INITRAMFS_TARGET_MIB} MiB)"));
        }
        match (cold.digests.get(name), warm.digests.get(name)) {
            (Some(a), Some(b)) if a != b && cold.binaries != warm.binaries => {
                note.push_str("  (differs from cold: Cairn binaries changed in between)");
            }
            (Some(a), Some(b)) if a != b => note.push_str("  (DIFFERS from the cold build)"),
            _ => {}
        }
        println!(
            "  {name:<20} {size:>11} bytes {:>7.1} MiB{note}",
            mib(*size)
        );
    }
    let squashfs_size = warm
        .report
        .outputs
        .iter()
        .find(|(name, _)| name == "rootfs.squashfs")
        .map(|(_, size)| *size);
    println!("load average after the Cairn builds: {}", load_average());

    // 4. mkosi.
    println!();
    println!("-- 4. mkosi, same package set --");
    let mut packages = vec![profile.kernel.package.to_string()];
    packages.extend(profile.packages.iter().map(ToString::to_string));
    println!("packages: {}", packages.join(" "));
    match run_mkosi(&scratch.path().join("mkosi"), &packages) {
        Ok(mkosi) => {
            println!(
                "{}: total {} = debootstrap + apt install (incl. downloads) {}, mksquashfs {}, rest {}",
                mkosi.version,
                secs(mkosi.total),
                secs(mkosi.install),
                secs(mkosi.squashfs),
                secs(
                    mkosi
                        .total
                        .saturating_sub(mkosi.install)
                        .saturating_sub(mkosi.squashfs)
                )
            );
            for line in &mkosi.apt_fetched {
                println!("  apt: {line}");
            }
            println!(
                "mkosi image: {} bytes ({:.1} MiB), {} packages (Cairn: {})",
                mkosi.size,
                mib(mkosi.size),
                mkosi
                    .packages
                    .map_or_else(|| "?".to_owned(), |n| n.to_string()),
                cold.report.packages
            );
            let mkosi_secs = mkosi.total.as_secs_f64();
            println!(
                "ratio time mkosi / cairn cold: {:.2}x ({:.2}x without the cargo step); \
                 mkosi / cairn warm rebuild: {:.1}x",
                ratio(mkosi_secs, cold.total.as_secs_f64()),
                ratio(
                    mkosi_secs,
                    cold.total.saturating_sub(cold.cargo).as_secs_f64()
                ),
                ratio(mkosi_secs, warm.total.as_secs_f64())
            );
            if let Some(squashfs) = squashfs_size {
                println!(
                    "ratio size mkosi squashfs / cairn rootfs.squashfs: {:.2}x",
                    ratio(mkosi.size as f64, squashfs as f64)
                );
            }
            println!("mkosi needed: {}", mkosi.workarounds.join("; "));
        }
        Err(error) => println!("mkosi failed; Cairn's figures above stand.\n{error}"),
    }
}

/// One timed Cairn build and what its manifest says it contains.
#[derive(Debug)]
struct Run {
    report: BuildReport,
    total: Duration,
    cargo: Duration,
    /// Output name → sha256.
    digests: BTreeMap<String, String>,
    /// Cairn binary name → sha256.
    binaries: BTreeMap<String, String>,
}

impl Run {
    fn stage(&self, prefix: &str) -> Duration {
        self.report
            .stages
            .iter()
            .filter(|(stage, _)| stage.starts_with(prefix))
            .map(|(_, duration)| *duration)
            .sum()
    }

    fn fetch_time(&self) -> Duration {
        self.stage("fetching")
    }
}

/// Runs a build, prints its stages and says whether the cargo step was a
/// no-op check and whether Cairn's binaries changed since `previous`.
fn timed_build(options: &BuildOptions, previous: Option<&Run>) -> Run {
    let started = Instant::now();
    let report = build(options).expect("profiles/default.toml builds");
    let total = started.elapsed();
    print_stages(&report);
    let manifest_path = options.out.join("manifest.json");
    let manifest: serde_json::Value = std::fs::read_to_string(&manifest_path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    let named = |key: &str| -> BTreeMap<String, String> {
        manifest
            .get(key)
            .and_then(serde_json::Value::as_array)
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|e| {
                        Some((
                            e.get("name")?.as_str()?.to_owned(),
                            e.get("sha256")?.as_str()?.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut run = Run {
        report,
        total,
        cargo: Duration::ZERO,
        digests: named("outputs"),
        binaries: named("binaries"),
    };
    run.cargo = run.stage("preparing Cairn binaries");
    let mut note = if run.cargo < CARGO_WARM {
        "warm, binaries already built".to_owned()
    } else {
        "NOT warm: cargo recompiled (workspace sources or cargo's environment changed)".to_owned()
    };
    if let Some(previous) = previous
        && previous.binaries != run.binaries
    {
        note.push_str("; the binaries differ from the previous build, so the root changed");
    }
    println!("  cargo step {}: {note}", secs(run.cargo));
    run
}

fn print_stages(report: &BuildReport) {
    for (stage, duration) in &report.stages {
        println!("  {stage:<44} {:>8}", secs(*duration));
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "?".to_owned())
}

fn secs(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

#[derive(Debug)]
struct MkosiFigures {
    version: String,
    total: Duration,
    install: Duration,
    squashfs: Duration,
    size: u64,
    packages: Option<usize>,
    apt_fetched: Vec<String>,
    workarounds: Vec<String>,
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn run_quiet(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "`{program} {}` failed ({}):\n{}",
            args.join(" "),
            output.status,
            tail(&text, 20)
        ))
    }
}

/// Installs mkosi (and debootstrap, mksquashfs) with apt-get when missing.
fn ensure_mkosi(workarounds: &mut Vec<String>) -> Result<(), String> {
    let missing: Vec<&str> = [
        ("mkosi", "mkosi"),
        ("debootstrap", "debootstrap"),
        ("mksquashfs", "squashfs-tools"),
    ]
    .into_iter()
    .filter(|(program, _)| !on_path(program))
    .map(|(_, package)| package)
    .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("installing {} with apt-get (not timed)", missing.join(", "));
    run_quiet("apt-get", &["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    run_quiet("apt-get", &args)?;
    workarounds.push(format!("apt-get install {}", missing.join(" ")));
    Ok(())
}

/// The Debian archive the host's apt configuration uses for `release`
/// (deb822 `.sources` files first, then the one-line `sources.list`).
fn host_debian_mirror(release: &str) -> Result<String, String> {
    let mut sources: Vec<PathBuf> = std::fs::read_dir("/etc/apt/sources.list.d")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "sources"))
                .collect()
        })
        .unwrap_or_default();
    sources.sort();
    for path in &sources {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza
                    .lines()
                    .filter(|l| !l.trim_start().starts_with('#'))
                    .find_map(|l| {
                        let (key, value) = l.split_once(':')?;
                        key.trim()
                            .eq_ignore_ascii_case(name)
                            .then(|| value.trim().to_owned())
                    })
                    .unwrap_or_default()
            };
            let is_deb = field("Types").split_whitespace().any(|t| t == "deb");
            let has_release = field("Suites").split_whitespace().any(|s| s == release);
            if is_deb
                && has_release
                && let Some(uri) = field("URIs").split_whitespace().next()
            {
                return Ok(uri.to_owned());
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string("/etc/apt/sources.list") {
        for line in text.lines().map(str::trim) {
            let mut words = line.split_whitespace();
            if words.next() != Some("deb") {
                continue;
            }
            let mut rest: Vec<&str> = words.collect();
            if rest.first().is_some_and(|w| w.starts_with('[')) {
                let close = rest.iter().position(|w| w.ends_with(']')).unwrap_or(0);
                rest.drain(..=close);
            }
            if let [uri, suite, ..] = rest.as_slice()
                && *suite == release
            {
                return Ok((*uri).to_owned());
            }
        }
    }
    Err(format!(
        "no `deb` source for {release} in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list"
    ))
}

fn run_mkosi(dir: &Path, packages: &[String]) -> Result<MkosiFigures, String> {
    let mut workarounds = Vec::new();
    ensure_mkosi(&mut workarounds)?;
    let version = run_quiet("mkosi", &["--version"])?.trim().to_owned();
    let mirror = host_debian_mirror(DEBIAN_RELEASE)?;
    println!("mirror (from the host's apt sources): {mirror}");

    let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
    let skeleton = dir.join("skeleton");
    let workspace = dir.join("workspace");
    std::fs::create_dir_all(skeleton.join("etc/kernel/install.d"))
        .map_err(|e| io("skeleton tree", e))?;
    std::fs::create_dir_all(&workspace).map_err(|e| io("workspace dir", e))?;
    let wrapper = dir.join("mksquashfs-zstd19");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\n# mkosi passes: ROOT OUT -noappend -comp zstd\n\
         exec mksquashfs \"$@\" -b 1M -no-xattrs -Xcompression-level 19\n",
    )
    .map_err(|e| io("mksquashfs wrapper", e))?;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| io("mksquashfs wrapper", e))?;
    workarounds.extend([
        "Format=plain_squashfs (bootable GPT needs a vfat loop mount)".to_owned(),
        "--nspawn-keep-unit (no system bus for systemd-nspawn)".to_owned(),
        "--base-packages=no plus an empty etc/kernel/install.d skeleton".to_owned(),
        "--mksquashfs wrapper for zstd-19 / 1 MiB blocks".to_owned(),
    ]);

    let image = dir.join("image.squashfs");
    let mut command = Command::new("mkosi");
    command
        .current_dir(dir)
        .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH.to_string())
        .env("PYTHONUNBUFFERED", "1")
        .args(["--distribution", "debian", "--release", DEBIAN_RELEASE])
        .args(["--mirror", &mirror])
        .args(["--format", "plain_squashfs", "--compress-fs", "zstd"])
        .arg("--output")
        .arg(&image)
        .arg("--workspace-dir")
        .arg(&workspace)
        .arg("--mksquashfs")
        .arg(&wrapper)
        .arg("--skeleton-tree")
        .arg(&skeleton)
        .args([
            "--base-packages=no",
            "--with-docs=no",
            "--clean-package-metadata=yes",
            "--nspawn-keep-unit",
            "--force",
        ]);
    for package in packages {
        command.args(["--package", package]);
    }
    command
        .arg("build")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());

    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run mkosi: {e}"))?;
    let (sender, lines) = mpsc::channel::<(Duration, String)>();
    let mut readers = Vec::new();
    let streams: [Option<Box<dyn Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ];
    for stream in streams.into_iter().flatten() {
        let sender = sender.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if sender.send((started.elapsed(), line)).is_err() {
                    break;
                }
            }
        }));
    }
    drop(sender);
    let log: Vec<(Duration, String)> = lines.iter().collect();
    let status = child
        .wait()
        .map_err(|e| format!("waiting for mkosi: {e}"))?;
    let total = started.elapsed();
    for reader in readers {
        let _ = reader.join();
    }
    let text: String = log.iter().map(|(_, line)| format!("{line}\n")).collect();
    if !status.success() {
        return Err(format!(
            "mkosi exited with {status} after {}; last lines:\n{}",
            secs(total),
            tail(&text, 25)
        ));
    }
    let at = |needle: &str| {
        log.iter()
            .find(|(_, line)| line.contains(needle))
            .map(|(at, _)| *at)
    };
    let install = at("Creating squashfs").unwrap_or(total);
    let squashfs = at("Digging holes")
        .or_else(|| at("Linking image file"))
        .unwrap_or(total)
        .saturating_sub(install);
    let apt_fetched = log
        .iter()
        .filter(|(_, line)| line.starts_with("Fetched "))
        .map(|(_, line)| line.clone())
        .collect();
    let size = std::fs::metadata(&image)
        .map_err(|e| io("mkosi's image", e))?
        .len();
    let manifest = dir.join("image.squashfs.manifest");
    let packages = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|json| json.get("packages")?.as_array().map(Vec::len));
    Ok(MkosiFigures {
        version,
        total,
        install,
        squashfs,
        size,
        packages,
        apt_fetched,
        workarounds,
    })
}
