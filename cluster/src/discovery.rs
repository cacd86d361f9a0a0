//! Token discovery: how a joining node learns the cluster's CA and API
//! address from nothing but an endpoint, a bootstrap token and a CA pin,
//! exactly as `kubeadm join --discovery-token ... --discovery-token-ca-cert-hash`.
//!
//! 1. Read `kube-public/cluster-info` anonymously **without verifying TLS**
//!    (we do not know the CA yet). Nothing secret is sent: the client is
//!    anonymous, the token never leaves this process during discovery.
//! 2. The ConfigMap must carry `jws-kubeconfig-<token-id>`: the bootstrap
//!    signer adds one per valid signing token, so its absence means the
//!    token is unknown or expired.
//! 3. That detached JWS must verify over the `kubeconfig` value with the
//!    token secret: proof that the publisher knows the secret.
//! 4. The CA inside the kubeconfig must match the pin (SHA-256 of its
//!    SubjectPublicKeyInfo): proof that it is the CA the operator meant,
//!    even if the token leaked.
//! 5. Read `cluster-info` again, now trusting only that CA: proof that the
//!    server we talk to holds a certificate the CA issued; the two reads
//!    must agree.
//!
//! Each failed check is its own error that says what to do about it. Only
//! after all of them may the caller use the token ([`ClusterInfo`] then
//! builds the bootstrap client).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use cairn_pki::BootstrapToken;
use cairn_pki::kubeconfig::NamedCluster;
use k8s_openapi::api::core::v1::ConfigMap;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::client::{self, Credentials, KubeClient, ServerTrust};
use crate::jws;

/// Namespace of the `cluster-info` ConfigMap.
pub const CLUSTER_INFO_NAMESPACE: &str = "kube-public";
/// Name of the ConfigMap.
pub const CLUSTER_INFO_NAME: &str = "cluster-info";
/// Its key holding the kubeconfig (one cluster, no users).
pub const KUBECONFIG_KEY: &str = "kubeconfig";
/// Prefix of the per-token signature keys.
pub const JWS_KEY_PREFIX: &str = "jws-kubeconfig-";

const HOW_TO_GET_A_TOKEN: &str =
    "create a new one on a control-plane node with `bootstrap token create --print-join-command`";

/// What discovery established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// The API server URL the cluster publishes (`https://host:port`).
    pub server: String,
    /// The cluster CA (PEM bundle), matched against the pin.
    pub ca_pem: String,
    /// The `kubeconfig` value of `cluster-info`, as published.
    pub kubeconfig: String,
}

impl ClusterInfo {
    /// A client that authenticates with the bootstrap token and trusts
    /// only the discovered CA (for TLS bootstrap).
    pub fn bootstrap_client(&self, token: &BootstrapToken) -> Result<KubeClient, client::Error> {
        KubeClient::new(
            &self.server,
            ServerTrust::CaPem(self.ca_pem.clone().into_bytes()),
            Credentials::BearerToken(token.to_string()),
        )
    }
}

/// Why discovery refused the cluster.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The expected pin is not `sha256:<64 hex>`.
    #[error("invalid CA pin: {0}")]
    InvalidPin(String),
    /// The endpoint is not `host:port`.
    #[error("invalid discovery endpoint {endpoint:?}: {source}")]
    InvalidEndpoint {
        /// What was given.
        endpoint: String,
        /// Why it is not usable.
        source: Box<client::Error>,
    },
    /// The first (unverified) read failed: network, TLS, or an error
    /// status other than 404.
    #[error("cannot read {CLUSTER_INFO_NAMESPACE}/{CLUSTER_INFO_NAME} from {endpoint}: {source}")]
    Fetch {
        /// `host:port`.
        endpoint: String,
        /// The client's error.
        source: Box<client::Error>,
    },
    /// The server has no cluster-info.
    #[error(
        "{endpoint} has no ConfigMap {CLUSTER_INFO_NAMESPACE}/{CLUSTER_INFO_NAME}: \
         is it a control-plane endpoint of an initialised cluster?"
    )]
    NoClusterInfo {
        /// `host:port`.
        endpoint: String,
    },
    /// cluster-info has no usable kubeconfig.
    #[error("{CLUSTER_INFO_NAMESPACE}/{CLUSTER_INFO_NAME} on {endpoint} is unusable: {reason}")]
    BadClusterInfo {
        /// `host:port`.
        endpoint: String,
        /// What is missing or malformed.
        reason: String,
    },
    /// No signature for the token: unknown id, expired, or not allowed to
    /// sign.
    #[error("token {token_id} is not known to the cluster or has expired; {HOW_TO_GET_A_TOKEN}")]
    UnknownToken {
        /// The token id.
        token_id: String,
    },
    /// The signature does not verify with the token secret.
    #[error(
        "the cluster-info signature for token {token_id} does not match the token's secret \
         ({source}); check the token for typos or {HOW_TO_GET_A_TOKEN}"
    )]
    SignatureMismatch {
        /// The token id.
        token_id: String,
        /// The verification failure.
        source: jws::JwsError,
    },
    /// The published CA is not the pinned one.
    #[error(
        "the cluster CA does not match the pin: expected {expected}, the cluster presents {}; \
         check --discovery-token-ca-cert-hash (on a control-plane node: `bootstrap certs ca-hash`)",
        seen.join(", ")
    )]
    PinMismatch {
        /// The pin we were given.
        expected: String,
        /// The pins of the certificates in the published CA bundle.
        seen: Vec<String>,
    },
    /// The server does not hold a certificate issued by the pinned CA.
    #[error(
        "{endpoint} does not present a serving certificate issued by the pinned CA \
         (the published cluster-info is genuine, but this endpoint is not the cluster's API server): {source}"
    )]
    NotTheClusterServer {
        /// `host:port`.
        endpoint: String,
        /// The TLS failure.
        source: Box<client::Error>,
    },
    /// The verified read returned another kubeconfig than the first read.
    #[error(
        "{CLUSTER_INFO_NAMESPACE}/{CLUSTER_INFO_NAME} on {endpoint} changed between the unverified \
         and the verified read; retry"
    )]
    Changed {
        /// `host:port`.
        endpoint: String,
    },
}

