//! Image profiles: the TOML recipes in `profiles/` that say what goes into a
//! node image.
//!
//! A profile names the kernel and its command line, the kernel modules to
//! carry (and the few the initramfs needs), the Debian packages to install,
//! pinned URL artifacts, local files, symlinks, path excludes, first-boot
//! sysctls and modules, OCI images to bundle, and the outputs to build. Keys
//! are kebab-case and tables of entries use singular `[[...]]` headers, as in
//! Cargo manifests:
//!
//! ```toml
//! extends = "base.toml"
//! name = "default"
//! version = "0.1.0"
//! packages = ["containerd", "runc"]
//! excludes = ["usr/share/doc/**"]
//! outputs = ["vmlinuz", "initramfs", "disk-qcow2"]
//!
//! [kernel]
//! package = "linux-image-cloud-amd64"
//! cmdline = ["console=ttyS0"]
//! modules = ["overlay", "squashfs", "virtio_blk"]
//! initramfs-modules = ["squashfs", "virtio_blk"]
//!
//! [boot]
//! sysctls = { "net.ipv4.ip_forward" = 1 }
//! modules = ["overlay"]
//!
//! [[package-filter]]
//! package = "linux-image-*-cloud-amd64"
//! include = ["boot/vmlinuz-*", "usr/lib/modules/**"]
//!
//! [[artifact]]
//! url = "https://example.org/cni-plugins-linux-amd64-v1.4.0.tgz"
//! sha256 = "…64 lowercase hex…"
//! unpack-to = "usr/lib/cni"
//!
//! [[file]]
//! from = "files/motd"
//! to = "etc/motd"
//! mode = "0644"
//!
//! [remove]
//! packages = ["nftables"]
//! ```
//!
//! Every value is checked while parsing by the newtypes in [`types`]
//! (package names per Debian policy, sha256 as 64 lowercase hex, sysctl keys,
//! module names, image paths without `..`, http(s) URLs, octal modes), and
//! every table refuses unknown keys, so a typo is an error that names the
//! file, line, column and key rather than a silently ignored setting.
//!
//! # `extends` and the merge rule
//!
//! `extends = "base.toml"` (relative to the extending file) makes the file a
//! layer on top of another profile, which may itself extend another; a cycle
//! is an error listing the chain. The parent is fully resolved first, then
//! the child is applied:
//!
//! - **Scalars** (`name`, `version`, `description`, `architecture`,
//!   `kernel.package`, `uefi.package`, `boot.console-shell`): the child's
//!   value replaces the parent's when the child sets it.
//! - **Lists** (`packages`, `skip-packages`, `excludes`, `outputs`,
//!   `kernel.cmdline`, `kernel.modules`, `kernel.initramfs-modules`,
//!   `boot.modules`): parent entries first, then the child's; a repeated
//!   entry is dropped, keeping the first occurrence (and so its position).
//! - **Maps** (`boot.sysctls`): merged key by key, the child's value winning.
//! - **Tables of entries** (`[[package-filter]]`, `[[workspace-binary]]`,
//!   `[[artifact]]`, `[[file]]`, `[[symlink]]`, `[[oci-image]]`): concatenated
//!   like lists, each entry identified by its key (`package`, `name`, `url`,
//!   `to`, `path`, `name:tag`). Repeating an identical entry is harmless;
//!   declaring a different entry under an inherited key is an error, because
//!   silently keeping either one would surprise someone.
//! - **Removing** inherited entries: a `[remove]` table, shaped like the
//!   profile, lists what to drop from the parent *before* the child's own
//!   entries are added: `[remove] packages = ["nftables"]`,
//!   `[remove.kernel] cmdline = ["quiet"]`, `[remove.boot] sysctls =
//!   ["net.ipv4.ip_forward"]`, `[remove] file = ["etc/motd"]`. Removing and
//!   re-declaring an entry is how a child replaces it. Naming something the
//!   parent does not have is an error (it is almost always a typo).
//!   `[remove]` applies to its own file only and never appears in the
//!   resolved profile.
//!
//! Host paths (`[[file]] from`, `oci-image` `source.dir`) are relative to the
//! file that declares them; when a parent in another directory is merged in,
//! they are rebased so that in the resolved profile every host path is
//! relative to the directory of the profile that was loaded. That keeps the
//! rendered profile (and its [digest](ResolvedProfile::digest)) independent of
//! where the checkout lives.
//!
//! After merging, the result is checked as a whole: `name`, `version`,
//! `kernel.package` and at least one output are required; initramfs and boot
//! modules must be carried by `kernel.modules`; UEFI outputs need
//! `uefi.package`; no two entries may install to the same image path.

