//! Kubeconfig files with embedded credentials, in the layout kubeadm writes
//! and `kubectl config view` reads.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("not a kubeconfig: {0}")]
    Parse(#[from] serde_yaml::Error),
    #[error("current-context {0:?} is not defined")]
    MissingContext(String),
    #[error("context {context:?} refers to {what} {name:?}, which is not defined")]
    DanglingReference {
        context: String,
        what: &'static str,
        name: String,
    },
    #[error("field {0} is missing or not valid base64")]
    BadField(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub clusters: Vec<NamedCluster>,
    #[serde(default)]
    pub contexts: Vec<NamedContext>,
    #[serde(default)]
    pub current_context: String,
    #[serde(default)]
    pub preferences: serde_yaml::Mapping,
    #[serde(default)]
    pub users: Vec<NamedUser>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCluster {
    pub name: String,
    pub cluster: Cluster,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Cluster {
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority_data: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedContext {
    pub name: String,
    pub context: Context,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    pub cluster: String,
    pub user: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedUser {
    pub name: String,
    pub user: User,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct User {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// The credentials of the current context, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    pub cluster_name: String,
    pub user_name: String,
    pub server: String,
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl Kubeconfig {
    /// A single-context kubeconfig that authenticates with a client
    /// certificate; the context is named `<user>@<cluster>` as kubeadm does.
    pub fn with_client_certificate(creds: &ClientCredentials) -> Self {
        let context_name = format!("{}@{}", creds.user_name, creds.cluster_name);
        Self {
            api_version: "v1".to_owned(),
            kind: "Config".to_owned(),
            clusters: vec![NamedCluster {
                name: creds.cluster_name.clone(),
                cluster: Cluster {
                    server: creds.server.clone(),
                    certificate_authority_data: Some(BASE64.encode(&creds.ca_pem)),
                },
            }],
            contexts: vec![NamedContext {
                name: context_name.clone(),
                context: Context {
                    cluster: creds.cluster_name.clone(),
                    user: creds.user_name.clone(),
                },
            }],
            current_context: context_name,
            preferences: serde_yaml::Mapping::new(),
            users: vec![NamedUser {
                name: creds.user_name.clone(),
                user: User {
                    client_certificate_data: Some(BASE64.encode(&creds.client_cert_pem)),
                    client_key_data: Some(BASE64.encode(&creds.client_key_pem)),
                    token: None,
                },
            }],
        }
    }

    pub fn parse(yaml: &str) -> Result<Self, KubeconfigError> {
        Ok(serde_yaml::from_str(yaml)?)
    }

    pub fn to_yaml(&self) -> Result<String, KubeconfigError> {
        Ok(serde_yaml::to_string(self)?)
    }

    /// Decodes the cluster and user of the current context.
    pub fn current_credentials(&self) -> Result<ClientCredentials, KubeconfigError> {
        let context = self
            .contexts
            .iter()
            .find(|c| c.name == self.current_context)
            .ok_or_else(|| KubeconfigError::MissingContext(self.current_context.clone()))?;
        let dangling = |what, name: &str| KubeconfigError::DanglingReference {
            context: context.name.clone(),
            what,
            name: name.to_owned(),
        };
        let cluster = self
            .clusters
            .iter()
            .find(|c| c.name == context.context.cluster)
            .ok_or_else(|| dangling("cluster", &context.context.cluster))?;
        let user = self
            .users
            .iter()
            .find(|u| u.name == context.context.user)
            .ok_or_else(|| dangling("user", &context.context.user))?;
        let decode = |field: &Option<String>, name: &'static str| {
            field
                .as_deref()
                .and_then(|data| BASE64.decode(data).ok())
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or(KubeconfigError::BadField(name))
        };
        Ok(ClientCredentials {
            cluster_name: cluster.name.clone(),
            user_name: user.name.clone(),
            server: cluster.cluster.server.clone(),
            ca_pem: decode(
                &cluster.cluster.certificate_authority_data,
                "certificate-authority-data",
            )?,
            client_cert_pem: decode(
                &user.user.client_certificate_data,
                "client-certificate-data",
            )?,
            client_key_pem: decode(&user.user.client_key_data, "client-key-data")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrips_through_yaml() {
        let creds = ClientCredentials {
            cluster_name: "kubernetes".into(),
            user_name: "kubernetes-admin".into(),
            server: "https://10.0.0.1:6443".into(),
            ca_pem: "CA".into(),
            client_cert_pem: "CERT".into(),
            client_key_pem: "KEY".into(),
        };
        let config = Kubeconfig::with_client_certificate(&creds);
        let yaml = config.to_yaml().expect("yaml");
        assert!(
            yaml.contains("current-context: kubernetes-admin@kubernetes"),
            "{yaml}"
        );
        assert!(yaml.contains("certificate-authority-data:"), "{yaml}");
        let parsed = Kubeconfig::parse(&yaml).expect("parse");
        assert_eq!(parsed.current_credentials().expect("creds"), creds);
    }

    #[test]
    fn dangling_context_is_reported() {
        let yaml = "apiVersion: v1\nkind: Config\ncurrent-context: x\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\n";
        let err = Kubeconfig::parse(yaml)
            .expect("parse")
            .current_credentials()
            .expect_err("dangling");
        assert!(err.to_string().contains("cluster \"c\""), "{err}");
    }
}
