//! RBAC authorization with the semantics of Kubernetes' RBAC authorizer.
//!
//! A decision visits the ClusterRoleBindings, then (for namespaced
//! requests) the RoleBindings of the request's namespace; a binding counts
//! when one of its subjects is the user, one of the user's groups, or the
//! user's service account. The first rule of a bound role that matches the
//! request allows it. Aggregated ClusterRoles (`aggregationRule`) get the
//! union of the rules of every ClusterRole their selectors match, resolved
//! recursively, so `admin` includes `edit` includes `view`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{BoxFuture, MASTERS_GROUP, SourceError, UserInfo};

/// What a request wants to do, as kube-apiserver's
/// `authorizer.Attributes`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    pub user: UserInfo,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`, or a special verb (`use`, `bind`, `escalate`,
    /// `impersonate`, `approve`, ...); for non-resource requests the
    /// lower-cased HTTP method mapped the same way (`get`, `post`, ...).
    pub verb: String,
    pub namespace: String,
    /// `""` for the core group.
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    pub non_resource_path: String,
    pub is_resource_request: bool,
}

impl Attributes {
    /// A resource request; `namespace` is empty for cluster-scoped ones.
    pub fn resource(
        user: UserInfo,
        verb: impl Into<String>,
        namespace: impl Into<String>,
        api_group: impl Into<String>,
        resource: impl Into<String>,
    ) -> Self {
        Self {
            user,
            verb: verb.into(),
            namespace: namespace.into(),
            api_group: api_group.into(),
            resource: resource.into(),
            is_resource_request: true,
            ..Self::default()
        }
    }

    pub fn with_subresource(mut self, subresource: impl Into<String>) -> Self {
        self.subresource = subresource.into();
        self
    }

    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// A request for a path outside the resource tree (`/version`,
    /// `/healthz`, `/api`, ...).
    pub fn non_resource(user: UserInfo, verb: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            user,
            verb: verb.into(),
            non_resource_path: path.into(),
            is_resource_request: false,
            ..Self::default()
        }
    }
}

/// An authorization decision. RBAC only allows or has no opinion, so
/// `denied` stays false; `evaluation_error` lists bindings that could not
/// be evaluated (e.g. a missing role).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    pub allowed: bool,
    pub denied: bool,
    pub reason: String,
    pub evaluation_error: Option<String>,
}

impl Decision {
    fn allow(reason: String) -> Self {
        Self {
            allowed: true,
            reason,
            ..Self::default()
        }
    }
}

/// Reads RBAC objects; storage implements it.
pub trait RbacSource: Send + Sync {
    fn cluster_roles(&self) -> BoxFuture<'_, Result<Vec<ClusterRole>, SourceError>>;
    fn cluster_role_bindings(&self) -> BoxFuture<'_, Result<Vec<ClusterRoleBinding>, SourceError>>;
    fn roles<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Vec<Role>, SourceError>>;
    fn role_bindings<'a>(
        &'a self,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<Vec<RoleBinding>, SourceError>>;
}

/// RBAC objects held in memory; adding an object replaces one with the
/// same name (and namespace).
#[derive(Debug, Default)]
pub struct InMemoryRbac {
    objects: RwLock<RbacObjects>,
}

#[derive(Debug, Default, Clone)]
struct RbacObjects {
    cluster_roles: BTreeMap<String, ClusterRole>,
    cluster_role_bindings: BTreeMap<String, ClusterRoleBinding>,
    roles: BTreeMap<(String, String), Role>,
    role_bindings: BTreeMap<(String, String), RoleBinding>,
}

fn object_name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn object_key(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        object_name(meta),
    )
}

impl InMemoryRbac {
    pub fn new() -> Self {
        Self::default()
    }

    /// Seeded with a policy, e.g. [`super::policy::bootstrap_policy`].
    pub fn from_policy(policy: &super::policy::BootstrapPolicy) -> Self {
        let rbac = Self::new();
        policy
            .cluster_roles
            .iter()
            .cloned()
            .for_each(|o| rbac.add_cluster_role(o));
        policy
            .cluster_role_bindings
            .iter()
            .cloned()
            .for_each(|o| rbac.add_cluster_role_binding(o));
        policy.roles.iter().cloned().for_each(|o| rbac.add_role(o));
        policy
            .role_bindings
            .iter()
            .cloned()
            .for_each(|o| rbac.add_role_binding(o));
        rbac
    }

