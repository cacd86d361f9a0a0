//! ClusterIP and NodePort allocation for Services.
//!
//! [`ServiceAllocators`] holds a [`ClusterIpAllocator`] (from
//! `--service-cluster-ip-range`) and a [`NodePortAllocator`] (from
//! `--service-node-port-range`) behind one async mutex. Every Service
//! write takes the lock, allocates what the new state needs (a ClusterIP
//! for ClusterIP, NodePort and LoadBalancer Services unless headless or
//! given; a nodePort for each port of a NodePort or LoadBalancer Service
//! without one; the healthCheckNodePort of a LoadBalancer with
//! `externalTrafficPolicy: Local`), takes the given values with
//! `allocate_specific` (a conflict is a 422 naming the field), writes to
//! storage, and only then releases what the old state held and the new
//! one does not (type change, delete). A failed write gives back what it
//! allocated, so the in-memory state follows storage.
//!
//! At startup, [`Registry::restore_service_allocations`] marks as used
//! every address and port the stored Services hold (the `kubernetes`
//! Service holds the first address of the range).

use std::collections::BTreeSet;
use std::future::Future;
use std::net::IpAddr;

use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::Registry;
use crate::http::ApiError;
use crate::http::status::StatusCause;
use crate::storage::{ListOptions, StorageError};
use crate::validation::{AllocationError, ClusterIpAllocator, FieldError, NodePortAllocator};

/// The two allocators, serialised by one lock.
#[derive(Debug)]
pub struct ServiceAllocators {
    inner: Mutex<Ranges>,
}

#[derive(Debug)]
struct Ranges {
    ips: ClusterIpAllocator,
    ports: NodePortAllocator,
}

/// What a stored Service holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Held {
    pub ips: BTreeSet<IpAddr>,
    pub ports: BTreeSet<u16>,
}

/// What one write took, to give back if the write fails.
#[derive(Debug, Default)]
struct Taken {
    ips: Vec<IpAddr>,
    ports: Vec<u16>,
}

fn service_type(service: &Value) -> &str {
    service
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

fn wants_cluster_ip(service: &Value) -> bool {
    service_type(service) != "ExternalName"
}

fn wants_node_ports(service: &Value) -> bool {
    match service_type(service) {
        "NodePort" => true,
        "LoadBalancer" => service
            .pointer("/spec/allocateLoadBalancerNodePorts")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        _ => false,
    }
}

fn wants_health_check_port(service: &Value) -> bool {
    service_type(service) == "LoadBalancer"
        && service
            .pointer("/spec/externalTrafficPolicy")
            .and_then(Value::as_str)
            == Some("Local")
}

fn port_value(v: Option<&Value>) -> Option<u16> {
    v.and_then(Value::as_u64)
        .filter(|p| *p != 0)
        .and_then(|p| u16::try_from(p).ok())
}

/// The addresses and ports `service` holds.
pub(crate) fn held(service: &Value) -> Held {
    let mut held = Held::default();
    let Some(spec) = service.get("spec") else {
        return held;
    };
    if service_type(service) != "ExternalName" {
        let mut ips: Vec<&str> = spec
            .get("clusterIPs")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if ips.is_empty()
            && let Some(ip) = spec.get("clusterIP").and_then(Value::as_str)
        {
            ips.push(ip);
        }
        held.ips
            .extend(ips.iter().filter_map(|ip| ip.parse::<IpAddr>().ok()));
    }
    if let Some(ports) = spec.get("ports").and_then(Value::as_array) {
        held.ports
            .extend(ports.iter().filter_map(|p| port_value(p.get("nodePort"))));
    }
    if let Some(p) = port_value(spec.get("healthCheckNodePort")) {
        held.ports.insert(p);
    }
    held
}

/// On update, before validation: drops the allocated values a type change
/// leaves without purpose when the client kept them as they were
/// (NodePort → ClusterIP keeps no nodePorts nor externalTrafficPolicy,
/// ClusterIP → ExternalName no clusterIP), as Kubernetes does.
pub(crate) fn drop_type_dependent_fields(new: &mut Value, old: &Value) {
    let old_spec = old.get("spec").cloned().unwrap_or_else(|| json!({}));
    let needs_ports = wants_node_ports(new);
    let needs_ip = wants_cluster_ip(new);
    let needs_hc = wants_health_check_port(new);
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if !needs_ports && wants_node_ports(old) {
        let node_ports = |s: &Value| -> Vec<Option<Value>> {
            s.get("ports")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|p| p.get("nodePort").cloned()).collect())
                .unwrap_or_default()
        };
        let same = node_ports(&Value::Object(spec.clone())) == node_ports(&old_spec);
        if same && let Some(Value::Array(ports)) = spec.get_mut("ports") {
            for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                port.remove("nodePort");
            }
        }
    }
    let external = |ty: &str| ty == "NodePort" || ty == "LoadBalancer";
    let new_type = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_owned();
    if !external(&new_type)
        && external(service_type(old))
        && spec.get("externalTrafficPolicy") == old_spec.get("externalTrafficPolicy")
    {
        spec.remove("externalTrafficPolicy");
    }
    if new_type != "LoadBalancer"
        && service_type(old) == "LoadBalancer"
        && spec.get("allocateLoadBalancerNodePorts")
            == old_spec.get("allocateLoadBalancerNodePorts")
    {
        spec.remove("allocateLoadBalancerNodePorts");
    }
    if !needs_hc && spec.get("healthCheckNodePort") == old_spec.get("healthCheckNodePort") {
        spec.remove("healthCheckNodePort");
    }
    if !needs_ip && wants_cluster_ip(old) {
        let same = spec.get("clusterIP") == old_spec.get("clusterIP")
            && spec.get("clusterIPs") == old_spec.get("clusterIPs");
        if same {
            for key in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                spec.remove(key);
            }
        }
    }
}

