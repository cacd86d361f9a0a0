//! The RBAC objects a fresh kubeadm cluster has: Kubernetes' bootstrap
//! policy (labelled `kubernetes.io/bootstrapping: rbac-defaults` and
//! annotated `rbac.authorization.kubernetes.io/autoupdate: "true"`, as the
//! apiserver creates them) plus what `kubeadm init` adds (cluster-admins
//! binding, bootstrap-token grants, cluster-info, kubeadm-config,
//! kubelet-config, kube-proxy and CoreDNS access; unlabelled, as kubeadm
//! creates them).
//!
//! The server seeds these into storage on first start. The
//! `system:controller:*` roles of the individual controllers are not here
//! yet; the controller manager's own role covers them for now.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef,
    Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

pub const BOOTSTRAPPING_LABEL: &str = "kubernetes.io/bootstrapping";
pub const BOOTSTRAPPING_VALUE: &str = "rbac-defaults";
pub const AUTOUPDATE_ANNOTATION: &str = "rbac.authorization.kubernetes.io/autoupdate";
pub const AGGREGATE_TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
pub const AGGREGATE_TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
pub const AGGREGATE_TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";
/// The group of kubeadm's default bootstrap token.
pub const KUBEADM_NODE_TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
/// The group of `admin.conf`'s client certificate.
pub const KUBEADM_CLUSTER_ADMINS_GROUP: &str = "kubeadm:cluster-admins";

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const READ_WRITE: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];
const EVENT_WRITE: &[&str] = &["create", "update", "patch"];

/// Everything [`bootstrap_policy`] returns, by kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BootstrapPolicy {
    pub cluster_roles: Vec<ClusterRole>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    pub roles: Vec<Role>,
    pub role_bindings: Vec<RoleBinding>,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// A resource rule.
fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: strings(verbs),
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        ..PolicyRule::default()
    }
}

/// A resource rule limited to some object names.
fn named(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
    PolicyRule {
        resource_names: Some(strings(names)),
        ..rule(verbs, groups, resources)
    }
}

/// A non-resource URL rule.
fn urls(verbs: &[&str], paths: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: strings(verbs),
        non_resource_urls: Some(strings(paths)),
        ..PolicyRule::default()
    }
}

fn event_rules() -> Vec<PolicyRule> {
    vec![rule(EVENT_WRITE, &["", "events.k8s.io"], &["events"])]
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Kubernetes' bootstrap policy: labelled and auto-updated.
    Defaults,
    /// Created by kubeadm.
    Kubeadm,
}

fn meta(name: &str, namespace: Option<&str>, origin: Origin) -> ObjectMeta {
    let mut meta = ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        ..ObjectMeta::default()
    };
    if origin == Origin::Defaults {
        meta.labels = Some(BTreeMap::from([(
            BOOTSTRAPPING_LABEL.to_owned(),
            BOOTSTRAPPING_VALUE.to_owned(),
        )]));
        meta.annotations = Some(BTreeMap::from([(
            AUTOUPDATE_ANNOTATION.to_owned(),
            "true".to_owned(),
        )]));
    }
    meta
}

fn cluster_role(name: &str, origin: Origin, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: meta(name, None, origin),
        rules: Some(rules),
        aggregation_rule: None,
    }
}

fn add_label(role: &mut ClusterRole, key: &str) {
    role.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(key.to_owned(), "true".to_owned());
}

/// A ClusterRole whose rules are the union of those labelled `selector`.
fn aggregated(name: &str, selector: &str) -> ClusterRole {
    ClusterRole {
        metadata: meta(name, None, Origin::Defaults),
        rules: Some(Vec::new()),
        aggregation_rule: Some(AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some(BTreeMap::from([(selector.to_owned(), "true".to_owned())])),
                match_expressions: None,
            }]),
        }),
    }
}

fn group(name: &str) -> Subject {
    Subject {
        api_group: Some(RBAC_GROUP.to_owned()),
        kind: "Group".to_owned(),
        name: name.to_owned(),
        namespace: None,
    }
}

fn user(name: &str) -> Subject {
    Subject {
        api_group: Some(RBAC_GROUP.to_owned()),
        kind: "User".to_owned(),
        name: name.to_owned(),
        namespace: None,
    }
}

fn service_account(namespace: &str, name: &str) -> Subject {
    Subject {
        api_group: Some(String::new()),
        kind: "ServiceAccount".to_owned(),
        name: name.to_owned(),
        namespace: Some(namespace.to_owned()),
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: RBAC_GROUP.to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
    }
}

