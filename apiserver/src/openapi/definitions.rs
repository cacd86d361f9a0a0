//! The Kubernetes type definitions: loading, lookup by name and by
//! GroupVersionKind, `$ref` resolution and per-field patch metadata.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::sync::OnceLock;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::OpenApiError;

/// The vendored definitions (gzip of kubernetes-validate's
/// `v1.33.0-local/_definitions.json`, see `apiserver/schemas/README.md`).
const EMBEDDED_GZ: &[u8] = include_bytes!("../../schemas/k8s-v1.33.0-definitions.json.gz");

/// The Kubernetes version the embedded definitions describe.
pub const EMBEDDED_KUBERNETES_VERSION: &str = "v1.33.0";

/// Prefix of references in the JSON-schema form of the definitions.
pub(crate) const DEFS_REF_PREFIX: &str = "#/$defs/";

/// How many `$ref` hops [`Schema::resolved`] follows before giving up
/// (the definitions never chain more than one or two).
const MAX_REF_HOPS: usize = 16;

/// A Kubernetes GroupVersionKind (`group` is empty for the core group).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupVersionKind {
    /// API group, `""` for the core group.
    pub group: String,
    /// API version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
}

impl GroupVersionKind {
    /// Builds a GVK from its three parts.
    pub fn new(group: &str, version: &str, kind: &str) -> Self {
        Self {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
        }
    }

    /// Parses an `apiVersion` (`apps/v1` or `v1`) and a kind.
    pub fn from_api_version(api_version: &str, kind: &str) -> Self {
        match api_version.split_once('/') {
            Some((group, version)) => Self::new(group, version, kind),
            None => Self::new("", api_version, kind),
        }
    }

    /// The `apiVersion` string: `group/version`, or `version` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

impl fmt::Display for GroupVersionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, Kind={}", self.api_version(), self.kind)
    }
}

/// All type definitions, keyed by their full name
/// (`io.k8s.api.apps.v1.Deployment`).
#[derive(Debug)]
pub struct Definitions {
    defs: Map<String, Value>,
    by_gvk: HashMap<GroupVersionKind, String>,
    sha256: String,
}

static EMBEDDED: OnceLock<Result<Definitions, String>> = OnceLock::new();

impl Definitions {
    /// The embedded Kubernetes v1.33 definitions, decompressed and parsed
    /// once per process.
    pub fn embedded() -> Result<&'static Definitions, OpenApiError> {
        EMBEDDED
            .get_or_init(|| {
                let mut json = Vec::new();
                flate2::read::GzDecoder::new(EMBEDDED_GZ)
                    .read_to_end(&mut json)
                    .map_err(|e| format!("decompressing the embedded definitions: {e}"))?;
                Definitions::from_json_slice(&json).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|message| OpenApiError::Embedded {
                message: message.clone(),
            })
    }

    /// Parses a definitions document: `{"$defs": {...}}` (JSON Schema),
    /// `{"definitions": {...}}` (Swagger 2.0) or
    /// `{"components": {"schemas": {...}}}` (OpenAPI 3). References are
    /// normalised to the `#/$defs/` form.
    pub fn from_json_slice(json: &[u8]) -> Result<Self, OpenApiError> {
        let sha256 = hex::encode(Sha256::digest(json));
        let root: Value = serde_json::from_slice(json).map_err(|e| OpenApiError::Parse {
            message: e.to_string(),
        })?;
        let (defs, prefix) = if let Some(d) = root.get("$defs").and_then(Value::as_object) {
            (d.clone(), DEFS_REF_PREFIX)
        } else if let Some(d) = root.get("definitions").and_then(Value::as_object) {
            (d.clone(), "#/definitions/")
        } else if let Some(d) = root
            .pointer("/components/schemas")
            .and_then(Value::as_object)
        {
            (d.clone(), "#/components/schemas/")
        } else {
            return Err(OpenApiError::Parse {
                message: "no $defs, definitions or components.schemas object".into(),
            });
        };
        let mut defs = defs;
        if prefix != DEFS_REF_PREFIX {
            for value in defs.values_mut() {
                rewrite_refs(value, prefix, DEFS_REF_PREFIX);
            }
        }
        let mut by_gvk = HashMap::new();
        for (name, schema) in &defs {
            for gvk in gvks_of(schema) {
                by_gvk.entry(gvk).or_insert_with(|| name.clone());
            }
        }
        Ok(Self {
            defs,
            by_gvk,
            sha256,
        })
    }