mod error;
mod model;
pub mod types;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use error::{ProfileError, line_column};
pub use model::{
    Architecture, ArtifactPlacement, BootRemovals, BootSection, KernelRemovals, KernelSection,
    LocalFile, OciImage, OciSource, Output, PackageFilter, Profile, Removals, Symlink, UefiSection,
    UrlArtifact, WorkspaceBinary,
};
use types::normalize_host_path;
pub use types::{
    BinaryName, FileMode, HttpUrl, ImagePath, ImageVersion, InvalidValue, KernelArg, LinkTarget,
    ModuleName, OciName, OciTag, PackageName, PackagePattern, PathGlob, ProfileName, Sha256,
    SysctlKey, SysctlValue,
};

impl Profile {
    /// Parses one profile file without following `extends`. `path` is only
    /// used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Profile, ProfileError> {
        let deserializer = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(deserializer)
            .map_err(|error| error::parse_error(path, text, error))
    }

    /// Loads a profile, follows its `extends` chain, merges and validates it.
    pub fn load(path: impl AsRef<Path>) -> Result<ResolvedProfile, ProfileError> {
        let path = path.as_ref();
        let mut loader = Loader::default();
        let merged = loader.load_layer(path, None)?;
        ResolvedProfile::finish(merged, path, loader.sources)
    }
}

/// A profile with its `extends` chain merged in and validated: everything
/// the builder needs, nothing optional left to guess. Fields mean what they
/// mean in [`Profile`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ResolvedProfile {
    #[serde(skip)]
    path: PathBuf,
    #[serde(skip)]
    sources: Vec<PathBuf>,
    /// Image name.
    pub name: ProfileName,
    /// Image version.
    pub version: ImageVersion,
    /// One line for humans.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Debian architecture.
    pub architecture: Architecture,
    /// Kernel package, command line and modules.
    pub kernel: ResolvedKernel,
    /// UEFI stub and loader source.
    #[serde(skip_serializing_if = "uefi_is_unset")]
    pub uefi: UefiSection,
    /// Debian packages to install (dependency closure added by the fetcher).
    pub packages: Vec<PackageName>,
    /// Closure packages that are not extracted.
    pub skip_packages: Vec<PackageName>,
    /// Per-package path filters.
    #[serde(rename = "package-filter", skip_serializing_if = "Vec::is_empty")]
    pub package_filters: Vec<PackageFilter>,
    /// Binaries built from this workspace.
    #[serde(rename = "workspace-binary", skip_serializing_if = "Vec::is_empty")]
    pub workspace_binaries: Vec<WorkspaceBinary>,
    /// URL artifacts.
    #[serde(rename = "artifact", skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<UrlArtifact>,
    /// Local files and trees; `from` is relative to [`Self::base_dir`].
    #[serde(rename = "file", skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<LocalFile>,
    /// Symlinks.
    #[serde(rename = "symlink", skip_serializing_if = "Vec::is_empty")]
    pub symlinks: Vec<Symlink>,
    /// Path excludes.
    pub excludes: Vec<PathGlob>,
    /// First-boot defaults.
    pub boot: ResolvedBoot,
    /// Bundled OCI images.
    #[serde(rename = "oci-image", skip_serializing_if = "Vec::is_empty")]
    pub oci_images: Vec<OciImage>,
    /// Outputs to build (the manifest and SBOM always are).
    pub outputs: Vec<Output>,
}

