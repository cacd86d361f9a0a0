//! Bundled OCI images: build each `[[oci-image]]` layer tree and write its
//! archive into the root filesystem, where node-agent imports it into
//! containerd at boot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::rootfs::{self, Tree};
use super::{BuildError, io_err};
use crate::fetch::apt::FetchedPackage;
use crate::oci::{self, EntryOwner, OciImageSpec, OciSummary};
use crate::profile::{OciImage, OciSource, ResolvedProfile};

/// Where bundled image archives live in the root filesystem.
pub const BUNDLE_DIR: &str = "usr/lib/cairn/images";

/// Builds one image; returns the archive's path in the image and what was
/// written.
pub fn bundle(
    profile: &ResolvedProfile,
    image: &OciImage,
    packages: &[FetchedPackage],
    binaries: &BTreeMap<String, PathBuf>,
    layer_root: &Path,
    rootfs_root: &Path,
    source_date_epoch: u64,
) -> Result<(PathBuf, OciSummary), BuildError> {
    std::fs::create_dir_all(layer_root).map_err(io_err(layer_root))?;
    let mut owners = BTreeMap::new();
    match &image.source {
        OciSource::Packages(_) => {
            for entry in rootfs::extract_packages(profile, packages, layer_root, Tree::Rootfs)? {
                owners.insert(
                    entry.path.clone(),
                    EntryOwner {
                        mode: entry.mode,
                        uid: entry.uid,
                        gid: entry.gid,
                    },
                );
            }
        }
        OciSource::Dir(dir) => {
            let source = profile.host_path(dir);
            copy_tree(&source, layer_root)?;
        }
        OciSource::WorkspaceBinaries(names) => {
            for name in names {
                let name = name.to_string();
                let binary = binaries.get(&name).ok_or_else(|| {
                    BuildError::Binaries(format!(
                        "{name} was not built for image {}",
                        image.reference()
                    ))
                })?;
                let target = layer_root.join(&name);
                std::fs::copy(binary, &target).map_err(io_err(binary))?;
                rootfs::set_mode(&target, 0o755)?;
            }
        }
    }
    for link in &image.symlinks {
        let target = rootfs::host_path(layer_root, link.path.as_path());
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        let _ = std::fs::remove_file(&target);
        std::os::unix::fs::symlink(link.target.to_string(), &target).map_err(io_err(&target))?;
    }
    let reference = image.reference();
    let relative = Path::new(BUNDLE_DIR).join(oci::archive_name(&reference));
    let summary = oci::write_archive(
        &OciImageSpec {
            reference: reference.clone(),
            entrypoint: &image.entrypoint,
            root: layer_root,
            owners: &owners,
            source_date_epoch,
        },
        &rootfs_root.join(&relative),
    )
    .map_err(|e| BuildError::stage("OCI image", e))?;
    Ok((relative, summary))
}

fn copy_tree(source: &Path, target: &Path) -> Result<(), BuildError> {
    if !source.is_dir() {
        return Err(BuildError::Input(format!(
            "OCI image source directory {} does not exist",
            source.display()
        )));
    }
    for relative in crate::atomic::sorted_tree(source).map_err(io_err(source))? {
        let from = source.join(&relative);
        let to = target.join(&relative);
        let file_type = from.symlink_metadata().map_err(io_err(&from))?.file_type();
        if file_type.is_dir() {
            std::fs::create_dir_all(&to).map_err(io_err(&to))?;
        } else if file_type.is_symlink() {
            let link = std::fs::read_link(&from).map_err(io_err(&from))?;
            std::os::unix::fs::symlink(link, &to).map_err(io_err(&to))?;
        } else {
            std::fs::copy(&from, &to).map_err(io_err(&from))?;
        }
    }
    Ok(())
}
