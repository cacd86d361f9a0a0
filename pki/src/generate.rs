//! `certs generate`: create whatever is missing of a node's PKI and
//! kubeconfigs, reuse whatever still fits, and reissue leaves that no longer
//! do.
//!
//! The whole run is computed in memory first and written through one
//! [`FileSet`], so a failure anywhere (a bad CA key, an unwritable
//! directory) leaves the disk untouched. CAs are never replaced: an existing
//! CA signs the new leaves, and a CA that cannot be used is an error, not a
//! reason to make a new one.

use time::OffsetDateTime;

use crate::cert::{self, CertRequest};
use crate::error::PkiError;
use crate::fileset::{FileSet, PUBLIC_MODE, SECRET_MODE};
use crate::key::PrivateKey;
use crate::kubeconfig::{ClientCredentials, Kubeconfig};
use crate::layout::{Authority, ClusterPkiSpec, KubeconfigFile, Leaf, PkiPaths};
use crate::report::{Action, ItemKind, Report};
use crate::store::{self, LoadedAuthority, read_optional};

/// Produces the node's PKI under `paths` for `spec`.
pub fn generate(
    spec: &ClusterPkiSpec,
    paths: &PkiPaths,
    now: OffsetDateTime,
) -> Result<Report, PkiError> {
    let mut files = FileSet::new();
    let mut report = Report::default();

    let mut authorities = Vec::new();
    for authority in Authority::ALL {
        let (loaded, action) = ensure_authority(spec, paths, authority, &mut files, now)?;
        report.push(ItemKind::Authority, authority.name(), action);
        authorities.push(loaded);
    }
    let authority_for = |wanted: Authority| {
        authorities
            .iter()
            .find(|a| a.authority == wanted)
            .ok_or_else(|| PkiError::NotFound {
                name: wanted.name().to_owned(),
                path: paths.cert(wanted.base_path()),
            })
    };

    for leaf in Leaf::ALL {
        let ca = authority_for(leaf.authority())?;
        let request = spec.leaf_request(leaf);
        let action = ensure_leaf(spec, paths, leaf, &request, ca, &mut files, now)?;
        report.push(ItemKind::Certificate, leaf.name(), action);
    }

    let action = ensure_service_account_key(spec, paths, &mut files)?;
    report.push(ItemKind::ServiceAccountKey, "sa", action);

    if paths.kubeconfig_dir.is_some() {
        let ca = authority_for(Authority::Kubernetes)?;
        for file in KubeconfigFile::ALL {
            let action = ensure_kubeconfig(spec, paths, file, ca, &mut files, now)?;
            report.push(ItemKind::Kubeconfig, file.file_name(), action);
        }
    }

    files.commit()?;
    Ok(report)
}

fn ensure_authority(
    spec: &ClusterPkiSpec,
    paths: &PkiPaths,
    authority: Authority,
    files: &mut FileSet,
    now: OffsetDateTime,
) -> Result<(LoadedAuthority, Action), PkiError> {
    if let Some(existing) = LoadedAuthority::load(paths, authority)? {
        let action = if existing.key.is_some() {
            Action::Reused
        } else {
            Action::ReusedExternal
        };
        return Ok((existing, action));
    }
    let key = PrivateKey::generate(spec.key_type)?;
    let cert_pem = cert::self_signed_ca(authority.common_name(), &key, now).map_err(|source| {
        PkiError::Sign {
            name: authority.name().to_owned(),
            source,
        }
    })?;
    files.add(
        paths.cert(authority.base_path()),
        cert_pem.clone(),
        PUBLIC_MODE,
    );
    files.add(paths.key(authority.base_path()), key.to_pem(), SECRET_MODE);
    let loaded = LoadedAuthority::from_parts(authority, cert_pem, Some(key)).map_err(|source| {
        PkiError::Sign {
            name: authority.name().to_owned(),
            source,
        }
    })?;
    Ok((loaded, Action::Generated))
}

fn ensure_leaf(
    spec: &ClusterPkiSpec,
    paths: &PkiPaths,
    leaf: Leaf,
    request: &CertRequest,
    ca: &LoadedAuthority,
    files: &mut FileSet,
    now: OffsetDateTime,
) -> Result<Action, PkiError> {
    let cert_path = paths.cert(leaf.base_path());
    let key_path = paths.key(leaf.base_path());
    let existing = (read_optional(&cert_path)?, read_optional(&key_path)?);
    let action = match existing {
        (None, None) => Action::Generated,
        (Some(_), None) => Action::Reissued {
            reason: format!("{} is missing", key_path.display()),
        },
        (None, Some(_)) => Action::Reissued {
            reason: format!("{} is missing", cert_path.display()),
        },
        (Some(cert_pem), Some(key_pem)) => match PrivateKey::from_pem(&key_pem) {
            Err(e) => Action::Reissued {
                reason: format!("its key cannot be used ({e})"),
            },
            Ok(key) => match store::staleness(&cert_pem, &key, request, ca, now) {
                None => return Ok(Action::Reused),
                Some(reason) => Action::Reissued { reason },
            },
        },
    };
    let key = PrivateKey::generate(spec.key_type)?;
    let cert_pem = ca.sign(paths, leaf.name(), request, &key, now)?;
    files.add(cert_path, cert_pem, PUBLIC_MODE);
    files.add(key_path, key.to_pem(), SECRET_MODE);
    Ok(action)
}

