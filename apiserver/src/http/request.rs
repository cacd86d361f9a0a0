//! Request attributes: what a URL and method mean to Kubernetes (the
//! RequestInfo of kube-apiserver) and the typed query options.

use serde_json::Value;

use super::selector::{FieldSelector, LabelSelector};
use super::status::{ApiError, StatusCause};

/// The verb of a request, as RBAC and audit name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
    Proxy,
    /// Non-resource requests other than GET use the lowercased method
    /// (`post`, `put`, `head`, ...).
    Other(String),
}

impl Verb {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Watch => "watch",
            Self::Create => "create",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::DeleteCollection => "deletecollection",
            Self::Proxy => "proxy",
            Self::Other(verb) => verb,
        }
    }
}

/// `fieldValidation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Strict,
    /// The default when the parameter is absent.
    #[default]
    Warn,
    Ignore,
}

/// `resourceVersionMatch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceVersionMatch {
    NotOlderThan,
    Exact,
}

/// `propagationPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropagationPolicy {
    Orphan,
    Background,
    Foreground,
}

impl PropagationPolicy {
    /// The value as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Orphan => "Orphan",
            Self::Background => "Background",
            Self::Foreground => "Foreground",
        }
    }
}

/// `includeObject` of Table requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    /// The default: a `PartialObjectMetadata` per row.
    #[default]
    Metadata,
    Object,
}

/// Every query parameter the API understands, parsed and checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryOptions {
    pub label_selector: Option<LabelSelector>,
    pub field_selector: Option<FieldSelector>,
    pub limit: Option<i64>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<ResourceVersionMatch>,
    pub watch: bool,
    pub allow_watch_bookmarks: bool,
    /// `timeoutSeconds` (list and watch).
    pub timeout_seconds: Option<i64>,
    pub send_initial_events: Option<bool>,
    /// `dryRun=All`.
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub field_validation: FieldValidation,
    /// `force` (server-side apply), `None` when not given: kube refuses
    /// any value of it on other patches.
    pub force: Option<bool>,
    pub propagation_policy: Option<PropagationPolicy>,
    /// The deprecated `orphanDependents` of a delete (query or body),
    /// folded into `propagation_policy`; kube refuses both together.
    pub orphan_dependents: Option<bool>,
    pub grace_period_seconds: Option<i64>,
    /// `preconditions.uid` / `preconditions.resourceVersion` of a DeleteOptions body.
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub include_object: IncludeObject,
    pub pretty: bool,
    /// Parameters the API does not interpret (`container`, `follow`,
    /// `timeout`, ...), in order, decoded.
    pub other: Vec<(String, String)>,
}

