//! Node registration and heartbeats, as kubelet does them, with the node's
//! own client certificate (`system:node:<name>`, group `system:nodes`).
//!
//! - [`register`] creates the Node with its labels, taints (only at
//!   creation, like kubelet's `--register-with-taints`), addresses,
//!   capacity and system info; for an existing Node (a re-registration
//!   after a reboot) it merges our labels into the ones present and
//!   rewrites the addresses, resources and system info in the status.
//! - [`Heartbeat::tick`] renews the Lease `kube-node-lease/<name>` on every
//!   call (holder = the node, 40 s duration, owned by the Node so it goes
//!   away with it) and writes the Node's conditions when readiness changed
//!   or the last report is 60 s old, as kubelet's
//!   `--node-status-report-frequency` does; the node lifecycle controller
//!   reads the Lease for liveness and the conditions for readiness.
//!
//! Status writes are JSON merge patches that carry the resourceVersion read
//! just before, so a concurrent writer makes the tick fail with a conflict
//! (the next tick retries) instead of one side's conditions being lost.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use cairn_pki::NodeName;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use serde_json::json;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::client::{self, KubeClient, Patch};

/// The namespace of node Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// `leaseDurationSeconds` of node Leases (kubelet's default).
pub const NODE_LEASE_DURATION_SECONDS: i32 = 40;
/// How often conditions are rewritten when nothing changed.
pub const NODE_STATUS_REPORT_INTERVAL: Duration = Duration::from_secs(60);
/// The label (and taint key) of control-plane nodes.
pub const CONTROL_PLANE_ROLE: &str = "node-role.kubernetes.io/control-plane";
/// kubelet's default pod limit.
pub const DEFAULT_MAX_PODS: u32 = 110;

/// Why registration or a heartbeat failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// An API call failed.
    #[error("{step}: {source}")]
    Api {
        /// What we were doing.
        step: String,
        /// The client's error.
        source: Box<client::Error>,
    },
    /// A timestamp could not be rendered.
    #[error("cannot render the time {0}: {1}")]
    Time(String, String),
}

fn api(step: String) -> impl FnOnce(client::Error) -> NodeError {
    move |source| NodeError::Api {
        step,
        source: Box::new(source),
    }
}

/// What a node offers to pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeResources {
    /// CPU in millicores.
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Ephemeral storage (the filesystem of `/var`) in bytes.
    pub ephemeral_storage_bytes: u64,
    /// Maximum number of pods.
    pub pods: u32,
}

impl NodeResources {
    /// As Kubernetes quantities: `cpu` in cores or millicores, `memory` in
    /// Ki (as kubelet reports it), `ephemeral-storage` in bytes.
    pub fn to_quantities(&self) -> BTreeMap<String, Quantity> {
        let cpu = if self.cpu_millis.is_multiple_of(1000) {
            (self.cpu_millis / 1000).to_string()
        } else {
            format!("{}m", self.cpu_millis)
        };
        let memory = if self.memory_bytes.is_multiple_of(1024) {
            format!("{}Ki", self.memory_bytes / 1024)
        } else {
            self.memory_bytes.to_string()
        };
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu)),
            ("memory".to_owned(), Quantity(memory)),
            (
                "ephemeral-storage".to_owned(),
                Quantity(self.ephemeral_storage_bytes.to_string()),
            ),
            ("pods".to_owned(), Quantity(self.pods.to_string())),
        ])
    }
}

/// Everything [`register`] writes about a node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRegistration {
    /// The Node's name (also the certificate's `system:node:<name>`).
    pub name: NodeName,
    /// The address other nodes reach it at (`InternalIP`).
    pub internal_ip: IpAddr,
    /// Its host name (`Hostname` address, `kubernetes.io/hostname`).
    pub hostname: String,
    /// Labels merged into the Node's.
    pub labels: BTreeMap<String, String>,
    /// Taints set when the Node is created.
    pub taints: Vec<Taint>,
    /// Total resources.
    pub capacity: NodeResources,
    /// What the scheduler may hand out.
    pub allocatable: NodeResources,
    /// Versions and identities (`kubeletVersion`, `machineID`, ...).
    pub node_info: NodeSystemInfo,
}

