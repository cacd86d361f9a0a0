//! Field paths and typed access to JSON fields that reports wrong types.

use serde_json::{Map, Value};

use super::FieldError;

/// A field path being built: `spec.containers[0].ports[1].name`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Path(String);

impl Path {
    pub(crate) fn root(name: &str) -> Self {
        Self(name.to_owned())
    }

    pub(crate) fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_owned())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    pub(crate) fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    pub(crate) fn key(&self, k: &str) -> Self {
        Self(format!("{}[{k}]", self.0))
    }
}

impl From<Path> for String {
    fn from(p: Path) -> Self {
        p.0
    }
}

impl From<&Path> for String {
    fn from(p: &Path) -> Self {
        p.0.clone()
    }
}

/// Collected errors plus typed getters that record a wrong JSON type.
pub(crate) type Errs = Vec<FieldError>;

fn wrong_type(errs: &mut Errs, path: &Path, value: &Value, expected: &str) {
    errs.push(FieldError::invalid(
        path,
        value,
        &format!("must be of type {expected}"),
    ));
}

/// The field's string, `None` when absent or null (a non-string is recorded).
pub(crate) fn str_field<'a>(
    obj: &'a Value,
    key: &str,
    path: &Path,
    errs: &mut Errs,
) -> Option<&'a str> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            wrong_type(errs, &path.child(key), other, "string");
            None
        }
    }
}

/// The field's integer, `None` when absent or null.
pub(crate) fn int_field(obj: &Value, key: &str, path: &Path, errs: &mut Errs) -> Option<i64> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(v @ Value::Number(n)) => match n.as_i64() {
            Some(i) => Some(i),
            None => {
                wrong_type(errs, &path.child(key), v, "integer");
                None
            }
        },
        Some(other) => {
            wrong_type(errs, &path.child(key), other, "integer");
            None
        }
    }
}

/// The field's boolean, `None` when absent or null.
pub(crate) fn bool_field(obj: &Value, key: &str, path: &Path, errs: &mut Errs) -> Option<bool> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            wrong_type(errs, &path.child(key), other, "boolean");
            None
        }
    }
}

/// The field's list, `None` when absent or null.
pub(crate) fn array_field<'a>(
    obj: &'a Value,
    key: &str,
    path: &Path,
    errs: &mut Errs,
) -> Option<&'a Vec<Value>> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(a),
        Some(other) => {
            wrong_type(errs, &path.child(key), other, "array");
            None
        }
    }
}

/// The field's object, `None` when absent or null.
pub(crate) fn object_field<'a>(
    obj: &'a Value,
    key: &str,
    path: &Path,
    errs: &mut Errs,
) -> Option<&'a Map<String, Value>> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(other) => {
            wrong_type(errs, &path.child(key), other, "object");
            None
        }
    }
}

/// A map of strings (labels, annotations, data): entries with non-string
/// values are recorded and skipped.
pub(crate) fn string_map<'a>(
    obj: &'a Value,
    key: &str,
    path: &Path,
    errs: &mut Errs,
) -> Vec<(&'a str, &'a str)> {
    let mut out = Vec::new();
    if let Some(map) = object_field(obj, key, path, errs) {
        for (k, v) in map {
            match v {
                Value::String(s) => out.push((k.as_str(), s.as_str())),
                Value::Null => out.push((k.as_str(), "")),
                other => wrong_type(errs, &path.child(key).key(k), other, "string"),
            }
        }
    }
    out
}

/// `errs` gets `must be greater than or equal to 0` when `value < 0`.
pub(crate) fn non_negative(obj: &Value, key: &str, path: &Path, errs: &mut Errs) {
    if let Some(v) = int_field(obj, key, path, errs)
        && v < 0
    {
        errs.push(FieldError::invalid(
            path.child(key),
            &Value::from(v),
            "must be greater than or equal to 0",
        ));
    }
}

/// `must be greater than 0` when `value <= 0`.
pub(crate) fn positive(obj: &Value, key: &str, path: &Path, errs: &mut Errs) {
    if let Some(v) = int_field(obj, key, path, errs)
        && v <= 0
    {
        errs.push(FieldError::invalid(
            path.child(key),
            &Value::from(v),
            "must be greater than 0",
        ));
    }
}

/// Checks an enumerated string field; `required` adds `Required value`
/// when absent or empty.
pub(crate) fn enum_field(
    obj: &Value,
    key: &str,
    path: &Path,
    supported: &[&str],
    required: bool,
    errs: &mut Errs,
) {
    match str_field(obj, key, path, errs) {
        None | Some("") => {
            if required {
                errs.push(FieldError::required(path.child(key), ""));
            }
        }
        Some(v) if !supported.contains(&v) => {
            errs.push(FieldError::not_supported(
                path.child(key),
                &Value::from(v),
                supported,
            ));
        }
        Some(_) => {}
    }
}

/// A `field is immutable` error when `new[key] != old[key]` (absent and
/// null compare equal).
pub(crate) fn immutable(new: &Value, old: &Value, key: &str, path: &Path, errs: &mut Errs) {
    let a = new.get(key).unwrap_or(&Value::Null);
    let b = old.get(key).unwrap_or(&Value::Null);
    if a != b {
        errs.push(FieldError::invalid(
            path.child(key),
            a,
            "field is immutable",
        ));
    }
}

/// `obj[key]`, or JSON null.
pub(crate) fn field<'a>(obj: &'a Value, key: &str) -> &'a Value {
    obj.get(key).unwrap_or(&Value::Null)
}
