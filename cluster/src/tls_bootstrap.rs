//! TLS bootstrap: trading the bootstrap token for the node's own client
//! certificate, as kubelet does on its first start.
//!
//! With a client that authenticates by the bootstrap token and trusts the
//! CA found by [`discovery`](crate::discovery):
//!
//! 1. refuse if a Node of that name exists (kubeadm's check: joining would
//!    take over another machine's identity; bootstrappers may `get nodes`
//!    through the `kubeadm:get-nodes` role);
//! 2. generate an ECDSA P-256 key and a PKCS#10 request for
//!    `CN=system:node:<name>, O=system:nodes`;
//! 3. create a `certificates.k8s.io/v1` CertificateSigningRequest
//!    (`generateName: node-csr-`, signer
//!    `kubernetes.io/kube-apiserver-client-kubelet`, usages `digital
//!    signature` and `client auth`);
//! 4. wait until the controller-manager approved it and the signer put
//!    `status.certificate` in, or it was denied or failed, or the caller's
//!    deadline passed. Waiting watches the one CSR (field selector on its
//!    name) and re-reads it between watches, so a missed event only costs
//!    one watch timeout; if the server refuses the watch, it polls.
//!
//! The key never leaves the process; the certificate returned is checked to
//! belong to it and to carry the requested identity.

use std::time::{Duration, Instant};

use cairn_pki::kubeconfig::{ClientCredentials, Kubeconfig};
use cairn_pki::{BootstrapToken, NodeName};
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::client::{self, Credentials, KubeClient, ListParams, ServerTrust, WatchEvent};
use crate::discovery::ClusterInfo;

/// The signer kubelets ask for their client certificates.
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The group every node certificate carries.
pub const NODES_GROUP: &str = "system:nodes";
/// How long one watch of the CSR lasts before it is re-read.
const WATCH_SLICE: Duration = Duration::from_secs(30);
/// Pause between reads when the server refuses to watch.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The user name of a node: `system:node:<name>`.
pub fn node_user_name(node: &NodeName) -> String {
    format!("system:node:{node}")
}

/// The node's new identity.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeCredentials {
    /// The node.
    pub node_name: NodeName,
    /// The issued client certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
    /// The CertificateSigningRequest that produced it.
    pub csr_name: String,
}

impl std::fmt::Debug for NodeCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCredentials")
            .field("node_name", &self.node_name)
            .field("csr_name", &self.csr_name)
            .finish_non_exhaustive()
    }
}

impl NodeCredentials {
    /// The node's kubeconfig (kubelet.conf) for `server`, trusting `ca_pem`.
    pub fn kubeconfig(&self, server: &str, ca_pem: &str) -> Kubeconfig {
        Kubeconfig::with_client_certificate(&ClientCredentials {
            cluster_name: "kubernetes".to_owned(),
            user_name: node_user_name(&self.node_name),
            server: server.to_owned(),
            ca_pem: ca_pem.to_owned(),
            client_cert_pem: self.cert_pem.clone(),
            client_key_pem: self.key_pem.clone(),
        })
    }

    /// A client authenticated as the node.
    pub fn client(&self, server: &str, ca_pem: &str) -> Result<KubeClient, client::Error> {
        KubeClient::new(
            server,
            ServerTrust::CaPem(ca_pem.as_bytes().to_vec()),
            Credentials::ClientCertificate {
                cert_pem: self.cert_pem.clone().into_bytes(),
                key_pem: self.key_pem.clone().into_bytes(),
            },
        )
    }
}

