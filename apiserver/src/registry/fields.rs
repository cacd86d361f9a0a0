//! Object helpers: metadata accessors, identifiers and timestamps, and the
//! strict field check (`fieldValidation=Strict`) against the OpenAPI
//! schema of a kind.

use serde_json::{Map, Value};

use crate::openapi::{FieldType, Schema};

/// `metadata.<field>` as a string.
pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str()
}

/// The `metadata` map, created when missing (or not a map).
pub fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    let meta = object_mut(object)
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    object_mut(meta)
}

/// The object's top-level map (made one if it is not).
pub fn object_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = Value::Object(Map::new());
    }
    match object {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// `metadata.finalizers` is present and non-empty.
pub fn has_finalizers(object: &Value) -> bool {
    object
        .get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

fn random_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; N];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // Fall back to the clock: uniqueness, not secrecy, is what matters here.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (nanos >> ((i % 16) * 8)) as u8;
        }
    }
    bytes
}

/// A random (version 4) UUID.
pub fn new_uid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The 5-character suffix of `generateName` (kube's alphabet: no vowels
/// and no confusable digits).
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    random_bytes::<5>()
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// The current time as RFC 3339 with second precision.
pub fn now_rfc3339() -> String {
    crate::http::clock::format_rfc3339(crate::http::clock::now())
}

/// Field paths of `value` that `schema` does not declare, dotted as kube
/// prints them (`spec.template.spec.containers[0].foo`).
pub fn unknown_fields(value: &Value, schema: Schema<'_>) -> Vec<String> {
    let mut out = Vec::new();
    walk(value, schema, "", &mut out, 0);
    out
}

/// Removes the fields of `value` that `schema` does not declare
/// (`fieldValidation=Warn` and `Ignore`); returns their paths as
/// [`unknown_fields`] names them.
pub fn prune_unknown_fields(value: &mut Value, schema: Schema<'_>) -> Vec<String> {
    let mut out = Vec::new();
    prune(value, schema, "", &mut out, 0);
    out
}

fn prune(value: &mut Value, schema: Schema<'_>, path: &str, out: &mut Vec<String>, depth: usize) {
    if depth > 64
        || schema
            .resolved()
            .get("x-kubernetes-preserve-unknown-fields")
            .and_then(Value::as_bool)
            == Some(true)
    {
        return;
    }
    match (schema.field_type(), value) {
        (FieldType::Object, Value::Object(map)) => {
            map.retain(|key, child| {
                let child_path = join(path, key);
                match schema.property(key) {
                    Some(child_schema) => {
                        prune(child, child_schema, &child_path, out, depth + 1);
                        true
                    }
                    None => {
                        out.push(child_path);
                        false
                    }
                }
            });
        }
        (FieldType::Map, Value::Object(map)) => {
            if let Some(values) = schema.additional_properties() {
                for (key, child) in map.iter_mut() {
                    prune(child, values, &join(path, key), out, depth + 1);
                }
            }
        }
        (FieldType::Array, Value::Array(items)) => {
            if let Some(item_schema) = schema.items() {
                for (i, child) in items.iter_mut().enumerate() {
                    prune(child, item_schema, &format!("{path}[{i}]"), out, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(value: &Value, schema: Schema<'_>, path: &str, out: &mut Vec<String>, depth: usize) {
    if depth > 64 {
        return;
    }
    if schema
        .resolved()
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return;
    }
    match (schema.field_type(), value) {
        (FieldType::Object, Value::Object(map)) => {
            for (key, child) in map {
                let child_path = join(path, key);
                match schema.property(key) {
                    Some(child_schema) => walk(child, child_schema, &child_path, out, depth + 1),
                    None => out.push(child_path),
                }
            }
        }
        (FieldType::Map, Value::Object(map)) => {
            if let Some(values) = schema.additional_properties() {
                for (key, child) in map {
                    walk(child, values, &join(path, key), out, depth + 1);
                }
            }
        }
        (FieldType::Array, Value::Array(items)) => {
            if let Some(item_schema) = schema.items() {
                for (i, child) in items.iter().enumerate() {
                    walk(child, item_schema, &format!("{path}[{i}]"), out, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// kube's wording for unknown fields under `fieldValidation=Strict`.
pub fn strict_message(unknown: &[String]) -> String {
    let listed: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    format!("strict decoding error: {}", listed.join(", "))
}

/// `matchLabels` (and `In`/`Equals` expressions) as a selector string,
/// for the Scale subresource's `status.selector`.
pub fn selector_string(selector: Option<&Value>) -> String {
    let Some(selector) = selector else {
        return String::new();
    };
    let mut parts = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e.get("operator").and_then(Value::as_str) {
                Some("In") => parts.push(format!("{key} in ({})", values.join(","))),
                Some("NotIn") => parts.push(format!("{key} notin ({})", values.join(","))),
                Some("Exists") => parts.push(key.to_owned()),
                Some("DoesNotExist") => parts.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openapi::{Definitions, GroupVersionKind};
    use serde_json::json;

    #[test]
    fn uids_are_v4_shaped_and_distinct() {
        let a = new_uid();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, new_uid());
        assert_eq!(name_suffix().len(), 5);
    }

    #[test]
    fn unknown_fields_found_with_paths() {
        let defs = Definitions::embedded().expect("definitions");
        let schema = defs
            .for_gvk(&GroupVersionKind::new("apps", "v1", "Deployment"))
            .expect("schema");
        let object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"a": "b"}},
            "spec": {"foo": 1, "template": {"spec": {"containers": [{"name": "c", "bar": 2}]}}}
        });
        assert_eq!(
            unknown_fields(&object, schema),
            ["spec.foo", "spec.template.spec.containers[0].bar"]
        );
        assert_eq!(
            strict_message(&["spec.foo".into()]),
            "strict decoding error: unknown field \"spec.foo\""
        );
    }

    #[test]
    fn unknown_fields_pruned() {
        let defs = Definitions::embedded().expect("definitions");
        let schema = defs
            .for_gvk(&GroupVersionKind::new("apps", "v1", "Deployment"))
            .expect("schema");
        let mut object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"a.b/c": "d"}},
            "spec": {"foo": 1, "replicas": 2, "template": {"spec": {"containers": [{"name": "c", "bar": 2}]}}}
        });
        assert_eq!(
            prune_unknown_fields(&mut object, schema),
            ["spec.foo", "spec.template.spec.containers[0].bar"]
        );
        assert_eq!(
            object["spec"],
            json!({"replicas": 2, "template": {"spec": {"containers": [{"name": "c"}]}}})
        );
        assert_eq!(object["metadata"]["labels"]["a.b/c"], "d");
        assert!(unknown_fields(&object, schema).is_empty());
    }

    #[test]
    fn selector_strings() {
        let s = json!({"matchLabels": {"app": "web"}});
        assert_eq!(selector_string(Some(&s)), "app=web");
    }
}