    fn with_objects(&self, f: impl FnOnce(&mut RbacObjects)) {
        if let Ok(mut objects) = self.objects.write() {
            f(&mut objects);
        }
    }

    fn snapshot(&self) -> Result<RbacObjects, SourceError> {
        self.objects
            .read()
            .map(|o| o.clone())
            .map_err(|_| SourceError("in-memory RBAC lock poisoned".to_owned()))
    }

    pub fn add_cluster_role(&self, role: ClusterRole) {
        self.with_objects(|o| {
            o.cluster_roles.insert(object_name(&role.metadata), role);
        });
    }

    pub fn add_cluster_role_binding(&self, binding: ClusterRoleBinding) {
        self.with_objects(|o| {
            o.cluster_role_bindings
                .insert(object_name(&binding.metadata), binding);
        });
    }

    pub fn add_role(&self, role: Role) {
        self.with_objects(|o| {
            o.roles.insert(object_key(&role.metadata), role);
        });
    }

    pub fn add_role_binding(&self, binding: RoleBinding) {
        self.with_objects(|o| {
            o.role_bindings
                .insert(object_key(&binding.metadata), binding);
        });
    }
}

impl RbacSource for InMemoryRbac {
    fn cluster_roles(&self) -> BoxFuture<'_, Result<Vec<ClusterRole>, SourceError>> {
        let result = self
            .snapshot()
            .map(|o| o.cluster_roles.into_values().collect());
        Box::pin(async move { result })
    }

    fn cluster_role_bindings(&self) -> BoxFuture<'_, Result<Vec<ClusterRoleBinding>, SourceError>> {
        let result = self
            .snapshot()
            .map(|o| o.cluster_role_bindings.into_values().collect());
        Box::pin(async move { result })
    }

    fn roles<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Vec<Role>, SourceError>> {
        let result = self.snapshot().map(|o| {
            o.roles
                .into_iter()
                .filter(|((ns, _), _)| ns == namespace)
                .map(|(_, r)| r)
                .collect()
        });
        Box::pin(async move { result })
    }

    fn role_bindings<'a>(
        &'a self,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<Vec<RoleBinding>, SourceError>> {
        let result = self.snapshot().map(|o| {
            o.role_bindings
                .into_iter()
                .filter(|((ns, _), _)| ns == namespace)
                .map(|(_, r)| r)
                .collect()
        });
        Box::pin(async move { result })
    }
}

/// The RBAC authorizer.
#[derive(Clone)]
pub struct RbacAuthorizer {
    source: Arc<dyn RbacSource>,
}

impl fmt::Debug for RbacAuthorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RbacAuthorizer").finish_non_exhaustive()
    }
}

/// The rules granted to a user, with the bindings that could not be read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GrantedRules {
    pub rules: Vec<PolicyRule>,
    pub errors: Vec<String>,
}

impl RbacAuthorizer {
    pub fn new(source: Arc<dyn RbacSource>) -> Self {
        Self { source }
    }