fn cluster_binding(
    name: &str,
    role: &str,
    origin: Origin,
    subjects: Vec<Subject>,
) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(name, None, origin),
        role_ref: role_ref("ClusterRole", role),
        subjects: Some(subjects),
    }
}

fn role(namespace: &str, name: &str, origin: Origin, rules: Vec<PolicyRule>) -> Role {
    Role {
        metadata: meta(name, Some(namespace), origin),
        rules: Some(rules),
    }
}

fn role_binding(
    namespace: &str,
    name: &str,
    role_name: &str,
    origin: Origin,
    subjects: Vec<Subject>,
) -> RoleBinding {
    RoleBinding {
        metadata: meta(name, Some(namespace), origin),
        role_ref: role_ref("Role", role_name),
        subjects: Some(subjects),
    }
}

/// The default ClusterRoles and bindings plus kubeadm's, ready to store.
pub fn bootstrap_policy() -> BootstrapPolicy {
    let mut policy = BootstrapPolicy {
        cluster_roles: default_cluster_roles(),
        cluster_role_bindings: default_cluster_role_bindings(),
        roles: default_roles(),
        role_bindings: default_role_bindings(),
    };
    add_kubeadm_objects(&mut policy);
    add_node_self_management(&mut policy);
    add_controller_manager_credentials(&mut policy);
    policy
}

/// Cairn's controller manager runs its controllers with its own
/// credentials (`system:kube-controller-manager`): this apiserver has no
/// TokenRequest to mint the per-controller service-account tokens
/// kube-controller-manager uses. Its user gets the controller roles through
/// bindings of its own, next to Kubernetes' unchanged service-account
/// bindings (separate objects, so clusters seeded before them get them too).
fn add_controller_manager_credentials(policy: &mut BootstrapPolicy) {
    let d = Origin::Defaults;
    let controller_manager = || vec![user("system:kube-controller-manager")];
    for role in [
        "system:controller:certificate-controller",
        "system:controller:generic-garbage-collector",
    ] {
        let name = format!(
            "cairn:kube-controller-manager:{}",
            role.trim_start_matches("system:controller:")
        );
        policy
            .cluster_role_bindings
            .push(cluster_binding(&name, role, d, controller_manager()));
    }
    for (namespace, role) in [
        ("kube-system", "system:controller:bootstrap-signer"),
        ("kube-system", "system:controller:token-cleaner"),
        ("kube-public", "system:controller:bootstrap-signer"),
    ] {
        let name = format!(
            "cairn:kube-controller-manager:{}",
            role.trim_start_matches("system:controller:")
        );
        policy.role_bindings.push(role_binding(
            namespace,
            &name,
            role,
            d,
            controller_manager(),
        ));
    }
}

/// Kubernetes lets kubelets register their Node, report its status and
/// renew their Lease through the Node authorizer, which this apiserver does
/// not have. Binding the whole `system:node` role to `system:nodes` instead
/// would also let every node read every Secret and ConfigMap, so nodes get
/// only these grants (not limited to their own objects, which is what the
/// Node authorizer would add).
fn add_node_self_management(policy: &mut BootstrapPolicy) {
    let d = Origin::Defaults;
    let name = "cairn:node-self-management";
    policy.cluster_roles.push(cluster_role(
        name,
        d,
        vec![
            rule(
                &["create", "get", "list", "watch", "update", "patch"],
                &[""],
                &["nodes"],
            ),
            rule(&["update", "patch"], &[""], &["nodes/status"]),
            // Client-certificate rotation: a node asks for its next
            // certificate with its current one (the selfnodeclient
            // approval then checks it asks for itself).
            rule(
                &["create", "get", "list", "watch"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests"],
            ),
        ],
    ));
    policy
        .cluster_role_bindings
        .push(cluster_binding(name, name, d, vec![group("system:nodes")]));
    policy.roles.push(role(
        "kube-node-lease",
        name,
        d,
        vec![rule(
            &["get", "create", "update", "patch", "delete"],
            &["coordination.k8s.io"],
            &["leases"],
        )],
    ));
    policy.role_bindings.push(role_binding(
        "kube-node-lease",
        name,
        name,
        d,
        vec![group("system:nodes")],
    ));
}

fn aggregate_to_view_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            READ,
            &[""],
            &[
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "configmaps",
            ],
        ),
        rule(
            READ,
            &[""],
            &[
                "limitranges",
                "resourcequotas",
                "bindings",
                "events",
                "pods/status",
                "resourcequotas/status",
                "namespaces/status",
                "replicationcontrollers/status",
                "pods/log",
            ],
        ),
        rule(READ, &[""], &["namespaces"]),
        rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
        rule(
            READ,
            &["apps"],
            &[
                "controllerrevisions",
                "statefulsets",
                "statefulsets/status",
                "statefulsets/scale",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/status",
                "deployments/scale",
                "replicasets",
                "replicasets/status",
                "replicasets/scale",
            ],
        ),
        rule(
            READ,
            &["autoscaling"],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
        ),
        rule(
            READ,
            &["batch"],
            &["jobs", "jobs/status", "cronjobs", "cronjobs/status"],
        ),
        rule(
            READ,
            &["extensions"],
            &[
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "ingresses",
                "ingresses/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "replicationcontrollers/scale",
                "networkpolicies",
            ],
        ),
        rule(
            READ,
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
        ),
        rule(
            READ,
            &["networking.k8s.io"],
            &["ingresses", "ingresses/status", "networkpolicies"],
        ),
    ]
}

