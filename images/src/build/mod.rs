//! `image build`: one profile in, every bootable artifact out.
//!
//! Stages, in order: load the profile → fetch packages (rootfs, kernel,
//! UEFI) and URL artifacts into the content-addressed cache → build or take
//! Cairn's binaries → assemble the rootfs tree → squashfs → initramfs
//! (`/init` = node-agent, boot modules, the squashfs) → UKI → ESP + GPT disk
//! → qcow2 → iPXE script → manifest and SBOM.
//!
//! All outputs are written into a temporary directory next to `--out` and
//! renamed into place at the very end, so a failed build leaves no partial
//! output. Every timestamp comes from `SOURCE_DATE_EPOCH` and every
//! identifier (GPT GUIDs, FAT volume id, SBOM namespace) from the profile
//! digest, so the same inputs give the same bytes.

pub mod binaries;
pub mod boot;
pub mod manifest;
pub mod oci;
pub mod rootfs;
pub mod squashfs;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::fetch::apt::{self, AptRepository, FetchedPackage};
use crate::fetch::cache::{self, Cache};
use crate::fetch::url;
use crate::kmod::KernelModules;
use crate::profile::{ArtifactPlacement, OciSource, Output, Profile, ProfileError};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error("fetching packages: {0}")]
    Apt(#[from] apt::AptError),
    #[error("fetching an artifact: {0}")]
    Fetch(#[from] url::FetchError),
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
    #[error("extracting a package: {0}")]
    Deb(crate::deb::DebError),
    #[error("kernel modules: {0}")]
    Kmod(#[from] crate::kmod::KmodError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("workspace binaries: {0}")]
    Binaries(String),
    #[error("{0}")]
    Tool(String),
    #[error("{0}")]
    Input(String),
    #[error("{stage}: {message}")]
    Stage {
        stage: &'static str,
        message: String,
    },
}

impl BuildError {
    pub(crate) fn stage(stage: &'static str, error: impl std::fmt::Display) -> Self {
        Self::Stage {
            stage,
            message: error.to_string(),
        }
    }
}

/// Where Debian packages come from.
#[derive(Debug, Clone)]
pub enum PackageSource {
    /// The host's apt sources, through an isolated apt state.
    Apt,
    /// A directory of `.deb` files.
    Directory(PathBuf),
}

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub profile: PathBuf,
    pub out: PathBuf,
    pub cache: PathBuf,
    pub jobs: usize,
    pub source_date_epoch: u64,
    pub packages: PackageSource,
    /// Take Cairn's binaries from here instead of building them.
    pub binaries_dir: Option<PathBuf>,
    /// The Cargo workspace to build them from (found from the profile path
    /// when not given).
    pub workspace: Option<PathBuf>,
    /// Refresh apt's package lists even if they are recent.
    pub refresh: bool,
    /// Rebuild every artifact even if an identical one is cached (proves
    /// reproducibility rather than assuming it).
    pub no_reuse: bool,
}

impl BuildOptions {
    /// The build's timestamp: `SOURCE_DATE_EPOCH` when set; else the time
    /// of the last commit of the git checkout holding the profile (the
    /// reproducible-builds convention, so rebuilds of one commit match);
    /// else the current time.
    pub fn default_epoch(profile: &Path) -> u64 {
        if let Some(epoch) = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|v| v.trim().parse().ok())
        {
            return epoch;
        }
        let dir = profile
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let from_git = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["log", "-1", "--format=%ct"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok());
        from_git.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        })
    }
}

/// What a build did and how long each stage took.
#[derive(Debug, Clone, Default)]
pub struct BuildReport {
    pub out: PathBuf,
    pub stages: Vec<(String, Duration)>,
    pub outputs: Vec<(String, u64)>,
    pub packages: usize,
}

struct Timer {
    stages: Vec<(String, Duration)>,
    current: Option<(String, Instant)>,
}

impl Timer {
    fn new() -> Self {
        Self {
            stages: Vec::new(),
            current: None,
        }
    }

    fn stage(&mut self, name: &str) {
        self.finish();
        tracing::info!("{name}");
        eprintln!("[image] {name}");
        self.current = Some((name.to_owned(), Instant::now()));
    }