    pub async fn authorize(&self, attrs: &Attributes) -> Decision {
        if attrs.user.in_group(MASTERS_GROUP) {
            return Decision::allow(String::new());
        }
        let mut errors = Vec::new();
        let cluster_roles = match self.source.cluster_roles().await {
            Ok(list) => list,
            Err(e) => {
                errors.push(format!("listing clusterroles: {e}"));
                Vec::new()
            }
        };
        let mut resolver = RoleResolver::new(&cluster_roles);
        match self.source.cluster_role_bindings().await {
            Ok(bindings) => {
                for binding in &bindings {
                    let Some(subject) = applying_subject(&binding.subjects, &attrs.user, "") else {
                        continue;
                    };
                    let name = object_name(&binding.metadata);
                    if binding.role_ref.kind != "ClusterRole" {
                        errors.push(format!(
                            "clusterrolebinding {name:?} refers to a {} (only ClusterRole is allowed)",
                            binding.role_ref.kind
                        ));
                        continue;
                    }
                    match resolver.rules(&binding.role_ref.name) {
                        Ok(rules) => {
                            if rules.iter().any(|r| rule_allows(attrs, r)) {
                                return Decision::allow(allow_reason(
                                    "ClusterRoleBinding",
                                    &name,
                                    &binding.role_ref,
                                    subject,
                                ));
                            }
                        }
                        Err(e) => errors.push(e),
                    }
                }
            }
            Err(e) => errors.push(format!("listing clusterrolebindings: {e}")),
        }
        if !attrs.namespace.is_empty() {
            let namespace = attrs.namespace.as_str();
            let roles = match self.source.roles(namespace).await {
                Ok(list) => list,
                Err(e) => {
                    errors.push(format!("listing roles in {namespace}: {e}"));
                    Vec::new()
                }
            };
            match self.source.role_bindings(namespace).await {
                Ok(bindings) => {
                    for binding in &bindings {
                        let Some(subject) =
                            applying_subject(&binding.subjects, &attrs.user, namespace)
                        else {
                            continue;
                        };
                        let rules =
                            match role_binding_rules(&binding.role_ref, &roles, &mut resolver) {
                                Ok(rules) => rules,
                                Err(e) => {
                                    errors.push(e);
                                    continue;
                                }
                            };
                        if rules.iter().any(|r| rule_allows(attrs, r)) {
                            let name = format!("{}/{namespace}", object_name(&binding.metadata));
                            return Decision::allow(allow_reason(
                                "RoleBinding",
                                &name,
                                &binding.role_ref,
                                subject,
                            ));
                        }
                    }
                }
                Err(e) => errors.push(format!("listing rolebindings in {namespace}: {e}")),
            }
        }
        Decision {
            evaluation_error: (!errors.is_empty()).then(|| errors.join("; ")),
            ..Decision::default()
        }
    }

    /// Every rule granted to `user` cluster-wide and, when `namespace` is not
    /// empty, in that namespace (the answer of SelfSubjectRulesReview).
    pub async fn rules_for(&self, user: &UserInfo, namespace: &str) -> GrantedRules {
        let mut granted = GrantedRules::default();
        let cluster_roles = match self.source.cluster_roles().await {
            Ok(list) => list,
            Err(e) => {
                granted.errors.push(format!("listing clusterroles: {e}"));
                Vec::new()
            }
        };
        let mut resolver = RoleResolver::new(&cluster_roles);
        match self.source.cluster_role_bindings().await {
            Ok(bindings) => {
                for binding in bindings
                    .iter()
                    .filter(|b| applying_subject(&b.subjects, user, "").is_some())
                {
                    if binding.role_ref.kind != "ClusterRole" {
                        continue;
                    }
                    match resolver.rules(&binding.role_ref.name) {
                        Ok(rules) => granted.rules.extend(rules.iter().cloned()),
                        Err(e) => granted.errors.push(e),
                    }
                }
            }
            Err(e) => granted
                .errors
                .push(format!("listing clusterrolebindings: {e}")),
        }
        if !namespace.is_empty() {
            let roles = self.source.roles(namespace).await.unwrap_or_else(|e| {
                granted
                    .errors
                    .push(format!("listing roles in {namespace}: {e}"));
                Vec::new()
            });
            match self.source.role_bindings(namespace).await {
                Ok(bindings) => {
                    for binding in bindings
                        .iter()
                        .filter(|b| applying_subject(&b.subjects, user, namespace).is_some())
                    {
                        match role_binding_rules(&binding.role_ref, &roles, &mut resolver) {
                            Ok(rules) => granted.rules.extend(rules),
                            Err(e) => granted.errors.push(e),
                        }
                    }
                }
                Err(e) => granted
                    .errors
                    .push(format!("listing rolebindings in {namespace}: {e}")),
            }
        }
        granted
    }
}

fn role_binding_rules(
    role_ref: &RoleRef,
    roles: &[Role],
    resolver: &mut RoleResolver<'_>,
) -> Result<Vec<PolicyRule>, String> {
    match role_ref.kind.as_str() {
        "Role" => roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(role_ref.name.as_str()))
            .map(|r| r.rules.clone().unwrap_or_default())
            .ok_or_else(|| {
                format!(
                    "role.rbac.authorization.k8s.io {:?} not found",
                    role_ref.name
                )
            }),
        "ClusterRole" => resolver.rules(&role_ref.name).map(|r| r.to_vec()),
        other => Err(format!("unsupported roleRef kind {other:?}")),
    }
}