fn ensure_service_account_key(
    spec: &ClusterPkiSpec,
    paths: &PkiPaths,
    files: &mut FileSet,
) -> Result<Action, PkiError> {
    let key_path = paths.service_account_key();
    let pub_path = paths.service_account_public_key();
    match read_optional(&key_path)? {
        Some(text) => {
            let key = store::parse_key(&key_path, &text)?;
            let public_matches = read_optional(&pub_path)?
                .and_then(|pem_text| pem::parse(pem_text).ok())
                .is_some_and(|block| block.contents() == key.public_key_spki_der().as_slice());
            if public_matches {
                Ok(Action::Reused)
            } else {
                files.add(pub_path, key.public_key_pem(), PUBLIC_MODE);
                Ok(Action::Reissued {
                    reason: "sa.pub was missing or did not match sa.key; rewrote it from sa.key"
                        .to_owned(),
                })
            }
        }
        None => {
            let key = PrivateKey::generate(spec.key_type)?;
            files.add(key_path, key.to_pem(), SECRET_MODE);
            files.add(pub_path, key.public_key_pem(), PUBLIC_MODE);
            Ok(Action::Generated)
        }
    }
}

fn ensure_kubeconfig(
    spec: &ClusterPkiSpec,
    paths: &PkiPaths,
    file: KubeconfigFile,
    ca: &LoadedAuthority,
    files: &mut FileSet,
    now: OffsetDateTime,
) -> Result<Action, PkiError> {
    let Some(path) = paths.kubeconfig(file) else {
        return Ok(Action::Skipped {
            reason: "no kubeconfig directory".to_owned(),
        });
    };
    let request = spec.kubeconfig_request(file);
    let server = spec.kubeconfig_server(file);
    let action = match read_optional(&path)? {
        None => Action::Generated,
        Some(text) => match kubeconfig_staleness(&text, &request, &server, ca, now) {
            None => return Ok(Action::Reused),
            Some(reason) => Action::Reissued { reason },
        },
    };
    let user_name = request.common_name.clone();
    let contents = render_kubeconfig(
        paths,
        file,
        &request,
        ca,
        ClientCredentials {
            cluster_name: spec.cluster_name.clone(),
            user_name,
            server,
            ca_pem: ca.cert_pem.clone(),
            client_cert_pem: String::new(),
            client_key_pem: String::new(),
        },
        spec.key_type,
        now,
    )?;
    files.add(path, contents, SECRET_MODE);
    Ok(action)
}

/// Issues a fresh client certificate and renders the kubeconfig around it;
/// `template` supplies everything but the certificate and key.
pub(crate) fn render_kubeconfig(
    paths: &PkiPaths,
    file: KubeconfigFile,
    request: &CertRequest,
    ca: &LoadedAuthority,
    template: ClientCredentials,
    key_type: crate::key::KeyType,
    now: OffsetDateTime,
) -> Result<String, PkiError> {
    let key = PrivateKey::generate(key_type)?;
    let cert_pem = ca.sign(paths, file.file_name(), request, &key, now)?;
    let creds = ClientCredentials {
        client_cert_pem: cert_pem,
        client_key_pem: key.to_pem(),
        ..template
    };
    Kubeconfig::with_client_certificate(&creds)
        .to_yaml()
        .map_err(|source| PkiError::EncodeKubeconfig {
            path: paths.kubeconfig(file).unwrap_or_default(),
            source,
        })
}

fn kubeconfig_staleness(
    text: &str,
    request: &CertRequest,
    server: &str,
    ca: &LoadedAuthority,
    now: OffsetDateTime,
) -> Option<String> {
    let creds = match Kubeconfig::parse(text).and_then(|k| k.current_credentials()) {
        Ok(creds) => creds,
        Err(e) => return Some(format!("the existing file cannot be used ({e})")),
    };
    let embedded_ca = cert::pem_to_der(&creds.ca_pem).ok();
    if embedded_ca.as_deref() != Some(ca.cert_der.as_slice()) {
        return Some("it trusts a different CA".to_owned());
    }
    if creds.server != server {
        return Some(format!(
            "its server changed (was {}, now {server})",
            creds.server
        ));
    }
    let key = match PrivateKey::from_pem(&creds.client_key_pem) {
        Ok(key) => key,
        Err(e) => return Some(format!("its client key cannot be used ({e})")),
    };
    store::staleness(&creds.client_cert_pem, &key, request, ca, now)
}