impl QueryOptions {
    /// Parses a raw query string (without `?`).
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let mut options = Self::default();
        for (key, value) in parse_query(query) {
            options.set(&key, &value)?;
        }
        Ok(options)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), ApiError> {
        match key {
            "labelSelector" => {
                if !value.trim().is_empty() {
                    self.label_selector = Some(LabelSelector::parse(value)?);
                }
            }
            "fieldSelector" => {
                if !value.trim().is_empty() {
                    self.field_selector = Some(FieldSelector::parse(value)?);
                }
            }
            "limit" => self.limit = Some(int_param(key, value)?).filter(|l| *l > 0),
            "continue" => self.continue_token = Some(value.to_owned()).filter(|v| !v.is_empty()),
            "resourceVersion" => {
                self.resource_version = Some(value.to_owned()).filter(|v| !v.is_empty())
            }
            "resourceVersionMatch" => {
                self.resource_version_match = match value {
                    "" => None,
                    "NotOlderThan" => Some(ResourceVersionMatch::NotOlderThan),
                    "Exact" => Some(ResourceVersionMatch::Exact),
                    other => return Err(unsupported(key, other, &["Exact", "NotOlderThan"])),
                }
            }
            "watch" => self.watch = bool_param(key, value)?,
            "allowWatchBookmarks" => self.allow_watch_bookmarks = bool_param(key, value)?,
            "timeoutSeconds" => self.timeout_seconds = Some(int_param(key, value)?),
            "sendInitialEvents" => self.send_initial_events = Some(bool_param(key, value)?),
            "dryRun" => {
                self.dry_run = match value {
                    "" => false,
                    "All" => true,
                    other => return Err(unsupported(key, other, &["All"])),
                }
            }
            "fieldManager" => self.field_manager = Some(value.to_owned()).filter(|v| !v.is_empty()),
            "fieldValidation" => {
                self.field_validation = match value {
                    "" | "Warn" => FieldValidation::Warn,
                    "Strict" => FieldValidation::Strict,
                    "Ignore" => FieldValidation::Ignore,
                    other => {
                        return Err(unsupported(key, other, &["Ignore", "Strict", "Warn"]));
                    }
                }
            }
            "force" => self.force = Some(bool_param(key, value)?),
            "orphanDependents" => self.orphan_dependents = Some(bool_param(key, value)?),
            "propagationPolicy" => self.propagation_policy = Some(propagation(value)?),
            "gracePeriodSeconds" => self.grace_period_seconds = Some(int_param(key, value)?),
            "includeObject" => {
                self.include_object = match value {
                    "" | "Metadata" => IncludeObject::Metadata,
                    "None" => IncludeObject::None,
                    "Object" => IncludeObject::Object,
                    other => {
                        return Err(unsupported(key, other, &["Metadata", "None", "Object"]));
                    }
                }
            }
            "pretty" => self.pretty = bool_param(key, value)?,
            _ => self.other.push((key.to_owned(), value.to_owned())),
        }
        Ok(())
    }

    /// `force=true` of a server-side apply.
    pub fn forced(&self) -> bool {
        self.force == Some(true)
    }

    /// Folds the query's `orphanDependents` into the propagation policy,
    /// refusing it next to `propagationPolicy` as kube's DeleteOptions
    /// validation does (422).
    pub fn resolve_delete_query(&mut self) -> Result<(), ApiError> {
        if let Some(orphan) = self.orphan_dependents {
            match self.propagation_policy {
                Some(policy) => return Err(both_orphan_and_propagation(policy)),
                None => self.propagation_policy = Some(propagation_of_orphan(orphan)),
            }
        }
        Ok(())
    }

    /// Takes the options of a `DeleteOptions` body (kubectl sends
    /// `{"propagationPolicy":"Background"}`); query parameters win. A body
    /// with both `orphanDependents` and `propagationPolicy` is a 422.
    pub fn merge_delete_options(&mut self, body: &Value) -> Result<(), ApiError> {
        let body_policy = body.get("propagationPolicy").and_then(Value::as_str);
        let body_orphan = body.get("orphanDependents").and_then(Value::as_bool);
        if let (Some(policy), Some(_)) = (body_policy, body_orphan) {
            return Err(both_orphan_and_propagation(propagation(policy)?));
        }
        if let Some(policy) = body_policy
            && self.propagation_policy.is_none()
        {
            self.propagation_policy = Some(propagation(policy)?);
        }
        if let Some(grace) = body.get("gracePeriodSeconds").and_then(Value::as_i64) {
            self.grace_period_seconds.get_or_insert(grace);
        }
        if let Some(orphan) = body_orphan {
            self.orphan_dependents.get_or_insert(orphan);
            if self.propagation_policy.is_none() {
                self.propagation_policy = Some(propagation_of_orphan(orphan));
            }
        }
        if let Some(dry_run) = body.get("dryRun").and_then(Value::as_array)
            && dry_run.iter().any(|v| v == "All")
        {
            self.dry_run = true;
        }
        if let Some(pre) = body.get("preconditions") {
            self.precondition_uid = pre.get("uid").and_then(Value::as_str).map(str::to_owned);
            self.precondition_resource_version = pre
                .get("resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        Ok(())
    }

    /// The ListOptions rules kube-apiserver enforces for list and watch
    /// (resourceVersionMatch, continue, sendInitialEvents); 422 Invalid.
    pub fn validate_list_options(&self, verb: &Verb) -> Result<(), ApiError> {
        let watch = *verb == Verb::Watch;
        let mut causes = Vec::new();
        let mut forbid = |field: &str, message: &str| {
            causes.push(StatusCause {
                reason: "FieldValueForbidden".into(),
                message: format!("Forbidden: {message}"),
                field: field.into(),
            });
        };
        let send_initial_events = self.send_initial_events.is_some();
        if let Some(rv_match) = self.resource_version_match {
            if watch && !send_initial_events {
                forbid(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden for watch",
                );
            }
            if self.resource_version.is_none() && !send_initial_events {
                forbid(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                );
            }
            if self.continue_token.is_some() {
                forbid(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden when continue is provided",
                );
            }
            if rv_match == ResourceVersionMatch::Exact
                && self.resource_version.as_deref() == Some("0")
            {
                forbid(
                    "resourceVersionMatch",
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                );
            }
        }
        if send_initial_events {
            if !watch {
                forbid(
                    "sendInitialEvents",
                    "sendInitialEvents is forbidden for list",
                );
            } else {
                if !self.allow_watch_bookmarks {
                    forbid(
                        "allowWatchBookmarks",
                        "sendInitialEvents requires setting allowWatchBookmarks to true",
                    );
                }
                if self.resource_version_match != Some(ResourceVersionMatch::NotOlderThan) {
                    forbid(
                        "resourceVersionMatch",
                        "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                    );
                }
            }
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(
                "meta.k8s.io",
                "ListOptions.meta.k8s.io",
                "",
                causes,
            ))
        }
    }

    /// A parameter kept in `other`.
    pub fn get_other(&self, key: &str) -> Option<&str> {
        self.other
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What a request is about.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestAttributes {
    /// The decoded path.
    pub path: String,
    /// False for `/version`, `/healthz`, `/openapi/...`, discovery roots.
    pub is_resource_request: bool,
    pub verb: Verb,
    /// `api` or `apis`; empty for non-resource requests.
    pub api_prefix: String,
    /// Empty for the core group.
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The path segments from the resource on.
    pub parts: Vec<String>,
    pub query: QueryOptions,
}

impl RequestAttributes {
    /// `group/version` (`v1` for the core group).
    pub fn group_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Parses a method, a path and a raw query into attributes.
    pub fn parse(method: &str, path: &str, query: &str) -> Result<Self, ApiError> {
        let mut query = QueryOptions::parse(query)?;
        if method == "DELETE" {
            query.resolve_delete_query()?;
        }
        let decoded = percent_decode(path);
        let segments: Vec<String> = decoded
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let method_verb = |method: &str| match method {
            "GET" | "HEAD" => Verb::Get,
            "POST" => Verb::Create,
            "PUT" => Verb::Update,
            "PATCH" => Verb::Patch,
            "DELETE" => Verb::Delete,
            other => Verb::Other(other.to_ascii_lowercase()),
        };
        let non_resource = || Self {
            path: decoded.clone(),
            is_resource_request: false,
            verb: match method {
                "GET" => Verb::Get,
                other => Verb::Other(other.to_ascii_lowercase()),
            },
            api_prefix: String::new(),
            group: String::new(),
            version: String::new(),
            namespace: None,
            resource: String::new(),
            name: None,
            subresource: None,
            parts: Vec::new(),
            query: query.clone(),
        };

        let (prefix, group, version, rest) = match segments.as_slice() {
            [p, version, rest @ ..] if p == "api" && !rest.is_empty() => {
                ("api", String::new(), version.clone(), rest)
            }
            [p, group, version, rest @ ..] if p == "apis" && !rest.is_empty() => {
                ("apis", group.clone(), version.clone(), rest)
            }
            _ => return Ok(non_resource()),
        };

        let mut parts: &[String] = rest;
        let mut verb = method_verb(method);
        if matches!(parts.first().map(String::as_str), Some("watch" | "proxy")) {
            if parts.len() < 2 {
                return Ok(non_resource());
            }
            verb = if parts[0] == "watch" {
                Verb::Watch
            } else {
                Verb::Proxy
            };
            parts = &parts[1..];
        }

        let mut namespace = None;
        if parts.first().map(String::as_str) == Some("namespaces")
            && let Some(ns) = parts.get(1)
        {
            namespace = Some(ns.clone());
            if parts.len() > 2 && !matches!(parts[2].as_str(), "status" | "finalize") {
                parts = &parts[2..];
            }
        }

        let resource = parts.first().cloned().unwrap_or_default();
        let mut name = parts.get(1).cloned();
        let subresource = parts.get(2).cloned();

        if name.is_none() && verb == Verb::Get {
            verb = if query.watch { Verb::Watch } else { Verb::List };
            if let Some(selected) = query
                .field_selector
                .as_ref()
                .and_then(|s| s.requires_exact_match("metadata.name"))
                && !selected.is_empty()
                && !selected.contains('/')
            {
                name = Some(selected.to_owned());
            }
        } else if verb == Verb::Get && query.watch {
            verb = Verb::Watch;
        }
        if name.is_none() && verb == Verb::Delete {
            verb = Verb::DeleteCollection;
        }

        Ok(Self {
            path: decoded.clone(),
            is_resource_request: true,
            verb,
            api_prefix: prefix.to_owned(),
            group,
            version,
            namespace,
            resource,
            name,
            subresource,
            parts: parts.to_vec(),
            query,
        })
    }
}

fn unsupported(key: &str, value: &str, allowed: &[&str]) -> ApiError {
    let allowed: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
    ApiError::bad_request(format!(
        "invalid {key} \"{value}\": supported values: {}",
        allowed.join(", ")
    ))
}

/// The policy the deprecated `orphanDependents` stands for.
fn propagation_of_orphan(orphan: bool) -> PropagationPolicy {
    if orphan {
        PropagationPolicy::Orphan
    } else {
        PropagationPolicy::Background
    }
}

/// kube's 422 for a DeleteOptions with `orphanDependents` and
/// `propagationPolicy` both set.
fn both_orphan_and_propagation(policy: PropagationPolicy) -> ApiError {
    ApiError::invalid(
        "meta.k8s.io",
        "DeleteOptions.meta.k8s.io",
        "",
        vec![StatusCause {
            reason: "FieldValueInvalid".into(),
            message: format!(
                "Invalid value: \"{}\": orphanDependents and deletionPropagation cannot be both set",
                policy.as_str()
            ),
            field: "propagationPolicy".into(),
        }],
    )
}

fn propagation(value: &str) -> Result<PropagationPolicy, ApiError> {
    match value {
        "Orphan" => Ok(PropagationPolicy::Orphan),
        "Background" => Ok(PropagationPolicy::Background),
        "Foreground" => Ok(PropagationPolicy::Foreground),
        other => Err(unsupported(
            "propagationPolicy",
            other,
            &["Background", "Foreground", "Orphan"],
        )),
    }
}

fn int_param(key: &str, value: &str) -> Result<i64, ApiError> {
    value
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid {key} \"{value}\": not an integer")))
}

