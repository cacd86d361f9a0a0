//! Field sets: which fields of an object a manager owns, in the `FieldsV1`
//! form of `metadata.managedFields`.
//!
//! A [`FieldSet`] is a trie of [`PathElement`]s; a node flagged `member` is
//! a path in the set. Elements are kept in their fieldsV1 spelling, so the
//! trie serialises as it is:
//! - `f:<name>`: a field of a struct or a key of a map;
//! - `k:{"name":"web"}`: an item of an associative list, named by its key
//!   fields (the list-map keys, else the strategic-merge key), sorted;
//! - `v:<json>`: an item of a set of primitives (finalizers);
//! - `i:<index>`: an item of a list that has no key (fallback only).
//!
//! In fieldsV1, `{}` marks a member without children and `".": {}` a member
//! that also has children.
//!
//! How a value is walked comes from the schema ([`shape_of`]): structs are
//! granular and not members themselves, map entries and list items are
//! members, atomic values (scalars, lists without a merge strategy,
//! `x-kubernetes-map-type: atomic` structs such as label selectors) are
//! leaves. [`field_set_of`] is the set an applied configuration claims and
//! [`compare`] the paths an update added, modified and removed.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::openapi::{FieldType, ListType, Schema};

/// Errors reading a fieldsV1 document.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldSetError {
    /// A node is not a JSON object.
    #[error("fieldsV1 node at {path:?} must be an object")]
    NotAnObject {
        /// The path of the node.
        path: String,
    },
    /// An element has an unknown prefix or an undecodable value.
    #[error("invalid fieldsV1 element {element:?} at {path:?}")]
    InvalidElement {
        /// The element as written.
        element: String,
        /// The path of its parent.
        path: String,
    },
}

/// One step of a field path, spelled as in fieldsV1 (`f:spec`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PathElement(String);

/// Key fields of list-map items that kube defaults when they are omitted
/// (all list maps keyed by `protocol` default it to TCP); the schema we
/// serve carries no defaults, so this is the one place they are known.
const DEFAULTED_KEY_FIELDS: &[(&str, &str)] = &[("protocol", "TCP")];

impl PathElement {
    /// A struct field or map key.
    pub fn field(name: &str) -> Self {
        Self(format!("f:{name}"))
    }

    /// The element naming `item` of an associative list keyed by `keys`;
    /// `None` when the item carries none of them.
    pub fn key_of(item: &Value, keys: &[String]) -> Option<Self> {
        let map = item.as_object()?;
        let mut fields: BTreeMap<&str, Value> = BTreeMap::new();
        for key in keys {
            match map.get(key) {
                Some(v) if !v.is_null() => {
                    fields.insert(key, v.clone());
                }
                _ => {
                    if let Some((_, default)) =
                        DEFAULTED_KEY_FIELDS.iter().find(|(name, _)| name == key)
                    {
                        fields.insert(key, Value::String((*default).to_owned()));
                    }
                }
            }
        }
        if fields.is_empty() {
            return None;
        }
        serde_json::to_string(&fields)
            .ok()
            .map(|json| Self(format!("k:{json}")))
    }

    /// An item of a set of primitives.
    pub fn value(item: &Value) -> Self {
        Self(format!("v:{item}"))
    }

    /// A list item by position.
    pub fn index(index: usize) -> Self {
        Self(format!("i:{index}"))
    }

    /// The fieldsV1 spelling.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn parse(text: &str) -> Option<Self> {
        let (prefix, rest) = text.split_at_checked(2)?;
        let valid = match prefix {
            "f:" => true,
            "k:" => serde_json::from_str::<Map<String, Value>>(rest).is_ok(),
            "v:" => serde_json::from_str::<Value>(rest).is_ok(),
            "i:" => rest.parse::<usize>().is_ok(),
            _ => false,
        };
        valid.then(|| Self(text.to_owned()))
    }

    /// The field name of an `f:` element.
    pub fn field_name(&self) -> Option<&str> {
        self.0.strip_prefix("f:")
    }

    /// The element as kube prints it in paths: `.name`, `[name="web"]`,
    /// `[="x"]`, `[0]`.
    pub fn display(&self) -> String {
        let (prefix, rest) = self.0.split_at_checked(2).unwrap_or(("", &self.0));
        match prefix {
            "f:" => format!(".{rest}"),
            "k:" => {
                let fields: Map<String, Value> = serde_json::from_str(rest).unwrap_or_default();
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("[{}]", parts.join(","))
            }
            "v:" => format!("[={rest}]"),
            "i:" => format!("[{rest}]"),
            _ => self.0.clone(),
        }
    }
}