    /// Hex sha256 of the JSON the definitions were parsed from.
    pub fn source_sha256(&self) -> &str {
        &self.sha256
    }

    /// Number of definitions.
    pub fn len(&self) -> usize {
        self.defs.len()
    }

    /// Whether there are no definitions.
    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }

    /// All definition names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.defs.keys().map(String::as_str)
    }

    /// The raw JSON-schema value of a definition.
    pub fn raw(&self, name: &str) -> Option<&Value> {
        self.defs.get(name)
    }

    /// A definition by its full name, e.g. `io.k8s.api.apps.v1.Deployment`.
    pub fn get(&self, name: &str) -> Option<Schema<'_>> {
        self.defs.get(name).map(|raw| Schema { defs: self, raw })
    }

    /// The definition name carrying `x-kubernetes-group-version-kind` for
    /// `gvk`.
    pub fn name_for_gvk(&self, gvk: &GroupVersionKind) -> Option<&str> {
        self.by_gvk.get(gvk).map(String::as_str)
    }

    /// The schema of a top-level kind.
    pub fn for_gvk(&self, gvk: &GroupVersionKind) -> Option<Schema<'_>> {
        self.name_for_gvk(gvk).and_then(|name| self.get(name))
    }

    /// Every GVK declared by the definitions with its definition name.
    pub fn gvks(&self) -> impl Iterator<Item = (&GroupVersionKind, &str)> {
        self.by_gvk.iter().map(|(g, n)| (g, n.as_str()))
    }

    /// Follows a `#/$defs/NAME` reference.
    pub fn resolve_ref(&self, reference: &str) -> Option<Schema<'_>> {
        reference
            .strip_prefix(DEFS_REF_PREFIX)
            .and_then(|name| self.get(name))
    }

    /// The transitive closure of definition names referenced from `roots`
    /// (roots included), sorted.
    pub fn closure<'n>(&self, roots: impl IntoIterator<Item = &'n str>) -> Vec<String> {
        let mut seen = std::collections::BTreeSet::new();
        let mut stack: Vec<String> = roots.into_iter().map(str::to_owned).collect();
        while let Some(name) = stack.pop() {
            let Some(schema) = self.defs.get(&name) else {
                continue;
            };
            if !seen.insert(name) {
                continue;
            }
            collect_refs(schema, &mut |r| {
                if let Some(n) = r.strip_prefix(DEFS_REF_PREFIX)
                    && !seen.contains(n)
                {
                    stack.push(n.to_owned());
                }
            });
        }
        seen.into_iter().collect()
    }
}

/// The `x-kubernetes-group-version-kind` entries of a schema.
pub(crate) fn gvks_of(schema: &Value) -> Vec<GroupVersionKind> {
    schema
        .get("x-kubernetes-group-version-kind")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|g| {
                    Some(GroupVersionKind::new(
                        g.get("group")?.as_str()?,
                        g.get("version")?.as_str()?,
                        g.get("kind")?.as_str()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Calls `f` with every `$ref` string in `value` (only string values: the
/// JSONSchemaProps type has a *property* named `$ref`).
pub(crate) fn collect_refs(value: &Value, f: &mut impl FnMut(&str)) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref"
                    && let Value::String(s) = v
                {
                    f(s);
                } else {
                    collect_refs(v, f);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, f)),
        _ => {}
    }
}

/// Rewrites every string `$ref` starting with `from` to start with `to`.
pub(crate) fn rewrite_refs(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == "$ref"
                    && let Value::String(s) = v
                {
                    if let Some(rest) = s.strip_prefix(from) {
                        *s = format!("{to}{rest}");
                    }
                } else {
                    rewrite_refs(v, from, to);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, from, to)),
        _ => {}
    }
}