impl ServiceAllocators {
    /// Allocators over `cidr` and `node_ports` (`30000-32767`).
    pub fn new(cidr: &str, node_ports: &str) -> Result<Self, AllocationError> {
        Ok(Self {
            inner: Mutex::new(Ranges {
                ips: ClusterIpAllocator::new(cidr)?,
                ports: NodePortAllocator::new(node_ports)?,
            }),
        })
    }

    /// The address of the `kubernetes` Service.
    pub async fn kubernetes_service_ip(&self) -> IpAddr {
        self.inner.lock().await.ips.kubernetes_service_ip()
    }

    /// Whether `ip` is currently allocated.
    pub async fn ip_allocated(&self, ip: IpAddr) -> bool {
        self.inner.lock().await.ips.is_allocated(ip)
    }

    /// Whether `port` is currently allocated.
    pub async fn port_allocated(&self, port: u16) -> bool {
        self.inner.lock().await.ports.is_allocated(port)
    }

    /// Marks what `services` hold as used; returns the values outside the
    /// ranges (left alone).
    pub async fn restore<'a>(
        &self,
        services: impl IntoIterator<Item = &'a Value>,
    ) -> (Vec<IpAddr>, Vec<u16>) {
        let mut ips = Vec::new();
        let mut ports = Vec::new();
        for s in services {
            let h = held(s);
            ips.extend(h.ips);
            ports.extend(h.ports);
        }
        let mut r = self.inner.lock().await;
        (r.ips.restore(ips), r.ports.restore(ports))
    }

    /// Runs `write` with `new` (the state to store, `None` for a delete)
    /// completed with allocations, under the lock; `old` is the stored
    /// state. On success releases what `old` held and the written state
    /// does not; on failure gives back what was taken.
    pub(crate) async fn write<T, E, F, Fut>(
        &self,
        kind: &str,
        old: Option<&Value>,
        mut new: Option<Value>,
        dry_run: bool,
        write: F,
    ) -> Result<T, E>
    where
        E: From<ApiError>,
        F: FnOnce(Option<Value>) -> Fut,
        Fut: Future<Output = Result<(T, Option<Value>), E>>,
    {
        let mut r = self.inner.lock().await;
        let had = old.map(held).unwrap_or_default();
        let mut taken = Taken::default();
        if let Some(object) = new.as_mut()
            && let Err(e) = r.fill(object, &had, &mut taken)
        {
            r.give_back(&taken);
            let name = object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            return Err(invalid(kind, name, e).into());
        }
        if dry_run {
            r.give_back(&taken);
            let (result, _) = write(new).await?;
            return Ok(result);
        }
        match write(new).await {
            Ok((result, written)) => {
                let now = written.as_ref().map(held).unwrap_or_default();
                for ip in had.ips.difference(&now.ips) {
                    r.ips.release(*ip);
                }
                for port in had.ports.difference(&now.ports) {
                    r.ports.release(*port);
                }
                Ok(result)
            }
            Err(e) => {
                r.give_back(&taken);
                Err(e)
            }
        }
    }

    /// Releases what a Service removed outside [`Self::write`] held.
    pub(crate) async fn release(&self, service: &Value) {
        let h = held(service);
        let mut r = self.inner.lock().await;
        for ip in h.ips {
            r.ips.release(ip);
        }
        for port in h.ports {
            r.ports.release(port);
        }
    }
}