/// kube's spelling of a whole path: `.spec.template.spec.containers[name="web"].image`.
pub fn display_path(path: &[PathElement]) -> String {
    path.iter().map(PathElement::display).collect()
}

/// A set of field paths, as a trie.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    member: bool,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when no path is in the set.
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    /// Adds `path`.
    pub fn insert(&mut self, path: &[PathElement]) {
        let mut node = self;
        for element in path {
            node = node.children.entry(element.clone()).or_default();
        }
        node.member = true;
    }

    /// True when `path` is in the set.
    pub fn contains(&self, path: &[PathElement]) -> bool {
        self.node(path).is_some_and(|n| n.member)
    }

    /// The subtree under `path` (paths relative to it).
    pub fn node(&self, path: &[PathElement]) -> Option<&FieldSet> {
        let mut node = self;
        for element in path {
            node = node.children.get(element)?;
        }
        Some(node)
    }

    /// Whether this node itself is in the set.
    pub fn is_member(&self) -> bool {
        self.member
    }

    /// The child nodes.
    pub fn children(&self) -> impl Iterator<Item = (&PathElement, &FieldSet)> {
        self.children.iter()
    }

    /// Paths in either set.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.member |= other.member;
        for (element, child) in &other.children {
            let merged = match out.children.get(element) {
                Some(mine) => mine.union(child),
                None => child.clone(),
            };
            out.children.insert(element.clone(), merged);
        }
        out
    }

    /// Paths of `self` not in `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let empty = FieldSet::new();
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (element, child) in &self.children {
            let rest = child.difference(other.children.get(element).unwrap_or(&empty));
            if !rest.is_empty() {
                out.children.insert(element.clone(), rest);
            }
        }
        out
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (element, child) in &self.children {
            if let Some(theirs) = other.children.get(element) {
                let both = child.intersection(theirs);
                if !both.is_empty() {
                    out.children.insert(element.clone(), both);
                }
            }
        }
        out
    }

    /// Every path in the set, in order.
    pub fn paths(&self) -> Vec<Vec<PathElement>> {
        let mut out = Vec::new();
        let mut prefix = Vec::new();
        self.collect_paths(&mut prefix, &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
        if self.member && !prefix.is_empty() {
            out.push(prefix.clone());
        }
        for (element, child) in &self.children {
            prefix.push(element.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The fieldsV1 document.
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".into(), Value::Object(Map::new()));
        }
        for (element, child) in &self.children {
            if !child.is_empty() {
                map.insert(element.as_str().to_owned(), child.to_fields_v1());
            }
        }
        Value::Object(map)
    }

    /// Reads a fieldsV1 document.
    pub fn from_fields_v1(value: &Value) -> Result<FieldSet, FieldSetError> {
        Self::parse_node(value, "")
    }

    fn parse_node(value: &Value, path: &str) -> Result<FieldSet, FieldSetError> {
        let map = value
            .as_object()
            .ok_or_else(|| FieldSetError::NotAnObject {
                path: path.to_owned(),
            })?;
        let mut node = FieldSet::new();
        for (key, child) in map {
            if key == "." {
                node.member = true;
                continue;
            }
            let element = PathElement::parse(key).ok_or_else(|| FieldSetError::InvalidElement {
                element: key.clone(),
                path: path.to_owned(),
            })?;
            let child_path = format!("{path}{}", element.display());
            let mut parsed = Self::parse_node(child, &child_path)?;
            // `{}` is a member without children.
            if child.as_object().is_some_and(Map::is_empty) {
                parsed.member = true;
            }
            node.children.insert(element, parsed);
        }
        Ok(node)
    }
}

/// How a value is walked for field ownership.
#[derive(Clone, Debug)]
pub enum Shape<'a> {
    /// A struct (declared fields are not members themselves) or a map
    /// (every key is a member).
    Fields(Option<Schema<'a>>),
    /// Owned as a whole.
    Leaf,
    /// A list of maps identified by key fields.
    Associative {
        /// The key fields.
        keys: Vec<String>,
        /// The item schema.
        items: Option<Schema<'a>>,
    },
    /// A list of unique primitives.
    Set,
}

fn is_atomic_map(schema: Schema<'_>) -> bool {
    let key = "x-kubernetes-map-type";
    schema
        .raw()
        .get(key)
        .or_else(|| schema.resolved().get(key))
        .and_then(Value::as_str)
        == Some("atomic")
}

/// The shape of `value` under `schema`.
pub fn shape_of<'a>(schema: Option<Schema<'a>>, value: &Value) -> Shape<'a> {
    let Some(schema) = schema else {
        // Undeclared content: maps are granular, lists atomic (as kube's
        // deduced type).
        return if value.is_object() {
            Shape::Fields(None)
        } else {
            Shape::Leaf
        };
    };
    match (schema.field_type(), value) {
        (FieldType::Object | FieldType::Map, Value::Object(_)) => {
            if is_atomic_map(schema) {
                Shape::Leaf
            } else {
                Shape::Fields(Some(schema))
            }
        }
        (FieldType::Unknown, Value::Object(_)) => Shape::Fields(None),
        (FieldType::Array, Value::Array(list)) => list_shape(schema, list),
        _ => Shape::Leaf,
    }
}