fn uefi_is_unset(uefi: &UefiSection) -> bool {
    uefi.package.is_none()
}

/// `[kernel]` after resolution: the package is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ResolvedKernel {
    /// Kernel package.
    pub package: PackageName,
    /// Command-line arguments, in order.
    pub cmdline: Vec<KernelArg>,
    /// Modules carried by the image.
    pub modules: Vec<ModuleName>,
    /// Modules also put into the initramfs.
    pub initramfs_modules: Vec<ModuleName>,
}

/// `[boot]` after resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ResolvedBoot {
    /// Sysctls, sorted by key.
    pub sysctls: BTreeMap<SysctlKey, SysctlValue>,
    /// Modules to load, in order.
    pub modules: Vec<ModuleName>,
    /// Whether a root shell is started on the console.
    pub console_shell: bool,
}

impl ResolvedProfile {
    /// The profile file that was loaded.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every file that contributed, base first, the loaded profile last.
    pub fn sources(&self) -> &[PathBuf] {
        &self.sources
    }

    /// The directory host paths (`[[file]] from`, `source.dir`) are relative to.
    pub fn base_dir(&self) -> &Path {
        match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        }
    }

    /// A host path from the profile, joined onto [`Self::base_dir`].
    pub fn host_path(&self, relative: &Path) -> PathBuf {
        self.base_dir().join(relative)
    }

    /// The kernel command line as one string.
    pub fn cmdline(&self) -> String {
        let args: Vec<&str> = self.kernel.cmdline.iter().map(KernelArg::as_str).collect();
        args.join(" ")
    }

    /// The resolved profile as TOML, in the profile format itself (loading
    /// the output from the same directory yields the same profile). This is
    /// what `bootstrap image show` prints and what [`Self::digest`] hashes.
    pub fn to_toml(&self) -> Result<String, ProfileError> {
        toml::to_string(self).map_err(|source| ProfileError::Render {
            path: self.path.clone(),
            source,
        })
    }

    /// SHA-256 of [`Self::to_toml`]: changes exactly when the resolved
    /// content changes, whatever files it was spread over.
    pub fn digest(&self) -> Result<Sha256, ProfileError> {
        Ok(Sha256::of(self.to_toml()?.as_bytes()))
    }

    /// Checks the merged profile as a whole and fills in defaults.
    fn finish(
        merged: Profile,
        path: &Path,
        sources: Vec<PathBuf>,
    ) -> Result<ResolvedProfile, ProfileError> {
        let invalid = |key: &str, message: String| ProfileError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message,
        };
        let missing = |key: &str, example: &str| {
            invalid(
                key,
                format!("not set; set `{example}` in this profile or in a profile it extends"),
            )
        };

        let name = merged.name.ok_or_else(|| missing("name", "name = \"…\""))?;
        let version = merged
            .version
            .ok_or_else(|| missing("version", "version = \"0.1.0\""))?;
        let kernel_package = merged.kernel.package.ok_or_else(|| {
            missing(
                "kernel.package",
                "[kernel] package = \"linux-image-cloud-amd64\"",
            )
        })?;
        if merged.outputs.is_empty() {
            return Err(invalid(
                "outputs",
                "expected at least one output (vmlinuz, initramfs, squashfs, uki, disk-raw, disk-qcow2, ipxe)".to_owned(),
            ));
        }
        if let Some(output) = merged.outputs.iter().find(|o| o.needs_uefi())
            && merged.uefi.package.is_none()
        {
            return Err(invalid(
                "uefi.package",
                format!(
                    "output `{output}` needs the UEFI stub; set `[uefi] package = \"systemd-boot-efi\"`"
                ),
            ));
        }

        let carried: HashSet<&ModuleName> = merged.kernel.modules.iter().collect();
        for (key, list) in [
            ("kernel.initramfs-modules", &merged.kernel.initramfs_modules),
            ("boot.modules", &merged.boot.modules),
        ] {
            if let Some(module) = list.iter().find(|m| !carried.contains(m)) {
                return Err(invalid(
                    key,
                    format!(
                        "module `{module}` is not carried by the image; add it to kernel.modules"
                    ),
                ));
            }
        }

        let mut destinations: BTreeMap<ImagePath, String> = BTreeMap::new();
        let mut claim = |target: ImagePath, by: String| -> Result<(), ProfileError> {
            if let Some(previous) = destinations.get(&target) {
                return Err(invalid(
                    &by,
                    format!("`{target}` is also installed by {previous}"),
                ));
            }
            destinations.insert(target, by);
            Ok(())
        };
        for binary in &merged.workspace_binaries {
            claim(
                binary.destination(),
                format!("workspace-binary `{}`", binary.name),
            )?;
        }
        for file in &merged.files {
            claim(file.to.clone(), format!("file `{}`", file.from.display()))?;
        }
        for link in &merged.symlinks {
            claim(link.path.clone(), format!("symlink `{}`", link.path))?;
        }
        for artifact in &merged.artifacts {
            if let ArtifactPlacement::File { path, .. } = &artifact.placement {
                claim(path.clone(), format!("artifact `{}`", artifact.url))?;
            }
        }

        Ok(ResolvedProfile {
            path: path.to_owned(),
            sources,
            name,
            version,
            description: merged.description,
            architecture: merged.architecture.unwrap_or_default(),
            kernel: ResolvedKernel {
                package: kernel_package,
                cmdline: merged.kernel.cmdline,
                modules: merged.kernel.modules,
                initramfs_modules: merged.kernel.initramfs_modules,
            },
            uefi: merged.uefi,
            packages: merged.packages,
            skip_packages: merged.skip_packages,
            package_filters: merged.package_filters,
            workspace_binaries: merged.workspace_binaries,
            artifacts: merged.artifacts,
            files: merged.files,
            symlinks: merged.symlinks,
            excludes: merged.excludes,
            boot: ResolvedBoot {
                sysctls: merged.boot.sysctls,
                modules: merged.boot.modules,
                console_shell: merged.boot.console_shell.unwrap_or(false),
            },
            oci_images: merged.oci_images,
            outputs: merged.outputs,
        })
    }
}