impl NodeRegistration {
    /// A worker: kubelet's default labels (`kubernetes.io/hostname`,
    /// `kubernetes.io/os`, `kubernetes.io/arch` and their `beta.` twins),
    /// no taints, allocatable = capacity.
    pub fn new(
        name: NodeName,
        internal_ip: IpAddr,
        hostname: impl Into<String>,
        capacity: NodeResources,
        node_info: NodeSystemInfo,
    ) -> Self {
        let hostname = hostname.into();
        let os = non_empty_or(&node_info.operating_system, "linux");
        let arch = non_empty_or(&node_info.architecture, "amd64");
        let labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_owned(), hostname.clone()),
            ("kubernetes.io/os".to_owned(), os.clone()),
            ("kubernetes.io/arch".to_owned(), arch.clone()),
            ("beta.kubernetes.io/os".to_owned(), os),
            ("beta.kubernetes.io/arch".to_owned(), arch),
        ]);
        Self {
            name,
            internal_ip,
            hostname,
            labels,
            taints: Vec::new(),
            capacity,
            allocatable: capacity,
            node_info,
        }
    }

    /// Marks a control-plane node as kubeadm does: the role label and the
    /// `NoSchedule` taint.
    pub fn control_plane(mut self) -> Self {
        self.labels
            .insert(CONTROL_PLANE_ROLE.to_owned(), String::new());
        self.taints.push(Taint {
            key: CONTROL_PLANE_ROLE.to_owned(),
            effect: "NoSchedule".to_owned(),
            ..Taint::default()
        });
        self
    }

    /// `InternalIP` then `Hostname`.
    pub fn addresses(&self) -> Vec<NodeAddress> {
        vec![
            NodeAddress {
                type_: "InternalIP".to_owned(),
                address: self.internal_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".to_owned(),
                address: self.hostname.clone(),
            },
        ]
    }

    fn status(&self) -> NodeStatus {
        NodeStatus {
            addresses: Some(self.addresses()),
            capacity: Some(self.capacity.to_quantities()),
            allocatable: Some(self.allocatable.to_quantities()),
            node_info: Some(self.node_info.clone()),
            ..NodeStatus::default()
        }
    }
}

fn non_empty_or(value: &str, default: &str) -> String {
    if value.is_empty() { default } else { value }.to_owned()
}

/// Creates or updates the Node; returns it as stored after the status
/// write.
pub fn register(client: &KubeClient, registration: &NodeRegistration) -> Result<Node, NodeError> {
    let name = registration.name.as_str();
    let existing = client
        .get_opt::<Node>(None, name)
        .map_err(api(format!("reading Node {name}")))?;
    let created = match existing {
        Some(_) => false,
        None => {
            let node = Node {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    labels: Some(registration.labels.clone()),
                    annotations: Some(BTreeMap::from([(
                        "volumes.kubernetes.io/controller-managed-attach-detach".to_owned(),
                        "true".to_owned(),
                    )])),
                    ..ObjectMeta::default()
                },
                spec: Some(NodeSpec {
                    taints: (!registration.taints.is_empty()).then(|| registration.taints.clone()),
                    ..NodeSpec::default()
                }),
                status: Some(registration.status()),
            };
            match client.create(None, &node) {
                Ok(_) => {
                    tracing::info!(node = name, "node registered");
                    true
                }
                // Someone (a previous run) was quicker: update it instead.
                Err(e) if e.is_already_exists() => false,
                Err(e) => return Err(api(format!("creating Node {name}"))(e)),
            }
        }
    };
    if !created {
        client
            .patch::<Node>(
                None,
                name,
                &Patch::Merge(json!({ "metadata": { "labels": registration.labels } })),
            )
            .map_err(api(format!("merging the labels of Node {name}")))?;
        tracing::info!(node = name, "node already registered; labels merged");
    }
    // The status is written separately: the create may not keep it (a
    // server may reset status on create), and an existing Node needs it
    // refreshed. A merge patch replaces the address list whole.
    let status = serde_json::to_value(registration.status()).map_err(|source| NodeError::Api {
        step: format!("encoding the status of Node {name}"),
        source: Box::new(client::Error::Encode {
            kind: "NodeStatus",
            source,
        }),
    })?;
    client
        .patch_status::<Node>(None, name, &Patch::Merge(json!({ "status": status })))
        .map_err(api(format!("writing the status of Node {name}")))
}

/// What one [`Heartbeat::tick`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickOutcome {
    /// The Lease was created (first tick) rather than renewed.
    pub lease_created: bool,
    /// The Node's conditions were written.
    pub status_reported: bool,
}

/// The node's liveness and readiness reports. Call [`tick`](Self::tick)
/// every 10 s (kubelet's lease renew interval is a quarter of the 40 s
/// duration).
#[derive(Debug, Clone)]
pub struct Heartbeat {
    node: NodeName,
    node_uid: Option<String>,
    last_report: Option<(Instant, Option<String>)>,
    status_interval: Duration,
}

