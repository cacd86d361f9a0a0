//! OCI image archives for images bundled into the root filesystem.
//!
//! A node must be able to start pods with no registry in reach, so images
//! such as `pause` are built at image-build time and imported into
//! containerd at boot. Each is a single-layer image written as an OCI image
//! layout in a tar archive (`oci-layout`, `index.json`, `blobs/sha256/...`),
//! the format `ctr images import` and skopeo's `oci-archive:` read. The
//! index carries `io.containerd.image.name` so containerd names the image
//! on import. Everything is deterministic: entries sorted, owners and times
//! fixed (`SOURCE_DATE_EPOCH`), gzip without a timestamp.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("OCI image {image}: {message}")]
    Invalid { image: String, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OciError + '_ {
    move |source| OciError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Mode and owner a layer entry must have (the tree on disk was written by
/// an unprivileged builder, so owners come from here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryOwner {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
}

#[derive(Debug, Clone)]
pub struct OciImageSpec<'a> {
    /// `name:tag` as containerd will show it.
    pub reference: String,
    pub entrypoint: &'a [String],
    /// The layer's contents.
    pub root: &'a Path,
    /// Overrides for entries extracted from packages; others are root-owned
    /// with their on-disk mode.
    pub owners: &'a BTreeMap<PathBuf, EntryOwner>,
    pub source_date_epoch: u64,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciSummary {
    pub manifest_digest: String,
    pub layer_digest: String,
    pub diff_id: String,
    pub size: u64,
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn layer_tar(spec: &OciImageSpec<'_>) -> Result<Vec<u8>, OciError> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    for relative in crate::atomic::sorted_tree(spec.root).map_err(io_err(spec.root))? {
        let full = spec.root.join(&relative);
        let meta = full.symlink_metadata().map_err(io_err(&full))?;
        let owner = spec.owners.get(&relative).copied().unwrap_or(EntryOwner {
            mode: meta.permissions().mode() & 0o7777,
            uid: 0,
            gid: 0,
        });
        let mut header = tar::Header::new_ustar();
        header.set_mtime(spec.source_date_epoch);
        header.set_uid(owner.uid);
        header.set_gid(owner.gid);
        header.set_mode(owner.mode & 0o7777);
        let file_type = meta.file_type();
        if file_type.is_symlink() {
            let target = fs::read_link(&full).map_err(io_err(&full))?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder
                .append_link(&mut header, &relative, &target)
                .map_err(io_err(&full))?;
        } else if file_type.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder
                .append_data(&mut header, &relative, std::io::empty())
                .map_err(io_err(&full))?;
        } else {
            let data = fs::read(&full).map_err(io_err(&full))?;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(data.len() as u64);
            builder
                .append_data(&mut header, &relative, data.as_slice())
                .map_err(io_err(&full))?;
        }
    }
    builder.into_inner().map_err(io_err(spec.root))
}

fn gzip(data: &[u8], path: &Path) -> Result<Vec<u8>, OciError> {
    // GzBuilder without mtime writes 0 there: the bytes depend only on data.
    let mut encoder = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).map_err(io_err(path))?;
    encoder.finish().map_err(io_err(path))
}

fn json_bytes(value: &serde_json::Value, path: &Path) -> Result<Vec<u8>, OciError> {
    serde_json::to_vec(value).map_err(|e| OciError::Invalid {
        image: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Writes the image as an OCI archive at `out` (temp file + rename).
pub fn write_archive(spec: &OciImageSpec<'_>, out: &Path) -> Result<OciSummary, OciError> {
    let Some((_, tag)) = spec.reference.rsplit_once(':') else {
        return Err(OciError::Invalid {
            image: spec.reference.clone(),
            message: "expected name:tag".to_owned(),
        });
    };
    let layer = layer_tar(spec)?;
    let diff_id = sha256_hex(&layer);
    let layer_gz = gzip(&layer, out)?;
    let layer_digest = sha256_hex(&layer_gz);
    let created = crate::atomic::iso8601(spec.source_date_epoch);
    let config = json!({
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Entrypoint": spec.entrypoint,
        },
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
        "history": [{"created": created, "created_by": "cairn image build"}],
    });
    let config_bytes = json_bytes(&config, out)?;
    let config_digest = sha256_hex(&config_bytes);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{config_digest}"),
            "size": config_bytes.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": format!("sha256:{layer_digest}"),
            "size": layer_gz.len(),
        }],
    });
    let manifest_bytes = json_bytes(&manifest, out)?;
    let manifest_digest = sha256_hex(&manifest_bytes);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest_bytes.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {
                "io.containerd.image.name": spec.reference,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    });
    let index_bytes = json_bytes(&index, out)?;

    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            "oci-layout".to_owned(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".to_owned(), index_bytes),
        (format!("blobs/sha256/{config_digest}"), config_bytes),
        (format!("blobs/sha256/{manifest_digest}"), manifest_bytes),
        (format!("blobs/sha256/{layer_digest}"), layer_gz),
    ];
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut archive = tar::Builder::new(Vec::new());
    for dir in ["blobs", "blobs/sha256"] {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_mtime(spec.source_date_epoch);
        header.set_size(0);
        archive
            .append_data(&mut header, dir, std::io::empty())
            .map_err(io_err(out))?;
    }
    for (name, data) in &files {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_mtime(spec.source_date_epoch);
        header.set_size(data.len() as u64);
        archive
            .append_data(&mut header, name, data.as_slice())
            .map_err(io_err(out))?;
    }
    let bytes = archive.into_inner().map_err(io_err(out))?;
    if let Some(parent) = out.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let temp = out.with_extension("tmp");
    fs::write(&temp, &bytes).map_err(io_err(&temp))?;
    fs::set_permissions(&temp, fs::Permissions::from_mode(0o644)).map_err(io_err(&temp))?;
    fs::rename(&temp, out).map_err(io_err(out))?;
    Ok(OciSummary {
        manifest_digest,
        layer_digest,
        diff_id,
        size: bytes.len() as u64,
    })
}