/// Follows `extends` chains, remembering what is being loaded to catch
/// cycles and what was loaded to report the sources.
#[derive(Debug, Default)]
struct Loader {
    /// Canonical path and path as named, of every file currently being loaded.
    stack: Vec<(PathBuf, PathBuf)>,
    /// Files loaded, base first.
    sources: Vec<PathBuf>,
}

impl Loader {
    /// Loads `path` and everything it extends, returning the merged layer
    /// (with `extends` and `remove` consumed).
    fn load_layer(
        &mut self,
        path: &Path,
        extended_by: Option<&Path>,
    ) -> Result<Profile, ProfileError> {
        let read_error = |source| ProfileError::Read {
            path: path.to_owned(),
            extended_by: extended_by.map(Path::to_owned),
            source,
        };
        let canonical = fs::canonicalize(path).map_err(read_error)?;
        if let Some(start) = self.stack.iter().position(|(c, _)| *c == canonical) {
            let mut chain: Vec<PathBuf> =
                self.stack[start..].iter().map(|(_, p)| p.clone()).collect();
            chain.push(path.to_owned());
            return Err(ProfileError::ExtendsCycle { chain });
        }
        let text = fs::read_to_string(path).map_err(read_error)?;
        let mut profile = Profile::parse(&text, path)?;
        // Normalise this file's own host paths (`./files/x` and `files/x`
        // are the same entry).
        rebase_host_paths(&mut profile, Path::new(""));

        let parent = match profile.extends.take() {
            Some(extends) => {
                let parent_path = match path.parent() {
                    Some(dir) => dir.join(&extends),
                    None => extends.clone(),
                };
                self.stack.push((canonical, path.to_owned()));
                let parent = self.load_layer(&parent_path, Some(path));
                self.stack.pop();
                let mut parent = parent?;
                // The parent's host paths are relative to its own directory;
                // re-express them relative to this file's directory.
                if let Some(dir) = extends.parent() {
                    rebase_host_paths(&mut parent, dir);
                }
                parent
            }
            None => {
                if !profile.remove.is_empty() {
                    return Err(ProfileError::Invalid {
                        path: path.to_owned(),
                        key: "remove".to_owned(),
                        message: "this profile extends nothing, so there is nothing to remove"
                            .to_owned(),
                    });
                }
                Profile::default()
            }
        };
        let merged = merge(parent, profile, path)?;
        self.sources.push(path.to_owned());
        Ok(merged)
    }
}

