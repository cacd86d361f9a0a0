//! The profile file format: what one TOML file may say.
//!
//! [`Profile`] is a single file exactly as written, before `extends` is
//! followed; every scalar is optional so that a child can leave it to its
//! parent. The entry types ([`PackageFilter`], [`UrlArtifact`], [`LocalFile`],
//! …) are shared with the resolved profile. All structs refuse unknown keys,
//! and all keys are kebab-case, like Cargo manifests.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

use super::types::{
    BinaryName, FileMode, HttpUrl, ImagePath, ImageVersion, KernelArg, LinkTarget, ModuleName,
    OciName, OciTag, PackageName, PackagePattern, PathGlob, ProfileName, Sha256, SysctlKey,
    SysctlValue,
};

/// One profile file as written. See the [module documentation](super) for
/// the format and the `extends` merge rule.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Profile {
    /// Profile this one builds on, as a path relative to this file
    /// (`extends = "base.toml"`). Followed recursively; cycles are errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extends: Option<PathBuf>,
    /// Image name, recorded in the manifest and used to derive disk GUIDs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<ProfileName>,
    /// Image version, recorded in the manifest and the SBOM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<ImageVersion>,
    /// One line for humans, shown by `bootstrap image show`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Debian architecture of every package and binary (default `amd64`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architecture: Option<Architecture>,
    /// The kernel, its command line and the modules the image carries.
    #[serde(default, skip_serializing_if = "KernelSection::is_empty")]
    pub kernel: KernelSection,
    /// Where the UEFI stub and boot loader come from (for `uki` and disks).
    #[serde(default, skip_serializing_if = "UefiSection::is_empty")]
    pub uefi: UefiSection,
    /// Debian packages to install, with their dependency closure. No
    /// maintainer scripts run; files are extracted as shipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<PackageName>,
    /// Packages of the dependency closure that are fetched (apt needs them to
    /// resolve) but never extracted, e.g. `perl-base` pulled in by
    /// `initramfs-tools` through the kernel package.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip_packages: Vec<PackageName>,
    /// Take only some paths from matching packages (`[[package-filter]]`).
    #[serde(
        default,
        rename = "package-filter",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub package_filters: Vec<PackageFilter>,
    /// Binaries built from this Cargo workspace (`[[workspace-binary]]`).
    #[serde(
        default,
        rename = "workspace-binary",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub workspace_binaries: Vec<WorkspaceBinary>,
    /// Files or archives fetched by URL and pinned by sha256 (`[[artifact]]`).
    #[serde(default, rename = "artifact", skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<UrlArtifact>,
    /// Local files or directory trees copied into the image (`[[file]]`).
    #[serde(default, rename = "file", skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<LocalFile>,
    /// Symbolic links created in the image (`[[symlink]]`).
    #[serde(default, rename = "symlink", skip_serializing_if = "Vec::is_empty")]
    pub symlinks: Vec<Symlink>,
    /// Paths never put into the image, matched after usr-merge
    /// (`usr/share/doc/**`, `usr/share/man/**`, `usr/share/locale/**`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<PathGlob>,
    /// Defaults node-agent applies on first boot.
    #[serde(default, skip_serializing_if = "BootSection::is_empty")]
    pub boot: BootSection,
    /// OCI images built by the builder and bundled for import at boot
    /// (`[[oci-image]]`).
    #[serde(default, rename = "oci-image", skip_serializing_if = "Vec::is_empty")]
    pub oci_images: Vec<OciImage>,
    /// Outputs to produce. `manifest.json` and `sbom.spdx.json` are always
    /// written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<Output>,
    /// Entries to drop from what the extended profile declares (`[remove]`);
    /// same shape as the profile itself.
    #[serde(default, skip_serializing_if = "Removals::is_empty")]
    pub remove: Removals,
}

/// `[kernel]`: which kernel boots and with what.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KernelSection {
    /// Debian package that provides `vmlinuz` and `/usr/lib/modules`, e.g.
    /// `linux-image-cloud-amd64` (VMs) or `linux-image-amd64` (metal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<PackageName>,
    /// Kernel command-line arguments, one per entry (`["console=ttyS0"]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmdline: Vec<KernelArg>,
    /// Modules the image carries; their `modules.dep` dependencies are added
    /// automatically. Modules the kernel builds in are accepted as well.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<ModuleName>,
    /// Modules (a subset of `modules`) also put into the initramfs because
    /// `/init` needs them to reach the root and the STATE partition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub initramfs_modules: Vec<ModuleName>,
}