/// File name of a bundled image archive: `registry.k8s.io/pause:3.9` →
/// `registry.k8s.io_pause_3.9.tar`.
pub fn archive_name(reference: &str) -> String {
    let safe: String = reference
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.tar")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn read_archive(path: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut archive = tar::Archive::new(fs::File::open(path).expect("open"));
        let mut files = BTreeMap::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let name = entry.path().expect("path").display().to_string();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("read");
            files.insert(name, data);
        }
        files
    }

    #[test]
    fn archive_is_a_consistent_oci_layout_and_deterministic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("bin")).expect("mkdir");
        fs::write(root.join("bin/busybox"), b"binary").expect("write");
        fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).expect("symlink");
        let owners = BTreeMap::new();
        let entrypoint = vec!["/bin/sh".to_owned()];
        let spec = OciImageSpec {
            reference: "cairn.local/busybox:1.35".to_owned(),
            entrypoint: &entrypoint,
            root: &root,
            owners: &owners,
            source_date_epoch: 1_700_000_000,
        };
        let first = dir.path().join("a.tar");
        let second = dir.path().join("b.tar");
        let summary = write_archive(&spec, &first).expect("write");
        write_archive(&spec, &second).expect("write again");
        assert_eq!(fs::read(&first).expect("a"), fs::read(&second).expect("b"));

        let files = read_archive(&first);
        let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).expect("index");
        let manifest_ref = &index["manifests"][0];
        assert_eq!(
            manifest_ref["annotations"]["io.containerd.image.name"],
            "cairn.local/busybox:1.35"
        );
        let manifest_digest = manifest_ref["digest"].as_str().expect("digest");
        assert_eq!(
            manifest_digest,
            format!("sha256:{}", summary.manifest_digest)
        );
        let manifest_bytes = &files[&format!("blobs/sha256/{}", summary.manifest_digest)];
        assert_eq!(
            sha256_hex(manifest_bytes),
            summary.manifest_digest,
            "blob named by its digest"
        );
        let manifest: serde_json::Value = serde_json::from_slice(manifest_bytes).expect("manifest");
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .expect("config")
            .trim_start_matches("sha256:");
        let config: serde_json::Value =
            serde_json::from_slice(&files[&format!("blobs/sha256/{config_digest}")])
                .expect("config");
        assert_eq!(config["config"]["Entrypoint"][0], "/bin/sh");
        let layer = &files[&format!("blobs/sha256/{}", summary.layer_digest)];
        let mut uncompressed = Vec::new();
        flate2::read::GzDecoder::new(layer.as_slice())
            .read_to_end(&mut uncompressed)
            .expect("gunzip");
        assert_eq!(
            config["rootfs"]["diff_ids"][0].as_str(),
            Some(format!("sha256:{}", sha256_hex(&uncompressed)).as_str())
        );
        let mut layer_entries = Vec::new();
        for entry in tar::Archive::new(uncompressed.as_slice())
            .entries()
            .expect("layer")
        {
            let entry = entry.expect("entry");
            layer_entries.push((
                entry.path().expect("path").display().to_string(),
                entry.header().mode().expect("mode"),
                entry.header().uid().expect("uid"),
            ));
        }
        assert_eq!(
            layer_entries,
            vec![
                ("bin".to_owned(), 0o755, 0),
                ("bin/busybox".to_owned(), 0o755, 0),
                ("bin/sh".to_owned(), 0o777, 0),
            ]
        );
    }

    #[test]
    fn archive_names_are_file_safe() {
        assert_eq!(
            archive_name("registry.k8s.io/pause:3.9"),
            "registry.k8s.io_pause_3.9.tar"
        );
    }
}
