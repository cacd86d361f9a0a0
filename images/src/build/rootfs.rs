//! Assembling the root filesystem tree on the build host.
//!
//! Packages are extracted in name order (so overlapping paths resolve the
//! same way every time), then Cairn's own content is laid on top: workspace
//! binaries, local files, symlinks, URL artifacts, the kernel modules the
//! profile carries with a generated `modules.dep`, first-boot defaults in
//! the standard `sysctl.d` / `modules-load.d` formats, and `os-release`.
//! Every entry's real mode and owner is recorded for the squashfs writer,
//! since the unprivileged builder cannot chown.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use super::squashfs::Ownership;
use super::{BuildError, io_err};
use crate::deb::{self, ExtractOptions};
use crate::fetch::apt::FetchedPackage;
use crate::kmod::{KernelModules, ModuleClosure};
use crate::profile::{PathGlob, ResolvedProfile};

/// Which of the profile's path rules apply to a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    /// The node's root filesystem: excludes and package filters.
    Rootfs,
    /// Build inputs (kernel, UEFI binaries): package filters only, since
    /// the excludes describe what a node does not need at run time.
    Input,
}

/// Extracts packages into `root`, applying the profile's excludes and
/// per-package filters. Returns the ownership of every extracted entry.
pub fn extract_packages(
    profile: &ResolvedProfile,
    packages: &[FetchedPackage],
    root: &Path,
    tree: Tree,
) -> Result<Vec<Ownership>, BuildError> {
    let mut ownership = Vec::new();
    for entry in
        deb::create_merged_usr_layout(root, profile.architecture).map_err(BuildError::Deb)?
    {
        ownership.push(to_ownership(&entry));
    }
    let mut sorted: Vec<&FetchedPackage> = packages.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for package in sorted {
        let options = extract_options(profile, &package.name, tree);
        let extracted = deb::extract(&package.path, root, &options).map_err(BuildError::Deb)?;
        ownership.extend(extracted.entries.iter().map(to_ownership));
    }
    Ok(ownership)
}

fn to_ownership(entry: &deb::ExtractedEntry) -> Ownership {
    Ownership {
        path: entry.path.clone(),
        mode: entry.mode,
        uid: entry.uid,
        gid: entry.gid,
    }
}

pub fn extract_options(profile: &ResolvedProfile, package: &str, tree: Tree) -> ExtractOptions {
    let mut include: Vec<PathGlob> = Vec::new();
    let mut exclude: Vec<PathGlob> = match tree {
        Tree::Rootfs => profile.excludes.clone(),
        Tree::Input => Vec::new(),
    };
    for filter in profile
        .package_filters
        .iter()
        .filter(|f| f.package.matches(package))
    {
        include.extend(filter.include.iter().cloned());
        exclude.extend(filter.exclude.iter().cloned());
    }
    ExtractOptions { include, exclude }
}

/// Resolves an image path against the usr-merged layout (`bin/x` →
/// `usr/bin/x`) and joins it to `root`.
pub fn host_path(root: &Path, image_path: &Path) -> PathBuf {
    root.join(deb::usr_merged(image_path))
}

pub fn write_file(
    root: &Path,
    image_path: &Path,
    contents: &[u8],
    mode: u32,
) -> Result<PathBuf, BuildError> {
    let target = host_path(root, image_path);
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    if target.is_symlink() {
        fs::remove_file(&target).map_err(io_err(&target))?;
    }
    fs::write(&target, contents).map_err(io_err(&target))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(io_err(&target))?;
    Ok(target)
}

pub fn copy_file(
    root: &Path,
    image_path: &Path,
    source: &Path,
    mode: u32,
) -> Result<PathBuf, BuildError> {
    let target = host_path(root, image_path);
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    if target.is_symlink() || target.is_file() {
        fs::remove_file(&target).map_err(io_err(&target))?;
    }
    fs::copy(source, &target).map_err(io_err(source))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(io_err(&target))?;
    Ok(target)
}