/// The shape of a field's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// A struct with named `properties`.
    Object,
    /// A map with `additionalProperties` (labels, annotations, data).
    Map,
    /// A list; see [`Schema::items`].
    Array,
    /// A string, integer, number or boolean (also int-or-string and
    /// quantity).
    Primitive,
    /// No type information (free-form JSON such as RawExtension).
    Unknown,
}

/// `x-kubernetes-patch-strategy`, a comma-separated combination.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PatchStrategy {
    /// `merge`: lists are merged (by merge key for lists of maps, as sets
    /// for primitives).
    pub merge: bool,
    /// `replace`: the value is replaced as a whole.
    pub replace: bool,
    /// `retainKeys`: the patch may carry `$retainKeys` to clear the other
    /// keys of the map (union types such as volume sources).
    pub retain_keys: bool,
}

impl PatchStrategy {
    /// Parses `merge`, `replace`, `retainKeys` and combinations such as
    /// `merge,retainKeys`; unknown words are ignored.
    pub fn parse(s: &str) -> Self {
        let mut out = Self::default();
        for word in s.split(',').map(str::trim) {
            match word {
                "merge" => out.merge = true,
                "replace" => out.replace = true,
                "retainKeys" => out.retain_keys = true,
                _ => {}
            }
        }
        out
    }
}

/// `x-kubernetes-list-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListType {
    /// The list is replaced as a whole.
    Atomic,
    /// Items are unique scalars.
    Set,
    /// Items are maps identified by `x-kubernetes-list-map-keys`.
    Map,
}

/// The patch-relevant metadata of a field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PatchMeta {
    /// `x-kubernetes-patch-strategy`.
    pub strategy: PatchStrategy,
    /// `x-kubernetes-patch-merge-key`.
    pub merge_key: Option<String>,
    /// `x-kubernetes-list-type`.
    pub list_type: Option<ListType>,
    /// `x-kubernetes-list-map-keys`.
    pub list_map_keys: Vec<String>,
}

/// A view of one schema node: a definition, a property or a list item.
///
/// The raw node may be a `$ref` with sibling keys; the patch extensions
/// live on the raw node (the property) while the type comes from the
/// referenced definition, so both are consulted.
#[derive(Clone, Copy)]
pub struct Schema<'a> {
    defs: &'a Definitions,
    raw: &'a Value,
}

impl fmt::Debug for Schema<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ref_name() {
            Some(name) => write!(f, "Schema({name})"),
            None => write!(f, "Schema({})", self.raw),
        }
    }
}