/// Why TLS bootstrap failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsBootstrapError {
    /// The node name is not a valid Node name.
    #[error("invalid node name: {0}")]
    InvalidNodeName(String),
    /// A Node of this name is already registered.
    #[error(
        "a Node named {node} already exists in the cluster; give this machine another name, \
         or delete the old node first (`kubectl delete node {node}`) if it is gone for good"
    )]
    DuplicateNode {
        /// The name.
        node: NodeName,
    },
    /// An API call failed.
    #[error("{step}: {source}")]
    Api {
        /// What we were doing.
        step: String,
        /// The client's error.
        source: Box<client::Error>,
    },
    /// The key or the request could not be generated.
    #[error("cannot build the certificate signing request for {node}: {reason}")]
    Request {
        /// The node.
        node: NodeName,
        /// rcgen's error.
        reason: String,
    },
    /// The CSR was denied.
    #[error("CertificateSigningRequest {csr} was denied ({reason}): {message}")]
    Denied {
        /// CSR name.
        csr: String,
        /// The condition's reason.
        reason: String,
        /// The condition's message.
        message: String,
    },
    /// The signer gave up on the CSR.
    #[error("signing CertificateSigningRequest {csr} failed ({reason}): {message}")]
    Failed {
        /// CSR name.
        csr: String,
        /// The condition's reason.
        reason: String,
        /// The condition's message.
        message: String,
    },
    /// Nothing happened in time.
    #[error(
        "CertificateSigningRequest {csr} got no certificate within {waited:?}: {}",
        if *approved {
            "it was approved but no signer issued the certificate (is the controller-manager's \
             CSR signer running with the cluster CA key?)"
        } else {
            "no approver or signer acted on it (is the controller-manager running?)"
        }
    )]
    TimedOut {
        /// CSR name.
        csr: String,
        /// How long we waited.
        waited: Duration,
        /// Whether it was approved at least.
        approved: bool,
    },
    /// The signer returned something other than our certificate.
    #[error("the certificate issued for CertificateSigningRequest {csr} is unusable: {reason}")]
    BadCertificate {
        /// CSR name.
        csr: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// What a CSR's status says.
#[derive(Debug, PartialEq, Eq)]
enum CsrState {
    Pending { approved: bool },
    Issued(Vec<u8>),
    Denied { reason: String, message: String },
    Failed { reason: String, message: String },
}

fn csr_state(csr: &CertificateSigningRequest) -> CsrState {
    let Some(status) = &csr.status else {
        return CsrState::Pending { approved: false };
    };
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let active = |kind: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == kind && c.status != "False")
            .map(|c| {
                (
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default(),
                )
            })
    };
    if let Some((reason, message)) = active("Denied") {
        return CsrState::Denied { reason, message };
    }
    if let Some((reason, message)) = active("Failed") {
        return CsrState::Failed { reason, message };
    }
    match &status.certificate {
        Some(ByteString(pem)) if !pem.is_empty() => CsrState::Issued(pem.clone()),
        _ => CsrState::Pending {
            approved: active("Approved").is_some(),
        },
    }
}

/// TLS bootstrap right after [`discover`](crate::discovery::discover):
/// builds the token client for the discovered server and CA, then runs
/// [`request_node_certificate`] for `node_name`.
pub fn bootstrap(
    info: &ClusterInfo,
    token: &BootstrapToken,
    node_name: &str,
    wait: Duration,
) -> Result<NodeCredentials, TlsBootstrapError> {
    let node: NodeName = node_name
        .parse()
        .map_err(|e: cairn_pki::types::InvalidValue| {
            TlsBootstrapError::InvalidNodeName(e.to_string())
        })?;
    let client = info
        .bootstrap_client(token)
        .map_err(|source| TlsBootstrapError::Api {
            step: format!("building the bootstrap client for {}", info.server),
            source: Box::new(source),
        })?;
    request_node_certificate(&client, &node, wait)
}

/// kubeadm's duplicate-name check: refuses when a Node of this name
/// exists. Run before anything is written or requested.
pub fn ensure_name_free(client: &KubeClient, node: &NodeName) -> Result<(), TlsBootstrapError> {
    let existing = client
        .get_opt::<Node>(None, node.as_str())
        .map_err(|source| TlsBootstrapError::Api {
            step: format!("checking whether Node {node} already exists"),
            source: Box::new(source),
        })?;
    match existing {
        Some(_) => Err(TlsBootstrapError::DuplicateNode { node: node.clone() }),
        None => Ok(()),
    }
}

