//! Discovery: the resource descriptor table and the documents built from
//! it (`/api`, `/apis`, `/api/v1`, `/apis/<g>[/<v>]`, aggregated discovery
//! v2 and v2beta1) and `/version`.

use serde_json::{Value, json};

use super::negotiate::DiscoveryVersion;

pub use crate::resources::{
    ALL_VERBS, ResourceDescriptor, SubresourceDescriptor, builtin_resources,
};

/// The served resources and the documents about them.
#[derive(Debug, Clone)]
pub struct Discovery {
    resources: Vec<ResourceDescriptor>,
}

impl Discovery {
    pub fn new(resources: Vec<ResourceDescriptor>) -> Self {
        Self { resources }
    }

    pub fn resources(&self) -> &[ResourceDescriptor] {
        &self.resources
    }

    /// The resource a request names.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceDescriptor> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// Named groups in first-seen order, each with its versions in order.
    fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for r in self.resources.iter().filter(|r| !r.group.is_empty()) {
            match groups.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) => {
                    if !versions.contains(&r.version) {
                        versions.push(r.version.clone());
                    }
                }
                None => groups.push((r.group.clone(), vec![r.version.clone()])),
            }
        }
        groups
    }

    fn core_versions(&self) -> Vec<String> {
        let mut versions: Vec<String> = Vec::new();
        for r in self.resources.iter().filter(|r| r.group.is_empty()) {
            if !versions.contains(&r.version) {
                versions.push(r.version.clone());
            }
        }
        versions
    }

    /// `GET /api`: APIVersions.
    pub fn api_versions(&self, server_address: &str) -> Value {
        json!({
            "kind": "APIVersions",
            "versions": self.core_versions(),
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        })
    }

    fn api_group(name: &str, versions: &[String]) -> Value {
        let versions: Vec<Value> = versions
            .iter()
            .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
            .collect();
        let preferred = versions.first().cloned().unwrap_or(Value::Null);
        json!({"name": name, "versions": versions, "preferredVersion": preferred})
    }

    /// `GET /apis`: APIGroupList.
    pub fn api_group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .groups()
            .iter()
            .map(|(name, versions)| Self::api_group(name, versions))
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// `GET /apis/<group>`: APIGroup.
    pub fn api_group_doc(&self, group: &str) -> Option<Value> {
        let groups = self.groups();
        let (name, versions) = groups.iter().find(|(g, _)| g == group)?;
        let mut doc = Self::api_group(name, versions);
        doc["kind"] = json!("APIGroup");
        doc["apiVersion"] = json!("v1");
        Some(doc)
    }

    /// `GET /api/v1`, `GET /apis/<group>/<version>`: APIResourceList.
    pub fn api_resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let mut resources = Vec::new();
        for r in self
            .resources
            .iter()
            .filter(|r| r.group == group && r.version == version)
        {
            let mut entry = json!({
                "name": r.plural,
                "singularName": r.singular,
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": r.verbs,
            });
            if !r.short_names.is_empty() {
                entry["shortNames"] = json!(r.short_names);
            }
            if !r.categories.is_empty() {
                entry["categories"] = json!(r.categories);
            }
            resources.push(entry);
            for s in &r.subresources {
                let mut sub = json!({
                    "name": format!("{}/{}", r.plural, s.name),
                    "singularName": "",
                    "namespaced": r.namespaced,
                    "kind": s.kind,
                    "verbs": s.verbs,
                });
                if !s.group.is_empty() {
                    sub["group"] = json!(s.group);
                }
                if !s.version.is_empty() {
                    sub["version"] = json!(s.version);
                }
                resources.push(sub);
            }
        }
        if resources.is_empty() {
            return None;
        }
        let group_version = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        Some(json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }))
    }

    fn discovery_resource(r: &ResourceDescriptor) -> Value {
        let mut entry = json!({
            "resource": r.plural,
            "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
            "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
            "singularResource": r.singular,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        if !r.subresources.is_empty() {
            let subs: Vec<Value> = r
                .subresources
                .iter()
                .map(|s| {
                    let (group, version) = if s.group.is_empty() && s.version.is_empty() {
                        (r.group.as_str(), r.version.as_str())
                    } else {
                        (s.group.as_str(), s.version.as_str())
                    };
                    json!({
                        "subresource": s.name,
                        "responseKind": {"group": group, "version": version, "kind": s.kind},
                        "verbs": s.verbs,
                    })
                })
                .collect();
            entry["subresources"] = Value::Array(subs);
        }
        entry
    }

    fn discovery_group(&self, group: &str, versions: &[String]) -> Value {
        let versions: Vec<Value> = versions
            .iter()
            .map(|v| {
                let resources: Vec<Value> = self
                    .resources
                    .iter()
                    .filter(|r| r.group == group && r.version == *v)
                    .map(Self::discovery_resource)
                    .collect();
                json!({"version": v, "resources": resources, "freshness": "Current"})
            })
            .collect();
        let metadata = if group.is_empty() {
            json!({"creationTimestamp": null})
        } else {
            json!({"name": group, "creationTimestamp": null})
        };
        json!({"metadata": metadata, "versions": versions})
    }

    /// Aggregated discovery: `/api` (`core == true`) or `/apis`.
    pub fn aggregated(&self, core: bool, version: DiscoveryVersion) -> Value {
        let items: Vec<Value> = if core {
            vec![self.discovery_group("", &self.core_versions())]
        } else {
            self.groups()
                .iter()
                .map(|(g, versions)| self.discovery_group(g, versions))
                .collect()
        };
        json!({
            "kind": "APIGroupDiscoveryList",
            "apiVersion": version.api_version(),
            "metadata": {},
            "items": items,
        })
    }
}

/// What `/version` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub major: String,
    pub minor: String,
    /// `v1.33.0+cairn`: the Kubernetes API level served, with Cairn as
    /// build metadata. A `-suffix` would make it a semver pre-release,
    /// which version constraints like `>=1.20.0` (Helm charts) reject.
    pub git_version: String,
    pub git_commit: String,
    pub build_date: String,
}

