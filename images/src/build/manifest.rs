//! `manifest.json` and `sbom.spdx.json`: what went into the image.
//!
//! The manifest is Cairn's own record (profile digest, every package with
//! version and sha256, artifacts, binaries, carried kernel modules, every
//! output with size and sha256). The SBOM is SPDX 2.3 JSON with a package
//! per Debian package (purl `pkg:deb/debian/...`) so standard scanners can
//! read it. Neither contains a wall-clock time: `created` is
//! `SOURCE_DATE_EPOCH`, and the document namespace is derived from the
//! profile digest.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use super::{BuildError, oci};
use crate::fetch::apt::FetchedPackage;
use crate::fetch::cache::sha256_file;
use crate::profile::ResolvedProfile;

#[derive(Debug)]
pub struct ManifestInputs<'a> {
    pub profile: &'a ResolvedProfile,
    pub digest: &'a str,
    pub source_date_epoch: u64,
    pub kernel_version: &'a str,
    pub packages: &'a [FetchedPackage],
    pub artifacts: &'a [(String, String)],
    pub binaries: &'a BTreeMap<String, String>,
    pub modules: &'a [String],
    pub oci_images: &'a [(String, crate::oci::OciSummary)],
    pub out: &'a Path,
}

fn write_json(path: &Path, value: &Value) -> Result<(), BuildError> {
    let mut text =
        serde_json::to_string_pretty(value).map_err(|e| BuildError::stage("manifest", e))?;
    text.push('\n');
    std::fs::write(path, text).map_err(|source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn spdx_id(kind: &str, name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-{kind}-{safe}")
}

pub fn write(inputs: &ManifestInputs<'_>) -> Result<(), BuildError> {
    let profile = inputs.profile;
    let sbom = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("cairn-{}-{}", profile.name, profile.version),
        "documentNamespace": format!("urn:cairn:image:{}:{}:{}", profile.name, profile.version, inputs.digest),
        "creationInfo": {
            "created": crate::atomic::iso8601(inputs.source_date_epoch),
            "creators": [format!("Tool: cairn-images-{}", env!("CARGO_PKG_VERSION"))],
        },
        "documentDescribes": ["SPDXRef-Image"],
        "packages": std::iter::once(json!({
            "SPDXID": "SPDXRef-Image",
            "name": format!("cairn-{}", profile.name),
            "versionInfo": profile.version.to_string(),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": "OPERATING-SYSTEM",
        }))
        .chain(inputs.packages.iter().map(|p| json!({
            "SPDXID": spdx_id("deb", &p.name),
            "name": p.name,
            "versionInfo": p.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "supplier": "Organization: Debian",
            "checksums": [{"algorithm": "SHA256", "checksumValue": p.sha256}],
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": format!("pkg:deb/debian/{}@{}?arch={}", p.name, p.version, p.architecture),
            }],
        })))
        .chain(inputs.binaries.iter().map(|(name, sha)| json!({
            "SPDXID": spdx_id("cairn", name),
            "name": name,
            "versionInfo": env!("CARGO_PKG_VERSION"),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "Apache-2.0",
            "copyrightText": "NOASSERTION",
            "checksums": [{"algorithm": "SHA256", "checksumValue": sha}],
        })))
        .collect::<Vec<_>>(),
        "relationships": inputs.packages.iter().map(|p| spdx_id("deb", &p.name))
            .chain(inputs.binaries.keys().map(|n| spdx_id("cairn", n)))
            .map(|id| json!({
                "spdxElementId": "SPDXRef-Image",
                "relationshipType": "CONTAINS",
                "relatedSpdxElement": id,
            }))
            .collect::<Vec<_>>(),
    });
    write_json(&inputs.out.join("sbom.spdx.json"), &sbom)?;

    let mut outputs = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(inputs.out)
        .map_err(|source| BuildError::Io {
            path: inputs.out.to_path_buf(),
            source,
        })?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "manifest.json")
        .collect();
    names.sort();
    for name in names {
        let path = inputs.out.join(&name);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        outputs.push(json!({"name": name, "size": size, "sha256": sha256_file(&path)?}));
    }
    let manifest = json!({
        "schema": "cairn.image.manifest/v1",
        "profile": {
            "name": profile.name.to_string(),
            "version": profile.version.to_string(),
            "digest": inputs.digest,
            "sources": profile.sources().iter().map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()).collect::<Vec<_>>(),
        },
        "source_date_epoch": inputs.source_date_epoch,
        "kernel": {"package": profile.kernel.package.to_string(), "version": inputs.kernel_version, "cmdline": profile.cmdline(), "modules": inputs.modules},
        "packages": inputs.packages.iter().map(|p| json!({
            "name": p.name, "version": p.version, "architecture": p.architecture, "sha256": p.sha256, "size": p.size,
        })).collect::<Vec<_>>(),
        "artifacts": inputs.artifacts.iter().map(|(url, sha)| json!({"url": url, "sha256": sha})).collect::<Vec<_>>(),
        "binaries": inputs.binaries.iter().map(|(name, sha)| json!({"name": name, "sha256": sha})).collect::<Vec<_>>(),
        "oci_images": inputs.oci_images.iter().map(|(reference, summary)| json!({
            "reference": reference,
            "manifest_digest": format!("sha256:{}", summary.manifest_digest),
            "archive": format!("{}/{}", oci::BUNDLE_DIR, crate::oci::archive_name(reference)),
            "size": summary.size,
        })).collect::<Vec<_>>(),
        "outputs": outputs,
    });
    write_json(&inputs.out.join("manifest.json"), &manifest)
}