fn bool_param(key: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "" | "true" | "1" | "True" | "TRUE" | "t" | "T" => Ok(true),
        "false" | "0" | "False" | "FALSE" | "f" | "F" => Ok(false),
        other => Err(ApiError::bad_request(format!(
            "invalid {key} \"{other}\": not a boolean"
        ))),
    }
}

/// Splits and decodes `a=b&c=d` (`+` is a space).
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&key.replace('+', " ")),
                percent_decode(&value.replace('+', " ")),
            )
        })
        .collect()
}

/// `%XX` decoding; malformed escapes are kept as they are.
pub fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        method: &'static str,
        url: &'static str,
        verb: &'static str,
        resource_request: bool,
        group: &'static str,
        version: &'static str,
        namespace: Option<&'static str>,
        resource: &'static str,
        name: Option<&'static str>,
        subresource: Option<&'static str>,
    }

    #[allow(clippy::too_many_arguments)]
    const fn case(
        method: &'static str,
        url: &'static str,
        verb: &'static str,
        group: &'static str,
        version: &'static str,
        namespace: Option<&'static str>,
        resource: &'static str,
        name: Option<&'static str>,
        subresource: Option<&'static str>,
    ) -> Case {
        Case {
            method,
            url,
            verb,
            resource_request: true,
            group,
            version,
            namespace,
            resource,
            name,
            subresource,
        }
    }

    const fn plain(method: &'static str, url: &'static str, verb: &'static str) -> Case {
        Case {
            method,
            url,
            verb,
            resource_request: false,
            group: "",
            version: "",
            namespace: None,
            resource: "",
            name: None,
            subresource: None,
        }
    }

    #[test]
    fn url_table() {
        let cases = [
            case(
                "GET",
                "/api/v1/pods",
                "list",
                "",
                "v1",
                None,
                "pods",
                None,
                None,
            ),
            case(
                "GET",
                "/api/v1/namespaces/default/pods",
                "list",
                "",
                "v1",
                Some("default"),
                "pods",
                None,
                None,
            ),
            case(
                "GET",
                "/api/v1/namespaces/default/pods/web",
                "get",
                "",
                "v1",
                Some("default"),
                "pods",
                Some("web"),
                None,
            ),
            case(
                "GET",
                "/api/v1/namespaces/default/pods/web/log?container=c",
                "get",
                "",
                "v1",
                Some("default"),
                "pods",
                Some("web"),
                Some("log"),
            ),
            case(
                "PUT",
                "/api/v1/namespaces/default/pods/web/status",
                "update",
                "",
                "v1",
                Some("default"),
                "pods",
                Some("web"),
                Some("status"),
            ),
            case(
                "GET",
                "/api/v1/namespaces/default/pods?watch=true",
                "watch",
                "",
                "v1",
                Some("default"),
                "pods",
                None,
                None,
            ),
            case(
                "GET",
                "/api/v1/namespaces/default/pods?watch=1&resourceVersion=5",
                "watch",
                "",
                "v1",
                Some("default"),
                "pods",
                None,
                None,
            ),
            case(
                "GET",
                "/api/v1/watch/namespaces/default/pods",
                "watch",
                "",
                "v1",
                Some("default"),
                "pods",
                None,
                None,
            ),
            case(
                "GET",
                "/api/v1/watch/pods",
                "watch",
                "",
                "v1",
                None,
                "pods",
                None,
                None,
            ),
            case(
                "GET",
                "/api/v1/namespaces",
                "list",
                "",
                "v1",
                None,
                "namespaces",
                None,
                None,
            ),
            case(
                "GET",
                "/api/v1/namespaces/kube-system",
                "get",
                "",
                "v1",
                Some("kube-system"),
                "namespaces",
                Some("kube-system"),
                None,
            ),
            case(
                "PUT",
                "/api/v1/namespaces/kube-system/finalize",
                "update",
                "",
                "v1",
                Some("kube-system"),
                "namespaces",
                Some("kube-system"),
                Some("finalize"),
            ),
            case(
                "PATCH",
                "/api/v1/namespaces/kube-system/status",
                "patch",
                "",
                "v1",
                Some("kube-system"),
                "namespaces",
                Some("kube-system"),
                Some("status"),
            ),
            case(
                "POST",
                "/api/v1/namespaces",
                "create",
                "",
                "v1",
                None,
                "namespaces",
                None,
                None,
            ),
            case(
                "DELETE",
                "/api/v1/namespaces/x",
                "delete",
                "",
                "v1",
                Some("x"),
                "namespaces",
                Some("x"),
                None,
            ),
            case(
                "GET",
                "/api/v1/nodes/n1",
                "get",
                "",
                "v1",
                None,
                "nodes",
                Some("n1"),
                None,
            ),
            case(
                "PATCH",
                "/api/v1/nodes/n1/status",
                "patch",
                "",
                "v1",
                None,
                "nodes",
                Some("n1"),
                Some("status"),
            ),
            case(
                "POST",
                "/apis/apps/v1/namespaces/default/deployments",
                "create",
                "apps",
                "v1",
                Some("default"),
                "deployments",
                None,
                None,
            ),
            case(
                "PATCH",
                "/apis/apps/v1/namespaces/default/deployments/web/scale",
                "patch",
                "apps",
                "v1",
                Some("default"),
                "deployments",
                Some("web"),
                Some("scale"),
            ),
            case(
                "DELETE",
                "/apis/apps/v1/namespaces/default/deployments",
                "deletecollection",
                "apps",
                "v1",
                Some("default"),
                "deployments",
                None,
                None,
            ),
            case(
                "GET",
                "/apis/apps/v1/deployments",
                "list",
                "apps",
                "v1",
                None,
                "deployments",
                None,
                None,
            ),
            case(
                "GET",
                "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/x",
                "get",
                "coordination.k8s.io",
                "v1",
                Some("kube-system"),
                "leases",
                Some("x"),
                None,
            ),
            case(
                "POST",
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                "create",
                "authorization.k8s.io",
                "v1",
                None,
                "selfsubjectaccessreviews",
                None,
                None,
            ),
            case(
                "GET",
                "/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3Dweb",
                "list",
                "",
                "v1",
                Some("default"),
                "pods",
                Some("web"),
                None,
            ),
            case(
                "GET",
                "/api/v1/namespaces/default/pods?fieldSelector=metadata.name%3Dweb&watch=true",
                "watch",
                "",
                "v1",
                Some("default"),
                "pods",
                Some("web"),
                None,
            ),
            case(
                "POST",
                "/api/v1/namespaces/default/serviceaccounts/default/token",
                "create",
                "",
                "v1",
                Some("default"),
                "serviceaccounts",
                Some("default"),
                Some("token"),
            ),
            plain("GET", "/version", "get"),
            plain("GET", "/healthz", "get"),
            plain("GET", "/api", "get"),
            plain("GET", "/api/v1", "get"),
            plain("GET", "/apis", "get"),
            plain("GET", "/apis/apps", "get"),
            plain("GET", "/apis/apps/v1", "get"),
            plain("GET", "/openapi/v3/apis/apps/v1", "get"),
            plain("POST", "/logs", "post"),
            plain("GET", "/api/v1/watch", "get"),
        ];
        for c in cases {
            let (path, query) = c.url.split_once('?').unwrap_or((c.url, ""));
            let got = RequestAttributes::parse(c.method, path, query).expect(c.url);
            assert_eq!(got.verb.as_str(), c.verb, "verb of {}", c.url);
            assert_eq!(got.is_resource_request, c.resource_request, "{}", c.url);
            assert_eq!(got.group, c.group, "{}", c.url);
            assert_eq!(got.version, c.version, "{}", c.url);
            assert_eq!(got.namespace.as_deref(), c.namespace, "{}", c.url);
            assert_eq!(got.resource, c.resource, "{}", c.url);
            assert_eq!(got.name.as_deref(), c.name, "{}", c.url);
            assert_eq!(got.subresource.as_deref(), c.subresource, "{}", c.url);
        }
    }

    #[test]
    fn query_options() {
        let q = QueryOptions::parse(
            "labelSelector=app%3Dweb&limit=500&continue=abc&resourceVersion=12&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=30&sendInitialEvents=true&dryRun=All&fieldManager=kubectl-create&fieldValidation=Strict&propagationPolicy=Foreground&gracePeriodSeconds=0&includeObject=Object&pretty=true&container=c1",
        )
        .expect("parse");
        assert!(q.label_selector.is_some());
        assert_eq!(q.limit, Some(500));
        assert_eq!(q.continue_token.as_deref(), Some("abc"));
        assert_eq!(q.resource_version.as_deref(), Some("12"));
        assert_eq!(
            q.resource_version_match,
            Some(ResourceVersionMatch::NotOlderThan)
        );
        assert!(q.allow_watch_bookmarks);
        assert_eq!(q.timeout_seconds, Some(30));
        assert_eq!(q.send_initial_events, Some(true));
        assert!(q.dry_run);
        assert_eq!(q.field_manager.as_deref(), Some("kubectl-create"));
        assert_eq!(q.field_validation, FieldValidation::Strict);
        assert_eq!(q.propagation_policy, Some(PropagationPolicy::Foreground));
        assert_eq!(q.grace_period_seconds, Some(0));
        assert_eq!(q.include_object, IncludeObject::Object);
        assert!(q.pretty);
        assert_eq!(q.get_other("container"), Some("c1"));
    }

    #[test]
    fn bad_query_values() {
        for bad in [
            "limit=x",
            "fieldValidation=Loud",
            "dryRun=Some",
            "propagationPolicy=Now",
            "includeObject=All",
            "watch=maybe",
            "resourceVersionMatch=Newest",
            "labelSelector=a%20in%20(",
        ] {
            let err = QueryOptions::parse(bad).expect_err(bad);
            assert_eq!(err.code, 400, "{bad}");
        }
    }

    #[test]
    fn delete_options_body() {
        let mut q = QueryOptions::default();
        q.merge_delete_options(&serde_json::json!({
            "kind": "DeleteOptions", "propagationPolicy": "Background", "gracePeriodSeconds": 5,
            "preconditions": {"uid": "u1"}, "dryRun": ["All"]
        }))
        .expect("merge");
        assert_eq!(q.propagation_policy, Some(PropagationPolicy::Background));
        assert_eq!(q.grace_period_seconds, Some(5));
        assert_eq!(q.precondition_uid.as_deref(), Some("u1"));
        assert!(q.dry_run);
        let mut orphan = QueryOptions::default();
        orphan
            .merge_delete_options(&serde_json::json!({"orphanDependents": true}))
            .expect("merge");
        assert_eq!(orphan.propagation_policy, Some(PropagationPolicy::Orphan));
    }

    #[test]
    fn orphan_dependents_next_to_a_propagation_policy_is_invalid() {
        let path = "/api/v1/namespaces/default/configmaps/cm";
        let err = RequestAttributes::parse(
            "DELETE",
            path,
            "orphanDependents=true&propagationPolicy=Foreground",
        )
        .expect_err("both in the query");
        assert_eq!(err.code, 422, "{err:?}");
        assert_eq!(
            err.message,
            "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Invalid value: \"Foreground\": orphanDependents and deletionPropagation cannot be both set"
        );
        let orphan = RequestAttributes::parse("DELETE", path, "orphanDependents=false")
            .expect("orphanDependents alone");
        assert_eq!(
            orphan.query.propagation_policy,
            Some(PropagationPolicy::Background)
        );
        let mut body = QueryOptions::default();
        let err = body
            .merge_delete_options(&serde_json::json!({
                "orphanDependents": false, "propagationPolicy": "Orphan"
            }))
            .expect_err("both in the body");
        assert_eq!(err.code, 422, "{err:?}");
        assert_eq!(err.details.causes[0].field, "propagationPolicy");
        // A null orphanDependents is not set.
        QueryOptions::default()
            .merge_delete_options(&serde_json::json!({
                "orphanDependents": null, "propagationPolicy": "Orphan"
            }))
            .expect("null is unset");
    }

    #[test]
    fn list_option_rules() {
        let check = |query: &str, verb: Verb| {
            QueryOptions::parse(query)
                .expect(query)
                .validate_list_options(&verb)
        };
        assert!(
            check(
                "resourceVersion=5&resourceVersionMatch=NotOlderThan",
                Verb::List
            )
            .is_ok()
        );
        assert!(
            check(
                "allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&sendInitialEvents=true",
                Verb::Watch
            )
            .is_ok()
        );
        assert!(check("resourceVersion=7", Verb::Watch).is_ok());
        for (query, verb, needle) in [
            (
                "resourceVersionMatch=Exact",
                Verb::List,
                "unless resourceVersion is provided",
            ),
            (
                "resourceVersion=0&resourceVersionMatch=Exact",
                Verb::List,
                "forbidden for resourceVersion \"0\"",
            ),
            (
                "resourceVersion=5&resourceVersionMatch=Exact&continue=x",
                Verb::List,
                "when continue is provided",
            ),
            (
                "resourceVersion=5&resourceVersionMatch=NotOlderThan",
                Verb::Watch,
                "forbidden for watch",
            ),
            ("sendInitialEvents=true", Verb::List, "forbidden for list"),
            (
                "sendInitialEvents=true&resourceVersionMatch=NotOlderThan",
                Verb::Watch,
                "allowWatchBookmarks",
            ),
            (
                "sendInitialEvents=true&allowWatchBookmarks=true",
                Verb::Watch,
                "NotOlderThan",
            ),
        ] {
            let err = check(query, verb).expect_err(query);
            assert_eq!(err.code, 422, "{query}");
            assert!(err.message.contains(needle), "{query}: {}", err.message);
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%3Db%2Cc"), "a=b,c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(
            parse_query("a=x+y&b"),
            vec![("a".into(), "x y".into()), ("b".into(), "".into())]
        );
    }
}