impl DiscoveryError {
    /// Whether retrying later may help (the server is not reachable or not
    /// ready yet, or cluster-info is being rewritten).
    pub fn is_transient(&self) -> bool {
        match self {
            DiscoveryError::Fetch { source, .. } => !matches!(source.status(), Some(400..=499)),
            DiscoveryError::NoClusterInfo { .. } | DiscoveryError::Changed { .. } => true,
            _ => false,
        }
    }
}

/// Options of [`discover`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscoveryOptions {
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of each read and write.
    pub io_timeout: Duration,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(30),
        }
    }
}

/// Token discovery against `endpoint` (`host:port`, e.g. `10.0.0.1:6443`)
/// with the expected CA pin (`sha256:<hex>`), default timeouts. See the
/// module documentation for the checks.
pub fn discover(
    endpoint: &str,
    token: &BootstrapToken,
    ca_pin: &str,
) -> Result<ClusterInfo, DiscoveryError> {
    discover_with(endpoint, token, ca_pin, DiscoveryOptions::default())
}

/// [`discover`] with explicit timeouts.
pub fn discover_with(
    endpoint: &str,
    token: &BootstrapToken,
    ca_pin: &str,
    options: DiscoveryOptions,
) -> Result<ClusterInfo, DiscoveryError> {
    let expected_pin = cairn_pki::parse_ca_cert_hash(ca_pin)
        .map_err(|e| DiscoveryError::InvalidPin(e.to_string()))?;
    let url = format!("https://{endpoint}");
    let client_for = |trust: ServerTrust| {
        KubeClient::new(&url, trust, Credentials::Anonymous)
            .map(|c| {
                c.with_connect_timeout(options.connect_timeout)
                    .with_io_timeout(options.io_timeout)
            })
            .map_err(|source| DiscoveryError::InvalidEndpoint {
                endpoint: endpoint.to_owned(),
                source: Box::new(source),
            })
    };

    // 1. Unverified, anonymous read.
    let insecure = client_for(ServerTrust::InsecureSkipVerify)?;
    let cluster_info = fetch_cluster_info(&insecure).map_err(|source| {
        if source.is_not_found() {
            DiscoveryError::NoClusterInfo {
                endpoint: endpoint.to_owned(),
            }
        } else {
            DiscoveryError::Fetch {
                endpoint: endpoint.to_owned(),
                source: Box::new(source),
            }
        }
    })?;
    let bad = |reason: String| DiscoveryError::BadClusterInfo {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let data = cluster_info.data.unwrap_or_default();
    let kubeconfig_text = data
        .get(KUBECONFIG_KEY)
        .ok_or_else(|| bad(format!("no {KUBECONFIG_KEY:?} key")))?
        .clone();

    // 2. + 3. The token's signature.
    let signature = data
        .get(&format!("{JWS_KEY_PREFIX}{}", token.id()))
        .ok_or_else(|| DiscoveryError::UnknownToken {
            token_id: token.id().to_owned(),
        })?;
    jws::verify_detached(&kubeconfig_text, signature, token.id(), token.secret()).map_err(
        |source| DiscoveryError::SignatureMismatch {
            token_id: token.id().to_owned(),
            source,
        },
    )?;

    // 4. The pin.
    let (server, ca_pem) = cluster_of(&kubeconfig_text).map_err(bad)?;
    let seen = ca_pins(&ca_pem).map_err(bad)?;
    if !seen.contains(&expected_pin) {
        return Err(DiscoveryError::PinMismatch {
            expected: expected_pin,
            seen,
        });
    }
    tracing::info!(endpoint, server = %server, pin = %expected_pin, token_id = token.id(),
        "cluster-info signature and CA pin verified");

    // 5. The same read, now trusting only the pinned CA.
    let secure = client_for(ServerTrust::CaPem(ca_pem.clone().into_bytes()))?;
    let verified = fetch_cluster_info(&secure).map_err(|source| match source {
        client::Error::Tls { .. } => DiscoveryError::NotTheClusterServer {
            endpoint: endpoint.to_owned(),
            source: Box::new(source),
        },
        other => DiscoveryError::Fetch {
            endpoint: endpoint.to_owned(),
            source: Box::new(other),
        },
    })?;
    let verified_kubeconfig = verified.data.as_ref().and_then(|d| d.get(KUBECONFIG_KEY));
    if verified_kubeconfig != Some(&kubeconfig_text) {
        return Err(DiscoveryError::Changed {
            endpoint: endpoint.to_owned(),
        });
    }
    Ok(ClusterInfo {
        server,
        ca_pem,
        kubeconfig: kubeconfig_text,
    })
}

fn fetch_cluster_info(client: &KubeClient) -> Result<ConfigMap, client::Error> {
    client.get::<ConfigMap>(Some(CLUSTER_INFO_NAMESPACE), CLUSTER_INFO_NAME)
}

/// The part of cluster-info's kubeconfig discovery reads. kubeadm (Go's
/// clientcmd) writes `contexts: null` and `users: null`, which the full
/// kubeconfig model refuses, so only `clusters` is read here.
#[derive(Debug, serde::Deserialize)]
struct ClusterInfoKubeconfig {
    #[serde(default)]
    clusters: Option<Vec<NamedCluster>>,
}

/// The server and CA PEM of the kubeconfig's cluster (cluster-info holds
/// one cluster and no contexts; like kubeadm we take the first).
fn cluster_of(kubeconfig_text: &str) -> Result<(String, String), String> {
    let kubeconfig: ClusterInfoKubeconfig = serde_yaml::from_str(kubeconfig_text)
        .map_err(|e| format!("{KUBECONFIG_KEY:?} is not a kubeconfig: {e}"))?;
    let cluster = kubeconfig
        .clusters
        .as_deref()
        .and_then(|clusters| clusters.first())
        .ok_or_else(|| format!("{KUBECONFIG_KEY:?} defines no cluster"))?;
    let ca_data = cluster
        .cluster
        .certificate_authority_data
        .as_deref()
        .ok_or_else(|| {
            format!(
                "cluster {:?} has no certificate-authority-data",
                cluster.name
            )
        })?;
    let ca_pem = BASE64
        .decode(ca_data.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            format!(
                "certificate-authority-data of cluster {:?} is not base64 PEM",
                cluster.name
            )
        })?;
    if cluster.cluster.server.is_empty() {
        return Err(format!("cluster {:?} has no server", cluster.name));
    }
    Ok((cluster.cluster.server.clone(), ca_pem))
}

