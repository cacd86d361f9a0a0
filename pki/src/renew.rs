//! `certs renew`: reissue certificates with a fresh key and validity while
//! keeping their identity (CN, O, SANs, usage) exactly as it is on disk.
//! Like kubeadm, renewal does not consult any cluster configuration, so it
//! cannot accidentally change what a certificate says.

use time::OffsetDateTime;

use crate::cert::{CertInfo, pem_to_der};
use crate::error::PkiError;
use crate::fileset::{FileSet, PUBLIC_MODE, SECRET_MODE};
use crate::generate::render_kubeconfig;
use crate::key::{KeyType, PrivateKey};
use crate::kubeconfig::Kubeconfig;
use crate::layout::{Authority, KubeconfigFile, Leaf, PkiPaths};
use crate::report::{Action, ItemKind, Report};
use crate::store::{LoadedAuthority, read_optional};
use crate::types::SubjectAltName;

/// What to renew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewTarget {
    All,
    Leaf(Leaf),
    Kubeconfig(KubeconfigFile),
}

impl RenewTarget {
    /// Every name `renew` accepts, as kubeadm spells them.
    pub fn names() -> Vec<&'static str> {
        let mut names: Vec<&str> = Leaf::ALL.iter().map(|l| l.name()).collect();
        names.extend(KubeconfigFile::ALL.iter().map(|k| k.file_name()));
        names.sort_unstable();
        names.insert(0, "all");
        names
    }

    pub fn parse(name: &str) -> Result<Self, PkiError> {
        if name == "all" {
            return Ok(Self::All);
        }
        if let Some(leaf) = Leaf::from_name(name) {
            return Ok(Self::Leaf(leaf));
        }
        if let Some(file) = KubeconfigFile::from_file_name(name) {
            return Ok(Self::Kubeconfig(file));
        }
        Err(PkiError::UnknownName {
            name: name.to_owned(),
            known: Self::names().join(", "),
        })
    }
}

/// Renews `target`. With `All`, items that do not exist are skipped and
/// reported; a named item that does not exist is an error.
pub fn renew(
    paths: &PkiPaths,
    target: RenewTarget,
    now: OffsetDateTime,
) -> Result<Report, PkiError> {
    renew_adding_apiserver_sans(paths, target, &[], now)
}

/// [`renew`], and the renewed apiserver certificate also covers
/// `extra_sans` (kubeadm's `--apiserver-cert-extra-sans`): how a name or
/// address is added to a running control plane without re-initialising.
pub fn renew_adding_apiserver_sans(
    paths: &PkiPaths,
    target: RenewTarget,
    extra_sans: &[SubjectAltName],
    now: OffsetDateTime,
) -> Result<Report, PkiError> {
    if !extra_sans.is_empty()
        && !matches!(
            target,
            RenewTarget::All | RenewTarget::Leaf(Leaf::Apiserver)
        )
    {
        return Err(PkiError::ExtraSansNotApplicable(match target {
            RenewTarget::Leaf(leaf) => leaf.name().to_owned(),
            RenewTarget::Kubeconfig(file) => file.file_name().to_owned(),
            RenewTarget::All => "all".to_owned(),
        }));
    }
    let mut files = FileSet::new();
    let mut report = Report::default();
    let mut authorities = AuthorityCache::default();

    let (leaves, kubeconfigs, required) = match target {
        RenewTarget::All => (Leaf::ALL.to_vec(), KubeconfigFile::ALL.to_vec(), false),
        RenewTarget::Leaf(leaf) => (vec![leaf], Vec::new(), true),
        RenewTarget::Kubeconfig(file) => (Vec::new(), vec![file], true),
    };

    for leaf in leaves {
        let cert_path = paths.cert(leaf.base_path());
        let Some(cert_pem) = read_optional(&cert_path)? else {
            if required {
                return Err(PkiError::NotFound {
                    name: leaf.name().to_owned(),
                    path: cert_path,
                });
            }
            report.push(
                ItemKind::Certificate,
                leaf.name(),
                Action::Skipped {
                    reason: "not present".to_owned(),
                },
            );
            continue;
        };
        let info = CertInfo::from_pem(&cert_pem).map_err(|source| PkiError::BadCert {
            path: cert_path.clone(),
            source,
        })?;
        let ca = authorities.get(paths, leaf.authority())?;
        let key = PrivateKey::generate(key_type_like(ca))?;
        let mut request = info.to_request();
        if leaf == Leaf::Apiserver {
            request.sans.extend(extra_sans.iter().cloned());
        }
        let new_pem = ca.sign(paths, leaf.name(), &request, &key, now)?;
        files.add(cert_path, new_pem, PUBLIC_MODE);
        files.add(paths.key(leaf.base_path()), key.to_pem(), SECRET_MODE);
        report.push(ItemKind::Certificate, leaf.name(), Action::Renewed);
    }

    for file in kubeconfigs {
        let Some(path) = paths.kubeconfig(file) else {
            continue;
        };
        let Some(text) = read_optional(&path)? else {
            if required {
                return Err(PkiError::NotFound {
                    name: file.file_name().to_owned(),
                    path,
                });
            }
            report.push(
                ItemKind::Kubeconfig,
                file.file_name(),
                Action::Skipped {
                    reason: "not present".to_owned(),
                },
            );
            continue;
        };
        let bad = |source| PkiError::BadKubeconfig {
            path: path.clone(),
            source,
        };
        let creds = Kubeconfig::parse(&text)
            .and_then(|k| k.current_credentials())
            .map_err(bad)?;
        let info =
            CertInfo::from_pem(&creds.client_cert_pem).map_err(|source| PkiError::BadCert {
                path: path.clone(),
                source,
            })?;
        let ca = authorities.get(paths, Authority::Kubernetes)?;
        let embedded_ca = pem_to_der(&creds.ca_pem).ok();
        let mut template = creds;
        if embedded_ca.as_deref() != Some(ca.cert_der.as_slice()) {
            // The renewed client certificate is signed by the current CA, so
            // the kubeconfig must trust that CA too.
            template.ca_pem = ca.cert_pem.clone();
        }
        let contents = render_kubeconfig(
            paths,
            file,
            &info.to_request(),
            ca,
            template,
            key_type_like(ca),
            now,
        )?;
        files.add(path, contents, SECRET_MODE);
        report.push(ItemKind::Kubeconfig, file.file_name(), Action::Renewed);
    }

    files.commit()?;
    Ok(report)
}

/// CAs are loaded once, on first use, so renewing one leaf does not need
/// the other CAs to be present.
#[derive(Debug, Default)]
struct AuthorityCache {
    loaded: Vec<LoadedAuthority>,
}

impl AuthorityCache {
    fn get(&mut self, paths: &PkiPaths, wanted: Authority) -> Result<&LoadedAuthority, PkiError> {
        let index = match self.loaded.iter().position(|a| a.authority == wanted) {
            Some(index) => index,
            None => {
                let loaded =
                    LoadedAuthority::load(paths, wanted)?.ok_or_else(|| PkiError::NotFound {
                        name: wanted.name().to_owned(),
                        path: paths.cert(wanted.base_path()),
                    })?;
                self.loaded.push(loaded);
                self.loaded.len() - 1
            }
        };
        Ok(&self.loaded[index])
    }
}

/// Renewed keys follow the CA's algorithm, so an RSA cluster stays RSA.
fn key_type_like(ca: &LoadedAuthority) -> KeyType {
    ca.key
        .as_ref()
        .and_then(PrivateKey::key_type)
        .unwrap_or_default()
}