fn aggregate_to_edit_rules() -> Vec<PolicyRule> {
    vec![
        rule(&["impersonate"], &[""], &["serviceaccounts"]),
        rule(
            WRITE,
            &[""],
            &[
                "pods",
                "pods/attach",
                "pods/proxy",
                "pods/exec",
                "pods/portforward",
            ],
        ),
        rule(&["create"], &[""], &["pods/eviction"]),
        rule(
            WRITE,
            &[""],
            &[
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/proxy",
                "persistentvolumeclaims",
                "configmaps",
                "secrets",
                "events",
            ],
        ),
        rule(&["create"], &[""], &["serviceaccounts/token"]),
        rule(
            WRITE,
            &["apps"],
            &[
                "statefulsets",
                "statefulsets/scale",
                "daemonsets",
                "deployments",
                "deployments/scale",
                "deployments/rollback",
                "replicasets",
                "replicasets/scale",
            ],
        ),
        rule(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
        rule(WRITE, &["batch"], &["jobs", "cronjobs"]),
        rule(
            WRITE,
            &["extensions"],
            &[
                "daemonsets",
                "deployments",
                "deployments/scale",
                "deployments/rollback",
                "ingresses",
                "networkpolicies",
                "replicasets",
                "replicasets/scale",
                "replicationcontrollers/scale",
            ],
        ),
        rule(WRITE, &["policy"], &["poddisruptionbudgets"]),
        rule(
            WRITE,
            &["networking.k8s.io"],
            &["networkpolicies", "ingresses"],
        ),
        // Reading secrets and the interactive pod subresources is beyond
        // `view`.
        rule(
            READ,
            &[""],
            &[
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "secrets",
                "services/proxy",
            ],
        ),
    ]
}

fn aggregate_to_admin_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
        ),
        rule(READ_WRITE, &[RBAC_GROUP], &["roles", "rolebindings"]),
    ]
}

fn node_rules() -> Vec<PolicyRule> {
    let mut rules = vec![
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["subjectaccessreviews", "localsubjectaccessreviews"],
        ),
        rule(READ, &[""], &["services"]),
        rule(&["create", "get", "list", "watch"], &[""], &["nodes"]),
        rule(&["update", "patch"], &[""], &["nodes/status"]),
        rule(&["update", "patch"], &[""], &["nodes"]),
        rule(READ, &[""], &["pods"]),
        rule(&["create", "delete"], &[""], &["pods"]),
        rule(&["update", "patch"], &[""], &["pods/status"]),
        rule(&["create"], &[""], &["pods/eviction"]),
        rule(READ, &[""], &["secrets", "configmaps"]),
        rule(
            &["get"],
            &[""],
            &["persistentvolumeclaims", "persistentvolumes"],
        ),
        rule(&["get"], &[""], &["endpoints"]),
        rule(
            &["get", "update", "patch"],
            &[""],
            &["persistentvolumeclaims/status"],
        ),
        rule(&["get"], &["storage.k8s.io"], &["volumeattachments"]),
        rule(&["create"], &[""], &["serviceaccounts/token"]),
        rule(READ, &["storage.k8s.io"], &["csidrivers"]),
        rule(
            &["get", "create", "update", "patch", "delete"],
            &["storage.k8s.io"],
            &["csinodes"],
        ),
        rule(READ, &["node.k8s.io"], &["runtimeclasses"]),
        rule(
            &["create", "get", "list", "watch"],
            &["certificates.k8s.io"],
            &["certificatesigningrequests"],
        ),
        rule(
            &["get", "create", "update", "patch", "delete"],
            &["coordination.k8s.io"],
            &["leases"],
        ),
    ];
    rules.extend(event_rules());
    rules
}