impl Ranges {
    fn give_back(&mut self, taken: &Taken) {
        for ip in &taken.ips {
            self.ips.release(*ip);
        }
        for port in &taken.ports {
            self.ports.release(*port);
        }
    }

    /// Allocates what `service` needs and takes what it names that `had`
    /// does not hold.
    fn fill(
        &mut self,
        service: &mut Value,
        had: &Held,
        taken: &mut Taken,
    ) -> Result<(), FieldError> {
        let needs_ip = wants_cluster_ip(service);
        let needs_ports = wants_node_ports(service);
        let needs_hc = wants_health_check_port(service);
        let Some(spec) = service.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        if needs_ip {
            let given: Vec<String> = spec
                .get("clusterIPs")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .filter(|v: &Vec<String>| !v.is_empty())
                .or_else(|| {
                    spec.get("clusterIP")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(|s| vec![s.to_owned()])
                })
                .unwrap_or_default();
            if given.is_empty() {
                let ip = self
                    .ips
                    .allocate_next()
                    .map_err(|e| e.field_error("spec.clusterIPs"))?;
                taken.ips.push(ip);
                spec.insert("clusterIP".into(), json!(ip.to_string()));
                spec.insert("clusterIPs".into(), json!([ip.to_string()]));
            } else {
                for ip in given.iter().filter(|ip| *ip != "None") {
                    let Ok(ip) = ip.parse::<IpAddr>() else {
                        continue;
                    };
                    if had.ips.contains(&ip) || taken.ips.contains(&ip) {
                        continue;
                    }
                    self.ips
                        .allocate_specific(ip)
                        .map_err(|e| e.field_error("spec.clusterIPs"))?;
                    taken.ips.push(ip);
                }
            }
        }
        if needs_ports && let Some(Value::Array(ports)) = spec.get_mut("ports") {
            // Given ports first, so a dynamic one never takes a given one.
            for (i, port) in ports.iter().enumerate() {
                let Some(p) = port_value(port.get("nodePort")) else {
                    continue;
                };
                if had.ports.contains(&p) || taken.ports.contains(&p) {
                    continue;
                }
                self.ports
                    .allocate_specific(p)
                    .map_err(|e| e.field_error(&format!("spec.ports[{i}].nodePort")))?;
                taken.ports.push(p);
            }
            for (i, port) in ports.iter_mut().enumerate() {
                let Some(p) = port.as_object_mut() else {
                    continue;
                };
                if port_value(p.get("nodePort")).is_some() {
                    continue;
                }
                let n = self
                    .ports
                    .allocate_next()
                    .map_err(|e| e.field_error(&format!("spec.ports[{i}].nodePort")))?;
                taken.ports.push(n);
                p.insert("nodePort".into(), json!(n));
            }
        }
        if needs_hc {
            match port_value(spec.get("healthCheckNodePort")) {
                Some(p) => {
                    if !had.ports.contains(&p) && !taken.ports.contains(&p) {
                        self.ports
                            .allocate_specific(p)
                            .map_err(|e| e.field_error("spec.healthCheckNodePort"))?;
                        taken.ports.push(p);
                    }
                }
                None => {
                    let n = self
                        .ports
                        .allocate_next()
                        .map_err(|e| e.field_error("spec.healthCheckNodePort"))?;
                    taken.ports.push(n);
                    spec.insert("healthCheckNodePort".into(), json!(n));
                }
            }
        }
        Ok(())
    }
}

