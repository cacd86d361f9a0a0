//! Kubernetes strategic merge patch (the rules are listed in the module
//! documentation of `patch`).

use serde_json::{Map, Value};

use super::PatchError;
use crate::openapi::{FieldType, Schema};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Applies a strategic merge patch to `original` using the type's schema
/// (e.g. `Definitions::for_gvk`). Without a schema every field follows
/// JSON merge patch rules (lists replaced), directives still honoured.
///
/// `original` may be `null` (treated as `{}`); `patch` must be an object.
pub fn strategic_merge_patch(
    original: &Value,
    patch: &Value,
    schema: Option<Schema<'_>>,
) -> Result<Value, PatchError> {
    let patch = match patch {
        Value::Object(m) => m.clone(),
        _ => {
            return Err(PatchError::NotAnObject {
                path: String::new(),
                what: "patch",
            });
        }
    };
    let original = match original {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        _ => {
            return Err(PatchError::NotAnObject {
                path: String::new(),
                what: "original object",
            });
        }
    };
    merge_map(original, patch, schema, "").map(Value::Object)
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn directive_value<'v>(value: &'v Value, path: &str) -> Result<&'v str, PatchError> {
    value.as_str().ok_or_else(|| PatchError::InvalidDirective {
        path: path.to_owned(),
        message: format!("{DIRECTIVE} must be a string, got {value}"),
    })
}

/// Merges `patch` into `original` (both maps at `path`).
fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: Option<Schema<'_>>,
    path: &str,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.remove(DIRECTIVE) {
        match directive_value(&directive, path)? {
            // The map is replaced by the patch (cleaned of directives).
            "replace" => return merge_map(Map::new(), patch, schema, path),
            // The map becomes empty.
            "delete" => return Ok(Map::new()),
            "merge" => {}
            other => {
                return Err(PatchError::InvalidDirective {
                    path: path.to_owned(),
                    message: format!("unknown {DIRECTIVE} value {other:?} in a map"),
                });
            }
        }
    }

    if let Some(retain) = patch.remove(RETAIN_KEYS) {
        let keys: Vec<&str> = retain
            .as_array()
            .map(|list| list.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
            .unwrap_or(None)
            .ok_or_else(|| PatchError::InvalidDirective {
                path: path.to_owned(),
                message: format!("{RETAIN_KEYS} must be a list of strings, got {retain}"),
            })?;
        original.retain(|k, _| keys.contains(&k.as_str()));
    }

    // Parallel directive lists.
    let mut orders: Vec<(String, Vec<Value>)> = Vec::new();
    let directive_keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER) || k.starts_with(DELETE_FROM_PRIMITIVE_LIST))
        .cloned()
        .collect();
    for key in directive_keys {
        let Some(value) = patch.remove(&key) else {
            continue;
        };
        let list_path = child_path(path, &key);
        let Value::Array(list) = value else {
            return Err(PatchError::InvalidDirective {
                path: list_path,
                message: "must be a list".into(),
            });
        };
        if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) {
            orders.push((field.to_owned(), list));
        } else if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST)
            && let Some(Value::Array(items)) = original.get_mut(field)
        {
            items.retain(|item| !list.contains(item));
        }
    }

    for (key, patch_value) in patch {
        let field_path = child_path(path, &key);
        let field_schema = schema.and_then(|s| s.child(&key));
        if patch_value.is_null() {
            original.remove(&key);
            continue;
        }
        let order = orders
            .iter()
            .position(|(f, _)| *f == key)
            .map(|i| orders.swap_remove(i).1);
        let merged = match (original.remove(&key), patch_value) {
            (Some(Value::Object(o)), Value::Object(p)) => {
                Value::Object(merge_map(o, p, field_schema, &field_path)?)
            }
            (Some(Value::Array(o)), Value::Array(p)) => {
                Value::Array(merge_list(o, p, field_schema, order, &field_path)?)
            }
            // New field, or the type changed: take the patch value, cleaned
            // of directives and nulls.
            (_, Value::Object(p)) => {
                Value::Object(merge_map(Map::new(), p, field_schema, &field_path)?)
            }
            (_, Value::Array(p)) => {
                Value::Array(merge_list(Vec::new(), p, field_schema, order, &field_path)?)
            }
            (_, scalar) => scalar,
        };
        original.insert(key, merged);
    }

    // `$setElementOrder` for a list the patch does not otherwise touch:
    // reorder the live list.
    for (field, order) in orders {
        let field_path = child_path(path, &field);
        let field_schema = schema.and_then(|s| s.child(&field));
        if let Some(Value::Array(items)) = original.remove(&field) {
            let merged = merge_list(items, Vec::new(), field_schema, Some(order), &field_path)?;
            original.insert(field, Value::Array(merged));
        }
    }
    Ok(original)
}

/// What identifies a list item: its merge key value, or the item itself
/// for primitives.
#[derive(Clone, Copy)]
enum Identity<'k> {
    MergeKey(&'k str),
    Value,
}

impl Identity<'_> {
    fn of<'v>(&self, item: &'v Value) -> Option<&'v Value> {
        match self {
            Identity::MergeKey(k) => item.get(*k),
            Identity::Value => Some(item),
        }
    }

    fn position(&self, list: &[Value], item: &Value) -> Option<usize> {
        let id = self.of(item)?;
        list.iter().position(|x| self.of(x) == Some(id))
    }
}