fn kube_scheduler_rules() -> Vec<PolicyRule> {
    let mut rules = event_rules();
    rules.extend([
        rule(&["create"], &["coordination.k8s.io"], &["leases"]),
        named(
            &["get", "update"],
            &["coordination.k8s.io"],
            &["leases"],
            &["kube-scheduler"],
        ),
        rule(&["create"], &[""], &["endpoints"]),
        named(
            &["get", "update"],
            &[""],
            &["endpoints"],
            &["kube-scheduler"],
        ),
        rule(READ, &[""], &["nodes"]),
        rule(&["get", "list", "watch", "delete"], &[""], &["pods"]),
        rule(&["create"], &[""], &["bindings", "pods/binding"]),
        rule(&["patch", "update"], &[""], &["pods/status"]),
        rule(READ, &[""], &["replicationcontrollers", "services"]),
        rule(READ, &["apps", "extensions"], &["replicasets"]),
        rule(READ, &["apps"], &["statefulsets"]),
        rule(READ, &["policy"], &["poddisruptionbudgets"]),
        rule(
            READ,
            &[""],
            &["persistentvolumeclaims", "persistentvolumes"],
        ),
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["subjectaccessreviews"],
        ),
        rule(READ, &["storage.k8s.io"], &["csinodes"]),
        rule(READ, &[""], &["namespaces"]),
        rule(
            READ,
            &["storage.k8s.io"],
            &["csidrivers", "csistoragecapacities"],
        ),
    ]);
    rules
}

fn kube_controller_manager_rules() -> Vec<PolicyRule> {
    let mut rules = event_rules();
    rules.extend([
        rule(&["create"], &["coordination.k8s.io"], &["leases"]),
        named(
            &["get", "update"],
            &["coordination.k8s.io"],
            &["leases"],
            &["kube-controller-manager"],
        ),
        rule(&["create"], &[""], &["endpoints"]),
        named(
            &["get", "update"],
            &[""],
            &["endpoints"],
            &["kube-controller-manager"],
        ),
        rule(&["create"], &[""], &["secrets", "serviceaccounts"]),
        rule(&["delete"], &[""], &["secrets"]),
        rule(
            &["get"],
            &[""],
            &["namespaces", "secrets", "serviceaccounts", "configmaps"],
        ),
        rule(&["update"], &[""], &["secrets", "serviceaccounts"]),
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["subjectaccessreviews"],
        ),
        rule(&["list", "watch"], &["*"], &["*"]),
        rule(&["create"], &[""], &["serviceaccounts/token"]),
    ]);
    rules
}

fn certificate_approver(name: &str, signer: &str) -> ClusterRole {
    cluster_role(
        name,
        Origin::Defaults,
        vec![named(
            &["approve"],
            &["certificates.k8s.io"],
            &["signers"],
            &[signer],
        )],
    )
}