fn rebase_host_paths(profile: &mut Profile, dir: &Path) {
    let rebase = |path: &mut PathBuf| {
        if path.is_relative() {
            *path = normalize_host_path(&dir.join(&*path));
        }
    };
    for file in &mut profile.files {
        rebase(&mut file.from);
    }
    for image in &mut profile.oci_images {
        if let OciSource::Dir(dir) = &mut image.source {
            rebase(dir);
        }
    }
}

/// Applies `child` (one file) on top of `parent` (already resolved).
fn merge(parent: Profile, child: Profile, path: &Path) -> Result<Profile, ProfileError> {
    let remove = child.remove;
    let lists = ListMerger { path };
    Ok(Profile {
        extends: None,
        name: child.name.or(parent.name),
        version: child.version.or(parent.version),
        description: child.description.or(parent.description),
        architecture: child.architecture.or(parent.architecture),
        kernel: KernelSection {
            package: child.kernel.package.or(parent.kernel.package),
            cmdline: lists.list(
                "kernel.cmdline",
                parent.kernel.cmdline,
                &remove.kernel.cmdline,
                child.kernel.cmdline,
            )?,
            modules: lists.list(
                "kernel.modules",
                parent.kernel.modules,
                &remove.kernel.modules,
                child.kernel.modules,
            )?,
            initramfs_modules: lists.list(
                "kernel.initramfs-modules",
                parent.kernel.initramfs_modules,
                &remove.kernel.initramfs_modules,
                child.kernel.initramfs_modules,
            )?,
        },
        uefi: UefiSection {
            package: child.uefi.package.or(parent.uefi.package),
        },
        packages: lists.list(
            "packages",
            parent.packages,
            &remove.packages,
            child.packages,
        )?,
        skip_packages: lists.list(
            "skip-packages",
            parent.skip_packages,
            &remove.skip_packages,
            child.skip_packages,
        )?,
        package_filters: lists.keyed(
            "package-filter",
            parent.package_filters,
            &remove.package_filter,
            child.package_filters,
            |filter| filter.package.to_string(),
        )?,
        workspace_binaries: lists.keyed(
            "workspace-binary",
            parent.workspace_binaries,
            &remove.workspace_binary,
            child.workspace_binaries,
            |binary| binary.name.to_string(),
        )?,
        artifacts: lists.keyed(
            "artifact",
            parent.artifacts,
            &remove.artifact,
            child.artifacts,
            |artifact| artifact.url.to_string(),
        )?,
        files: lists.keyed("file", parent.files, &remove.file, child.files, |file| {
            file.to.to_string()
        })?,
        symlinks: lists.keyed(
            "symlink",
            parent.symlinks,
            &remove.symlink,
            child.symlinks,
            |link| link.path.to_string(),
        )?,
        excludes: lists.list(
            "excludes",
            parent.excludes,
            &remove.excludes,
            child.excludes,
        )?,
        boot: BootSection {
            sysctls: lists.map(
                "boot.sysctls",
                parent.boot.sysctls,
                &remove.boot.sysctls,
                child.boot.sysctls,
            )?,
            modules: lists.list(
                "boot.modules",
                parent.boot.modules,
                &remove.boot.modules,
                child.boot.modules,
            )?,
            console_shell: child.boot.console_shell.or(parent.boot.console_shell),
        },
        oci_images: lists.keyed(
            "oci-image",
            parent.oci_images,
            &remove.oci_image,
            child.oci_images,
            OciImage::reference,
        )?,
        outputs: lists.list("outputs", parent.outputs, &remove.outputs, child.outputs)?,
        remove: Removals::default(),
    })
}

