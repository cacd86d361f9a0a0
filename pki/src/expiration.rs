//! `certs check-expiration`: when every certificate and kubeconfig expires,
//! rendered as the table kubeadm prints.

use time::{Duration, OffsetDateTime};

use crate::cert::CertInfo;
use crate::error::PkiError;
use crate::kubeconfig::Kubeconfig;
use crate::layout::{Authority, KubeconfigFile, Leaf, PkiPaths};
use crate::store::read_optional;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expiry {
    At(OffsetDateTime),
    Missing,
    Unreadable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpirationRow {
    pub name: String,
    pub expiry: Expiry,
    /// The CA that signs it (leaves and kubeconfigs only).
    pub authority: Option<&'static str>,
    /// kubeadm's "externally managed": the signing CA's key is not here, so
    /// Cairn cannot renew it.
    pub externally_managed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpirationReport {
    pub now: OffsetDateTime,
    pub certificates: Vec<ExpirationRow>,
    pub authorities: Vec<ExpirationRow>,
}

fn cert_expiry(pem_text: Option<String>) -> Expiry {
    match pem_text {
        None => Expiry::Missing,
        Some(text) => match CertInfo::from_pem(&text) {
            Ok(info) => Expiry::At(info.not_after),
            Err(e) => Expiry::Unreadable(e.to_string()),
        },
    }
}

pub fn check_expiration(
    paths: &PkiPaths,
    now: OffsetDateTime,
) -> Result<ExpirationReport, PkiError> {
    let mut authorities = Vec::new();
    let mut ca_key_present = Vec::new();
    for authority in Authority::ALL {
        let key_present = paths.key(authority.base_path()).exists();
        ca_key_present.push((authority, key_present));
        authorities.push(ExpirationRow {
            name: authority.name().to_owned(),
            expiry: cert_expiry(read_optional(&paths.cert(authority.base_path()))?),
            authority: None,
            externally_managed: !key_present,
        });
    }
    let external = |authority: Authority| {
        !ca_key_present
            .iter()
            .any(|(a, present)| *a == authority && *present)
    };

    let mut certificates = Vec::new();
    if let Some(dir) = &paths.kubeconfig_dir
        && dir.is_dir()
    {
        for file in KubeconfigFile::ALL {
            let Some(path) = paths.kubeconfig(file) else {
                continue;
            };
            let expiry = match read_optional(&path)? {
                None => Expiry::Missing,
                Some(text) => {
                    match Kubeconfig::parse(&text).and_then(|k| k.current_credentials()) {
                        Ok(creds) => cert_expiry(Some(creds.client_cert_pem)),
                        Err(e) => Expiry::Unreadable(e.to_string()),
                    }
                }
            };
            certificates.push(ExpirationRow {
                name: file.file_name().to_owned(),
                expiry,
                authority: Some(Authority::Kubernetes.name()),
                externally_managed: external(Authority::Kubernetes),
            });
        }
    }
    for leaf in Leaf::ALL {
        certificates.push(ExpirationRow {
            name: leaf.name().to_owned(),
            expiry: cert_expiry(read_optional(&paths.cert(leaf.base_path()))?),
            authority: Some(leaf.authority().name()),
            externally_managed: external(leaf.authority()),
        });
    }
    certificates.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ExpirationReport {
        now,
        certificates,
        authorities,
    })
}

/// kubeadm's short human duration: `<invalid>`, `45s`, `12m`, `5h`, `364d`, `9y`.
pub fn short_duration(duration: Duration) -> String {
    let seconds = duration.whole_seconds();
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    let seconds = seconds.max(0);
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 60 * 60 => format!("{}m", s / 60),
        s if s < 24 * 60 * 60 => format!("{}h", s / 3600),
        s if s < 365 * 24 * 60 * 60 => format!("{}d", s / 86_400),
        s => format!("{}y", s / (365 * 86_400)),
    }
}

fn format_expiry(expiry: &Expiry, now: OffsetDateTime) -> (String, String) {
    match expiry {
        Expiry::At(at) => {
            let format = time::macros::format_description!(
                "[month repr:short] [day], [year] [hour]:[minute] UTC"
            );
            let text = at
                .to_offset(time::UtcOffset::UTC)
                .format(format)
                .unwrap_or_else(|_| at.to_string());
            (text, short_duration(*at - now))
        }
        Expiry::Missing => ("<missing>".to_owned(), "-".to_owned()),
        Expiry::Unreadable(_) => ("<unreadable>".to_owned(), "-".to_owned()),
    }
}

fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}   "));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

impl ExpirationReport {
    /// The two tables of `kubeadm certs check-expiration`.
    pub fn render(&self) -> String {
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
        let cert_rows: Vec<Vec<String>> = self
            .certificates
            .iter()
            .map(|row| {
                let (expires, residual) = format_expiry(&row.expiry, self.now);
                vec![
                    row.name.clone(),
                    expires,
                    residual,
                    row.authority.unwrap_or("").to_owned(),
                    yes_no(row.externally_managed),
                ]
            })
            .collect();
        let ca_rows: Vec<Vec<String>> = self
            .authorities
            .iter()
            .map(|row| {
                let (expires, residual) = format_expiry(&row.expiry, self.now);
                vec![
                    row.name.clone(),
                    expires,
                    residual,
                    yes_no(row.externally_managed),
                ]
            })
            .collect();
        format!(
            "{}\n{}",
            render_table(
                &[
                    "CERTIFICATE",
                    "EXPIRES",
                    "RESIDUAL TIME",
                    "CERTIFICATE AUTHORITY",
                    "EXTERNALLY MANAGED"
                ],
                &cert_rows
            ),
            render_table(
                &[
                    "CERTIFICATE AUTHORITY",
                    "EXPIRES",
                    "RESIDUAL TIME",
                    "EXTERNALLY MANAGED"
                ],
                &ca_rows
            )
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubeadm() {
        assert_eq!(short_duration(Duration::days(364)), "364d");
        assert_eq!(short_duration(Duration::days(3649)), "9y");
        assert_eq!(short_duration(Duration::hours(5)), "5h");
        assert_eq!(short_duration(Duration::seconds(-3600)), "<invalid>");
    }
}