fn default_cluster_roles() -> Vec<ClusterRole> {
    let d = Origin::Defaults;
    let health = ["/livez", "/readyz", "/healthz"];
    let mut discovery = Vec::from(health);
    discovery.extend([
        "/version",
        "/version/",
        "/openapi",
        "/openapi/*",
        "/api",
        "/api/*",
        "/apis",
        "/apis/*",
    ]);
    let mut public_info = Vec::from(health);
    public_info.extend(["/version", "/version/"]);
    let mut monitoring = Vec::from(health);
    monitoring.extend([
        "/livez/*",
        "/readyz/*",
        "/healthz/*",
        "/metrics",
        "/metrics/slis",
    ]);

    let mut admin = aggregated("admin", AGGREGATE_TO_ADMIN);
    admin.metadata.labels.get_or_insert_with(BTreeMap::new);
    let mut edit = aggregated("edit", AGGREGATE_TO_EDIT);
    add_label(&mut edit, AGGREGATE_TO_ADMIN);
    let mut view = aggregated("view", AGGREGATE_TO_VIEW);
    add_label(&mut view, AGGREGATE_TO_EDIT);
    let mut to_admin = cluster_role("system:aggregate-to-admin", d, aggregate_to_admin_rules());
    add_label(&mut to_admin, AGGREGATE_TO_ADMIN);
    let mut to_edit = cluster_role("system:aggregate-to-edit", d, aggregate_to_edit_rules());
    add_label(&mut to_edit, AGGREGATE_TO_EDIT);
    let mut to_view = cluster_role("system:aggregate-to-view", d, aggregate_to_view_rules());
    add_label(&mut to_view, AGGREGATE_TO_VIEW);

    let mut node_proxier = vec![
        rule(&["list", "watch"], &[""], &["services", "endpoints"]),
        rule(&["get", "list", "watch"], &[""], &["nodes"]),
        rule(
            &["list", "watch"],
            &["discovery.k8s.io"],
            &["endpointslices"],
        ),
    ];
    node_proxier.extend(event_rules());
    let mut problem_detector = vec![
        rule(&["get"], &[""], &["nodes"]),
        rule(&["patch"], &[""], &["nodes/status"]),
    ];
    problem_detector.extend(event_rules());
    let mut pv_provisioner = vec![
        rule(
            &["get", "list", "watch", "create", "delete"],
            &[""],
            &["persistentvolumes"],
        ),
        rule(
            &["get", "list", "watch", "update"],
            &[""],
            &["persistentvolumeclaims"],
        ),
        rule(READ, &["storage.k8s.io"], &["storageclasses"]),
        rule(&["list", "watch"], &[""], &["events"]),
    ];
    pv_provisioner.extend(event_rules());

    vec![
        cluster_role(
            "cluster-admin",
            d,
            vec![rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])],
        ),
        cluster_role("system:discovery", d, vec![urls(&["get"], &discovery)]),
        cluster_role("system:monitoring", d, vec![urls(&["get"], &monitoring)]),
        cluster_role(
            "system:basic-user",
            d,
            vec![
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                rule(
                    &["create"],
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                ),
            ],
        ),
        cluster_role(
            "system:public-info-viewer",
            d,
            vec![urls(&["get"], &public_info)],
        ),
        admin,
        edit,
        view,
        to_admin,
        to_edit,
        to_view,
        cluster_role(
            "system:heapster",
            d,
            vec![
                rule(READ, &[""], &["events", "pods", "nodes", "namespaces"]),
                rule(READ, &["extensions"], &["deployments"]),
            ],
        ),
        cluster_role("system:node", d, node_rules()),
        cluster_role("system:node-problem-detector", d, problem_detector),
        cluster_role(
            "system:kubelet-api-admin",
            d,
            vec![
                rule(READ, &[""], &["nodes"]),
                rule(&["proxy"], &[""], &["nodes"]),
                rule(
                    &["*"],
                    &[""],
                    &[
                        "nodes/proxy",
                        "nodes/metrics",
                        "nodes/stats",
                        "nodes/log",
                        "nodes/spec",
                        "nodes/checkpoint",
                        "nodes/configz",
                        "nodes/healthz",
                        "nodes/pods",
                    ],
                ),
            ],
        ),
        cluster_role(
            "system:node-bootstrapper",
            d,
            vec![rule(
                &["create", "get", "list", "watch"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests"],
            )],
        ),
        cluster_role(
            "system:auth-delegator",
            d,
            vec![
                rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                ),
            ],
        ),
        cluster_role(
            "system:kube-aggregator",
            d,
            vec![rule(READ, &[""], &["endpoints", "services"])],
        ),
        cluster_role(
            "system:kube-controller-manager",
            d,
            kube_controller_manager_rules(),
        ),
        cluster_role("system:kube-scheduler", d, kube_scheduler_rules()),
        cluster_role(
            "system:kube-dns",
            d,
            vec![
                rule(&["list", "watch"], &[""], &["endpoints", "services"]),
                rule(
                    &["list", "watch"],
                    &["discovery.k8s.io"],
                    &["endpointslices"],
                ),
            ],
        ),
        cluster_role("system:persistent-volume-provisioner", d, pv_provisioner),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            d,
            vec![rule(
                &["create"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests/nodeclient"],
            )],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            d,
            vec![rule(
                &["create"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests/selfnodeclient"],
            )],
        ),
        cluster_role(
            "system:volume-scheduler",
            d,
            vec![
                rule(
                    &["get", "list", "watch", "patch", "update"],
                    &[""],
                    &["persistentvolumes"],
                ),
                rule(READ, &["storage.k8s.io"], &["storageclasses"]),
                rule(
                    &["get", "list", "watch", "patch", "update"],
                    &[""],
                    &["persistentvolumeclaims"],
                ),
            ],
        ),
        certificate_approver(
            "system:certificates.k8s.io:legacy-unknown-approver",
            "kubernetes.io/legacy-unknown",
        ),
        certificate_approver(
            "system:certificates.k8s.io:kubelet-serving-approver",
            "kubernetes.io/kubelet-serving",
        ),
        certificate_approver(
            "system:certificates.k8s.io:kube-apiserver-client-approver",
            "kubernetes.io/kube-apiserver-client",
        ),
        certificate_approver(
            "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
            "kubernetes.io/kube-apiserver-client-kubelet",
        ),
        // Kubernetes' controller role for the garbage collector
        // (controller_policy.go): it reads, updates and deletes any
        // resource that can have owners or dependents.
        cluster_role("system:controller:generic-garbage-collector", d, {
            let mut rules = vec![rule(
                &["get", "list", "watch", "patch", "update", "delete"],
                &["*"],
                &["*"],
            )];
            rules.extend(event_rules());
            rules
        }),
        // Kubernetes' controller role for the CSR approver and signer
        // (controller_policy.go).
        cluster_role(
            "system:controller:certificate-controller",
            d,
            vec![
                rule(
                    &["delete", "get", "list", "watch"],
                    &["certificates.k8s.io"],
                    &["certificatesigningrequests"],
                ),
                rule(
                    &["update"],
                    &["certificates.k8s.io"],
                    &[
                        "certificatesigningrequests/approval",
                        "certificatesigningrequests/status",
                    ],
                ),
                named(
                    &["approve"],
                    &["certificates.k8s.io"],
                    &["signers"],
                    &["kubernetes.io/kube-apiserver-client-kubelet"],
                ),
                named(
                    &["sign"],
                    &["certificates.k8s.io"],
                    &["signers"],
                    &[
                        "kubernetes.io/legacy-unknown",
                        "kubernetes.io/kube-apiserver-client",
                        "kubernetes.io/kube-apiserver-client-kubelet",
                        "kubernetes.io/kubelet-serving",
                    ],
                ),
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                ),
                rule(EVENT_WRITE, &["", "events.k8s.io"], &["events"]),
            ],
        ),
        cluster_role(
            "system:service-account-issuer-discovery",
            d,
            vec![urls(
                &["get"],
                &[
                    "/.well-known/openid-configuration",
                    "/.well-known/openid-configuration/",
                    "/openid/v1/jwks",
                    "/openid/v1/jwks/",
                ],
            )],
        ),
        cluster_role("system:node-proxier", d, node_proxier),
    ]
}