fn list_shape<'a>(schema: Schema<'a>, list: &[Value]) -> Shape<'a> {
    let meta = schema.patch_meta();
    let items = schema.items();
    let primitive_items = items.is_none_or(|s| s.field_type() == FieldType::Primitive);
    let keys = match meta.list_type {
        Some(ListType::Atomic) => return Shape::Leaf,
        Some(ListType::Set) => return Shape::Set,
        Some(ListType::Map) if !meta.list_map_keys.is_empty() => meta.list_map_keys,
        _ if meta.strategy.merge && primitive_items => return Shape::Set,
        _ if meta.strategy.merge => match meta.merge_key {
            Some(key) => vec![key],
            None => return Shape::Leaf,
        },
        _ => return Shape::Leaf,
    };
    // Items that cannot be keyed make the list atomic rather than lose
    // track of them.
    if list
        .iter()
        .any(|item| PathElement::key_of(item, &keys).is_none())
    {
        return Shape::Leaf;
    }
    Shape::Associative { keys, items }
}

/// Whether the field `key` of a `Fields` node is a member itself: map
/// entries and undeclared fields are, declared struct fields only when
/// their value is owned whole (a leaf, `null` or `{}`).
fn field_is_member(
    parent: Option<Schema<'_>>,
    key: &str,
    value: &Value,
    shape: &Shape<'_>,
) -> bool {
    let declared = parent.is_some_and(|s| s.property(key).is_some());
    !declared
        || matches!(shape, Shape::Leaf)
        || value.is_null()
        || value.as_object().is_some_and(Map::is_empty)
}

/// The set of paths `value` sets (what an applied configuration claims).
pub fn field_set_of(value: &Value, schema: Option<Schema<'_>>) -> FieldSet {
    let mut set = FieldSet::new();
    collect(value, schema, &mut set);
    set
}

fn collect(value: &Value, schema: Option<Schema<'_>>, node: &mut FieldSet) {
    match shape_of(schema, value) {
        Shape::Leaf => node.member = true,
        Shape::Fields(schema) => {
            let Some(map) = value.as_object() else { return };
            for (key, child) in map {
                let child_schema = schema.and_then(|s| s.child(key));
                let shape = shape_of(child_schema, child);
                let member = field_is_member(schema, key, child, &shape);
                let child_node = node.children.entry(PathElement::field(key)).or_default();
                collect(child, child_schema, child_node);
                child_node.member |= member;
            }
        }
        Shape::Associative { keys, items } => {
            for item in value.as_array().into_iter().flatten() {
                if let Some(element) = PathElement::key_of(item, &keys) {
                    let child_node = node.children.entry(element).or_default();
                    collect(item, items, child_node);
                    child_node.member = true;
                }
            }
        }
        Shape::Set => {
            for item in value.as_array().into_iter().flatten() {
                node.children
                    .entry(PathElement::value(item))
                    .or_default()
                    .member = true;
            }
        }
    }
}