fn allow_reason(
    binding_kind: &str,
    binding: &str,
    role_ref: &RoleRef,
    subject: &Subject,
) -> String {
    let subject_name = match (&subject.kind[..], &subject.namespace) {
        ("ServiceAccount", Some(ns)) if !ns.is_empty() => format!("{}/{ns}", subject.name),
        _ => subject.name.clone(),
    };
    format!(
        "RBAC: allowed by {binding_kind} {binding:?} of {} {:?} to {} {subject_name:?}",
        role_ref.kind, role_ref.name, subject.kind
    )
}

/// The first subject that names the user, one of their groups or their
/// service account. `namespace` is the binding's (empty for cluster
/// bindings); a ServiceAccount subject without a namespace defaults to it.
fn applying_subject<'s>(
    subjects: &'s Option<Vec<Subject>>,
    user: &UserInfo,
    namespace: &str,
) -> Option<&'s Subject> {
    subjects
        .as_deref()?
        .iter()
        .find(|s| subject_applies(s, user, namespace))
}

fn subject_applies(subject: &Subject, user: &UserInfo, namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => user.name == subject.name,
        "Group" => user.in_group(&subject.name),
        "ServiceAccount" => {
            let sa_namespace = subject
                .namespace
                .as_deref()
                .filter(|ns| !ns.is_empty())
                .unwrap_or(namespace);
            !sa_namespace.is_empty()
                && user.service_account() == Some((sa_namespace, subject.name.as_str()))
        }
        _ => false,
    }
}

/// Resolves ClusterRole names to rules, expanding aggregation, with a
/// per-decision cache.
struct RoleResolver<'r> {
    by_name: HashMap<&'r str, &'r ClusterRole>,
    all: &'r [ClusterRole],
    cache: HashMap<String, Arc<Vec<PolicyRule>>>,
}

impl<'r> RoleResolver<'r> {
    fn new(all: &'r [ClusterRole]) -> Self {
        Self {
            by_name: all
                .iter()
                .filter_map(|r| r.metadata.name.as_deref().map(|n| (n, r)))
                .collect(),
            all,
            cache: HashMap::new(),
        }
    }

    fn rules(&mut self, name: &str) -> Result<Arc<Vec<PolicyRule>>, String> {
        if let Some(rules) = self.cache.get(name) {
            return Ok(Arc::clone(rules));
        }
        let role = *self
            .by_name
            .get(name)
            .ok_or_else(|| format!("clusterrole.rbac.authorization.k8s.io {name:?} not found"))?;
        let mut visiting = BTreeSet::new();
        let rules = Arc::new(self.expand(role, &mut visiting));
        self.cache.insert(name.to_owned(), Arc::clone(&rules));
        Ok(rules)
    }

    fn expand(&self, role: &ClusterRole, visiting: &mut BTreeSet<String>) -> Vec<PolicyRule> {
        let name = object_name(&role.metadata);
        let selectors = match role
            .aggregation_rule
            .as_ref()
            .and_then(|a| a.cluster_role_selectors.as_ref())
        {
            Some(selectors) => selectors,
            None => return role.rules.clone().unwrap_or_default(),
        };
        visiting.insert(name.clone());
        let mut rules: Vec<PolicyRule> = Vec::new();
        for other in self.all {
            let other_name = object_name(&other.metadata);
            if visiting.contains(&other_name) {
                continue;
            }
            let labels = other.metadata.labels.clone().unwrap_or_default();
            if !selectors.iter().any(|s| selector_matches(s, &labels)) {
                continue;
            }
            for rule in self.expand(other, visiting) {
                if !rules.contains(&rule) {
                    rules.push(rule);
                }
            }
        }
        visiting.remove(&name);
        rules
    }
}

/// Kubernetes label-selector semantics: every `matchLabels` pair and every
/// `matchExpressions` requirement must hold; an empty selector matches all.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_ok = selector.match_expressions.iter().flatten().all(|req| {
        let values = req.values.as_deref().unwrap_or_default();
        let value = labels.get(&req.key);
        match req.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && expressions_ok
}

/// Whether one policy rule allows the request.
pub fn rule_allows(attrs: &Attributes, rule: &PolicyRule) -> bool {
    if !verb_matches(rule, &attrs.verb) {
        return false;
    }
    if attrs.is_resource_request {
        let combined = if attrs.subresource.is_empty() {
            attrs.resource.clone()
        } else {
            format!("{}/{}", attrs.resource, attrs.subresource)
        };
        api_group_matches(rule, &attrs.api_group)
            && resource_matches(rule, &combined, &attrs.resource, &attrs.subresource)
            && resource_name_matches(rule, &attrs.name)
    } else {
        non_resource_url_matches(rule, &attrs.non_resource_path)
    }
}

fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == "*" || v == verb)
}

fn api_group_matches(rule: &PolicyRule, group: &str) -> bool {
    rule.api_groups
        .iter()
        .flatten()
        .any(|g| g == "*" || g == group)
}

fn resource_matches(rule: &PolicyRule, combined: &str, resource: &str, subresource: &str) -> bool {
    rule.resources.iter().flatten().any(|r| {
        if r == "*" || r == combined {
            return true;
        }
        if subresource.is_empty() {
            return false;
        }
        // `*/scale` matches the scale subresource of any resource, and
        // `pods/*` any subresource of pods.
        r.strip_prefix("*/") == Some(subresource) || r.strip_suffix("/*") == Some(resource)
    })
}

fn resource_name_matches(rule: &PolicyRule, name: &str) -> bool {
    match rule.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => names.iter().any(|n| n == name),
    }
}

fn non_resource_url_matches(rule: &PolicyRule, path: &str) -> bool {
    rule.non_resource_urls.iter().flatten().any(|url| {
        url == "*"
            || url == path
            || url
                .strip_suffix('*')
                .is_some_and(|prefix| path.starts_with(prefix))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
        PolicyRule {
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
            resources: Some(resources.iter().map(|s| s.to_string()).collect()),
            ..PolicyRule::default()
        }
    }

    fn get(resource: &str, subresource: &str) -> Attributes {
        Attributes::resource(UserInfo::default(), "get", "ns", "apps", resource)
            .with_subresource(subresource)
    }

    #[test]
    fn resource_forms() {
        let scale = rule(&["get"], &["apps"], &["*/scale"]);
        assert!(rule_allows(&get("deployments", "scale"), &scale));
        assert!(!rule_allows(&get("deployments", "status"), &scale));
        assert!(!rule_allows(&get("deployments", ""), &scale));
        let all_sub = rule(&["get"], &["apps"], &["deployments/*"]);
        assert!(rule_allows(&get("deployments", "status"), &all_sub));
        assert!(!rule_allows(&get("deployments", ""), &all_sub));
        assert!(!rule_allows(&get("replicasets", "status"), &all_sub));
        let exact = rule(&["get"], &["apps"], &["deployments"]);
        assert!(!rule_allows(&get("deployments", "scale"), &exact));
        let star = rule(&["*"], &["*"], &["*"]);
        assert!(rule_allows(&get("deployments", "scale"), &star));
        let core = rule(&["get"], &[""], &["*"]);
        assert!(!rule_allows(&get("deployments", ""), &core));
    }

    #[test]
    fn non_resource_urls() {
        let r = PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: Some(vec!["/healthz".into(), "/apis/*".into()]),
            ..PolicyRule::default()
        };
        let at = |p: &str| Attributes::non_resource(UserInfo::default(), "get", p);
        assert!(rule_allows(&at("/healthz"), &r));
        assert!(!rule_allows(&at("/healthz/etcd"), &r));
        assert!(rule_allows(&at("/apis/apps/v1"), &r));
        assert!(!rule_allows(&at("/apis"), &r));
        // A resource rule never matches a non-resource request.
        assert!(!rule_allows(&at("/healthz"), &rule(&["*"], &["*"], &["*"])));
    }

    #[test]
    fn selectors() {
        let labels: BTreeMap<String, String> =
            [("a".to_owned(), "1".to_owned())].into_iter().collect();
        let req = |op: &str, values: &[&str]| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: op.into(),
                values: Some(values.iter().map(|s| s.to_string()).collect()),
            }]),
            ..LabelSelector::default()
        };
        assert!(selector_matches(&LabelSelector::default(), &labels));
        assert!(selector_matches(&req("In", &["1", "2"]), &labels));
        assert!(!selector_matches(&req("NotIn", &["1"]), &labels));
        assert!(selector_matches(&req("Exists", &[]), &labels));
        assert!(!selector_matches(&req("DoesNotExist", &[]), &labels));
        assert!(!selector_matches(&req("Bogus", &[]), &labels));
    }
}