fn default_cluster_role_bindings() -> Vec<ClusterRoleBinding> {
    let d = Origin::Defaults;
    vec![
        cluster_binding(
            "cluster-admin",
            "cluster-admin",
            d,
            vec![group("system:masters")],
        ),
        cluster_binding(
            "system:monitoring",
            "system:monitoring",
            d,
            vec![group("system:monitoring")],
        ),
        cluster_binding(
            "system:discovery",
            "system:discovery",
            d,
            vec![group("system:authenticated")],
        ),
        cluster_binding(
            "system:basic-user",
            "system:basic-user",
            d,
            vec![group("system:authenticated")],
        ),
        cluster_binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            d,
            vec![
                group("system:authenticated"),
                group("system:unauthenticated"),
            ],
        ),
        cluster_binding(
            "system:node-proxier",
            "system:node-proxier",
            d,
            vec![user("system:kube-proxy")],
        ),
        cluster_binding(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            d,
            vec![user("system:kube-controller-manager")],
        ),
        cluster_binding(
            "system:controller:certificate-controller",
            "system:controller:certificate-controller",
            d,
            vec![service_account("kube-system", "certificate-controller")],
        ),
        cluster_binding(
            "system:controller:generic-garbage-collector",
            "system:controller:generic-garbage-collector",
            d,
            vec![service_account("kube-system", "generic-garbage-collector")],
        ),
        cluster_binding(
            "system:kube-dns",
            "system:kube-dns",
            d,
            vec![service_account("kube-system", "kube-dns")],
        ),
        cluster_binding(
            "system:kube-scheduler",
            "system:kube-scheduler",
            d,
            vec![user("system:kube-scheduler")],
        ),
        cluster_binding(
            "system:volume-scheduler",
            "system:volume-scheduler",
            d,
            vec![user("system:kube-scheduler")],
        ),
        // Kept without subjects for compatibility; the Node authorizer
        // grants kubelets their access.
        cluster_binding("system:node", "system:node", d, Vec::new()),
        cluster_binding(
            "system:service-account-issuer-discovery",
            "system:service-account-issuer-discovery",
            d,
            vec![group("system:serviceaccounts")],
        ),
    ]
}