impl KernelSection {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// `[uefi]`: the UEFI pieces of `cairn.efi` and the disk's ESP.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UefiSection {
    /// Debian package providing the systemd stub and systemd-boot
    /// (`systemd-boot-efi`); taken from, not installed into, the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<PackageName>,
}

impl UefiSection {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// `[boot]`: what node-agent applies on first boot, before any machine
/// config. A machine config may add to these.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BootSection {
    /// Sysctls to set, keyed by dotted name. Quote the keys
    /// (`"net.ipv4.ip_forward" = 1`); unquoted dotted keys are read as the
    /// same names too. Values are integers or strings.
    #[serde(
        default,
        deserialize_with = "deserialize_sysctls",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub sysctls: BTreeMap<SysctlKey, SysctlValue>,
    /// Modules to load, in order (each must be carried by `kernel.modules`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<ModuleName>,
    /// Start a root shell on the console (debug images only: it bypasses
    /// every access control).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_shell: Option<bool>,
}

impl BootSection {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// Reads `[boot.sysctls]`, flattening unquoted dotted keys: TOML turns
/// `net.ipv4.ip_forward = 1` into nested tables, which is never what the
/// author meant for a sysctl.
fn deserialize_sysctls<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<SysctlKey, SysctlValue>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Node {
        Leaf(SysctlValue),
        Table(BTreeMap<String, Node>),
    }

    fn flatten<E: serde::de::Error>(
        prefix: &str,
        table: BTreeMap<String, Node>,
        out: &mut BTreeMap<SysctlKey, SysctlValue>,
    ) -> Result<(), E> {
        for (key, node) in table {
            let full = if prefix.is_empty() {
                key
            } else {
                format!("{prefix}.{key}")
            };
            match node {
                Node::Leaf(value) => {
                    let key: SysctlKey = full.parse().map_err(E::custom)?;
                    out.insert(key, value);
                }
                Node::Table(inner) => flatten(&full, inner, out)?,
            }
        }
        Ok(())
    }

    let table = BTreeMap::<String, Node>::deserialize(deserializer).map_err(|_| {
        serde::de::Error::custom(
            "expected a table of sysctls such as { \"net.ipv4.ip_forward\" = 1 } \
             with integer or single-line string values",
        )
    })?;
    let mut out = BTreeMap::new();
    flatten("", table, &mut out)?;
    Ok(out)
}

/// Debian architecture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    /// x86-64.
    #[default]
    Amd64,
    /// AArch64.
    Arm64,
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Architecture::Amd64 => "amd64",
            Architecture::Arm64 => "arm64",
        })
    }
}

/// `[[package-filter]]`: keep only some paths of the packages matching
/// `package`, because some packages (the kernel) bring far more than a node
/// needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PackageFilter {
    /// Package name, `*` and `?` allowed (`linux-image-*-cloud-amd64`).
    pub package: PackagePattern,
    /// Only paths matching one of these globs are extracted (after
    /// usr-merge); empty keeps everything. Parent directories follow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<PathGlob>,
    /// Paths matching these globs are dropped, on top of `excludes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<PathGlob>,
}

/// `[[workspace-binary]]`: a binary built from this Cargo workspace in
/// release mode (or taken from a directory given to the builder).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WorkspaceBinary {
    /// Cargo binary name (`node-agent`).
    pub name: BinaryName,
    /// Where it goes in the image; defaults to `usr/bin/<name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<ImagePath>,
}

impl WorkspaceBinary {
    /// Where the binary is installed in the image.
    pub fn destination(&self) -> ImagePath {
        match &self.to {
            Some(path) => path.clone(),
            None => self.name.default_destination(),
        }
    }
}

/// `[[artifact]]`: a file fetched by URL, refused unless its SHA-256 matches.
/// Give `unpack-to` for an archive (`.tar`, `.tar.gz`/`.tgz`, `.tar.xz`,
/// `.tar.zst`) or `to` for a single file; exactly one of the two.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "ArtifactToml", into = "ArtifactToml")]
pub struct UrlArtifact {
    /// Where to download from.
    pub url: HttpUrl,
    /// Expected SHA-256 of the downloaded bytes.
    pub sha256: Sha256,
    /// What to do with the bytes.
    pub placement: ArtifactPlacement,
}