impl Heartbeat {
    /// Heartbeats for `node`, reporting conditions at least every 60 s.
    pub fn new(node: NodeName) -> Self {
        Self {
            node,
            node_uid: None,
            last_report: None,
            status_interval: NODE_STATUS_REPORT_INTERVAL,
        }
    }

    /// Reports conditions at least this often.
    pub fn with_status_interval(mut self, interval: Duration) -> Self {
        self.status_interval = interval;
        self
    }

    /// Renews the Lease and, when due, writes the conditions. `ready` is
    /// the node's readiness: `Err(reason)` makes Ready False with that
    /// message.
    pub fn tick(
        &mut self,
        client: &KubeClient,
        ready: Result<(), String>,
    ) -> Result<TickOutcome, NodeError> {
        let now = OffsetDateTime::now_utc();
        let lease_created = retry_on_conflict(|| self.renew_lease(client, now))?;
        let not_ready = ready.err();
        let due = match &self.last_report {
            None => true,
            Some((at, previous)) => *previous != not_ready || at.elapsed() >= self.status_interval,
        };
        if due {
            retry_on_conflict(|| self.report_conditions(client, not_ready.as_deref(), now))?;
            self.last_report = Some((Instant::now(), not_ready));
        }
        Ok(TickOutcome {
            lease_created,
            status_reported: due,
        })
    }

    /// The Node's uid for the Lease's owner reference, once it exists.
    fn node_uid(&mut self, client: &KubeClient) -> Result<Option<String>, NodeError> {
        if self.node_uid.is_none() {
            let name = self.node.as_str();
            self.node_uid = client
                .get_opt::<Node>(None, name)
                .map_err(api(format!("reading Node {name}")))?
                .and_then(|node| node.metadata.uid);
        }
        Ok(self.node_uid.clone())
    }

    fn owner_references(
        &mut self,
        client: &KubeClient,
    ) -> Result<Option<Vec<OwnerReference>>, NodeError> {
        Ok(self.node_uid(client)?.map(|uid| {
            vec![OwnerReference {
                api_version: "v1".to_owned(),
                kind: "Node".to_owned(),
                name: self.node.to_string(),
                uid,
                ..OwnerReference::default()
            }]
        }))
    }

    /// Returns whether the Lease was created.
    fn renew_lease(&mut self, client: &KubeClient, now: OffsetDateTime) -> Result<bool, NodeError> {
        let name = self.node.to_string();
        let spec = LeaseSpec {
            holder_identity: Some(name.clone()),
            lease_duration_seconds: Some(NODE_LEASE_DURATION_SECONDS),
            renew_time: Some(micro_time(now)?),
            ..LeaseSpec::default()
        };
        let existing = client
            .get_opt::<Lease>(Some(NODE_LEASE_NAMESPACE), &name)
            .map_err(api(format!("reading Lease {NODE_LEASE_NAMESPACE}/{name}")))?;
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(NODE_LEASE_NAMESPACE.to_owned()),
                    owner_references: self.owner_references(client)?,
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            client
                .create(Some(NODE_LEASE_NAMESPACE), &lease)
                .map_err(api(format!("creating Lease {NODE_LEASE_NAMESPACE}/{name}")))?;
            return Ok(true);
        };
        if lease
            .metadata
            .owner_references
            .as_ref()
            .is_none_or(Vec::is_empty)
        {
            lease.metadata.owner_references = self.owner_references(client)?;
        }
        let mut merged = lease.spec.take().unwrap_or_default();
        merged.holder_identity = spec.holder_identity;
        merged.lease_duration_seconds = spec.lease_duration_seconds;
        merged.renew_time = spec.renew_time;
        lease.spec = Some(merged);
        client
            .replace(Some(NODE_LEASE_NAMESPACE), &name, &lease)
            .map_err(api(format!("renewing Lease {NODE_LEASE_NAMESPACE}/{name}")))?;
        Ok(false)
    }

    fn report_conditions(
        &mut self,
        client: &KubeClient,
        not_ready: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(), NodeError> {
        let name = self.node.to_string();
        let node = client
            .get::<Node>(None, &name)
            .map_err(api(format!("reading Node {name}")))?;
        self.node_uid = node.metadata.uid.clone().or(self.node_uid.take());
        let previous = node.status.and_then(|s| s.conditions).unwrap_or_default();
        let conditions = merge_conditions(previous, &kubelet_conditions(not_ready), now)?;
        let patch = json!({
            "metadata": { "resourceVersion": node.metadata.resource_version },
            "status": { "conditions": conditions },
        });
        client
            .patch_status::<Node>(None, &name, &Patch::Merge(patch))
            .map_err(api(format!("writing the conditions of Node {name}")))?;
        tracing::debug!(node = %name, ready = not_ready.is_none(), "node status reported");
        Ok(())
    }
}