/// Runs TLS bootstrap for `node` with a token-authenticated `client`
/// (see [`ClusterInfo::bootstrap_client`](crate::discovery::ClusterInfo::bootstrap_client)),
/// waiting at most `wait` for the certificate.
pub fn request_node_certificate(
    client: &KubeClient,
    node: &NodeName,
    wait: Duration,
) -> Result<NodeCredentials, TlsBootstrapError> {
    let api = |step: String| {
        move |source| TlsBootstrapError::Api {
            step,
            source: Box::new(source),
        }
    };
    ensure_name_free(client, node)?;

    let (key_pem, request_pem) = generate_request(node)?;
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some("node-csr-".to_owned()),
            ..ObjectMeta::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(request_pem.into_bytes()),
            signer_name: KUBELET_CLIENT_SIGNER.to_owned(),
            usages: Some(vec![
                "digital signature".to_owned(),
                "client auth".to_owned(),
            ]),
            ..CertificateSigningRequestSpec::default()
        },
        status: None,
    };
    let created = client.create(None, &csr).map_err(api(format!(
        "creating the CertificateSigningRequest for {node}"
    )))?;
    let csr_name = created.metadata.name.clone().unwrap_or_default();
    tracing::info!(node = %node, csr = %csr_name, "certificate signing request created; waiting for approval");

    let cert = wait_for_certificate(client, &csr_name, created, wait)?;
    let cert_pem = String::from_utf8(cert).map_err(|_| TlsBootstrapError::BadCertificate {
        csr: csr_name.clone(),
        reason: "status.certificate is not text".into(),
    })?;
    check_certificate(&cert_pem, &key_pem, node).map_err(|reason| {
        TlsBootstrapError::BadCertificate {
            csr: csr_name.clone(),
            reason,
        }
    })?;
    tracing::info!(node = %node, csr = %csr_name, "node client certificate issued");
    Ok(NodeCredentials {
        node_name: node.clone(),
        cert_pem,
        key_pem,
        csr_name,
    })
}

/// A fresh P-256 key (PKCS#8 PEM) and a CSR for the node's identity.
fn generate_request(node: &NodeName) -> Result<(String, String), TlsBootstrapError> {
    let failed = |e: rcgen::Error| TlsBootstrapError::Request {
        node: node.clone(),
        reason: e.to_string(),
    };
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed)?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, NODES_GROUP);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, node_user_name(node));
    let request = params.serialize_request(&key).map_err(failed)?;
    Ok((key.serialize_pem(), request.pem().map_err(failed)?))
}

/// The certificate must be for our key and our identity, and usable for
/// client authentication.
fn check_certificate(cert_pem: &str, key_pem: &str, node: &NodeName) -> Result<(), String> {
    let info = cairn_pki::cert::CertInfo::from_pem(cert_pem).map_err(|e| e.to_string())?;
    let key = cairn_pki::PrivateKey::from_pem(key_pem).map_err(|e| e.to_string())?;
    if !info.matches_key(&key) {
        return Err("it is not for the key this node generated".into());
    }
    let user = node_user_name(node);
    if info.common_name != user || !info.organizations.iter().any(|o| o == NODES_GROUP) {
        return Err(format!(
            "it is for CN={} O={:?}, expected CN={user} O=[\"{NODES_GROUP}\"]",
            info.common_name, info.organizations
        ));
    }
    Ok(())
}

fn wait_for_certificate(
    client: &KubeClient,
    csr_name: &str,
    created: CertificateSigningRequest,
    wait: Duration,
) -> Result<Vec<u8>, TlsBootstrapError> {
    let start = Instant::now();
    let deadline = start + wait;
    let mut current = created;
    let mut approved = false;
    let mut watch_refused = false;
    loop {
        match csr_state(&current) {
            CsrState::Issued(cert) => return Ok(cert),
            CsrState::Denied { reason, message } => {
                return Err(TlsBootstrapError::Denied {
                    csr: csr_name.to_owned(),
                    reason,
                    message,
                });
            }
            CsrState::Failed { reason, message } => {
                return Err(TlsBootstrapError::Failed {
                    csr: csr_name.to_owned(),
                    reason,
                    message,
                });
            }
            CsrState::Pending { approved: now } => approved |= now,
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(TlsBootstrapError::TimedOut {
                csr: csr_name.to_owned(),
                waited: start.elapsed(),
                approved,
            });
        }
        if !watch_refused {
            let version = current
                .metadata
                .resource_version
                .clone()
                .unwrap_or_default();
            match watch_once(client, csr_name, &version, remaining.min(WATCH_SLICE)) {
                Ok(Some(changed)) => {
                    current = changed;
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(csr = csr_name, error = %e, "cannot watch the CSR; polling instead");
                    watch_refused = true;
                }
            }
        } else {
            std::thread::sleep(remaining.min(POLL_INTERVAL));
        }
        current = client
            .get::<CertificateSigningRequest>(None, csr_name)
            .map_err(|source| TlsBootstrapError::Api {
                step: format!("reading CertificateSigningRequest {csr_name}"),
                source: Box::new(source),
            })?;
    }
}