/// How a URL artifact lands in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactPlacement {
    /// An archive unpacked into a directory.
    Unpack {
        /// Directory in the image.
        dir: ImagePath,
        /// Leading path components dropped from every archive entry (like
        /// `tar --strip-components`), for release tarballs with a top folder.
        strip_components: u32,
    },
    /// A single file.
    File {
        /// Path in the image.
        path: ImagePath,
        /// Permission bits; default `0644`.
        mode: Option<FileMode>,
    },
}

/// The TOML shape of `[[artifact]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ArtifactToml {
    url: HttpUrl,
    sha256: Sha256,
    #[serde(skip_serializing_if = "Option::is_none")]
    unpack_to: Option<ImagePath>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strip_components: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<ImagePath>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<FileMode>,
}

impl TryFrom<ArtifactToml> for UrlArtifact {
    type Error = String;
    fn try_from(raw: ArtifactToml) -> Result<Self, String> {
        let placement = match (raw.unpack_to, raw.to) {
            (Some(dir), None) => {
                if raw.mode.is_some() {
                    return Err(format!(
                        "artifact {}: `mode` applies to single files (`to`); an archive keeps its own modes",
                        raw.url
                    ));
                }
                ArtifactPlacement::Unpack {
                    dir,
                    strip_components: raw.strip_components.unwrap_or(0),
                }
            }
            (None, Some(path)) => {
                if raw.strip_components.is_some() {
                    return Err(format!(
                        "artifact {}: `strip-components` applies to archives (`unpack-to`)",
                        raw.url
                    ));
                }
                ArtifactPlacement::File {
                    path,
                    mode: raw.mode,
                }
            }
            (Some(_), Some(_)) => {
                return Err(format!(
                    "artifact {}: expected either `unpack-to` (archive) or `to` (single file), not both",
                    raw.url
                ));
            }
            (None, None) => {
                return Err(format!(
                    "artifact {}: expected `unpack-to = \"dir\"` for an archive or `to = \"path\"` for a single file",
                    raw.url
                ));
            }
        };
        Ok(UrlArtifact {
            url: raw.url,
            sha256: raw.sha256,
            placement,
        })
    }
}

impl From<UrlArtifact> for ArtifactToml {
    fn from(artifact: UrlArtifact) -> Self {
        let (unpack_to, strip_components, to, mode) = match artifact.placement {
            ArtifactPlacement::Unpack {
                dir,
                strip_components,
            } => (
                Some(dir),
                (strip_components != 0).then_some(strip_components),
                None,
                None,
            ),
            ArtifactPlacement::File { path, mode } => (None, None, Some(path), mode),
        };
        ArtifactToml {
            url: artifact.url,
            sha256: artifact.sha256,
            unpack_to,
            strip_components,
            to,
            mode,
        }
    }
}

/// `[[file]]`: a local file or directory tree copied into the image.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LocalFile {
    /// Source on the build host, relative to the profile file that declares
    /// it (after resolution: relative to the loaded profile's directory).
    pub from: PathBuf,
    /// Destination in the image; a directory source is copied below it.
    pub to: ImagePath,
    /// Permission bits for a single file; default: `0755` if the source is
    /// executable, else `0644`. Trees keep that rule per file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<FileMode>,
}

/// `[[symlink]]`: a symbolic link created in the image.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Symlink {
    /// The link itself.
    pub path: ImagePath,
    /// What it points to, stored verbatim.
    pub target: LinkTarget,
}

/// `[[oci-image]]`: an OCI image archive built at image-build time and
/// imported into containerd on boot (e.g. the `pause` image).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OciImage {
    /// Repository name (`registry.k8s.io/pause`).
    pub name: OciName,
    /// Tag (`3.9`).
    pub tag: OciTag,
    /// What the image's single layer is made of.
    pub source: OciSource,
    /// Entrypoint of the image config (`["/pause"]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    /// Symlinks added to the layer, e.g. busybox applets
    /// (`symlinks = [{ path = "bin/sh", target = "busybox" }]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub symlinks: Vec<Symlink>,
}

impl OciImage {
    /// `name:tag`, the identity of the image.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }
}