/// The pin of every certificate in a PEM bundle.
fn ca_pins(ca_pem: &str) -> Result<Vec<String>, String> {
    let certs = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("CA bundle: {e}"))?;
    if certs.is_empty() {
        return Err("the CA bundle holds no certificate".into());
    }
    certs
        .iter()
        .map(|der| {
            cairn_pki::cert::CertInfo::from_der(der)
                .map(|info| cairn_pki::pin::spki_hash(&info.spki_der))
                .map_err(|e| format!("CA certificate: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_info_kubeconfig_is_read_like_kubeadm() {
        let ca = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://10.0.0.1:6443\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\npreferences: {{}}\nusers: null\n",
            BASE64.encode(ca)
        );
        let (server, pem) = cluster_of(&yaml).expect("kubeadm's cluster-info");
        assert_eq!(server, "https://10.0.0.1:6443");
        assert_eq!(pem, ca);
        assert!(cluster_of("apiVersion: v1\nkind: Config\n").is_err());
    }

    #[test]
    fn errors_say_what_to_do() {
        let err = DiscoveryError::UnknownToken {
            token_id: "abcdef".into(),
        };
        assert_eq!(
            err.to_string(),
            "token abcdef is not known to the cluster or has expired; create a new one on a \
             control-plane node with `bootstrap token create --print-join-command`"
        );
        let err = DiscoveryError::PinMismatch {
            expected: "sha256:aa".into(),
            seen: vec!["sha256:bb".into()],
        };
        assert!(
            err.to_string()
                .contains("expected sha256:aa, the cluster presents sha256:bb"),
            "{err}"
        );
    }
}