/// What changed between two versions of an object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Paths present only in the new version.
    pub added: FieldSet,
    /// Leaves whose value changed.
    pub modified: FieldSet,
    /// Paths present only in the old version.
    pub removed: FieldSet,
}

impl Comparison {
    /// True when nothing changed.
    pub fn is_same(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }

    /// Added or modified paths: what the writer now owns.
    pub fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
    }
}

/// Compares two versions of an object (either may be absent).
pub fn compare(old: Option<&Value>, new: Option<&Value>, schema: Option<Schema<'_>>) -> Comparison {
    let mut out = Comparison::default();
    let mut path = Vec::new();
    compare_node(old, new, schema, false, &mut path, &mut out);
    out
}

fn compare_node(
    old: Option<&Value>,
    new: Option<&Value>,
    schema: Option<Schema<'_>>,
    member: bool,
    path: &mut Vec<PathElement>,
    out: &mut Comparison,
) {
    let Some(sample) = new.or(old) else { return };
    let mut shape = shape_of(schema, sample);
    // A value that changed type is compared as a whole.
    if let (Some(a), Some(b)) = (old, new)
        && std::mem::discriminant(a) != std::mem::discriminant(b)
    {
        shape = Shape::Leaf;
    }
    match shape {
        Shape::Leaf => {
            match (old, new) {
                (None, Some(_)) => out.added.insert(path),
                (Some(_), None) => out.removed.insert(path),
                (Some(a), Some(b)) if a != b => out.modified.insert(path),
                _ => {}
            }
            return;
        }
        Shape::Fields(schema) => {
            let empty = Map::new();
            let old_map = old.and_then(Value::as_object).unwrap_or(&empty);
            let new_map = new.and_then(Value::as_object).unwrap_or(&empty);
            let keys: std::collections::BTreeSet<&String> =
                old_map.keys().chain(new_map.keys()).collect();
            for key in keys {
                let (o, n) = (old_map.get(key), new_map.get(key));
                let child_schema = schema.and_then(|s| s.child(key));
                let Some(sample) = n.or(o) else { continue };
                let child_shape = shape_of(child_schema, sample);
                let child_member = field_is_member(schema, key, sample, &child_shape);
                path.push(PathElement::field(key));
                compare_node(o, n, child_schema, child_member, path, out);
                path.pop();
            }
        }
        Shape::Associative { keys, items } => {
            let index = |list: Option<&Value>| -> BTreeMap<PathElement, Value> {
                list.and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|item| Some((PathElement::key_of(item, &keys)?, item.clone())))
                    .collect()
            };
            let (old_items, new_items) = (index(old), index(new));
            let elements: std::collections::BTreeSet<&PathElement> =
                old_items.keys().chain(new_items.keys()).collect();
            for element in elements {
                path.push(element.clone());
                compare_node(
                    old_items.get(element),
                    new_items.get(element),
                    items,
                    true,
                    path,
                    out,
                );
                path.pop();
            }
        }
        Shape::Set => {
            let items = |list: Option<&Value>| -> Vec<Value> {
                list.and_then(Value::as_array).cloned().unwrap_or_default()
            };
            let (old_items, new_items) = (items(old), items(new));
            for item in &new_items {
                if !old_items.contains(item) {
                    path.push(PathElement::value(item));
                    out.added.insert(path);
                    path.pop();
                }
            }
            for item in &old_items {
                if !new_items.contains(item) {
                    path.push(PathElement::value(item));
                    out.removed.insert(path);
                    path.pop();
                }
            }
        }
    }
    if member {
        match (old, new) {
            (None, Some(_)) => out.added.insert(path),
            (Some(_), None) => out.removed.insert(path),
            _ => {}
        }
    }
}