impl<'a> Schema<'a> {
    /// The node as written (possibly a `$ref` with siblings).
    pub fn raw(&self) -> &'a Value {
        self.raw
    }

    /// The definitions this node belongs to.
    pub fn definitions(&self) -> &'a Definitions {
        self.defs
    }

    /// The definition name this node refers to, if it is a `$ref`.
    pub fn ref_name(&self) -> Option<&'a str> {
        self.raw
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(DEFS_REF_PREFIX))
    }

    /// The node with `$ref` (and a single-element `allOf` wrapping a
    /// `$ref`) followed.
    pub fn resolved(&self) -> &'a Value {
        let mut node = self.raw;
        for _ in 0..MAX_REF_HOPS {
            let next = match node.get("$ref").and_then(Value::as_str) {
                Some(r) => r,
                None => match node.get("allOf").and_then(Value::as_array) {
                    Some(all) if all.len() == 1 => {
                        match all
                            .first()
                            .and_then(|v| v.get("$ref"))
                            .and_then(Value::as_str)
                        {
                            Some(r) => r,
                            None => break,
                        }
                    }
                    _ => break,
                },
            };
            match next
                .strip_prefix(DEFS_REF_PREFIX)
                .and_then(|n| self.defs.defs.get(n))
            {
                Some(target) => node = target,
                None => break,
            }
        }
        node
    }

    fn wrap(&self, raw: &'a Value) -> Schema<'a> {
        Schema {
            defs: self.defs,
            raw,
        }
    }

    /// Looks up an extension or keyword on the raw node first, then on the
    /// resolved definition.
    fn keyword(&self, key: &str) -> Option<&'a Value> {
        self.raw.get(key).or_else(|| self.resolved().get(key))
    }

    /// The field's description.
    pub fn description(&self) -> Option<&'a str> {
        self.keyword("description").and_then(Value::as_str)
    }

    /// The JSON-schema type name (`object`, `array`, `string`, ...), with
    /// `["T", "null"]` reduced to `T`.
    pub fn type_name(&self) -> Option<&'a str> {
        match self.resolved().get("type")? {
            Value::String(s) => Some(s.as_str()),
            Value::Array(list) => list.iter().filter_map(Value::as_str).find(|t| *t != "null"),
            _ => None,
        }
    }

    /// The shape of the value.
    pub fn field_type(&self) -> FieldType {
        let node = self.resolved();
        match self.type_name() {
            Some("object") => {
                if node.get("properties").is_some() {
                    FieldType::Object
                } else if node
                    .get("additionalProperties")
                    .is_some_and(Value::is_object)
                {
                    FieldType::Map
                } else {
                    FieldType::Unknown
                }
            }
            Some("array") => FieldType::Array,
            Some(_) => FieldType::Primitive,
            None if node.get("oneOf").is_some() || node.get("format").is_some() => {
                FieldType::Primitive
            }
            None => FieldType::Unknown,
        }
    }

    /// A named property of an object.
    pub fn property(&self, name: &str) -> Option<Schema<'a>> {
        self.resolved()
            .get("properties")
            .and_then(|p| p.get(name))
            .map(|raw| self.wrap(raw))
    }

    /// The properties of an object, sorted by name.
    pub fn properties(&self) -> Vec<(&'a str, Schema<'a>)> {
        self.resolved()
            .get("properties")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.as_str(), self.wrap(v))).collect())
            .unwrap_or_default()
    }

    /// The schema of list items.
    pub fn items(&self) -> Option<Schema<'a>> {
        self.resolved().get("items").map(|raw| self.wrap(raw))
    }

    /// The schema of map values (`additionalProperties`).
    pub fn additional_properties(&self) -> Option<Schema<'a>> {
        self.resolved()
            .get("additionalProperties")
            .filter(|v| v.is_object())
            .map(|raw| self.wrap(raw))
    }

    /// The schema of the value under `key` of an object or map: the
    /// property, else the map value schema.
    pub fn child(&self, key: &str) -> Option<Schema<'a>> {
        self.property(key).or_else(|| self.additional_properties())
    }

    /// Walks a dotted path of properties; `[]` steps into list items and
    /// `{}` into map values, e.g. `spec.template.spec.containers.[].ports`.
    pub fn at(&self, path: &str) -> Option<Schema<'a>> {
        let mut node = *self;
        for step in path.split('.').filter(|s| !s.is_empty()) {
            node = match step {
                "[]" => node.items()?,
                "{}" => node.additional_properties()?,
                name => node.property(name)?,
            };
        }
        Some(node)
    }

    /// The patch metadata of this field.
    pub fn patch_meta(&self) -> PatchMeta {
        let strategy = self
            .keyword("x-kubernetes-patch-strategy")
            .and_then(Value::as_str)
            .map(PatchStrategy::parse)
            .unwrap_or_default();
        let merge_key = self
            .keyword("x-kubernetes-patch-merge-key")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let list_type = match self
            .keyword("x-kubernetes-list-type")
            .and_then(Value::as_str)
        {
            Some("atomic") => Some(ListType::Atomic),
            Some("set") => Some(ListType::Set),
            Some("map") => Some(ListType::Map),
            _ => None,
        };
        let list_map_keys = self
            .keyword("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|keys| {
                keys.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        PatchMeta {
            strategy,
            merge_key,
            list_type,
            list_map_keys,
        }
    }

    /// The GVKs this node declares (top-level kinds only).
    pub fn group_version_kinds(&self) -> Vec<GroupVersionKind> {
        gvks_of(self.resolved())
    }
}