fn default_roles() -> Vec<Role> {
    let d = Origin::Defaults;
    let mut token_cleaner = vec![rule(
        &["delete", "get", "list", "watch"],
        &[""],
        &["secrets"],
    )];
    token_cleaner.extend(event_rules());
    let mut signer_public = vec![
        rule(READ, &[""], &["configmaps"]),
        named(&["update"], &[""], &["configmaps"], &["cluster-info"]),
    ];
    signer_public.extend(event_rules());
    vec![
        role(
            "kube-system",
            "extension-apiserver-authentication-reader",
            d,
            vec![named(
                READ,
                &[""],
                &["configmaps"],
                &["extension-apiserver-authentication"],
            )],
        ),
        role(
            "kube-system",
            "system::leader-locking-kube-controller-manager",
            d,
            vec![
                rule(&["watch"], &[""], &["configmaps"]),
                named(
                    &["get", "update"],
                    &[""],
                    &["configmaps"],
                    &["kube-controller-manager"],
                ),
            ],
        ),
        role(
            "kube-system",
            "system::leader-locking-kube-scheduler",
            d,
            vec![
                rule(&["watch"], &[""], &["configmaps"]),
                named(
                    &["get", "update"],
                    &[""],
                    &["configmaps"],
                    &["kube-scheduler"],
                ),
            ],
        ),
        role(
            "kube-system",
            "system:controller:bootstrap-signer",
            d,
            vec![rule(READ, &[""], &["secrets"])],
        ),
        role(
            "kube-system",
            "system:controller:token-cleaner",
            d,
            token_cleaner,
        ),
        role(
            "kube-public",
            "system:controller:bootstrap-signer",
            d,
            signer_public,
        ),
    ]
}

fn default_role_bindings() -> Vec<RoleBinding> {
    let d = Origin::Defaults;
    vec![
        role_binding(
            "kube-system",
            "system::extension-apiserver-authentication-reader",
            "extension-apiserver-authentication-reader",
            d,
            vec![
                user("system:kube-controller-manager"),
                user("system:kube-scheduler"),
            ],
        ),
        role_binding(
            "kube-system",
            "system::leader-locking-kube-controller-manager",
            "system::leader-locking-kube-controller-manager",
            d,
            vec![service_account("kube-system", "kube-controller-manager")],
        ),
        role_binding(
            "kube-system",
            "system::leader-locking-kube-scheduler",
            "system::leader-locking-kube-scheduler",
            d,
            vec![service_account("kube-system", "kube-scheduler")],
        ),
        role_binding(
            "kube-system",
            "system:controller:bootstrap-signer",
            "system:controller:bootstrap-signer",
            d,
            vec![service_account("kube-system", "bootstrap-signer")],
        ),
        role_binding(
            "kube-system",
            "system:controller:token-cleaner",
            "system:controller:token-cleaner",
            d,
            vec![service_account("kube-system", "token-cleaner")],
        ),
        role_binding(
            "kube-public",
            "system:controller:bootstrap-signer",
            "system:controller:bootstrap-signer",
            d,
            vec![service_account("kube-system", "bootstrap-signer")],
        ),
    ]
}