/// Locates the child of `value` named by `element` (an object field or a
/// list item).
pub(crate) fn child_position(
    value: &Value,
    element: &PathElement,
    keys: &[String],
) -> Option<ChildRef> {
    if let Some(name) = element.field_name() {
        return value
            .as_object()
            .filter(|m| m.contains_key(name))
            .map(|_| ChildRef::Field(name.to_owned()));
    }
    let list = value.as_array()?;
    let text = element.as_str();
    let position = if let Some(index) = text.strip_prefix("i:") {
        index.parse::<usize>().ok().filter(|i| *i < list.len())
    } else if text.starts_with("v:") {
        list.iter()
            .position(|item| PathElement::value(item) == *element)
    } else {
        list.iter()
            .position(|item| PathElement::key_of(item, keys).as_ref() == Some(element))
    };
    position.map(ChildRef::Item)
}

/// Where a child value sits in its parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ChildRef {
    /// A key of an object.
    Field(String),
    /// A position in a list.
    Item(usize),
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::openapi::{Definitions, GroupVersionKind};

    fn deployment_schema() -> Schema<'static> {
        let defs = Definitions::embedded().expect("embedded definitions");
        defs.for_gvk(&GroupVersionKind::new("apps", "v1", "Deployment"))
            .expect("Deployment schema")
    }

    fn deployment() -> Value {
        json!({
            "metadata": {"labels": {"app": "web"}, "finalizers": ["a"]},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{
                    "name": "web",
                    "image": "nginx",
                    "args": ["-x"],
                    "ports": [{"containerPort": 80}]
                }]}}
            }
        })
    }

    #[test]
    fn field_set_uses_merge_keys_sets_and_atomic_values() {
        let set = field_set_of(&deployment(), Some(deployment_schema()));
        assert_eq!(
            set.to_fields_v1(),
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}, "f:finalizers": {"v:\"a\"": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                        ".": {},
                        "f:args": {},
                        "f:image": {},
                        "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                            ".": {},
                            "f:containerPort": {}
                        }}
                    }}}}
                }
            })
        );
    }

    #[test]
    fn fields_v1_round_trips_and_rejects_unknown_elements() {
        let set = field_set_of(&deployment(), Some(deployment_schema()));
        let parsed = FieldSet::from_fields_v1(&set.to_fields_v1()).expect("parse");
        assert_eq!(parsed, set);
        assert!(matches!(
            FieldSet::from_fields_v1(&json!({"x:bad": {}})),
            Err(FieldSetError::InvalidElement { .. })
        ));
    }

    #[test]
    fn set_algebra_on_paths() {
        let mut a = FieldSet::new();
        a.insert(&[PathElement::field("spec"), PathElement::field("replicas")]);
        a.insert(&[PathElement::field("spec"), PathElement::field("paused")]);
        let mut b = FieldSet::new();
        b.insert(&[PathElement::field("spec"), PathElement::field("replicas")]);
        assert_eq!(a.intersection(&b), b);
        let rest = a.difference(&b);
        assert_eq!(rest.paths().len(), 1);
        assert_eq!(display_path(&rest.paths()[0]), ".spec.paused");
        assert_eq!(a.union(&b), a);
        assert!(b.difference(&a).is_empty());
    }

    #[test]
    fn comparison_reports_added_modified_removed() {
        let old = deployment();
        let mut new = deployment();
        new["spec"]["replicas"] = json!(3);
        new["metadata"]["labels"] = json!({"tier": "front"});
        new["spec"]["template"]["spec"]["containers"][0]["ports"] = json!([]);
        let c = compare(Some(&old), Some(&new), Some(deployment_schema()));
        let shown =
            |s: &FieldSet| -> Vec<String> { s.paths().iter().map(|p| display_path(p)).collect() };
        assert_eq!(shown(&c.modified), vec![".spec.replicas"]);
        assert_eq!(shown(&c.added), vec![".metadata.labels.tier"]);
        assert!(shown(&c.removed).contains(&".metadata.labels.app".to_owned()));
        assert!(shown(&c.removed).contains(
            &".spec.template.spec.containers[name=\"web\"].ports[containerPort=80,protocol=\"TCP\"]"
                .to_owned()
        ));
        assert!(compare(Some(&old), Some(&old), Some(deployment_schema())).is_same());
    }
}
