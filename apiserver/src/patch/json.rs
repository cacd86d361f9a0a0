//! RFC 6902 JSON patch and RFC 7386 JSON merge patch.

use serde_json::{Map, Value};

use super::PatchError;

/// Applies an RFC 6902 JSON patch (`add`, `remove`, `replace`, `move`,
/// `copy`, `test`) to a copy of `doc`. The operations apply atomically: on
/// error nothing is changed, and the error names the failing operation's
/// index, name and path.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| PatchError::InvalidJsonPatch {
            message: "a JSON patch must be an array of operations".into(),
        })?;
    let parsed: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| PatchError::InvalidJsonPatch {
            message: e.to_string(),
        })?;
    let mut out = doc.clone();
    json_patch::patch(&mut out, &parsed).map_err(|e| {
        let op = ops.get(e.operation);
        PatchError::JsonPatchFailed {
            index: e.operation,
            op: op
                .and_then(|o| o.get("op"))
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned(),
            path: e.path.to_string(),
            message: e.kind.to_string(),
        }
    })?;
    Ok(out)
}

/// Applies an RFC 7386 JSON merge patch: objects merge recursively, `null`
/// removes a key, anything else (lists included) replaces.
pub fn merge_patch(doc: &Value, patch: &Value) -> Value {
    match patch {
        Value::Object(patch_map) => {
            let mut out = match doc {
                Value::Object(m) => m.clone(),
                _ => Map::new(),
            };
            for (k, pv) in patch_map {
                if pv.is_null() {
                    out.remove(k);
                } else {
                    let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), pv);
                    out.insert(k.clone(), merged);
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}