/// Merges a list at `path`.
fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    schema: Option<Schema<'_>>,
    order: Option<Vec<Value>>,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    let meta = schema.map(|s| s.patch_meta()).unwrap_or_default();
    let item_schema = schema.and_then(|s| s.items());

    // A `{"$patch": "replace"}` element replaces the whole list by the
    // other elements, whatever the strategy.
    let mut replace = false;
    let mut deletes: Vec<Value> = Vec::new();
    let mut items: Vec<Value> = Vec::with_capacity(patch.len());
    for (i, item) in patch.into_iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        match item {
            Value::Object(mut m) if m.contains_key(DIRECTIVE) => {
                let directive = m.remove(DIRECTIVE).unwrap_or(Value::Null);
                match directive_value(&directive, &item_path)? {
                    "replace" => replace = true,
                    "delete" => deletes.push(Value::Object(m)),
                    "merge" => items.push(Value::Object(m)),
                    other => {
                        return Err(PatchError::InvalidDirective {
                            path: item_path,
                            message: format!("unknown {DIRECTIVE} value {other:?} in a list"),
                        });
                    }
                }
            }
            other => items.push(other),
        }
    }

    if replace || !meta.strategy.merge {
        // Replace: the patch items, cleaned of directives.
        return items
            .into_iter()
            .enumerate()
            .map(|(i, item)| clean(item, item_schema, &format!("{path}[{i}]")))
            .collect();
    }

    let primitive_items = match item_schema.map(|s| s.field_type()) {
        Some(FieldType::Primitive) => true,
        Some(_) => false,
        None => meta.merge_key.is_none(),
    };
    let identity = match (&meta.merge_key, primitive_items) {
        (_, true) => Identity::Value,
        (Some(key), false) => Identity::MergeKey(key.as_str()),
        (None, false) => {
            // A merge list of maps without a merge key cannot be merged
            // item by item: it is replaced.
            return items
                .into_iter()
                .enumerate()
                .map(|(i, item)| clean(item, item_schema, &format!("{path}[{i}]")))
                .collect();
        }
    };

    // Every map item must carry the merge key.
    if let Identity::MergeKey(key) = identity {
        for (i, item) in items.iter().chain(deletes.iter()).enumerate() {
            if !item.is_object() {
                return Err(PatchError::NotAnObject {
                    path: format!("{path}[{i}]"),
                    what: "list item of a merge list",
                });
            }
            if item.get(key).is_none() {
                return Err(PatchError::MissingMergeKey {
                    path: format!("{path}[{i}]"),
                    key: key.to_owned(),
                });
            }
        }
    }

    // `$patch: delete` elements: drop the matching live items. For
    // primitive lists the element is `{"$patch": "delete"}` plus nothing
    // useful, so deletions of primitives use $deleteFromPrimitiveList.
    let mut merged: Vec<Value> = original.clone();
    if let Identity::MergeKey(_) = identity {
        for d in &deletes {
            let id = identity.of(d).cloned();
            merged.retain(|x| identity.of(x) != id.as_ref());
        }
    }

    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        match identity.position(&merged, item) {
            Some(pos) => {
                if let (Some(Value::Object(live)), Value::Object(p)) = (merged.get(pos), item) {
                    let m = merge_map(live.clone(), p.clone(), item_schema, &item_path)?;
                    if let Some(slot) = merged.get_mut(pos) {
                        *slot = Value::Object(m);
                    }
                }
            }
            None => merged.push(clean(item.clone(), item_schema, &item_path)?),
        }
    }

    // Order: `$setElementOrder` when given, else the patch's order for the
    // patched items; items only on the server keep their live order and
    // are interleaved by their live positions.
    let patch_order = order.unwrap_or(items);
    Ok(normalize_order(merged, &patch_order, &original, identity))
}

/// Removes directives and nulls from a value that has no live
/// counterpart.
fn clean(value: Value, schema: Option<Schema<'_>>, path: &str) -> Result<Value, PatchError> {
    match value {
        Value::Object(m) => merge_map(Map::new(), m, schema, path).map(Value::Object),
        Value::Array(list) => merge_list(Vec::new(), list, schema, None, path).map(Value::Array),
        other => Ok(other),
    }
}

/// Orders a merged list as Kubernetes does: the items named by
/// `patch_order` come in that order, the others (server-only items) in
/// their live order; the two sequences are then interleaved, taking the
/// item that comes first in the live list when both are live items, and
/// the patch item otherwise.
fn normalize_order(
    merged: Vec<Value>,
    patch_order: &[Value],
    live: &[Value],
    identity: Identity<'_>,
) -> Vec<Value> {
    let (mut patched, mut server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|item| identity.position(patch_order, item).is_some());
    patched.sort_by_key(|item| identity.position(patch_order, item));
    server_only.sort_by_key(|item| identity.position(live, item).unwrap_or(usize::MAX));

    let mut out = Vec::with_capacity(patched.len() + server_only.len());
    let mut left = patched.into_iter().peekable();
    let mut right = server_only.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => match (identity.position(live, l), identity.position(live, r)) {
                (Some(li), Some(ri)) => li < ri,
                _ => true,
            },
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}