/// The contents of a bundled OCI image.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum OciSource {
    /// Debian packages extracted into the layer
    /// (`source = { packages = ["busybox-static"] }`).
    Packages(Vec<PackageName>),
    /// A local directory, relative to the declaring profile
    /// (`source = { dir = "oci/pause" }`).
    Dir(PathBuf),
    /// Binaries built from this workspace, each placed at `/<name>`
    /// (`source = { workspace-binaries = ["pause"] }`).
    WorkspaceBinaries(Vec<BinaryName>),
}

/// An output the builder can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Output {
    /// `vmlinuz`, the kernel.
    Vmlinuz,
    /// `initramfs.cpio.zst` with `/init`, the boot modules and the root.
    Initramfs,
    /// `rootfs.squashfs`, the read-only root on its own.
    Squashfs,
    /// `cairn.efi`, a unified kernel image.
    Uki,
    /// `disk.raw`, a GPT disk with ESP (A/B slots) and STATE.
    DiskRaw,
    /// `disk.qcow2`, the same disk for QEMU.
    DiskQcow2,
    /// `boot.ipxe`, an iPXE script for PXE boot.
    Ipxe,
}

impl Output {
    /// The file name the output is written to.
    pub fn file_name(self) -> &'static str {
        match self {
            Output::Vmlinuz => "vmlinuz",
            Output::Initramfs => "initramfs.cpio.zst",
            Output::Squashfs => "rootfs.squashfs",
            Output::Uki => "cairn.efi",
            Output::DiskRaw => "disk.raw",
            Output::DiskQcow2 => "disk.qcow2",
            Output::Ipxe => "boot.ipxe",
        }
    }

    /// Whether producing this output needs the UEFI stub or boot loader.
    pub fn needs_uefi(self) -> bool {
        matches!(self, Output::Uki | Output::DiskRaw | Output::DiskQcow2)
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Output::Vmlinuz => "vmlinuz",
            Output::Initramfs => "initramfs",
            Output::Squashfs => "squashfs",
            Output::Uki => "uki",
            Output::DiskRaw => "disk-raw",
            Output::DiskQcow2 => "disk-qcow2",
            Output::Ipxe => "ipxe",
        })
    }
}

/// `[remove]`: entries an extending profile drops from its parent, in the
/// same shape as the profile. Table-array entries are named by their
/// identity: `file` by `to`, `symlink` by `path`, `artifact` by `url`,
/// `oci-image` by `name:tag`, `workspace-binary` by `name`, `package-filter`
/// by `package`. Naming an entry the parent does not have is an error.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Removals {
    /// Packages to drop from `packages`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<PackageName>,
    /// Packages to drop from `skip-packages` (so they are extracted again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip_packages: Vec<PackageName>,
    /// Globs to drop from `excludes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<PathGlob>,
    /// Outputs to drop from `outputs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<Output>,
    /// `[remove.kernel]`: command-line arguments and modules to drop.
    #[serde(default, skip_serializing_if = "KernelRemovals::is_empty")]
    pub kernel: KernelRemovals,
    /// `[remove.boot]`: sysctls (by key) and boot modules to drop.
    #[serde(default, skip_serializing_if = "BootRemovals::is_empty")]
    pub boot: BootRemovals,
    /// `[[package-filter]]` entries to drop, by `package`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub package_filter: Vec<PackagePattern>,
    /// `[[workspace-binary]]` entries to drop, by `name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workspace_binary: Vec<BinaryName>,
    /// `[[artifact]]` entries to drop, by `url`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifact: Vec<HttpUrl>,
    /// `[[file]]` entries to drop, by `to`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file: Vec<ImagePath>,
    /// `[[symlink]]` entries to drop, by `path`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub symlink: Vec<ImagePath>,
    /// `[[oci-image]]` entries to drop, by `name:tag`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub oci_image: Vec<String>,
}

impl Removals {
    pub(crate) fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// `[remove.kernel]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KernelRemovals {
    /// Arguments to drop from `kernel.cmdline`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmdline: Vec<KernelArg>,
    /// Modules to drop from `kernel.modules`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<ModuleName>,
    /// Modules to drop from `kernel.initramfs-modules`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub initramfs_modules: Vec<ModuleName>,
}

impl KernelRemovals {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// `[remove.boot]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BootRemovals {
    /// Sysctl keys to drop from `boot.sysctls`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sysctls: Vec<SysctlKey>,
    /// Modules to drop from `boot.modules`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<ModuleName>,
}

impl BootRemovals {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}
