//! `reset`, the graceful part: a node leaves its cluster before PID 1
//! wipes STATE and restarts it (what `kubeadm reset` and `talosctl reset
//! --graceful` do).
//!
//! Order matters:
//!
//! 1. **Check etcd first**, before anything changes: a control plane whose
//!    departure would leave etcd without a quorum refuses, and the node
//!    keeps running untouched.
//! 2. **Stop the VIP manager**: its SIGTERM handler revokes its lease, so
//!    another control plane takes the VIP at once instead of after a TTL.
//! 3. **Delete the Node object** through the node-local load balancer
//!    (which reaches the other apiservers), so that the wiped machine can
//!    join again under the same name and workloads are not scheduled to a
//!    ghost. A worker whose credentials may not delete Nodes gets a step
//!    saying so, as `kubeadm reset` tells its users to `kubectl delete
//!    node`.
//! 4. **Leave etcd** last: removing the member stops the local etcd (and so
//!    the local apiserver), which is why the API work comes before it.
//!
//! Each step returns a line for the API answer and the console.

use std::path::Path;
use std::time::{Duration, Instant};

use cairn_cluster::client::KubeClient;

use super::etcd::{self, EtcdMembership};
use super::{lb, phases, plan};
use crate::services::supervisor::Supervisor;

/// How long deleting the Node may keep trying (the load balancer may need
/// a moment to move off an apiserver that just stopped).
const NODE_DELETE_DEADLINE: Duration = Duration::from_secs(30);

/// Leaves the cluster; `Err` means nothing was changed that matters (the
/// reset is refused), except when it names a later step.
pub fn leave(supervisor: &Supervisor, node_name: &str) -> Result<Vec<String>, String> {
    let mut steps = Vec::new();
    let services = supervisor.status();
    let pki = Path::new(plan::KUBERNETES_DIR).join("pki");
    let etcd_member = if services.contains_key("etcd") {
        let membership = EtcdMembership::new("127.0.0.1", &pki)?;
        let members = membership.list()?;
        etcd::check_quorum_for_leave(&members, node_name)?;
        let own = members.iter().find(|m| m.name == node_name).cloned();
        let alone = members.len() <= 1;
        Some((membership, own, alone))
    } else {
        None
    };

    if services.contains_key("vip") {
        match supervisor.stop("vip", Duration::from_secs(10)) {
            Ok(()) => {
                steps.push("VIP manager stopped (its lease revoked, the VIP released)".into())
            }
            Err(e) => steps.push(format!("stopping the VIP manager: {e}")),
        }
    }

    steps.push(delete_node(node_name));

    if let Some((membership, own, alone)) = etcd_member {
        match own {
            None => steps.push(format!("etcd: {node_name} is not a member")),
            Some(_) if alone => steps.push(
                "etcd: this is the last member; the cluster's data goes with the wipe".into(),
            ),
            Some(member) => {
                let left = membership
                    .remove(&member.id)
                    .map_err(|e| format!("leaving etcd after {}: {e}", steps.join("; ")))?;
                steps.push(format!(
                    "etcd: member {} removed; {} member(s) left",
                    member.id,
                    left.len()
                ));
            }
        }
    }
    Ok(steps)
}

/// Deletes this node's Node object with the strongest local credentials.
fn delete_node(node_name: &str) -> String {
    let dir = Path::new(plan::KUBERNETES_DIR);
    let Some(kubeconfig) = ["admin.conf", "kubelet.conf"]
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.exists())
    else {
        return "Node object: no credentials on this node (not part of a cluster)".into();
    };
    let server = format!("https://{}", lb::DEFAULT_LISTEN);
    let client = match phases::kubeconfig_client(&kubeconfig, &server) {
        Ok(client) => client,
        Err(e) => return format!("Node object not deleted: {e}"),
    };
    let started = Instant::now();
    loop {
        match try_delete_node(&client, node_name) {
            Ok(line) => return line,
            Err(e) if started.elapsed() >= NODE_DELETE_DEADLINE => {
                return format!(
                    "Node object not deleted ({e}); delete it with `kubectl delete node {node_name}`"
                );
            }
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

fn try_delete_node(client: &KubeClient, node_name: &str) -> Result<String, String> {
    let path = format!("/api/v1/nodes/{node_name}");
    match client.request("DELETE", &path, None) {
        Ok((200 | 202, _)) => Ok(format!("Node {node_name} deleted")),
        Ok((404, _)) => Ok(format!("Node {node_name} was not registered")),
        Ok((403, _)) => Ok(format!(
            "Node {node_name} not deleted: this node's credentials may not delete Nodes; run `kubectl delete node {node_name}`"
        )),
        Ok((status, body)) => Err(format!(
            "DELETE {path} answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        )),
        Err(e) => Err(e.to_string()),
    }
}
