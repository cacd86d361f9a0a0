//! Reading the current context of a kubeconfig into a server URL, a trust
//! root and credentials.
//!
//! `cairn_pki::kubeconfig` models the files we write (embedded data only);
//! this reader also accepts what kubectl users hand us: file references
//! (`certificate-authority`, `client-certificate`, `client-key`,
//! `tokenFile`, relative to the kubeconfig's directory as kubectl resolves
//! them), `token` and `insecure-skip-tls-verify`.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

use super::{Credentials, Error, ServerTrust};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct File {
    #[serde(default)]
    clusters: Vec<Named<ClusterEntry>>,
    #[serde(default)]
    contexts: Vec<Named<ContextEntry>>,
    #[serde(default)]
    users: Vec<Named<UserEntry>>,
    #[serde(default)]
    current_context: String,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "context", alias = "user")]
    value: T,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterEntry {
    server: String,
    #[serde(default)]
    certificate_authority_data: Option<String>,
    #[serde(default)]
    certificate_authority: Option<PathBuf>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
    #[serde(default)]
    tls_server_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ContextEntry {
    cluster: String,
    user: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct UserEntry {
    #[serde(default)]
    client_certificate_data: Option<String>,
    #[serde(default)]
    client_certificate: Option<PathBuf>,
    #[serde(default)]
    client_key_data: Option<String>,
    #[serde(default)]
    client_key: Option<PathBuf>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "tokenFile")]
    token_file: Option<PathBuf>,
    /// Credential plugins and basic auth are not supported; their presence
    /// is an error rather than a silent fall back to anonymous.
    #[serde(default)]
    exec: Option<serde_yaml::Value>,
    #[serde(default)]
    auth_provider: Option<serde_yaml::Value>,
    #[serde(default)]
    username: Option<String>,
}

/// What the current context resolves to.
#[derive(Debug)]
pub(crate) struct Target {
    pub server: String,
    pub trust: ServerTrust,
    pub credentials: Credentials,
    pub tls_server_name: Option<String>,
}

struct Loader<'a> {
    origin: &'a str,
    base_dir: Option<&'a Path>,
}

impl Loader<'_> {
    fn error(&self, reason: impl Into<String>) -> Error {
        Error::Kubeconfig {
            origin: self.origin.to_owned(),
            reason: reason.into(),
        }
    }

    /// Embedded base64 data wins over a file reference, as in kubectl.
    fn material(
        &self,
        data: &Option<String>,
        file: &Option<PathBuf>,
        field: &str,
    ) -> Result<Option<Vec<u8>>, Error> {
        if let Some(data) = data {
            let bytes = BASE64
                .decode(data.trim())
                .map_err(|e| self.error(format!("{field}-data is not base64: {e}")))?;
            return Ok(Some(bytes));
        }
        let Some(file) = file else {
            return Ok(None);
        };
        let path = match self.base_dir {
            Some(dir) if file.is_relative() => dir.join(file),
            _ => file.clone(),
        };
        std::fs::read(&path)
            .map(Some)
            .map_err(|e| self.error(format!("{field} {}: {e}", path.display())))
    }
}

