//! `meta.k8s.io/v1` Tables: the columns `kubectl get` prints, computed
//! on the server as kube-apiserver's printers do.

use serde_json::{Map, Value, json};

use super::clock::{age, human_duration, parse_rfc3339};
use super::request::IncludeObject;
use super::selector::LabelSelector;

/// One `columnDefinitions` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// `string`, `integer`, `date`, ...
    pub kind: &'static str,
    /// `name` for the Name column.
    pub format: &'static str,
    pub description: &'static str,
    /// 0 always shown; 1 only with `-o wide`.
    pub priority: u8,
}

const fn col(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column {
        name,
        kind,
        format: "",
        description,
        priority: 0,
    }
}

const fn wide(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column {
        name,
        kind,
        format: "",
        description,
        priority: 1,
    }
}

const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    description: "Name must be unique within a namespace.",
    priority: 0,
};
const AGE: Column = col(
    "Age",
    "string",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);
const CONTAINERS: Column = wide(
    "Containers",
    "string",
    "Names of each container in the template.",
);
const IMAGES: Column = wide(
    "Images",
    "string",
    "Images referenced by each container in the template.",
);
const SELECTOR: Column = wide("Selector", "string", "Label selector for pods.");

/// The column definitions for a kind.
pub fn columns(kind: &str) -> Vec<Column> {
    match kind {
        "Pod" => vec![
            NAME,
            col(
                "Ready",
                "string",
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            col(
                "Status",
                "string",
                "The aggregate status of the containers in this pod.",
            ),
            col(
                "Restarts",
                "string",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            AGE,
            wide(
                "IP",
                "string",
                "IP address allocated to the pod. Routable at least within the cluster.",
            ),
            wide(
                "Node",
                "string",
                "Name of the node this pod is assigned to.",
            ),
            wide(
                "Nominated Node",
                "string",
                "Name of the node where the pod is nominated to run.",
            ),
            wide("Readiness Gates", "string", "Pod readiness gates."),
        ],
        "Deployment" => vec![
            NAME,
            col("Ready", "string", "Number of the pod with ready state"),
            col(
                "Up-to-date",
                "integer",
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            ),
            col(
                "Available",
                "integer",
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "ReplicaSet" => vec![
            NAME,
            col("Desired", "integer", "Number of desired pods."),
            col("Current", "integer", "Number of actual running pods."),
            col("Ready", "integer", "Number of pods ready."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "DaemonSet" => vec![
            NAME,
            col(
                "Desired",
                "integer",
                "The total number of nodes that should be running the daemon pod.",
            ),
            col(
                "Current",
                "integer",
                "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
            ),
            col(
                "Ready",
                "integer",
                "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
            ),
            col(
                "Up-to-date",
                "integer",
                "The total number of nodes that are running updated daemon pod.",
            ),
            col(
                "Available",
                "integer",
                "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.",
            ),
            col(
                "Node Selector",
                "string",
                "NodeSelector is a selector which must be true for the pod to fit on a node.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "StatefulSet" => vec![
            NAME,
            col("Ready", "string", "Number of the pod with ready state"),
            AGE,
            CONTAINERS,
            IMAGES,
        ],
        "Job" => vec![
            NAME,
            col("Status", "string", "Status of the job."),
            col("Completions", "string", "The completion status of the job."),
            col("Duration", "string", "Time required to complete the job."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "CronJob" => vec![
            NAME,
            col("Schedule", "string", "The schedule in Cron format."),
            col(
                "Timezone",
                "string",
                "The time zone name for the given schedule.",
            ),
            col(
                "Suspend",
                "boolean",
                "This flag tells the controller to suspend subsequent executions.",
            ),
            col(
                "Active",
                "integer",
                "A list of pointers to currently running jobs.",
            ),
            col(
                "Last Schedule",
                "string",
                "Information when was the last time the job was successfully scheduled.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "Service" => vec![
            NAME,
            col(
                "Type",
                "string",
                "type determines how the Service is exposed.",
            ),
            col(
                "Cluster-IP",
                "string",
                "clusterIP is the IP address of the service.",
            ),
            col(
                "External-IP",
                "string",
                "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
            ),
            col(
                "Port(s)",
                "string",
                "The list of ports that are exposed by this service.",
            ),
            AGE,
            wide(
                "Selector",
                "string",
                "Route service traffic to pods with label keys and values matching this selector.",
            ),
        ],
        "Endpoints" => vec![
            NAME,
            col(
                "Endpoints",
                "string",
                "Endpoints is the list of endpoints in the Endpoints object.",
            ),
            AGE,
        ],
        "EndpointSlice" => vec![
            NAME,
            col("AddressType", "string", "The IP protocol for this slice."),
            col("Ports", "string", "The ports exposed by this slice."),
            col(
                "Endpoints",
                "string",
                "The addresses of the endpoints in this slice.",
            ),
            AGE,
        ],
        "Node" => vec![
            NAME,
            col("Status", "string", "The status of the node"),
            col("Roles", "string", "The roles of the node"),
            AGE,
            col("Version", "string", "Kubelet Version reported by the node."),
            wide(
                "Internal-IP",
                "string",
                "List of addresses reachable to the node.",
            ),
            wide(
                "External-IP",
                "string",
                "List of addresses reachable to the node.",
            ),
            wide(
                "OS-Image",
                "string",
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
            ),
            wide(
                "Kernel-Version",
                "string",
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
            ),
            wide(
                "Container-Runtime",
                "string",
                "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
            ),
        ],
        "Namespace" => vec![
            NAME,
            col("Status", "string", "The status of the namespace"),
            AGE,
        ],
        "ConfigMap" => vec![
            NAME,
            col("Data", "string", "Data contains the configuration data."),
            AGE,
        ],
        "Secret" => vec![
            NAME,
            col(
                "Type",
                "string",
                "Used to facilitate programmatic handling of secret data.",
            ),
            col("Data", "string", "Data contains the secret data."),
            AGE,
        ],
        "ServiceAccount" => vec![
            NAME,
            col(
                "Secrets",
                "string",
                "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
            ),
            AGE,
        ],
        "Event" => vec![
            col(
                "Last Seen",
                "string",
                "The time at which the most recent occurrence of this event was recorded.",
            ),
            col(
                "Type",
                "string",
                "Type of this event (Normal, Warning), new types could be added in the future.",
            ),
            col(
                "Reason",
                "string",
                "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
            ),
            col("Object", "string", "The object that this event is about."),
            wide(
                "Subobject",
                "string",
                "The subobject that this event is about.",
            ),
            wide(
                "Source",
                "string",
                "The component reporting this event. Should be a short machine understandable string.",
            ),
            col(
                "Message",
                "string",
                "A human-readable description of the status of this operation.",
            ),
            wide(
                "First Seen",
                "string",
                "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
            ),
            wide(
                "Count",
                "string",
                "The number of times this event has occurred.",
            ),
            wide("Name", "string", "Name must be unique within a namespace."),
        ],
        "Lease" => vec![
            NAME,
            col(
                "Holder",
                "string",
                "HolderIdentity contains the identity of the holder of a current lease.",
            ),
            AGE,
        ],
        "CertificateSigningRequest" => vec![
            NAME,
            AGE,
            col("SignerName", "string", "Requested signer for the request."),
            col(
                "Requestor",
                "string",
                "Name of the user who created the request.",
            ),
            col(
                "RequestedDuration",
                "string",
                "Requested certificate duration.",
            ),
            col("Condition", "string", "Conditions applied to the request."),
        ],
        "Role" | "ClusterRole" => vec![
            NAME,
            col(
                "Created At",
                "date",
                "CreationTimestamp is a timestamp representing the server time when this object was created.",
            ),
        ],
        "RoleBinding" | "ClusterRoleBinding" => vec![
            NAME,
            col("Role", "string", "RoleRef is the reference to the role."),
            AGE,
            wide("Users", "string", "Users in the binding."),
            wide("Groups", "string", "Groups in the binding."),
            wide(
                "ServiceAccounts",
                "string",
                "ServiceAccounts in the binding.",
            ),
        ],
        _ => vec![NAME, AGE],
    }
}

fn s<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn i(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn arr<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn len_of(v: &Value, pointer: &str) -> usize {
    match v.pointer(pointer) {
        Some(Value::Array(a)) => a.len(),
        Some(Value::Object(o)) => o.len(),
        _ => 0,
    }
}

fn or_none(text: String) -> Value {
    if text.is_empty() {
        json!("<none>")
    } else {
        json!(text)
    }
}

fn name(o: &Value) -> Value {
    json!(s(o, "/metadata/name").unwrap_or_default())
}

fn age_of(o: &Value, now: i64) -> Value {
    json!(age(s(o, "/metadata/creationTimestamp"), now))
}

fn map_pairs(v: Option<&Value>) -> String {
    let Some(map) = v.and_then(Value::as_object) else {
        return String::new();
    };
    let mut pairs: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    pairs.join(",")
}

fn template_columns(o: &Value, pod_spec: &str) -> (Value, Value) {
    let containers = arr(o, &format!("{pod_spec}/containers"));
    let names: Vec<&str> = containers.iter().filter_map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().filter_map(|c| s(c, "/image")).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

fn selector_column(o: &Value) -> Value {
    match o.pointer("/spec/selector") {
        Some(sel) => match LabelSelector::from_label_selector_object(sel) {
            Ok(parsed) if !parsed.is_empty() => json!(parsed.to_string()),
            Ok(_) => json!("<none>"),
            Err(_) => json!("<error>"),
        },
        None => json!("<none>"),
    }
}

fn condition_true(o: &Value, pointer: &str, kind: &str) -> bool {
    arr(o, pointer)
        .iter()
        .any(|c| s(c, "/type") == Some(kind) && s(c, "/status") == Some("True"))
}

/// The cells of one row.
pub fn cells(kind: &str, o: &Value, now: i64) -> Vec<Value> {
    match kind {
        "Pod" => pod_cells(o, now),
        "Deployment" => {
            let (containers, images) = template_columns(o, "/spec/template/spec");
            let desired = o
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            vec![
                name(o),
                json!(format!("{}/{desired}", i(o, "/status/readyReplicas"))),
                json!(i(o, "/status/updatedReplicas")),
                json!(i(o, "/status/availableReplicas")),
                age_of(o, now),
                containers,
                images,
                selector_column(o),
            ]
        }
        "ReplicaSet" => {
            let (containers, images) = template_columns(o, "/spec/template/spec");
            vec![
                name(o),
                json!(
                    o.pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                ),
                json!(i(o, "/status/replicas")),
                json!(i(o, "/status/readyReplicas")),
                age_of(o, now),
                containers,
                images,
                selector_column(o),
            ]
        }
        "DaemonSet" => {
            let (containers, images) = template_columns(o, "/spec/template/spec");
            vec![
                name(o),
                json!(i(o, "/status/desiredNumberScheduled")),
                json!(i(o, "/status/currentNumberScheduled")),
                json!(i(o, "/status/numberReady")),
                json!(i(o, "/status/updatedNumberScheduled")),
                json!(i(o, "/status/numberAvailable")),
                or_none(map_pairs(o.pointer("/spec/template/spec/nodeSelector"))),
                age_of(o, now),
                containers,
                images,
                selector_column(o),
            ]
        }
        "StatefulSet" => {
            let (containers, images) = template_columns(o, "/spec/template/spec");
            let desired = o
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            vec![
                name(o),
                json!(format!("{}/{desired}", i(o, "/status/readyReplicas"))),
                age_of(o, now),
                containers,
                images,
            ]
        }
        "Job" => job_cells(o, now),
        "CronJob" => {
            let (containers, images) = template_columns(o, "/spec/jobTemplate/spec/template/spec");
            let last = s(o, "/status/lastScheduleTime")
                .map(|t| age(Some(t), now))
                .unwrap_or_else(|| "<none>".into());
            let selector = match o.pointer("/spec/jobTemplate/spec/selector") {
                Some(sel) => LabelSelector::from_label_selector_object(sel)
                    .map(|s| or_none(s.to_string()))
                    .unwrap_or_else(|_| json!("<error>")),
                None => json!("<none>"),
            };
            vec![
                name(o),
                json!(s(o, "/spec/schedule").unwrap_or_default()),
                or_none(s(o, "/spec/timeZone").unwrap_or_default().to_owned()),
                json!(
                    o.pointer("/spec/suspend")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                ),
                json!(len_of(o, "/status/active")),
                json!(last),
                age_of(o, now),
                containers,
                images,
                selector,
            ]
        }
        "Service" => service_cells(o, now),
        "Endpoints" => {
            let mut endpoints = Vec::new();
            for subset in arr(o, "/subsets") {
                let ports: Vec<i64> = arr(subset, "/ports")
                    .iter()
                    .filter_map(|p| p.get("port").and_then(Value::as_i64))
                    .collect();
                for address in arr(subset, "/addresses") {
                    let ip = s(address, "/ip").unwrap_or_default();
                    if ports.is_empty() {
                        endpoints.push(ip.to_owned());
                    }
                    for port in &ports {
                        endpoints.push(format!("{ip}:{port}"));
                    }
                }
            }
            vec![name(o), json!(truncated_list(&endpoints)), age_of(o, now)]
        }
        "EndpointSlice" => {
            let ports: Vec<String> = arr(o, "/ports")
                .iter()
                .filter_map(|p| p.get("port").and_then(Value::as_i64))
                .map(|p| p.to_string())
                .collect();
            let addresses: Vec<String> = arr(o, "/endpoints")
                .iter()
                .flat_map(|e| arr(e, "/addresses").iter())
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            vec![
                name(o),
                json!(s(o, "/addressType").unwrap_or_default()),
                json!(if ports.is_empty() {
                    "<unset>".into()
                } else {
                    ports.join(",")
                }),
                json!(truncated_list(&addresses)),
                age_of(o, now),
            ]
        }
        "Node" => node_cells(o, now),
        "Namespace" => vec![
            name(o),
            json!(s(o, "/status/phase").unwrap_or_default()),
            age_of(o, now),
        ],
        "ConfigMap" => vec![
            name(o),
            json!(len_of(o, "/data") + len_of(o, "/binaryData")),
            age_of(o, now),
        ],
        "Secret" => vec![
            name(o),
            json!(s(o, "/type").unwrap_or_default()),
            json!(len_of(o, "/data")),
            age_of(o, now),
        ],
        "ServiceAccount" => vec![name(o), json!(len_of(o, "/secrets")), age_of(o, now)],
        "Event" => event_cells(o, now),
        "Lease" => vec![
            name(o),
            or_none(s(o, "/spec/holderIdentity").unwrap_or_default().to_owned()),
            age_of(o, now),
        ],
        "CertificateSigningRequest" => {
            let conditions: Vec<&str> = arr(o, "/status/conditions")
                .iter()
                .filter_map(|c| s(c, "/type"))
                .collect();
            let duration = o
                .pointer("/spec/expirationSeconds")
                .and_then(Value::as_i64)
                .map(human_duration)
                .unwrap_or_else(|| "<none>".into());
            vec![
                name(o),
                age_of(o, now),
                json!(s(o, "/spec/signerName").unwrap_or_default()),
                json!(s(o, "/spec/username").unwrap_or_default()),
                json!(duration),
                json!(if conditions.is_empty() {
                    "Pending".into()
                } else {
                    conditions.join(",")
                }),
            ]
        }
        "Role" | "ClusterRole" => vec![
            name(o),
            json!(s(o, "/metadata/creationTimestamp").unwrap_or_default()),
        ],
        "RoleBinding" | "ClusterRoleBinding" => {
            let subjects = arr(o, "/subjects");
            let of_kind = |kind: &str| -> Vec<String> {
                subjects
                    .iter()
                    .filter(|s2| s(s2, "/kind") == Some(kind))
                    .map(|s2| {
                        let n = s(s2, "/name").unwrap_or_default();
                        match (kind, s(s2, "/namespace")) {
                            ("ServiceAccount", Some(ns)) => format!("{ns}/{n}"),
                            _ => n.to_owned(),
                        }
                    })
                    .collect()
            };
            vec![
                name(o),
                json!(format!(
                    "{}/{}",
                    s(o, "/roleRef/kind").unwrap_or_default(),
                    s(o, "/roleRef/name").unwrap_or_default()
                )),
                age_of(o, now),
                json!(of_kind("User").join(", ")),
                json!(of_kind("Group").join(", ")),
                json!(of_kind("ServiceAccount").join(", ")),
            ]
        }
        _ => vec![name(o), age_of(o, now)],
    }
}

fn truncated_list(items: &[String]) -> String {
    match items.len() {
        0 => "<none>".into(),
        n if n <= 3 => items.join(","),
        n => format!("{} + {} more...", items[..3].join(","), n - 3),
    }
}

fn pod_cells(o: &Value, now: i64) -> Vec<Value> {
    let total = len_of(o, "/spec/containers");
    let mut ready = 0;
    let mut restarts = 0;
    let mut last_restart: Option<i64> = None;
    let mut reason = s(o, "/status/phase").unwrap_or_default().to_owned();
    if let Some(r) = s(o, "/status/reason").filter(|r| !r.is_empty()) {
        reason = r.to_owned();
    }
    let mut note_restart = |status: &Value| {
        restarts += i(status, "/restartCount");
        if let Some(t) = s(status, "/lastState/terminated/finishedAt").and_then(parse_rfc3339) {
            last_restart = Some(last_restart.map_or(t, |l: i64| l.max(t)));
        }
    };

    let init_statuses = arr(o, "/status/initContainerStatuses");
    let init_total = len_of(o, "/spec/initContainers");
    let mut initializing = false;
    for (index, status) in init_statuses.iter().enumerate() {
        note_restart(status);
        let terminated = status.pointer("/state/terminated");
        if terminated.is_some_and(|t| i(t, "/exitCode") == 0) {
            continue;
        }
        if let Some(t) = terminated {
            reason = match s(t, "/reason").filter(|r| !r.is_empty()) {
                Some(r) => format!("Init:{r}"),
                None if i(t, "/signal") != 0 => format!("Init:Signal:{}", i(t, "/signal")),
                None => format!("Init:ExitCode:{}", i(t, "/exitCode")),
            };
        } else if let Some(w) =
            s(status, "/state/waiting/reason").filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            reason = format!("Init:{w}");
        } else {
            reason = format!("Init:{index}/{init_total}");
        }
        initializing = true;
        break;
    }
    if !initializing {
        restarts = 0;
        last_restart = None;
        let mut has_running = false;
        for status in arr(o, "/status/containerStatuses").iter().rev() {
            restarts += i(status, "/restartCount");
            if let Some(t) = s(status, "/lastState/terminated/finishedAt").and_then(parse_rfc3339) {
                last_restart = Some(last_restart.map_or(t, |l: i64| l.max(t)));
            }
            if let Some(w) = s(status, "/state/waiting/reason").filter(|r| !r.is_empty()) {
                reason = w.to_owned();
            } else if let Some(t) = status.pointer("/state/terminated") {
                reason = match s(t, "/reason").filter(|r| !r.is_empty()) {
                    Some(r) => r.to_owned(),
                    None if i(t, "/signal") != 0 => format!("Signal:{}", i(t, "/signal")),
                    None => format!("ExitCode:{}", i(t, "/exitCode")),
                };
            } else if status.get("ready").and_then(Value::as_bool) == Some(true)
                && status.pointer("/state/running").is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(o, "/status/conditions", "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }
    if o.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        reason = if s(o, "/status/reason") == Some("NodeLost") {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    let restarts_text = match last_restart {
        Some(t) => format!("{restarts} ({} ago)", human_duration(now - t)),
        None => restarts.to_string(),
    };
    let ip = arr(o, "/status/podIPs")
        .first()
        .and_then(|p| s(p, "/ip"))
        .or_else(|| s(o, "/status/podIP"))
        .unwrap_or_default()
        .to_owned();
    let gates = arr(o, "/spec/readinessGates");
    let gates_text = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let passing = gates
            .iter()
            .filter(|g| {
                let t = s(g, "/conditionType").unwrap_or_default();
                condition_true(o, "/status/conditions", t)
            })
            .count();
        format!("{passing}/{}", gates.len())
    };
    vec![
        name(o),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_text),
        age_of(o, now),
        or_none(ip),
        or_none(s(o, "/spec/nodeName").unwrap_or_default().to_owned()),
        or_none(
            s(o, "/status/nominatedNodeName")
                .unwrap_or_default()
                .to_owned(),
        ),
        json!(gates_text),
    ]
}

fn job_cells(o: &Value, now: i64) -> Vec<Value> {
    let (containers, images) = template_columns(o, "/spec/template/spec");
    let conditions = "/status/conditions";
    let status = if condition_true(o, conditions, "Failed") {
        "Failed"
    } else if condition_true(o, conditions, "Complete") {
        "Complete"
    } else if condition_true(o, conditions, "FailureTarget") {
        "FailureTarget"
    } else if condition_true(o, conditions, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if condition_true(o, conditions, "Suspended") {
        "Suspended"
    } else if o
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        "Terminating"
    } else {
        "Running"
    };
    let succeeded = i(o, "/status/succeeded");
    let completions = match o.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => {
            let parallelism = o
                .pointer("/spec/parallelism")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            if parallelism > 1 {
                format!("{succeeded}/1 of {parallelism}")
            } else {
                format!("{succeeded}/1")
            }
        }
    };
    let duration = match s(o, "/status/startTime").and_then(parse_rfc3339) {
        Some(start) => {
            let end = s(o, "/status/completionTime")
                .and_then(parse_rfc3339)
                .unwrap_or(now);
            human_duration(end - start)
        }
        None => String::new(),
    };
    vec![
        name(o),
        json!(status),
        json!(completions),
        json!(duration),
        age_of(o, now),
        containers,
        images,
        selector_column(o),
    ]
}

fn service_cells(o: &Value, now: i64) -> Vec<Value> {
    let kind = s(o, "/spec/type").unwrap_or("ClusterIP");
    let cluster_ip = s(o, "/spec/clusterIP").unwrap_or_default().to_owned();
    let external_ips: Vec<String> = arr(o, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    let external = match kind {
        "ExternalName" => s(o, "/spec/externalName").unwrap_or_default().to_owned(),
        "LoadBalancer" => {
            let mut ips: Vec<String> = arr(o, "/status/loadBalancer/ingress")
                .iter()
                .filter_map(|i| s(i, "/ip").or_else(|| s(i, "/hostname")))
                .map(str::to_owned)
                .collect();
            ips.extend(external_ips.iter().cloned());
            if ips.is_empty() {
                "<pending>".into()
            } else {
                ips.join(",")
            }
        }
        _ => external_ips.join(","),
    };
    let ports: Vec<String> = arr(o, "/spec/ports")
        .iter()
        .map(|p| {
            let port = i(p, "/port");
            let protocol = s(p, "/protocol").unwrap_or("TCP");
            match p
                .get("nodePort")
                .and_then(Value::as_i64)
                .filter(|n| *n != 0)
            {
                Some(node_port) => format!("{port}:{node_port}/{protocol}"),
                None => format!("{port}/{protocol}"),
            }
        })
        .collect();
    vec![
        name(o),
        json!(kind),
        or_none(cluster_ip),
        or_none(external),
        or_none(ports.join(",")),
        age_of(o, now),
        or_none(map_pairs(o.pointer("/spec/selector"))),
    ]
}

fn node_cells(o: &Value, now: i64) -> Vec<Value> {
    let mut status = match arr(o, "/status/conditions")
        .iter()
        .find(|c| s(c, "/type") == Some("Ready"))
        .and_then(|c| s(c, "/status"))
    {
        Some("True") => "Ready".to_owned(),
        Some(_) => "NotReady".to_owned(),
        None => "Unknown".to_owned(),
    };
    if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<String> = o
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| {
                    if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                        Some(role.to_owned())
                    } else if k == "kubernetes.io/role" {
                        v.as_str().map(str::to_owned)
                    } else {
                        None
                    }
                })
                .filter(|r| !r.is_empty())
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    roles.dedup();
    let address = |kind: &str| -> String {
        arr(o, "/status/addresses")
            .iter()
            .find(|a| s(a, "/type") == Some(kind))
            .and_then(|a| s(a, "/address"))
            .unwrap_or_default()
            .to_owned()
    };
    let info = |field: &str| -> Value {
        or_none(
            s(o, &format!("/status/nodeInfo/{field}"))
                .unwrap_or_default()
                .to_owned(),
        )
    };
    vec![
        name(o),
        json!(status),
        or_none(roles.join(",")),
        age_of(o, now),
        json!(s(o, "/status/nodeInfo/kubeletVersion").unwrap_or_default()),
        or_none(address("InternalIP")),
        or_none(address("ExternalIP")),
        info("osImage"),
        info("kernelVersion"),
        info("containerRuntimeVersion"),
    ]
}

fn event_cells(o: &Value, now: i64) -> Vec<Value> {
    let first = s(o, "/firstTimestamp")
        .or_else(|| s(o, "/eventTime"))
        .or_else(|| s(o, "/metadata/creationTimestamp"));
    let last = s(o, "/lastTimestamp")
        .or_else(|| s(o, "/series/lastObservedTime"))
        .or_else(|| s(o, "/eventTime"))
        .or(first);
    let kind = s(o, "/involvedObject/kind")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let object = format!(
        "{kind}/{}",
        s(o, "/involvedObject/name").unwrap_or_default()
    );
    let mut source = s(o, "/source/component")
        .or_else(|| s(o, "/reportingComponent"))
        .unwrap_or_default()
        .to_owned();
    if let Some(host) = s(o, "/source/host").filter(|h| !h.is_empty()) {
        source = format!("{source}, {host}");
    }
    let count = o
        .get("count")
        .and_then(Value::as_i64)
        .or_else(|| o.pointer("/series/count").and_then(Value::as_i64))
        .unwrap_or(1);
    vec![
        json!(age(last, now)),
        json!(s(o, "/type").unwrap_or_default()),
        json!(s(o, "/reason").unwrap_or_default()),
        json!(object),
        json!(s(o, "/involvedObject/fieldPath").unwrap_or_default()),
        json!(source),
        json!(s(o, "/message").unwrap_or_default().trim()),
        json!(age(first, now)),
        json!(count.to_string()),
        name(o),
    ]
}

fn column_json(c: &Column) -> Value {
    json!({
        "name": c.name,
        "type": c.kind,
        "format": c.format,
        "description": c.description,
        "priority": c.priority,
    })
}

/// What a Table row embeds for an object.
fn row_object(o: &Value, include: IncludeObject, version: &str) -> Option<Value> {
    match include {
        IncludeObject::None => None,
        IncludeObject::Object => Some(o.clone()),
        IncludeObject::Metadata => Some(partial_object_metadata(o, version)),
    }
}

/// The `PartialObjectMetadata` of an object.
pub fn partial_object_metadata(o: &Value, version: &str) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// Options of a Table rendering.
#[derive(Debug, Clone)]
pub struct TableOptions<'a> {
    /// The kind of the rows (list items may lack `kind`).
    pub kind: &'a str,
    /// `v1` or `v1beta1`.
    pub version: &'a str,
    pub include_object: IncludeObject,
    /// Leave `columnDefinitions` empty (watch events after the first).
    pub omit_headers: bool,
    /// Seconds since the epoch, for AGE.
    pub now: i64,
}

/// Renders objects as a Table; `list_metadata` (`resourceVersion`,
/// `continue`) is copied to the Table's metadata.
pub fn render(
    objects: &[Value],
    list_metadata: Option<&Value>,
    options: &TableOptions<'_>,
) -> Value {
    let column_defs: Vec<Value> = if options.omit_headers {
        Vec::new()
    } else {
        columns(options.kind).iter().map(column_json).collect()
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut row = Map::new();
            row.insert(
                "cells".into(),
                Value::Array(cells(options.kind, o, options.now)),
            );
            if let Some(object) = row_object(o, options.include_object, options.version) {
                row.insert("object".into(), object);
            }
            Value::Object(row)
        })
        .collect();
    let mut metadata = Map::new();
    if let Some(meta) = list_metadata.and_then(Value::as_object) {
        for key in ["resourceVersion", "continue", "remainingItemCount"] {
            if let Some(v) = meta.get(key) {
                metadata.insert(key.into(), v.clone());
            }
        }
    }
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{}", options.version),
        "metadata": metadata,
        "columnDefinitions": column_defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::clock::parse_rfc3339;

    fn now() -> i64 {
        parse_rfc3339("2025-01-01T01:00:00Z").unwrap_or_default()
    }

    fn names(kind: &str, priority: u8) -> Vec<&'static str> {
        columns(kind)
            .iter()
            .filter(|c| c.priority == priority)
            .map(|c| c.name)
            .collect()
    }

    #[test]
    fn column_sets() {
        assert_eq!(
            names("Pod", 0),
            ["Name", "Ready", "Status", "Restarts", "Age"]
        );
        assert_eq!(
            names("Pod", 1),
            ["IP", "Node", "Nominated Node", "Readiness Gates"]
        );
        assert_eq!(
            names("Deployment", 0),
            ["Name", "Ready", "Up-to-date", "Available", "Age"]
        );
        assert_eq!(names("Deployment", 1), ["Containers", "Images", "Selector"]);
        assert_eq!(
            names("Service", 0),
            [
                "Name",
                "Type",
                "Cluster-IP",
                "External-IP",
                "Port(s)",
                "Age"
            ]
        );
        assert_eq!(
            names("Node", 0),
            ["Name", "Status", "Roles", "Age", "Version"]
        );
        assert_eq!(names("Namespace", 0), ["Name", "Status", "Age"]);
        assert_eq!(names("ConfigMap", 0), ["Name", "Data", "Age"]);
        assert_eq!(names("Secret", 0), ["Name", "Type", "Data", "Age"]);
        assert_eq!(names("Widget", 0), ["Name", "Age"]);
        for kind in [
            "Pod",
            "Deployment",
            "Event",
            "Job",
            "CronJob",
            "Node",
            "RoleBinding",
        ] {
            let cols = columns(kind).len();
            assert_eq!(cells(kind, &json!({}), now()).len(), cols, "{kind}");
        }
    }

    #[test]
    fn pod_cells_running_and_crashing() {
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": "2025-01-01T00:55:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.5",
                "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
                    {"name": "b", "ready": false, "restartCount": 3,
                     "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                     "lastState": {"terminated": {"finishedAt": "2025-01-01T00:58:00Z"}}}
                ]}
        });
        assert_eq!(
            cells("Pod", &pod, now()),
            vec![
                json!("web"),
                json!("1/2"),
                json!("CrashLoopBackOff"),
                json!("3 (2m ago)"),
                json!("5m"),
                json!("10.0.0.5"),
                json!("n1"),
                json!("<none>"),
                json!("<none>")
            ]
        );
        let pending = json!({"metadata": {"name": "p", "deletionTimestamp": "2025-01-01T00:59:00Z"},
            "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending"}});
        let c = cells("Pod", &pending, now());
        assert_eq!(c[2], "Terminating");
        assert_eq!(c[4], "<unknown>");
        let init = json!({"metadata": {"name": "i"},
            "spec": {"initContainers": [{"name": "x"}, {"name": "y"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "x", "state": {"terminated": {"exitCode": 0}}},
                {"name": "y", "state": {"running": {}}}]}});
        assert_eq!(cells("Pod", &init, now())[2], "Init:1/2");
    }

    #[test]
    fn deployment_service_node_cells() {
        let deploy = json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-12-30T01:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        });
        assert_eq!(
            cells("Deployment", &deploy, now()),
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("2d"),
                json!("nginx"),
                json!("nginx:1.27"),
                json!("app=web")
            ]
        );
        let svc = json!({
            "metadata": {"name": "np", "creationTimestamp": "2025-01-01T00:00:00Z"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "selector": {"app": "np"},
                "ports": [{"port": 443, "nodePort": 30443, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}
        });
        assert_eq!(
            cells("Service", &svc, now()),
            vec![
                json!("np"),
                json!("NodePort"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("443:30443/TCP,53/UDP"),
                json!("60m"),
                json!("app=np")
            ]
        );
        let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer"}});
        assert_eq!(cells("Service", &lb, now())[3], "<pending>");
        let node = json!({
            "metadata": {"name": "n1", "creationTimestamp": "2025-01-01T00:59:55Z",
                "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Cairn", "kernelVersion": "6.12",
                    "containerRuntimeVersion": "containerd://2.0"}}
        });
        assert_eq!(
            cells("Node", &node, now()),
            vec![
                json!("n1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane"),
                json!("5s"),
                json!("v1.33.0"),
                json!("192.168.1.10"),
                json!("<none>"),
                json!("Cairn"),
                json!("6.12"),
                json!("containerd://2.0")
            ]
        );
    }

    #[test]
    fn small_kinds() {
        let cm = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}});
        assert_eq!(cells("ConfigMap", &cm, now())[1], 3);
        let secret = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"pw": "eA=="}});
        assert_eq!(
            cells("Secret", &secret, now())[1..3],
            [json!("Opaque"), json!(1)]
        );
        let ns = json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}});
        assert_eq!(cells("Namespace", &ns, now())[1], "Active");
        let job = json!({"metadata": {"name": "j"}, "spec": {"completions": 2},
            "status": {"succeeded": 2, "startTime": "2025-01-01T00:00:00Z", "completionTime": "2025-01-01T00:00:30Z",
                "conditions": [{"type": "Complete", "status": "True"}]}});
        assert_eq!(
            cells("Job", &job, now())[1..4],
            [json!("Complete"), json!("2/2"), json!("30s")]
        );
        let rb = json!({"metadata": {"name": "rb"}, "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}, {"kind": "User", "name": "bob"}]});
        let c = cells("RoleBinding", &rb, now());
        assert_eq!(c[1], "ClusterRole/view");
        assert_eq!(c[3], "bob");
        assert_eq!(c[5], "ns/sa");
        let ep = json!({"metadata": {"name": "e"}, "subsets": [{"addresses": [{"ip": "1.1.1.1"}, {"ip": "2.2.2.2"}],
            "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(
            cells("Endpoints", &ep, now())[1],
            "1.1.1.1:80,1.1.1.1:443,2.2.2.2:80 + 1 more..."
        );
    }

    #[test]
    fn render_with_include_object() {
        let pod = json!({"kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {}});
        let options = TableOptions {
            kind: "Pod",
            version: "v1",
            include_object: IncludeObject::Metadata,
            omit_headers: false,
            now: now(),
        };
        let table = render(
            std::slice::from_ref(&pod),
            Some(&json!({"resourceVersion": "7"})),
            &options,
        );
        assert_eq!(table["kind"], "Table");
        assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(table["metadata"]["resourceVersion"], "7");
        assert_eq!(table["columnDefinitions"][0]["format"], "name");
        assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(
            table["rows"][0]["object"]["metadata"]["labels"]["app"],
            "web"
        );
        let none = render(
            std::slice::from_ref(&pod),
            None,
            &TableOptions {
                include_object: IncludeObject::None,
                omit_headers: true,
                ..options.clone()
            },
        );
        assert!(none["rows"][0].get("object").is_none());
        assert_eq!(none["columnDefinitions"], json!([]));
        let full = render(
            std::slice::from_ref(&pod),
            None,
            &TableOptions {
                include_object: IncludeObject::Object,
                ..options
            },
        );
        assert_eq!(full["rows"][0]["object"], pod);
    }
}
