//! What a fresh cluster holds before anyone writes: the `default`,
//! `kube-system`, `kube-public` and `kube-node-lease` namespaces, the
//! `kubernetes` Service (and its Endpoints) in `default`, and the RBAC
//! bootstrap policy. Each object is created only if absent, so a restart
//! keeps what users changed.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::{Value, json};

use super::Registry;
use super::fields::{metadata_mut, new_uid, now_rfc3339};
use super::objects::encode;
use crate::auth::policy::bootstrap_policy;
use crate::storage::StorageError;

/// The namespaces every cluster has.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Where the `kubernetes` Service points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasterService {
    /// The first address of `--service-cluster-ip-range`.
    pub cluster_ip: IpAddr,
    /// `--advertise-address`, for the Endpoints.
    pub advertise_address: Option<IpAddr>,
    /// `--secure-port`.
    pub port: u16,
}

impl Registry {
    async fn create_if_absent(
        &self,
        group: &str,
        plural: &str,
        namespace: &str,
        mut object: Value,
    ) -> Result<bool, StorageError> {
        let Some(desc) = self.descriptor(group, plural) else {
            return Ok(false);
        };
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        object["kind"] = json!(desc.kind);
        object["apiVersion"] = json!(desc.group_version());
        let meta = metadata_mut(&mut object);
        if desc.namespaced {
            meta.insert("namespace".into(), json!(namespace));
        }
        meta.insert("uid".into(), json!(new_uid()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        let key = self.key(desc, namespace, &name);
        let bytes = encode(&object).map_err(|e| StorageError::Internal {
            operation: crate::storage::Operation::Create,
            key: key.clone(),
            reason: e.message,
        })?;
        match self.storage.create(&key, bytes).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_already_exists() => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn create_typed<T: Serialize>(
        &self,
        plural: &str,
        namespace: &str,
        object: &T,
    ) -> Result<bool, StorageError> {
        let value = serde_json::to_value(object).map_err(|e| StorageError::Internal {
            operation: crate::storage::Operation::Create,
            key: plural.to_owned(),
            reason: e.to_string(),
        })?;
        self.create_if_absent("rbac.authorization.k8s.io", plural, namespace, value)
            .await
    }

    /// Creates the system namespaces, the `kubernetes` Service and the
    /// RBAC bootstrap policy where absent.
    pub async fn seed(&self, master: Option<MasterService>) -> Result<(), StorageError> {
        let mut created = 0usize;
        for ns in SYSTEM_NAMESPACES {
            let object = json!({
                "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
                "spec": {},
                "status": {"phase": "Active"},
            });
            created += usize::from(self.create_if_absent("", "namespaces", "", object).await?);
        }
        let policy = bootstrap_policy();
        for role in &policy.cluster_roles {
            created += usize::from(self.create_typed("clusterroles", "", role).await?);
        }
        for binding in &policy.cluster_role_bindings {
            created += usize::from(
                self.create_typed("clusterrolebindings", "", binding)
                    .await?,
            );
        }
        for role in &policy.roles {
            let ns = role.metadata.namespace.clone().unwrap_or_default();
            created += usize::from(self.create_typed("roles", &ns, role).await?);
        }
        for binding in &policy.role_bindings {
            let ns = binding.metadata.namespace.clone().unwrap_or_default();
            created += usize::from(self.create_typed("rolebindings", &ns, binding).await?);
        }
        if let Some(master) = master {
            let family = if master.cluster_ip.is_ipv4() {
                "IPv4"
            } else {
                "IPv6"
            };
            let service = json!({
                "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {
                    "type": "ClusterIP",
                    "clusterIP": master.cluster_ip.to_string(),
                    "clusterIPs": [master.cluster_ip.to_string()],
                    "ipFamilies": [family],
                    "ipFamilyPolicy": "SingleStack",
                    "sessionAffinity": "None",
                    "internalTrafficPolicy": "Cluster",
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": master.port}],
                },
                "status": {"loadBalancer": {}},
            });
            created += usize::from(
                self.create_if_absent("", "services", "default", service)
                    .await?,
            );
            if let Some(address) = master.advertise_address {
                let endpoints = json!({
                    "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                    "subsets": [{
                        "addresses": [{"ip": address.to_string()}],
                        "ports": [{"name": "https", "port": master.port, "protocol": "TCP"}],
                    }],
                });
                created += usize::from(
                    self.create_if_absent("", "endpoints", "default", endpoints)
                        .await?,
                );
            }
        }
        tracing::info!(created, "bootstrap objects in place");
        Ok(())
    }
}