/// Resolves the current context of a kubeconfig. `origin` names it in
/// errors; `base_dir` anchors relative file references.
pub(crate) fn resolve(yaml: &str, origin: &str, base_dir: Option<&Path>) -> Result<Target, Error> {
    let loader = Loader { origin, base_dir };
    let file: File =
        serde_yaml::from_str(yaml).map_err(|e| loader.error(format!("not a kubeconfig: {e}")))?;
    if file.current_context.is_empty() {
        return Err(loader.error("current-context is not set"));
    }
    let context = file
        .contexts
        .iter()
        .find(|c| c.name == file.current_context)
        .ok_or_else(|| {
            loader.error(format!(
                "current-context {:?} is not defined",
                file.current_context
            ))
        })?;
    let cluster = file
        .clusters
        .iter()
        .find(|c| c.name == context.value.cluster)
        .ok_or_else(|| {
            loader.error(format!(
                "context {:?} refers to cluster {:?}, which is not defined",
                context.name, context.value.cluster
            ))
        })?;
    let default_user = Named {
        name: String::new(),
        value: UserEntry::default(),
    };
    // An unnamed or missing user means anonymous, as with kubectl.
    let user = if context.value.user.is_empty() {
        &default_user
    } else {
        file.users
            .iter()
            .find(|u| u.name == context.value.user)
            .ok_or_else(|| {
                loader.error(format!(
                    "context {:?} refers to user {:?}, which is not defined",
                    context.name, context.value.user
                ))
            })?
    };
    let ca = loader.material(
        &cluster.value.certificate_authority_data,
        &cluster.value.certificate_authority,
        "certificate-authority",
    )?;
    let trust = match (ca, cluster.value.insecure_skip_tls_verify) {
        (Some(pem), false) => ServerTrust::CaPem(pem),
        (None, true) => ServerTrust::InsecureSkipVerify,
        (Some(_), true) => {
            return Err(loader.error(format!(
                "cluster {:?} sets both a certificate authority and insecure-skip-tls-verify",
                cluster.name
            )));
        }
        (None, false) => {
            return Err(loader.error(format!(
                "cluster {:?} has no certificate-authority(-data); refusing to trust any server",
                cluster.name
            )));
        }
    };
    let user_entry = &user.value;
    let unsupported = [
        ("exec", user_entry.exec.is_some()),
        ("auth-provider", user_entry.auth_provider.is_some()),
        ("username/password", user_entry.username.is_some()),
    ];
    if let Some((what, _)) = unsupported.iter().find(|(_, present)| *present) {
        return Err(loader.error(format!(
            "user {:?} authenticates with {what}, which is not supported \
             (use a client certificate or a token)",
            user.name
        )));
    }
    let cert = loader.material(
        &user_entry.client_certificate_data,
        &user_entry.client_certificate,
        "client-certificate",
    )?;
    let key = loader.material(
        &user_entry.client_key_data,
        &user_entry.client_key,
        "client-key",
    )?;
    let token = match (&user_entry.token, &user_entry.token_file) {
        (Some(token), _) => Some(token.trim().to_owned()),
        (None, Some(_)) => loader
            .material(&None, &user_entry.token_file, "tokenFile")?
            .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned()),
        (None, None) => None,
    };
    let credentials = match (cert, key, token) {
        (Some(cert_pem), Some(key_pem), _) => Credentials::ClientCertificate { cert_pem, key_pem },
        (Some(_), None, _) | (None, Some(_), _) => {
            return Err(loader.error(format!(
                "user {:?} has a client certificate or key but not both",
                user.name
            )));
        }
        (None, None, Some(token)) => Credentials::BearerToken(token),
        (None, None, None) => Credentials::Anonymous,
    };
    Ok(Target {
        server: cluster.value.server.clone(),
        trust,
        credentials,
        tls_server_name: cluster.value.tls_server_name.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        BASE64.encode(text)
    }

    #[test]
    fn embedded_data_as_written_by_cairn_pki() {
        let creds = cairn_pki::kubeconfig::ClientCredentials {
            cluster_name: "kubernetes".into(),
            user_name: "kubernetes-admin".into(),
            server: "https://10.0.0.1:6443".into(),
            ca_pem: "CA".into(),
            client_cert_pem: "CERT".into(),
            client_key_pem: "KEY".into(),
        };
        let yaml = cairn_pki::kubeconfig::Kubeconfig::with_client_certificate(&creds)
            .to_yaml()
            .expect("yaml");
        let target = resolve(&yaml, "<inline>", None).expect("resolve");
        assert_eq!(target.server, "https://10.0.0.1:6443");
        assert_eq!(target.trust, ServerTrust::CaPem(b"CA".to_vec()));
        assert_eq!(
            target.credentials,
            Credentials::ClientCertificate {
                cert_pem: b"CERT".to_vec(),
                key_pem: b"KEY".to_vec()
            }
        );
    }

    #[test]
    fn file_references_are_relative_to_the_kubeconfig() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.crt"), "CA FILE").expect("write");
        std::fs::write(dir.path().join("token"), "abcdef.0123456789abcdef\n").expect("write");
        let yaml = "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
            clusters:\n- name: k\n  cluster:\n    server: https://h:6443\n    certificate-authority: ca.crt\n    tls-server-name: kubernetes\n\
            contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n\
            users:\n- name: u\n  user:\n    tokenFile: token\n";
        let target = resolve(yaml, "x", Some(dir.path())).expect("resolve");
        assert_eq!(target.trust, ServerTrust::CaPem(b"CA FILE".to_vec()));
        assert_eq!(
            target.credentials,
            Credentials::BearerToken("abcdef.0123456789abcdef".into())
        );
        assert_eq!(target.tls_server_name.as_deref(), Some("kubernetes"));
    }

    #[test]
    fn token_and_insecure_and_errors() {
        let yaml = format!(
            "current-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://h\n    insecure-skip-tls-verify: true\n\
             contexts:\n- name: c\n  context: {{cluster: k, user: u}}\n\
             users:\n- name: u\n  user:\n    token: {}\n",
            "t0ken"
        );
        let target = resolve(&yaml, "x", None).expect("resolve");
        assert_eq!(target.trust, ServerTrust::InsecureSkipVerify);
        assert_eq!(target.credentials, Credentials::BearerToken("t0ken".into()));

        let no_ca = "current-context: c\nclusters:\n- name: k\n  cluster: {server: https://h}\n\
                     contexts:\n- name: c\n  context: {cluster: k, user: ''}\nusers: []\n";
        let err = resolve(no_ca, "admin.conf", None).expect_err("no CA");
        assert!(
            err.to_string().contains("has no certificate-authority"),
            "{err}"
        );

        let dangling = format!(
            "current-context: c\nclusters:\n- name: k\n  cluster: {{server: https://h, certificate-authority-data: {}}}\n\
             contexts:\n- name: c\n  context: {{cluster: k, user: u}}\nusers: []\n",
            b64("CA")
        );
        let err = resolve(&dangling, "admin.conf", None).expect_err("dangling");
        assert_eq!(
            err.to_string(),
            "kubeconfig admin.conf: context \"c\" refers to user \"u\", which is not defined"
        );

        let half = format!(
            "current-context: c\nclusters:\n- name: k\n  cluster: {{server: https://h, certificate-authority-data: {}}}\n\
             contexts:\n- name: c\n  context: {{cluster: k, user: u}}\n\
             users:\n- name: u\n  user: {{client-certificate-data: {}}}\n",
            b64("CA"),
            b64("CERT")
        );
        let err = resolve(&half, "x", None).expect_err("half");
        assert!(err.to_string().contains("not both"), "{err}");

        let exec = format!(
            "current-context: c\nclusters:\n- name: k\n  cluster: {{server: https://h, certificate-authority-data: {}}}\n\
             contexts:\n- name: c\n  context: {{cluster: k, user: u}}\n\
             users:\n- name: u\n  user:\n    exec: {{command: aws}}\n",
            b64("CA")
        );
        let err = resolve(&exec, "x", None).expect_err("exec");
        assert!(err.to_string().contains("authenticates with exec"), "{err}");

        let err = resolve("current-context: ''\n", "x", None).expect_err("no context");
        assert!(
            err.to_string().contains("current-context is not set"),
            "{err}"
        );
    }
}