fn invalid(kind: &str, name: &str, e: FieldError) -> ApiError {
    ApiError::invalid(
        "",
        kind,
        name,
        vec![StatusCause {
            reason: e.reason.as_str().to_owned(),
            message: e.message,
            field: e.field,
        }],
    )
}

impl Registry {
    /// Marks every address and port the stored Services hold as used.
    pub async fn restore_service_allocations(&self) -> Result<(), StorageError> {
        let Some(desc) = self.descriptor("", "services") else {
            return Ok(());
        };
        let prefix = self.list_prefix(desc, "");
        let mut services = Vec::new();
        let mut options = ListOptions::default();
        loop {
            let page = self.storage.list(&prefix, options.clone()).await?;
            for kv in &page.items {
                match serde_json::from_slice::<Value>(&kv.value) {
                    Ok(v) => services.push(v),
                    Err(e) => tracing::warn!(key = %kv.key, error = %e, "undecodable Service"),
                }
            }
            match page.next_page(None) {
                Some(next) => options = next,
                None => break,
            }
        }
        let (ips, ports) = self.services.restore(&services).await;
        if !ips.is_empty() || !ports.is_empty() {
            tracing::warn!(
                ?ips,
                ?ports,
                "stored Services hold values outside the ranges"
            );
        }
        tracing::info!(services = services.len(), "service allocations restored");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_values() {
        let s = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"],
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 81}], "healthCheckNodePort": 31000}});
        let h = held(&s);
        assert_eq!(
            h.ips.into_iter().collect::<Vec<_>>(),
            vec!["10.96.0.5".parse::<IpAddr>().expect("ip")]
        );
        assert_eq!(h.ports.into_iter().collect::<Vec<_>>(), vec![30080, 31000]);
        assert!(held(&json!({"spec": {"clusterIP": "None"}})).ips.is_empty());
    }

    #[test]
    fn type_change_drops_unchanged_node_ports() {
        let old = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.5",
            "ports": [{"port": 80, "nodePort": 30080}]}});
        let mut new = old.clone();
        new["spec"]["type"] = json!("ClusterIP");
        drop_type_dependent_fields(&mut new, &old);
        assert!(new.pointer("/spec/ports/0/nodePort").is_none());
        assert_eq!(new.pointer("/spec/clusterIP"), Some(&json!("10.96.0.5")));
    }

    #[tokio::test]
    async fn allocation_and_release() {
        let a = ServiceAllocators::new("10.96.0.0/24", "30000-30100").expect("ranges");
        let svc = json!({"metadata": {"name": "a"}, "spec": {"type": "NodePort",
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 81}]}});
        let stored = a
            .write("Service", None, Some(svc), false, |v| async move {
                Ok::<_, ApiError>((v.clone(), v))
            })
            .await
            .expect("allocated")
            .expect("object");
        let ip: IpAddr = stored["spec"]["clusterIP"]
            .as_str()
            .expect("ip")
            .parse()
            .expect("ip");
        assert_ne!(ip, a.kubernetes_service_ip().await);
        assert!(a.ip_allocated(ip).await);
        assert!(a.port_allocated(30080).await);
        let second = json!({"metadata": {"name": "b"}, "spec": {"type": "NodePort",
            "ports": [{"port": 80, "nodePort": 30080}]}});
        let e = a
            .write("Service", None, Some(second), false, |v| async move {
                Ok::<_, ApiError>((v.clone(), v))
            })
            .await
            .expect_err("conflict");
        assert_eq!(e.code, 422);
        assert!(
            e.message.contains(
                "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
            ),
            "{}",
            e.message
        );
        // A failed write gives back what it took.
        let failing = json!({"metadata": {"name": "c"}, "spec": {"type": "NodePort",
            "ports": [{"port": 80, "nodePort": 30090}]}});
        let e = a
            .write("Service", None, Some(failing), false, |_| async move {
                Err::<((), Option<Value>), _>(ApiError::internal("down"))
            })
            .await
            .expect_err("failed write");
        assert_eq!(e.code, 500);
        assert!(!a.port_allocated(30090).await);
        // Delete releases.
        a.write("Service", Some(&stored), None, false, |_| async move {
            Ok::<_, ApiError>(((), None))
        })
        .await
        .expect("deleted");
        assert!(!a.ip_allocated(ip).await);
        assert!(!a.port_allocated(30080).await);
    }
}