/// The list, map and keyed-table merge rules, with errors naming `path`.
struct ListMerger<'a> {
    path: &'a Path,
}

impl ListMerger<'_> {
    fn not_inherited(&self, key: &str, entry: &dyn fmt::Display) -> ProfileError {
        ProfileError::Invalid {
            path: self.path.to_owned(),
            key: format!("remove.{key}"),
            message: format!(
                "`{entry}` is not in the extended profile's `{key}`, so it cannot be removed"
            ),
        }
    }

    /// Parent minus removals, then the child's entries; first occurrence wins.
    fn list<T: PartialEq + fmt::Display>(
        &self,
        key: &str,
        parent: Vec<T>,
        remove: &[T],
        child: Vec<T>,
    ) -> Result<Vec<T>, ProfileError> {
        if let Some(entry) = remove.iter().find(|r| !parent.contains(r)) {
            return Err(self.not_inherited(key, entry));
        }
        let mut merged: Vec<T> = Vec::with_capacity(parent.len() + child.len());
        for entry in parent.into_iter().chain(child) {
            if !remove.contains(&entry) && !merged.contains(&entry) {
                merged.push(entry);
            }
        }
        Ok(merged)
    }

    /// Parent minus removed keys, then the child's keys, the child winning.
    fn map<K: Ord + fmt::Display, V>(
        &self,
        key: &str,
        mut parent: BTreeMap<K, V>,
        remove: &[K],
        child: BTreeMap<K, V>,
    ) -> Result<BTreeMap<K, V>, ProfileError> {
        for entry in remove {
            if parent.remove(entry).is_none() {
                return Err(self.not_inherited(key, entry));
            }
        }
        parent.extend(child);
        Ok(parent)
    }

    /// Like [`Self::list`] for tables of entries identified by `identity`;
    /// an entry that differs from an earlier one with the same identity is
    /// an error.
    fn keyed<T: PartialEq, R: fmt::Display>(
        &self,
        key: &str,
        parent: Vec<T>,
        remove: &[R],
        child: Vec<T>,
        identity: impl Fn(&T) -> String,
    ) -> Result<Vec<T>, ProfileError> {
        let removed: HashSet<String> = remove.iter().map(ToString::to_string).collect();
        let inherited: HashSet<String> = parent.iter().map(&identity).collect();
        if let Some(entry) = remove.iter().find(|r| !inherited.contains(&r.to_string())) {
            return Err(self.not_inherited(key, entry));
        }
        let mut merged: Vec<T> = Vec::with_capacity(parent.len() + child.len());
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let parent_count = parent.len();
        for (index, entry) in parent.into_iter().chain(child).enumerate() {
            let id = identity(&entry);
            if index < parent_count && removed.contains(&id) {
                continue;
            }
            match seen.get(&id) {
                None => {
                    seen.insert(id, merged.len());
                    merged.push(entry);
                }
                Some(&existing) if merged[existing] == entry => {}
                Some(_) => {
                    let hint = if index >= parent_count
                        && inherited.contains(&id)
                        && !removed.contains(&id)
                    {
                        format!("; to replace the inherited entry, add `{id}` to `[remove] {key}`")
                    } else {
                        String::new()
                    };
                    return Err(ProfileError::Invalid {
                        path: self.path.to_owned(),
                        key: key.to_owned(),
                        message: format!("`{id}` is declared twice with different settings{hint}"),
                    });
                }
            }
        }
        Ok(merged)
    }
}

#[cfg(test)]
mod tests;