impl Default for VersionInfo {
    fn default() -> Self {
        Self {
            major: "1".into(),
            minor: "33".into(),
            git_version: "v1.33.0+cairn".into(),
            git_commit: String::new(),
            build_date: "1970-01-01T00:00:00Z".into(),
        }
    }
}

impl VersionInfo {
    pub fn to_json(&self) -> Value {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        json!({
            "major": self.major,
            "minor": self.minor,
            "gitVersion": self.git_version,
            "gitCommit": self.git_commit,
            "gitTreeState": "clean",
            "buildDate": self.build_date,
            "goVersion": concat!("cairn-apiserver ", env!("CARGO_PKG_VERSION")),
            "compiler": "rustc",
            "platform": format!("{}/{arch}", std::env::consts::OS),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discovery() -> Discovery {
        Discovery::new(builtin_resources())
    }

    #[test]
    fn short_names_and_categories() {
        let d = discovery();
        for (plural, group, short) in [
            ("pods", "", "po"),
            ("services", "", "svc"),
            ("deployments", "apps", "deploy"),
            ("replicasets", "apps", "rs"),
            ("daemonsets", "apps", "ds"),
            ("statefulsets", "apps", "sts"),
            ("configmaps", "", "cm"),
            ("namespaces", "", "ns"),
            ("nodes", "", "no"),
            ("serviceaccounts", "", "sa"),
            ("events", "", "ev"),
            ("endpoints", "", "ep"),
            ("cronjobs", "batch", "cj"),
            ("certificatesigningrequests", "certificates.k8s.io", "csr"),
        ] {
            let r = d.find(group, "v1", plural).expect(plural);
            assert!(r.answers_to(short), "{plural} {short}");
        }
        let all: Vec<&str> = d
            .resources()
            .iter()
            .filter(|r| r.categories.iter().any(|c| c == "all"))
            .map(|r| r.plural.as_str())
            .collect();
        assert_eq!(
            all,
            [
                "pods",
                "services",
                "deployments",
                "replicasets",
                "daemonsets",
                "statefulsets",
                "jobs",
                "cronjobs"
            ]
        );
    }

    #[test]
    fn resource_list_has_subresources() {
        let list = discovery().api_resource_list("apps", "v1").expect("apps");
        let names: Vec<&str> = list["resources"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert!(names.contains(&"deployments/scale"));
        assert!(names.contains(&"deployments/status"));
        let scale = list["resources"]
            .as_array()
            .expect("array")
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .expect("scale");
        assert_eq!(scale["group"], "autoscaling");
        assert_eq!(scale["kind"], "Scale");
        assert!(discovery().api_resource_list("apps", "v2").is_none());
        let core = discovery().api_resource_list("", "v1").expect("core");
        assert_eq!(core["groupVersion"], "v1");
    }

    #[test]
    fn aggregated_shape() {
        let d = discovery();
        let core = d.aggregated(true, DiscoveryVersion::V2);
        assert_eq!(core["apiVersion"], "apidiscovery.k8s.io/v2");
        assert_eq!(core["items"].as_array().map(Vec::len), Some(1));
        assert!(core["items"][0]["metadata"].get("name").is_none());
        let apis = d.aggregated(false, DiscoveryVersion::V2beta1);
        assert_eq!(apis["apiVersion"], "apidiscovery.k8s.io/v2beta1");
        let apps = apis["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|i| i["metadata"]["name"] == "apps")
            .expect("apps");
        let deploy = &apps["versions"][0]["resources"][0];
        assert_eq!(deploy["resource"], "deployments");
        assert_eq!(deploy["scope"], "Namespaced");
        assert_eq!(
            deploy["subresources"][1]["responseKind"]["group"],
            "autoscaling"
        );
        assert_eq!(deploy["subresources"][0]["responseKind"]["group"], "apps");
        let groups = d.api_group_list();
        assert_eq!(
            groups["groups"][0]["preferredVersion"]["groupVersion"],
            "apps/v1"
        );
        assert_eq!(d.api_group_doc("batch").expect("batch")["kind"], "APIGroup");
    }
}