/// Watches the CSR until it changes in a way that decides the outcome
/// (returned), or the watch ends (`None`).
fn watch_once(
    client: &KubeClient,
    csr_name: &str,
    resource_version: &str,
    timeout: Duration,
) -> Result<Option<CertificateSigningRequest>, client::Error> {
    let params = ListParams::fields(format!("metadata.name={csr_name}"));
    let events =
        client.watch::<CertificateSigningRequest>(None, &params, resource_version, timeout)?;
    for event in events {
        match event? {
            WatchEvent::Added(csr) | WatchEvent::Modified(csr) => {
                if !matches!(csr_state(&csr), CsrState::Pending { approved: false }) {
                    return Ok(Some(csr));
                }
            }
            // Deleted, bookmarks and errors: re-read and decide there.
            _ => return Ok(None),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestCondition, CertificateSigningRequestStatus,
    };

    use super::*;

    fn with_status(conditions: &[(&str, &str)], cert: Option<&[u8]>) -> CertificateSigningRequest {
        CertificateSigningRequest {
            status: Some(CertificateSigningRequestStatus {
                certificate: cert.map(|c| ByteString(c.to_vec())),
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(kind, reason)| CertificateSigningRequestCondition {
                            type_: (*kind).to_owned(),
                            status: "True".to_owned(),
                            reason: Some((*reason).to_owned()),
                            message: Some(format!("{kind} by test")),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn csr_states() {
        assert_eq!(
            csr_state(&CertificateSigningRequest::default()),
            CsrState::Pending { approved: false }
        );
        assert_eq!(
            csr_state(&with_status(&[("Approved", "AutoApproved")], None)),
            CsrState::Pending { approved: true }
        );
        assert_eq!(
            csr_state(&with_status(&[("Approved", "A")], Some(b"PEM"))),
            CsrState::Issued(b"PEM".to_vec())
        );
        assert_eq!(
            csr_state(&with_status(&[("Denied", "NotAllowed")], None)),
            CsrState::Denied {
                reason: "NotAllowed".into(),
                message: "Denied by test".into()
            }
        );
        assert!(matches!(
            csr_state(&with_status(
                &[("Approved", "A"), ("Failed", "SignerError")],
                None
            )),
            CsrState::Failed { .. }
        ));
    }

    #[test]
    fn requests_carry_the_node_identity() {
        let node: NodeName = "worker-1".parse().expect("name");
        let (key_pem, request_pem) = generate_request(&node).expect("request");
        assert!(key_pem.contains("PRIVATE KEY"), "{key_pem}");
        let parsed = rcgen::CertificateSigningRequestParams::from_pem(&request_pem).expect("csr");
        let dn: Vec<String> = parsed
            .params
            .distinguished_name
            .iter()
            .map(|(kind, value)| format!("{kind:?}={value:?}"))
            .collect();
        let text = dn.join(",");
        assert!(text.contains("system:node:worker-1"), "{text}");
        assert!(text.contains("system:nodes"), "{text}");
    }

    #[test]
    fn timeout_message_names_the_csr_and_the_missing_actor() {
        let err = TlsBootstrapError::TimedOut {
            csr: "node-csr-abc".into(),
            waited: Duration::from_secs(60),
            approved: false,
        };
        assert!(err.to_string().contains("node-csr-abc"), "{err}");
        assert!(
            err.to_string()
                .contains("is the controller-manager running?"),
            "{err}"
        );
    }
}
