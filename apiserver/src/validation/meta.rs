//! ObjectMeta rules shared by every kind.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

use super::FieldError;
use super::names::{
    is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_path_segment_name,
    is_qualified_name, is_valid_label_value,
};
use super::path::{Errs, Path, field, immutable, str_field, string_map};
use crate::openapi::GroupVersionKind;
use crate::resources::builtin_resources;

/// Total size of all annotation keys and values.
pub(crate) const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;
/// CronJob names leave room for the 11-character Job suffix.
const CRONJOB_NAME_MAX: usize = 52;

#[derive(Clone, Copy)]
enum NameRule {
    Subdomain,
    Label,
    Dns1035,
    PathSegment,
}

fn name_rule(gvk: &GroupVersionKind) -> NameRule {
    match (gvk.group.as_str(), gvk.kind.as_str()) {
        ("", "Namespace") => NameRule::Label,
        ("", "Service") => NameRule::Dns1035,
        ("rbac.authorization.k8s.io", _) | ("certificates.k8s.io", _) => NameRule::PathSegment,
        _ => NameRule::Subdomain,
    }
}

fn check_name(rule: NameRule, name: &str, prefix: bool) -> Vec<String> {
    // A generateName prefix may end in '-' (a suffix is appended).
    let name = if prefix {
        match rule {
            NameRule::PathSegment => name,
            _ => name
                .strip_suffix('-')
                .map_or(name, |s| if s.is_empty() { name } else { s }),
        }
    } else {
        name
    };
    match rule {
        NameRule::Subdomain => is_dns1123_subdomain(name),
        NameRule::Label => is_dns1123_label(name),
        NameRule::Dns1035 => is_dns1035_label(name),
        NameRule::PathSegment => is_path_segment_name(name),
    }
}

/// Whether the kind is namespaced (from the served resource table);
/// unknown kinds are treated as namespaced.
pub(crate) fn is_namespaced(gvk: &GroupVersionKind) -> bool {
    static SCOPES: OnceLock<HashMap<(String, String), bool>> = OnceLock::new();
    let scopes = SCOPES.get_or_init(|| {
        builtin_resources()
            .into_iter()
            .map(|r| ((r.group, r.kind), r.namespaced))
            .collect()
    });
    scopes
        .get(&(gvk.group.clone(), gvk.kind.clone()))
        .copied()
        .unwrap_or(true)
}

/// Labels: qualified-name keys, label values.
pub(crate) fn validate_labels(obj: &Value, key: &str, path: &Path, errs: &mut Errs) {
    let p = path.child(key);
    for (k, v) in string_map(obj, key, path, errs) {
        for msg in is_qualified_name(k) {
            errs.push(FieldError::invalid(&p, &Value::from(k), &msg));
        }
        for msg in is_valid_label_value(v) {
            errs.push(FieldError::invalid(&p, &Value::from(v), &msg));
        }
    }
}

fn validate_annotations(meta: &Value, path: &Path, errs: &mut Errs) {
    let p = path.child("annotations");
    let mut total = 0usize;
    for (k, v) in string_map(meta, "annotations", path, errs) {
        for msg in is_qualified_name(&k.to_ascii_lowercase()) {
            errs.push(FieldError::invalid(&p, &Value::from(k), &msg));
        }
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE {
        errs.push(FieldError::too_long(&p, TOTAL_ANNOTATION_SIZE));
    }
}

fn validate_finalizers(meta: &Value, path: &Path, errs: &mut Errs) {
    let p = path.child("finalizers");
    let Some(list) = super::path::array_field(meta, "finalizers", path, errs) else {
        return;
    };
    let mut seen = Vec::new();
    for (i, f) in list.iter().enumerate() {
        let Some(s) = f.as_str() else {
            errs.push(FieldError::invalid(p.index(i), f, "must be of type string"));
            continue;
        };
        for msg in is_qualified_name(s) {
            errs.push(FieldError::invalid(&p, f, &msg));
        }
        if seen.contains(&s) {
            errs.push(FieldError::duplicate(p.index(i), f));
        }
        seen.push(s);
    }
}

/// ObjectMeta of a top-level object, create and update.
pub(crate) fn validate_object_meta(
    gvk: &GroupVersionKind,
    object: &Value,
    old: Option<&Value>,
    errs: &mut Errs,
) {
    let path = Path::root("metadata");
    let meta = field(object, "metadata");
    if !meta.is_object() {
        if meta.is_null() {
            errs.push(FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        } else {
            errs.push(FieldError::invalid(&path, meta, "must be of type object"));
        }
        return;
    }
    let rule = name_rule(gvk);
    let name = str_field(meta, "name", &path, errs).unwrap_or("");
    let generate = str_field(meta, "generateName", &path, errs).unwrap_or("");
    if !generate.is_empty() {
        for msg in check_name(rule, generate, true) {
            errs.push(FieldError::invalid(
                path.child("generateName"),
                &Value::from(generate),
                &msg,
            ));
        }
    }
    if name.is_empty() {
        if generate.is_empty() {
            errs.push(FieldError::required(
                path.child("name"),
                "name or generateName is required",
            ));
        }
    } else {
        for msg in check_name(rule, name, false) {
            errs.push(FieldError::invalid(
                path.child("name"),
                &Value::from(name),
                &msg,
            ));
        }
        if gvk.group == "batch" && gvk.kind == "CronJob" && name.len() > CRONJOB_NAME_MAX {
            errs.push(FieldError::invalid(
                path.child("name"),
                &Value::from(name),
                &format!("must be no more than {CRONJOB_NAME_MAX} characters"),
            ));
        }
    }
    let namespace = str_field(meta, "namespace", &path, errs).unwrap_or("");
    if is_namespaced(gvk) {
        if namespace.is_empty() {
            errs.push(FieldError::required(path.child("namespace"), ""));
        } else {
            for msg in is_dns1123_label(namespace) {
                errs.push(FieldError::invalid(
                    path.child("namespace"),
                    &Value::from(namespace),
                    &msg,
                ));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            path.child("namespace"),
            "not allowed on this type",
        ));
    }
    validate_labels(meta, "labels", &path, errs);
    validate_annotations(meta, &path, errs);
    validate_finalizers(meta, &path, errs);
    if let Some(refs) = super::path::array_field(meta, "ownerReferences", &path, errs) {
        let p = path.child("ownerReferences");
        let mut controllers = 0;
        for (i, r) in refs.iter().enumerate() {
            let rp = p.index(i);
            for key in ["apiVersion", "kind", "name", "uid"] {
                if str_field(r, key, &rp, errs).unwrap_or("").is_empty() {
                    let detail = match key {
                        "apiVersion" => "version must not be empty",
                        "kind" => "kind must not be empty",
                        "name" => "name must not be empty",
                        _ => "uid must not be empty",
                    };
                    errs.push(FieldError::invalid(rp.child(key), field(r, key), detail));
                }
            }
            if r.get("controller").and_then(Value::as_bool) == Some(true) {
                controllers += 1;
            }
        }
        if controllers > 1 {
            errs.push(FieldError::invalid(
                &p,
                field(meta, "ownerReferences"),
                "Only one reference can have Controller set to true",
            ));
        }
    }
    if let Some(old) = old {
        let old_meta = field(old, "metadata");
        for key in ["name", "namespace", "uid", "creationTimestamp"] {
            // An update may leave uid/creationTimestamp out; the registry
            // fills them from the stored object before validating.
            immutable(meta, old_meta, key, &path, errs);
        }
    }
}