/// Empty directories node-agent mounts over at boot: the kernel
/// filesystems, `/run`, and the writable `/var` and `/tmp`.
pub fn create_mount_points(root: &Path) -> Result<Vec<Ownership>, BuildError> {
    let mut ownership = Vec::new();
    for (name, mode) in [
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("run", 0o755),
        ("var", 0o755),
        ("tmp", 0o1777),
        ("etc", 0o755),
    ] {
        let path = root.join(name);
        if !path.is_dir() {
            fs::create_dir_all(&path).map_err(io_err(&path))?;
        }
        ownership.push(Ownership {
            path: PathBuf::from(name),
            mode,
            uid: 0,
            gid: 0,
        });
    }
    Ok(ownership)
}

pub fn set_mode(path: &Path, mode: u32) -> Result<(), BuildError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))
}

fn executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

/// `[[file]]` entries: single files or whole trees.
pub fn copy_local_files(profile: &ResolvedProfile, root: &Path) -> Result<(), BuildError> {
    for file in &profile.files {
        let source = profile.host_path(&file.from);
        if !source.exists() {
            return Err(BuildError::Input(format!(
                "{}: [[file]] from = {:?} does not exist",
                profile.path().display(),
                source.display().to_string()
            )));
        }
        let mut stack = vec![(source.clone(), file.to.as_path().to_path_buf())];
        while let Some((from, to)) = stack.pop() {
            if from.is_dir() {
                let mut children: Vec<_> = fs::read_dir(&from)
                    .map_err(io_err(&from))?
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .collect();
                children.sort();
                for child in children {
                    let name = child.file_name().map(PathBuf::from).unwrap_or_default();
                    stack.push((child, to.join(name)));
                }
            } else {
                let mode = file.mode.map(|m| m.bits()).unwrap_or(if executable(&from) {
                    0o755
                } else {
                    0o644
                });
                copy_file(root, &to, &from, mode)?;
            }
        }
    }
    Ok(())
}

pub fn create_symlinks(profile: &ResolvedProfile, root: &Path) -> Result<(), BuildError> {
    for link in &profile.symlinks {
        let target = host_path(root, link.path.as_path());
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        if target.is_symlink() || target.is_file() {
            fs::remove_file(&target).map_err(io_err(&target))?;
        }
        std::os::unix::fs::symlink(link.target.to_string(), &target).map_err(io_err(&target))?;
    }
    Ok(())
}

/// Unpacks a tar archive (optionally compressed) below `dir` in the image,
/// refusing entries that would land outside it.
pub fn unpack_archive(
    archive: &Path,
    name_hint: &str,
    root: &Path,
    dir: &Path,
    strip: u32,
) -> Result<(), BuildError> {
    let file = fs::File::open(archive).map_err(io_err(archive))?;
    let reader: Box<dyn std::io::Read> =
        if name_hint.ends_with(".gz") || name_hint.ends_with(".tgz") {
            Box::new(flate2::read::GzDecoder::new(file))
        } else if name_hint.ends_with(".xz") {
            Box::new(liblzma::read::XzDecoder::new(file))
        } else if name_hint.ends_with(".zst") {
            Box::new(zstd::stream::read::Decoder::new(file).map_err(io_err(archive))?)
        } else {
            Box::new(file)
        };
    let mut tar = tar::Archive::new(reader);
    let base = host_path(root, dir);
    fs::create_dir_all(&base).map_err(io_err(&base))?;
    for entry in tar.entries().map_err(io_err(archive))? {
        let mut entry = entry.map_err(io_err(archive))?;
        let raw = entry.path().map_err(io_err(archive))?.into_owned();
        let mut relative = PathBuf::new();
        for component in raw
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .skip(strip as usize)
        {
            match component {
                Component::Normal(part) => relative.push(part),
                _ => {
                    return Err(BuildError::Input(format!(
                        "{name_hint}: entry {:?} escapes the unpack directory",
                        raw.display().to_string()
                    )));
                }
            }
        }
        if relative.as_os_str().is_empty() {
            continue;
        }
        if let Ok(Some(link)) = entry.link_name()
            && (link.is_absolute() || link.components().any(|c| matches!(c, Component::ParentDir)))
        {
            return Err(BuildError::Input(format!(
                "{name_hint}: link {:?} -> {:?} may escape the unpack directory",
                relative.display().to_string(),
                link.display().to_string()
            )));
        }
        let target = base.join(&relative);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        entry.unpack(&target).map_err(io_err(&target))?;
    }
    Ok(())
}

