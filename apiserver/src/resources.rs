//! The resources the apiserver serves: one descriptor per resource (group,
//! version, kind, names, scope, verbs, subresources) that discovery, the
//! OpenAPI documents and request routing all read, so they cannot
//! disagree.

use crate::openapi::GroupVersionKind;

/// A subresource such as `deployments/scale`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubresourceDescriptor {
    pub name: String,
    /// The group and version of the kind it answers with (`autoscaling`/`v1`
    /// for `scale`); empty means the parent's.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub verbs: Vec<String>,
}

/// One served resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceDescriptor {
    /// Empty for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub verbs: Vec<String>,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub subresources: Vec<SubresourceDescriptor>,
}

/// Every verb of a normal resource.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

impl ResourceDescriptor {
    /// A resource with all verbs; `singular` is the lowercased kind.
    pub fn new(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        Self {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
            plural: plural.to_owned(),
            singular: kind.to_ascii_lowercase(),
            namespaced,
            verbs: strings(ALL_VERBS),
            short_names: Vec::new(),
            categories: Vec::new(),
            subresources: Vec::new(),
        }
    }

    pub fn verbs(mut self, verbs: &[&str]) -> Self {
        self.verbs = strings(verbs);
        self
    }

    pub fn short(mut self, names: &[&str]) -> Self {
        self.short_names = strings(names);
        self
    }

    pub fn categories(mut self, categories: &[&str]) -> Self {
        self.categories = strings(categories);
        self
    }

    /// A subresource answering with the parent's own kind (`status`).
    pub fn status(self) -> Self {
        let kind = self.kind.clone();
        self.sub("status", "", "", &kind, STATUS_VERBS)
    }

    /// `scale` (autoscaling/v1 Scale).
    pub fn scale(self) -> Self {
        self.sub("scale", "autoscaling", "v1", "Scale", STATUS_VERBS)
    }

    pub fn sub(
        mut self,
        name: &str,
        group: &str,
        version: &str,
        kind: &str,
        verbs: &[&str],
    ) -> Self {
        self.subresources.push(SubresourceDescriptor {
            name: name.to_owned(),
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
            verbs: strings(verbs),
        });
        self
    }

    /// `group/version` (`v1` for the core group).
    pub fn group_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether `name` (plural, singular, short name or `plural.group`) names this resource.
    pub fn answers_to(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        name == self.plural
            || name == self.singular
            || self.short_names.contains(&name)
            || (!self.group.is_empty() && name == format!("{}.{}", self.plural, self.group))
    }

    /// Whether the resource serves `verb`.
    pub fn has(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    pub fn subresource(&self, name: &str) -> Option<&SubresourceDescriptor> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// The kind's group, version and kind.
    pub fn gvk(&self) -> GroupVersionKind {
        GroupVersionKind::new(&self.group, &self.version, &self.kind)
    }

    /// `api/v1` or `apis/<group>/<version>`: the key in the `/openapi/v3`
    /// root.
    pub fn group_version_path(&self) -> String {
        crate::openapi::group_version_path(&self.group, &self.version)
    }
}

impl SubresourceDescriptor {
    /// The kind it answers with; an empty group and version mean the
    /// parent's.
    pub fn gvk(&self, parent: &ResourceDescriptor) -> GroupVersionKind {
        if self.group.is_empty() && self.version.is_empty() {
            GroupVersionKind::new(&parent.group, &parent.version, &self.kind)
        } else {
            GroupVersionKind::new(&self.group, &self.version, &self.kind)
        }
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The built-in resources Cairn serves.
pub fn builtin_resources() -> Vec<ResourceDescriptor> {
    use ResourceDescriptor as R;
    let create = &["create"][..];
    let core =
        |kind: &str, plural: &str, namespaced: bool| R::new("", "v1", kind, plural, namespaced);
    vec![
        core("Namespace", "namespaces", false)
            .verbs(&[
                "create", "delete", "get", "list", "patch", "update", "watch",
            ])
            .short(&["ns"])
            .status()
            .sub("finalize", "", "", "Namespace", &["update"]),
        core("Node", "nodes", false).short(&["no"]).status(),
        core("Pod", "pods", true)
            .short(&["po"])
            .categories(&["all"])
            .status()
            .sub("binding", "", "", "Binding", create),
        core("Service", "services", true)
            .short(&["svc"])
            .categories(&["all"])
            .status(),
        core("Endpoints", "endpoints", true).short(&["ep"]),
        core("ConfigMap", "configmaps", true).short(&["cm"]),
        core("Secret", "secrets", true),
        core("ServiceAccount", "serviceaccounts", true).short(&["sa"]),
        core("Event", "events", true).short(&["ev"]),
        R::new("apps", "v1", "Deployment", "deployments", true)
            .short(&["deploy"])
            .categories(&["all"])
            .status()
            .scale(),
        R::new("apps", "v1", "ReplicaSet", "replicasets", true)
            .short(&["rs"])
            .categories(&["all"])
            .status()
            .scale(),
        R::new("apps", "v1", "DaemonSet", "daemonsets", true)
            .short(&["ds"])
            .categories(&["all"])
            .status(),
        R::new("apps", "v1", "StatefulSet", "statefulsets", true)
            .short(&["sts"])
            .categories(&["all"])
            .status()
            .scale(),
        R::new("batch", "v1", "Job", "jobs", true)
            .categories(&["all"])
            .status(),
        R::new("batch", "v1", "CronJob", "cronjobs", true)
            .short(&["cj"])
            .categories(&["all"])
            .status(),
        R::new("coordination.k8s.io", "v1", "Lease", "leases", true),
        R::new(
            "certificates.k8s.io",
            "v1",
            "CertificateSigningRequest",
            "certificatesigningrequests",
            false,
        )
        .short(&["csr"])
        .sub(
            "approval",
            "",
            "",
            "CertificateSigningRequest",
            STATUS_VERBS,
        )
        .status(),
        R::new(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            true,
        ),
        R::new("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
        R::new(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            true,
        ),
        R::new(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
        ),
        R::new(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
        ),
        R::new(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            false,
        )
        .verbs(create),
        R::new(
            "authorization.k8s.io",
            "v1",
            "SubjectAccessReview",
            "subjectaccessreviews",
            false,
        )
        .verbs(create),
        R::new(
            "authentication.k8s.io",
            "v1",
            "SelfSubjectReview",
            "selfsubjectreviews",
            false,
        )
        .verbs(create),
        R::new(
            "authentication.k8s.io",
            "v1",
            "TokenReview",
            "tokenreviews",
            false,
        )
        .verbs(create),
    ]
}
