//! core/v1 ConfigMap, Secret, Namespace, ServiceAccount.

use base64::Engine as _;
use serde_json::Value;

use super::FieldError;
use super::names::{is_config_key, is_qualified_name};
use super::path::{Errs, Path, array_field, bool_field, field, immutable, object_field, str_field};

/// ConfigMaps and Secrets may hold at most 1 MiB of data.
pub(crate) const MAX_DATA_SIZE: usize = 1024 * 1024;

/// Validates the keys of `data`/`binaryData` (or `stringData`), returning
/// the total size counted.
fn validate_keys(
    object: &Value,
    key: &str,
    base64_values: bool,
    seen: &mut Vec<String>,
    errs: &mut Errs,
) -> usize {
    let root = Path::default();
    let mut total = 0;
    let Some(map) = object_field(object, key, &root, errs) else {
        return 0;
    };
    let p = Path::root(key);
    for (k, v) in map {
        let kp = p.key(k);
        for msg in is_config_key(k) {
            errs.push(FieldError::invalid(&kp, &Value::from(k.as_str()), &msg));
        }
        if seen.contains(k) {
            errs.push(FieldError::invalid(
                &kp,
                &Value::from(k.as_str()),
                "duplicate of key present in binaryData",
            ));
        }
        seen.push(k.clone());
        match v {
            Value::String(s) if base64_values => {
                match base64::engine::general_purpose::STANDARD.decode(s) {
                    Ok(bytes) => total += bytes.len(),
                    Err(_) => errs.push(FieldError::invalid(
                        &kp,
                        &Value::from("<value omitted>"),
                        "illegal base64 data",
                    )),
                }
            }
            Value::String(s) => total += s.len(),
            Value::Null => {}
            other => errs.push(FieldError::invalid(&kp, other, "must be of type string")),
        }
    }
    total
}

fn immutable_data(object: &Value, old: Option<&Value>, keys: &[&str], errs: &mut Errs) {
    let Some(old) = old else { return };
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    let msg = "field is immutable when `immutable` is set";
    if object.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(FieldError::forbidden("immutable", msg));
    }
    for key in keys {
        let a = field(object, key);
        let b = field(old, key);
        let empty = |v: &Value| v.is_null() || v.as_object().is_some_and(|m| m.is_empty());
        if a != b && !(empty(a) && empty(b)) {
            errs.push(FieldError::forbidden(*key, msg));
        }
    }
}

pub(crate) fn validate_config_map(object: &Value, old: Option<&Value>, errs: &mut Errs) {
    let mut seen = Vec::new();
    let mut total = validate_keys(object, "binaryData", true, &mut seen, errs);
    total += validate_keys(object, "data", false, &mut seen, errs);
    if total > MAX_DATA_SIZE {
        errs.push(FieldError::too_long("", MAX_DATA_SIZE));
    }
    let _ = bool_field(object, "immutable", &Path::default(), errs);
    immutable_data(object, old, &["data", "binaryData"], errs);
}

const SECRET_TYPES_KEYS: &[(&str, &[&str])] = &[
    ("kubernetes.io/dockercfg", &[".dockercfg"]),
    ("kubernetes.io/dockerconfigjson", &[".dockerconfigjson"]),
    ("kubernetes.io/tls", &["tls.crt", "tls.key"]),
    ("kubernetes.io/ssh-auth", &["ssh-privatekey"]),
];

pub(crate) fn validate_secret(object: &Value, old: Option<&Value>, errs: &mut Errs) {
    let mut seen = Vec::new();
    let mut total = validate_keys(object, "data", true, &mut seen, errs);
    // stringData is merged into data by the registry; count it too.
    let mut seen_string = Vec::new();
    total += validate_keys(object, "stringData", false, &mut seen_string, errs);
    if total > MAX_DATA_SIZE {
        errs.push(FieldError::too_long("data", MAX_DATA_SIZE));
    }
    let root = Path::default();
    let has_key = |k: &str| {
        [&seen, &seen_string]
            .iter()
            .any(|s| s.iter().any(|x| x == k))
    };
    let ty = str_field(object, "type", &root, errs).unwrap_or("");
    if let Some((_, keys)) = SECRET_TYPES_KEYS.iter().find(|(t, _)| *t == ty) {
        for k in *keys {
            if !has_key(k) {
                errs.push(FieldError::required(Path::root("data").key(k), ""));
            }
        }
    }
    match ty {
        "kubernetes.io/service-account-token" => {
            let name = object.pointer("/metadata/annotations/kubernetes.io~1service-account.name");
            if name.and_then(Value::as_str).is_none_or(str::is_empty) {
                errs.push(FieldError::required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                ));
            }
        }
        "kubernetes.io/basic-auth" if !has_key("username") && !has_key("password") => {
            errs.push(FieldError::required("data[username]", ""));
        }
        _ => {}
    }
    if !ty.is_empty() {
        for msg in is_qualified_name(ty) {
            errs.push(FieldError::invalid("type", &Value::from(ty), &msg));
        }
    }
    if let Some(old) = old {
        immutable(object, old, "type", &root, errs);
    }
    immutable_data(object, old, &["data"], errs);
}

pub(crate) fn validate_namespace(object: &Value, errs: &mut Errs) {
    let path = Path::root("spec");
    let spec = field(object, "spec");
    for (i, f) in array_field(spec, "finalizers", &path, errs)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let s = f.as_str().unwrap_or("");
        if s != "kubernetes" {
            let msgs = is_qualified_name(s);
            if !msgs.is_empty() || !s.contains('/') {
                errs.push(FieldError::invalid(
                    path.child("finalizers").index(i),
                    f,
                    "name is neither a standard finalizer name nor is it fully qualified",
                ));
            }
        }
    }
}

pub(crate) fn validate_service_account(object: &Value, errs: &mut Errs) {
    let root = Path::default();
    let _ = bool_field(object, "automountServiceAccountToken", &root, errs);
    for key in ["secrets", "imagePullSecrets"] {
        let _ = array_field(object, key, &root, errs);
    }
}