fn add_kubeadm_objects(policy: &mut BootstrapPolicy) {
    let k = Origin::Kubeadm;
    let node_token = || group(KUBEADM_NODE_TOKEN_GROUP);
    policy.cluster_roles.extend([
        cluster_role(
            "kubeadm:get-nodes",
            k,
            vec![rule(&["get"], &[""], &["nodes"])],
        ),
        cluster_role(
            "system:coredns",
            k,
            vec![
                rule(
                    &["list", "watch"],
                    &[""],
                    &["endpoints", "services", "pods", "namespaces"],
                ),
                rule(
                    &["list", "watch"],
                    &["discovery.k8s.io"],
                    &["endpointslices"],
                ),
            ],
        ),
    ]);
    policy.cluster_role_bindings.extend([
        cluster_binding(
            "kubeadm:cluster-admins",
            "cluster-admin",
            k,
            vec![group(KUBEADM_CLUSTER_ADMINS_GROUP)],
        ),
        cluster_binding(
            "kubeadm:get-nodes",
            "kubeadm:get-nodes",
            k,
            vec![node_token()],
        ),
        cluster_binding(
            "kubeadm:kubelet-bootstrap",
            "system:node-bootstrapper",
            k,
            vec![node_token()],
        ),
        cluster_binding(
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            k,
            vec![node_token()],
        ),
        cluster_binding(
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            k,
            vec![group("system:nodes")],
        ),
        cluster_binding(
            "kubeadm:node-proxier",
            "system:node-proxier",
            k,
            vec![service_account("kube-system", "kube-proxy")],
        ),
        cluster_binding(
            "system:coredns",
            "system:coredns",
            k,
            vec![service_account("kube-system", "coredns")],
        ),
    ]);
    let config_reader = |name: &str, config_map: &str| {
        role(
            "kube-system",
            name,
            k,
            vec![named(&["get"], &[""], &["configmaps"], &[config_map])],
        )
    };
    policy.roles.extend([
        role(
            "kube-public",
            "kubeadm:bootstrap-signer-clusterinfo",
            k,
            vec![named(&["get"], &[""], &["configmaps"], &["cluster-info"])],
        ),
        config_reader("kubeadm:nodes-kubeadm-config", "kubeadm-config"),
        config_reader("kubeadm:kubelet-config", "kubelet-config"),
        config_reader("kube-proxy", "kube-proxy"),
    ]);
    let nodes_and_token = || vec![node_token(), group("system:nodes")];
    policy.role_bindings.extend([
        role_binding(
            "kube-public",
            "kubeadm:bootstrap-signer-clusterinfo",
            "kubeadm:bootstrap-signer-clusterinfo",
            k,
            vec![user("system:anonymous")],
        ),
        role_binding(
            "kube-system",
            "kubeadm:nodes-kubeadm-config",
            "kubeadm:nodes-kubeadm-config",
            k,
            nodes_and_token(),
        ),
        role_binding(
            "kube-system",
            "kubeadm:kubelet-config",
            "kubeadm:kubelet-config",
            k,
            nodes_and_token(),
        ),
        role_binding(
            "kube-system",
            "kube-proxy",
            "kube-proxy",
            k,
            vec![node_token()],
        ),
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn names_are_unique_and_bindings_resolve() {
        let policy = bootstrap_policy();
        let cluster_roles: BTreeSet<_> = policy
            .cluster_roles
            .iter()
            .filter_map(|r| r.metadata.name.clone())
            .collect();
        assert_eq!(cluster_roles.len(), policy.cluster_roles.len());
        for binding in &policy.cluster_role_bindings {
            assert!(
                cluster_roles.contains(&binding.role_ref.name),
                "{:?} refers to a missing ClusterRole",
                binding.metadata.name
            );
        }
        for binding in &policy.role_bindings {
            let ns = binding.metadata.namespace.clone();
            assert!(
                policy.roles.iter().any(|r| r.metadata.namespace == ns
                    && r.metadata.name.as_deref() == Some(binding.role_ref.name.as_str())),
                "{:?} refers to a missing Role",
                binding.metadata.name
            );
        }
    }

    #[test]
    fn defaults_are_labelled_and_kubeadm_objects_are_not() {
        let policy = bootstrap_policy();
        let labelled = |m: &ObjectMeta| {
            m.labels
                .as_ref()
                .and_then(|l| l.get(BOOTSTRAPPING_LABEL))
                .map(String::as_str)
                == Some(BOOTSTRAPPING_VALUE)
        };
        for role in &policy.cluster_roles {
            let name = role.metadata.name.as_deref().unwrap_or_default();
            let expected = !(name.starts_with("kubeadm:") || name == "system:coredns");
            assert_eq!(labelled(&role.metadata), expected, "{name}");
        }
        let view = policy
            .cluster_roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some("view"))
            .expect("view");
        assert!(view.aggregation_rule.is_some());
    }
}
