//! Changing the machine config of a running node (Talos's `apply-config`
//! without a reboot), for what can change safely in place.
//!
//! Today that is `cluster.apiserver-cert-extra-sans` on a control plane:
//! the new config is written to STATE, the apiserver certificate is
//! reissued with the new SANs (the PKI's reuse rules keep every other file
//! and print why the certificate changed), and the apiserver is restarted
//! to serve it. Anything else differing from the running config is refused
//! with the keys that differ, before anything is written: those changes
//! mean a new node (`bootstrap reset`, then the new config).
//!
//! [`live_changes`] is the pure decision; [`apply`] does the work.

use std::net::IpAddr;
use std::path::Path;

use cairn_config::{MachineConfig, NodeRole};
use cairn_pki::NodeName;

use super::plan::ControlPlanePlan;
use crate::services::supervisor::Supervisor;
use crate::system::write_atomic;

/// A change [`apply`] can make on a running node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveChange {
    /// New `cluster.apiserver-cert-extra-sans`.
    ApiserverSans,
}

/// What differs between `running` and `new`, when all of it can change in
/// place; else the keys that cannot.
pub fn live_changes(
    running: &MachineConfig,
    new: &MachineConfig,
) -> Result<Vec<LiveChange>, Vec<String>> {
    let sans = |config: &MachineConfig| {
        config
            .cluster
            .as_ref()
            .map(|c| c.apiserver_cert_extra_sans.clone())
            .unwrap_or_default()
    };
    let mut changes = Vec::new();
    let mut comparable = new.clone();
    if sans(running) != sans(new) {
        if running.node.role != NodeRole::ControlPlane {
            return Err(vec![
                "cluster.apiserver-cert-extra-sans (only control planes serve the API)".to_owned(),
            ]);
        }
        // Compare the rest as if the SANs were unchanged.
        if let Some(cluster) = comparable.cluster.as_mut() {
            cluster.apiserver_cert_extra_sans = sans(running);
        }
        if comparable
            .cluster
            .as_ref()
            .is_some_and(|c| *c == Default::default())
            && running.cluster.is_none()
        {
            comparable.cluster = None;
        }
        changes.push(LiveChange::ApiserverSans);
    }
    if comparable == *running {
        return Ok(changes);
    }
    Err(differing_sections(running, &comparable))
}

/// The top-level sections that differ, for the refusal.
fn differing_sections(a: &MachineConfig, b: &MachineConfig) -> Vec<String> {
    let mut keys = Vec::new();
    if a.cluster != b.cluster {
        keys.push("cluster".to_owned());
    }
    if a.node != b.node {
        keys.push("node".to_owned());
    }
    if a.kernel != b.kernel {
        keys.push("kernel".to_owned());
    }
    if a.containerd != b.containerd {
        keys.push("containerd".to_owned());
    }
    if a.join != b.join {
        keys.push("join".to_owned());
    }
    if a.api != b.api {
        keys.push("api".to_owned());
    }
    keys
}

/// Writes `new` to STATE and carries out `changes`; returns a line per
/// step.
pub fn apply(
    new: &MachineConfig,
    changes: &[LiveChange],
    node_name: NodeName,
    address: IpAddr,
    supervisor: &Supervisor,
) -> Result<Vec<String>, String> {
    let text = new.to_toml().map_err(|e| e.to_string())?;
    let state_config = Path::new(crate::system::sources::STATE_CONFIG);
    write_atomic(state_config, text.as_bytes(), 0o600)
        .map_err(|e| format!("writing {}: {e}", state_config.display()))?;
    let mut steps = vec![format!("config written to {}", state_config.display())];
    for change in changes {
        match change {
            LiveChange::ApiserverSans => {
                let plan = plan_of_running_node(new, node_name.clone(), address)?;
                let report =
                    cairn_pki::generate(&plan.pki, &plan.paths, time::OffsetDateTime::now_utc())
                        .map_err(|e| format!("reissuing the apiserver certificate: {e}"))?;
                steps.extend(report.to_string().lines().map(str::to_owned));
                supervisor
                    .restart("kube-apiserver")
                    .map_err(|e| format!("restarting the apiserver: {e}"))?;
                steps.push("kube-apiserver restarted to serve the new certificate".to_owned());
            }
        }
    }
    Ok(steps)
}

/// The plan the node was set up with: a joined control plane takes the
/// cluster-wide settings from the `kubeadm-config` it saved when joining,
/// so the reissued certificate keeps the cluster's service IP and endpoint.
fn plan_of_running_node(
    config: &MachineConfig,
    node_name: NodeName,
    address: IpAddr,
) -> Result<ControlPlanePlan, String> {
    if config.join.is_none() {
        return Ok(ControlPlanePlan::new(config, node_name, address));
    }
    let path = super::plan::joined_cluster_configuration_path();
    let yaml =
        std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    ControlPlanePlan::for_join(
        config,
        node_name,
        address,
        &super::plan::ClusterConfiguration::parse(&yaml)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTROL_PLANE: &str =
        "[node]\nname = \"cp-1\"\nrole = \"control-plane\"\naddresses = [\"10.5.0.11/24\"]\n";

    fn parse(text: &str) -> MachineConfig {
        MachineConfig::parse(text, "test.toml").expect("valid config")
    }

    #[test]
    fn new_apiserver_sans_change_in_place() {
        let running = parse(CONTROL_PLANE);
        let new = parse(&format!(
            "{CONTROL_PLANE}[cluster]\napiserver-cert-extra-sans = [\"api.example.org\"]\n"
        ));
        assert_eq!(
            live_changes(&running, &new),
            Ok(vec![LiveChange::ApiserverSans])
        );
        assert_eq!(live_changes(&running, &running), Ok(vec![]));
    }

    #[test]
    fn other_changes_are_refused_naming_their_section() {
        let running = parse(CONTROL_PLANE);
        let new = parse(&format!(
            "{CONTROL_PLANE}[cluster]\napiserver-cert-extra-sans = [\"api.example.org\"]\npod-network-cidr = \"10.50.0.0/16\"\n[kernel]\nmodules = [\"dummy\"]\n"
        ));
        assert_eq!(
            live_changes(&running, &new),
            Err(vec!["cluster".to_owned(), "kernel".to_owned()])
        );
    }

    #[test]
    fn workers_have_no_apiserver_certificate() {
        let running = parse("[node]\nrole = \"worker\"\ndhcp = true\n");
        let mut new = running.clone();
        new.cluster = Some(cairn_config::ClusterConfig {
            apiserver_cert_extra_sans: vec!["x.example.org".parse().expect("san")],
            ..Default::default()
        });
        assert!(live_changes(&running, &new).is_err());
    }
}