/// Attempts of a read-modify-write that lost a race.
const CONFLICT_ATTEMPTS: usize = 3;

/// Runs a read-modify-write again when another writer changed the object
/// between our read and our write (the node lifecycle controller and
/// others update Nodes too); other errors are returned at once.
fn retry_on_conflict<T>(mut attempt: impl FnMut() -> Result<T, NodeError>) -> Result<T, NodeError> {
    let mut tries = 1;
    loop {
        match attempt() {
            Err(NodeError::Api { source, step })
                if source.is_conflict() && tries < CONFLICT_ATTEMPTS =>
            {
                tracing::debug!(%step, tries, "write conflict; reading again");
                tries += 1;
            }
            other => return other,
        }
    }
}

/// (type, status, reason, message) of the conditions kubelet owns.
fn kubelet_conditions(
    not_ready: Option<&str>,
) -> Vec<(&'static str, &'static str, &'static str, String)> {
    let ready = match not_ready {
        None => (
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status".to_owned(),
        ),
        Some(reason) => ("Ready", "False", "KubeletNotReady", reason.to_owned()),
    };
    vec![
        (
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available".to_owned(),
        ),
        (
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure".to_owned(),
        ),
        (
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available".to_owned(),
        ),
        ready,
    ]
}

/// Our conditions replace theirs by type; a condition keeps its
/// lastTransitionTime while its status stays; conditions of other owners
/// (e.g. NetworkUnavailable from the network plugin) are kept as they are.
fn merge_conditions(
    previous: Vec<NodeCondition>,
    ours: &[(&'static str, &'static str, &'static str, String)],
    now: OffsetDateTime,
) -> Result<Vec<NodeCondition>, NodeError> {
    let heartbeat = time_of(now)?;
    let mut merged: Vec<NodeCondition> = previous
        .iter()
        .filter(|c| !ours.iter().any(|(kind, ..)| c.type_ == *kind))
        .cloned()
        .collect();
    for (kind, status, reason, message) in ours {
        let transition = previous
            .iter()
            .find(|c| c.type_ == *kind && c.status == *status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| heartbeat.clone());
        merged.push(NodeCondition {
            type_: (*kind).to_owned(),
            status: (*status).to_owned(),
            reason: Some((*reason).to_owned()),
            message: Some(message.clone()),
            last_heartbeat_time: Some(heartbeat.clone()),
            last_transition_time: Some(transition),
        });
    }
    Ok(merged)
}

/// Kubernetes' `Time` (RFC 3339, seconds, UTC).
fn time_of(now: OffsetDateTime) -> Result<Time, NodeError> {
    let text = now
        .to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .map_err(|e| NodeError::Time(now.to_string(), e.to_string()))?;
    serde_json::from_value(serde_json::Value::String(text.clone()))
        .map_err(|e| NodeError::Time(text, e.to_string()))
}

/// Kubernetes' `MicroTime` (RFC 3339, microseconds, UTC), as Leases use.
fn micro_time(now: OffsetDateTime) -> Result<MicroTime, NodeError> {
    let text = now
        .to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        ))
        .map_err(|e| NodeError::Time(now.to_string(), e.to_string()))?;
    serde_json::from_value(serde_json::Value::String(text.clone()))
        .map_err(|e| NodeError::Time(text, e.to_string()))
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn api_failure(status: u16, reason: &str) -> NodeError {
        NodeError::Api {
            step: "writing".into(),
            source: Box::new(client::Error::Api {
                method: "PATCH".into(),
                url: "https://h/api/v1/nodes/n/status".into(),
                status,
                reason: reason.into(),
                message: "the object has been modified".into(),
            }),
        }
    }

    #[test]
    fn conflicts_are_retried_a_few_times_other_errors_not() {
        let mut calls = 0;
        let result = retry_on_conflict(|| {
            calls += 1;
            if calls < 3 {
                Err(api_failure(409, "Conflict"))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(result.expect("third attempt"), 3);
        let mut calls = 0;
        let result: Result<(), _> = retry_on_conflict(|| {
            calls += 1;
            Err(api_failure(409, "Conflict"))
        });
        assert!(result.is_err());
        assert_eq!(calls, CONFLICT_ATTEMPTS);
        let mut calls = 0;
        let result: Result<(), _> = retry_on_conflict(|| {
            calls += 1;
            Err(api_failure(403, "Forbidden"))
        });
        assert!(result.is_err());
        assert_eq!(calls, 1);
    }

    #[test]
    fn quantities_as_kubelet_reports_them() {
        let q = NodeResources {
            cpu_millis: 2000,
            memory_bytes: 4 * 1024 * 1024 * 1024,
            ephemeral_storage_bytes: 10_000_000_000,
            pods: DEFAULT_MAX_PODS,
        }
        .to_quantities();
        assert_eq!(q["cpu"].0, "2");
        assert_eq!(q["memory"].0, "4194304Ki");
        assert_eq!(q["ephemeral-storage"].0, "10000000000");
        assert_eq!(q["pods"].0, "110");
        let q = NodeResources {
            cpu_millis: 1500,
            memory_bytes: 1000,
            ephemeral_storage_bytes: 1,
            pods: 1,
        }
        .to_quantities();
        assert_eq!(
            (q["cpu"].0.as_str(), q["memory"].0.as_str()),
            ("1500m", "1000")
        );
    }

    #[test]
    fn control_plane_registration_labels_and_taints() {
        let reg = NodeRegistration::new(
            "cp-1".parse().expect("name"),
            "10.0.0.2".parse().expect("ip"),
            "cp-1",
            NodeResources {
                cpu_millis: 1000,
                memory_bytes: 1024,
                ephemeral_storage_bytes: 1,
                pods: 110,
            },
            NodeSystemInfo::default(),
        )
        .control_plane();
        assert_eq!(reg.labels[CONTROL_PLANE_ROLE], "");
        assert_eq!(reg.labels["kubernetes.io/arch"], "amd64");
        assert_eq!(reg.labels["kubernetes.io/os"], "linux");
        assert_eq!(reg.labels["kubernetes.io/hostname"], "cp-1");
        assert_eq!(reg.taints[0].effect, "NoSchedule");
        let addresses = reg.addresses();
        assert_eq!(addresses[0].type_, "InternalIP");
        assert_eq!(addresses[1].address, "cp-1");
    }

    #[test]
    fn times_render_in_kubernetes_formats() {
        let at = datetime!(2026-11-23 06:40:01.123456789 UTC);
        assert_eq!(
            serde_json::to_value(micro_time(at).expect("micro")).expect("json"),
            "2026-11-23T06:40:01.123456Z"
        );
        assert_eq!(
            serde_json::to_value(time_of(at).expect("time")).expect("json"),
            "2026-11-23T06:40:01Z"
        );
    }

    #[test]
    fn conditions_keep_transition_times_and_foreign_conditions() {
        let t0 = datetime!(2026-11-23 06:00:00 UTC);
        let t1 = datetime!(2026-11-23 06:01:00 UTC);
        let t2 = datetime!(2026-11-23 06:02:00 UTC);
        let first = merge_conditions(
            vec![NodeCondition {
                type_: "NetworkUnavailable".into(),
                status: "False".into(),
                ..Default::default()
            }],
            &kubelet_conditions(Some("container runtime is down")),
            t0,
        )
        .expect("merge");
        assert_eq!(first.len(), 5);
        assert_eq!(first[0].type_, "NetworkUnavailable");
        let second =
            merge_conditions(first, &kubelet_conditions(Some("still down")), t1).expect("merge");
        let ready = |cs: &[NodeCondition]| {
            cs.iter()
                .find(|c| c.type_ == "Ready")
                .cloned()
                .expect("Ready")
        };
        let r = ready(&second);
        assert_eq!(r.status, "False");
        assert_eq!(r.message.as_deref(), Some("still down"));
        assert_eq!(r.last_transition_time, Some(time_of(t0).expect("t0")));
        assert_eq!(r.last_heartbeat_time, Some(time_of(t1).expect("t1")));
        let third = merge_conditions(second, &kubelet_conditions(None), t2).expect("merge");
        let r = ready(&third);
        assert_eq!(
            (r.status.as_str(), r.reason.as_deref()),
            ("True", Some("KubeletReady"))
        );
        assert_eq!(r.last_transition_time, Some(time_of(t2).expect("t2")));
    }
}