    fn finish(&mut self) {
        if let Some((name, start)) = self.current.take() {
            self.stages.push((name, start.elapsed()));
        }
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn fetch_packages(
    options: &BuildOptions,
    cache: &Cache,
    names: &[String],
    skip: &BTreeSet<String>,
) -> Result<Vec<FetchedPackage>, BuildError> {
    Ok(match &options.packages {
        PackageSource::Apt => {
            let repo = AptRepository::new(cache);
            if options.refresh {
                repo.update(true)?;
            }
            repo.fetch(cache, names, skip)?
        }
        PackageSource::Directory(dir) => apt::resolve_from_dir(cache, dir, names, skip)?,
    })
}

/// Builds every output the profile asks for into `options.out`.
pub fn build(options: &BuildOptions) -> Result<BuildReport, BuildError> {
    let mut timer = Timer::new();
    timer.stage("resolving the profile");
    let profile = Profile::load(&options.profile)?;
    let digest = profile.digest()?.to_string();
    let wants = |output: Output| profile.outputs.contains(&output);

    let out_parent = options
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(out_parent).map_err(io_err(out_parent))?;
    let staging = tempfile::Builder::new()
        .prefix(".cairn-build-")
        .tempdir_in(out_parent)
        .map_err(io_err(out_parent))?;
    let out = staging.path().join("out");
    let work = staging.path().join("work");
    for dir in [&out, &work] {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let cache = Cache::open(&options.cache)?;

    // Artifacts first: a bad pin fails in seconds, before the heavy downloads.
    timer.stage("fetching artifacts");
    let mut artifacts = Vec::new();
    for artifact in &profile.artifacts {
        let url_text = artifact.url.to_string();
        let sha = artifact.sha256.to_string();
        let path = url::fetch(&cache, &url_text, &sha, url::Retry::default())?;
        artifacts.push((artifact.clone(), path));
    }

    timer.stage("fetching Debian packages");
    let skip: BTreeSet<String> = profile
        .skip_packages
        .iter()
        .map(ToString::to_string)
        .collect();
    let wanted: Vec<String> = profile.packages.iter().map(ToString::to_string).collect();
    let packages = if wanted.is_empty() {
        Vec::new()
    } else {
        fetch_packages(options, &cache, &wanted, &skip)?
    };
    // Kernel and UEFI loader are build inputs, resolved together in one apt
    // run; only their own packages are extracted (their dependencies are
    // what the maintainer scripts would need, which never run).
    let uefi_name = profile.uefi.package.as_ref().map(ToString::to_string);
    let mut boot_names = vec![profile.kernel.package.to_string()];
    boot_names.extend(uefi_name.clone());
    let boot_packages = fetch_packages(options, &cache, &boot_names, &skip)?;
    let kernel_only: Vec<FetchedPackage> = boot_packages
        .iter()
        .filter(|p| p.name.starts_with("linux-image"))
        .cloned()
        .collect();
    let uefi_only: Vec<FetchedPackage> = boot_packages
        .iter()
        .filter(|p| uefi_name.as_deref() == Some(p.name.as_str()))
        .cloned()
        .collect();

    timer.stage("preparing Cairn binaries");
    let mut binary_names: Vec<String> = profile
        .workspace_binaries
        .iter()
        .map(|b| b.name.to_string())
        .collect();
    for image in &profile.oci_images {
        if let OciSource::WorkspaceBinaries(names) = &image.source {
            binary_names.extend(names.iter().map(ToString::to_string));
        }
    }
    binary_names.sort();
    binary_names.dedup();
    let binaries = match &options.binaries_dir {
        Some(dir) => binaries::from_dir(dir, &binary_names)?,
        None => {
            let workspace = options
                .workspace
                .clone()
                .or_else(|| binaries::find_workspace(&options.profile))
                .or_else(|| {
                    std::env::current_dir()
                        .ok()
                        .and_then(|d| binaries::find_workspace(&d))
                })
                .ok_or_else(|| {
                    BuildError::Binaries(
                        "no Cargo workspace found to build them from; give --binaries DIR"
                            .to_owned(),
                    )
                })?;
            binaries::build(&workspace, &binary_names)?
        }
    };

    timer.stage("assembling the root filesystem");
    let mut all_oci_packages: Vec<FetchedPackage> = Vec::new();
    let kernel_root = work.join("kernel");
    rootfs::extract_packages(&profile, &kernel_only, &kernel_root, rootfs::Tree::Input)?;
    let kernel = KernelModules::scan(&kernel_root)?;
    let vmlinuz = boot::find_vmlinuz(&kernel_root, &kernel.version)?;

    let root = work.join("rootfs");
    let mut ownership = rootfs::extract_packages(&profile, &packages, &root, rootfs::Tree::Rootfs)?;
    ownership.extend(rootfs::create_mount_points(&root)?);
    for binary in &profile.workspace_binaries {
        let name = binary.name.to_string();
        if let Some(source) = binaries.get(&name) {
            rootfs::copy_file(&root, binary.destination().as_path(), source, 0o755)?;
        }
    }
    rootfs::copy_local_files(&profile, &root)?;
    rootfs::create_symlinks(&profile, &root)?;
    for (artifact, path) in &artifacts {
        match &artifact.placement {
            ArtifactPlacement::File { path: to, mode } => {
                rootfs::copy_file(
                    &root,
                    to.as_path(),
                    path,
                    mode.map(|m| m.bits()).unwrap_or(0o644),
                )?;
            }
            ArtifactPlacement::Unpack {
                dir,
                strip_components,
            } => {
                rootfs::unpack_archive(
                    path,
                    artifact.url.as_ref(),
                    &root,
                    dir.as_path(),
                    *strip_components,
                )?;
            }
        }
    }
    let mut carried: Vec<String> = profile
        .kernel
        .modules
        .iter()
        .map(ToString::to_string)
        .collect();
    carried.extend(
        profile
            .kernel
            .initramfs_modules
            .iter()
            .map(ToString::to_string),
    );
    carried.extend(profile.boot.modules.iter().map(ToString::to_string));
    let closure = kernel.closure(&carried)?;
    rootfs::install_modules(&kernel, &closure, &root)?;
    rootfs::write_boot_defaults(&profile, &root)?;
    rootfs::write_file(
        &root,
        Path::new("usr/lib/os-release"),
        rootfs::os_release(&profile, &digest).as_bytes(),
        0o644,
    )?;
    let mut oci_summaries = Vec::new();
    for (index, image) in profile.oci_images.iter().enumerate() {
        let layer_root = work.join(format!("oci-{index}"));
        let reference = image.reference();
        let image_packages = match &image.source {
            OciSource::Packages(names) => {
                let names: Vec<String> = names.iter().map(ToString::to_string).collect();
                fetch_packages(options, &cache, &names, &BTreeSet::new())?
            }
            _ => Vec::new(),
        };
        all_oci_packages.extend(image_packages.iter().cloned());
        let summary = oci::bundle(
            &profile,
            image,
            &image_packages,
            &binaries,
            &layer_root,
            &root,
            options.source_date_epoch,
        )?;
        ownership.push(squashfs::Ownership {
            path: summary.0.clone(),
            mode: 0o644,
            uid: 0,
            gid: 0,
        });
        oci_summaries.push((reference, summary.1));
    }
    let ownership = rootfs::dedupe_ownership(std::mem::take(&mut ownership), &root);

    timer.stage("writing rootfs.squashfs");
    let squashfs_path = out.join("rootfs.squashfs");
    let reused = squashfs::write(
        &root,
        &squashfs_path,
        &ownership,
        &squashfs::SquashfsOptions {
            source_date_epoch: options.source_date_epoch,
            jobs: options.jobs,
            zstd_level: 19,
        },
        &work,
        (!options.no_reuse).then_some(&cache),
    )?;

    if reused {
        tracing::info!("root filesystem unchanged: reused the cached squashfs");
    }

    timer.stage("writing initramfs.cpio.zst");
    let init = binaries.get("node-agent").ok_or_else(|| {
        BuildError::Input(format!(
            "{}: the initramfs needs a [[workspace-binary]] named node-agent for /init",
            profile.path().display()
        ))
    })?;
    let initramfs_modules: Vec<String> = profile
        .kernel
        .initramfs_modules
        .iter()
        .map(ToString::to_string)
        .collect();
    let initramfs_closure = kernel.closure(&initramfs_modules)?;
    let initramfs_path = out.join("initramfs.cpio.zst");
    boot::write_initramfs(&boot::InitramfsInputs {
        init,
        kernel: &kernel,
        modules: &initramfs_closure,
        squashfs: &squashfs_path,
        source_date_epoch: options.source_date_epoch,
        jobs: options.jobs,
        out: &initramfs_path,
    })?;

    timer.stage("writing kernel, cmdline and boot script");
    let cmdline = profile.cmdline();
    std::fs::copy(&vmlinuz, out.join("vmlinuz")).map_err(io_err(&vmlinuz))?;
    std::fs::write(out.join("cmdline"), format!("{cmdline}\n")).map_err(io_err(&out))?;
    std::fs::write(out.join("boot.ipxe"), boot::ipxe_script(&cmdline)).map_err(io_err(&out))?;

    if wants(Output::Uki) || wants(Output::DiskRaw) || wants(Output::DiskQcow2) {
        timer.stage("writing cairn.efi (UKI)");
        let uefi_root = work.join("uefi");
        rootfs::extract_packages(&profile, &uefi_only, &uefi_root, rootfs::Tree::Input)?;
        let uki_path = out.join("cairn.efi");
        boot::write_uki(
            &uefi_root,
            &out.join("vmlinuz"),
            &initramfs_path,
            &cmdline,
            &rootfs::os_release(&profile, &digest),
            &uki_path,
        )?;
        if wants(Output::DiskRaw) || wants(Output::DiskQcow2) {
            timer.stage("writing disk.raw");
            let raw = out.join("disk.raw");
            boot::write_disk(
                &uefi_root,
                &uki_path,
                &digest,
                options.source_date_epoch,
                &work,
                &raw,
            )?;
            if wants(Output::DiskQcow2) {
                timer.stage("writing disk.qcow2");
                boot::write_qcow2(&raw, &out.join("disk.qcow2"))?;
            }
            if !wants(Output::DiskRaw) {
                std::fs::remove_file(&raw).map_err(io_err(&raw))?;
            }
        }
        if !wants(Output::Uki) {
            std::fs::remove_file(&uki_path).map_err(io_err(&uki_path))?;
        }
    }
    // The kernel, initramfs and squashfs are always built (the UKI and disk
    // are made from them); they are kept only when asked for.
    for output in [
        Output::Squashfs,
        Output::Vmlinuz,
        Output::Initramfs,
        Output::Ipxe,
    ] {
        if !wants(output) {
            let path = out.join(output.file_name());
            std::fs::remove_file(&path).map_err(io_err(&path))?;
        }
    }

    timer.stage("writing manifest.json and sbom.spdx.json");
    let mut all_packages: Vec<FetchedPackage> = packages.clone();
    all_packages.extend(kernel_only.iter().cloned());
    all_packages.extend(all_oci_packages.iter().cloned());
    all_packages.extend(uefi_only.iter().cloned());
    all_packages.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    all_packages.dedup_by(|a, b| a.name == b.name && a.version == b.version);
    let binary_digests: BTreeMap<String, String> = binaries
        .iter()
        .map(|(name, path)| Ok((name.clone(), cache::sha256_file(path)?)))
        .collect::<Result<_, BuildError>>()?;
    manifest::write(&manifest::ManifestInputs {
        profile: &profile,
        digest: &digest,
        source_date_epoch: options.source_date_epoch,
        kernel_version: &kernel.version,
        packages: &all_packages,
        artifacts: &artifacts
            .iter()
            .map(|(a, _)| (a.url.to_string(), a.sha256.to_string()))
            .collect::<Vec<_>>(),
        binaries: &binary_digests,
        modules: &closure.names().cloned().collect::<Vec<_>>(),
        oci_images: &oci_summaries,
        out: &out,
    })?;

    timer.stage("moving outputs into place");
    let outputs = list_outputs(&out)?;
    replace_dir(&out, &options.out)?;
    timer.finish();
    Ok(BuildReport {
        out: options.out.clone(),
        stages: timer.stages,
        outputs,
        packages: all_packages.len(),
    })
}

fn list_outputs(dir: &Path) -> Result<Vec<(String, u64)>, BuildError> {
    let mut outputs: Vec<(String, u64)> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(Result::ok)
        .map(|e| {
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            (e.file_name().to_string_lossy().into_owned(), size)
        })
        .collect();
    outputs.sort();
    Ok(outputs)
}

/// Moves the finished `staged` directory to `target`, replacing a previous
/// build only once the new one is complete.
fn replace_dir(staged: &Path, target: &Path) -> Result<(), BuildError> {
    if target.exists() {
        let old = target.with_file_name(format!(
            ".{}.old-{}",
            target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        std::fs::rename(target, &old).map_err(io_err(target))?;
        std::fs::rename(staged, target).map_err(io_err(target))?;
        std::fs::remove_dir_all(&old).map_err(io_err(&old))?;
    } else {
        std::fs::rename(staged, target).map_err(io_err(target))?;
    }
    Ok(())
}