/// Copies the module closure from the kernel tree into `root` with a
/// `modules.dep` and a `modules.alias` for exactly those modules.
pub fn install_modules(
    kernel: &KernelModules,
    closure: &ModuleClosure,
    root: &Path,
) -> Result<PathBuf, BuildError> {
    let dir = root.join("usr/lib/modules").join(&kernel.version);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    for name in closure.names() {
        if let Some(relative) = kernel.files.get(name) {
            let target = dir.join(relative);
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            fs::copy(kernel.dir.join(relative), &target).map_err(io_err(&target))?;
            fs::set_permissions(&target, fs::Permissions::from_mode(0o644))
                .map_err(io_err(&target))?;
        }
    }
    for file in ["modules.builtin", "modules.builtin.modinfo"] {
        let source = kernel.dir.join(file);
        if source.is_file() {
            fs::copy(&source, dir.join(file)).map_err(io_err(&source))?;
        }
    }
    let dep = dir.join("modules.dep");
    fs::write(&dep, closure.modules_dep(kernel)).map_err(io_err(&dep))?;
    let alias = dir.join("modules.alias");
    fs::write(&alias, closure.modules_alias(kernel)?).map_err(io_err(&alias))?;
    Ok(dir)
}

/// First-boot defaults in the formats systemd-sysctl and modules-load use,
/// so the files mean the same thing to anyone who reads them.
pub fn write_boot_defaults(profile: &ResolvedProfile, root: &Path) -> Result<(), BuildError> {
    let mut sysctls = String::from("# Cairn image defaults (from the image profile).\n");
    for (key, value) in &profile.boot.sysctls {
        sysctls.push_str(&format!("{key} = {value}\n"));
    }
    write_file(
        root,
        Path::new("usr/lib/sysctl.d/50-cairn.conf"),
        sysctls.as_bytes(),
        0o644,
    )?;
    let mut modules = String::from("# Cairn image defaults (from the image profile).\n");
    for module in &profile.boot.modules {
        modules.push_str(&format!("{module}\n"));
    }
    write_file(
        root,
        Path::new("usr/lib/modules-load.d/cairn.conf"),
        modules.as_bytes(),
        0o644,
    )?;
    Ok(())
}

pub fn os_release(profile: &ResolvedProfile, digest: &str) -> String {
    let mut fields = BTreeMap::new();
    fields.insert("ID", "cairn".to_owned());
    fields.insert("NAME", "Cairn".to_owned());
    fields.insert(
        "PRETTY_NAME",
        format!("Cairn {} ({})", profile.version, profile.name),
    );
    fields.insert("VERSION_ID", profile.version.to_string());
    fields.insert("IMAGE_ID", profile.name.to_string());
    fields.insert("IMAGE_VERSION", profile.version.to_string());
    fields.insert("BUILD_ID", digest.chars().take(12).collect());
    fields.insert("ID_LIKE", "debian".to_owned());
    fields
        .into_iter()
        .map(|(k, v)| format!("{k}=\"{v}\"\n"))
        .collect()
}

/// Adjusts recorded ownership for entries that were replaced after
/// extraction (the last writer of a path wins).
pub fn dedupe_ownership(ownership: Vec<Ownership>, root: &Path) -> Vec<Ownership> {
    let mut by_path: BTreeMap<PathBuf, Ownership> = BTreeMap::new();
    for entry in ownership {
        by_path.insert(entry.path.clone(), entry);
    }
    by_path
        .into_values()
        .filter(|entry| {
            root.join(&entry.path)
                .symlink_metadata()
                .is_ok_and(|m| !m.file_type().is_symlink())
        })
        .collect()
}
