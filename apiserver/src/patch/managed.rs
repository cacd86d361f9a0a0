//! `metadata.managedFields`: who owns which fields of an object.
//!
//! Every write records ownership as kube-apiserver does:
//! - a create, update or non-apply patch is an `Update` by its field
//!   manager ([`record_update`]): the paths it added or changed become its
//!   own (merged into its earlier `Update` entry) and are taken from every
//!   other manager; removed paths leave every set;
//! - a server-side apply is an `Apply` ([`super::apply`]).
//!
//! Managers are told apart by (manager, operation, subresource, and for
//! `Update` the apiVersion), as kube's manager identifiers are; entries are
//! sorted as kube sorts them (Apply first, then by time, manager,
//! apiVersion, subresource).
//!
//! A request may carry `managedFields` itself. As in kube: absent, `null`
//! or invalid entries keep the stored ones; `[]` or `[{}]` clear them (and
//! nothing is recorded for that write); a valid list replaces them before
//! the write is recorded (how kubectl migrates client-side-apply ownership
//! to server-side apply).
//!
//! Identity and bookkeeping fields (`apiVersion`, `kind`, `metadata.name`,
//! `namespace`, `uid`, `resourceVersion`, `generation`,
//! `creationTimestamp`, `managedFields`, ...) are never owned; the caller
//! names further top-level fields a write cannot own (`status` through the
//! main resource of kinds with a status subresource, `spec` through
//! `/status`).

use serde_json::{Map, Value, json};

use super::fieldpath::{Comparison, FieldSet, FieldSetError, compare};
use crate::openapi::Schema;

/// Metadata fields no manager owns.
const UNOWNED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Errors reading `managedFields`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManagedFieldsError {
    /// `managedFields` is not a list of objects.
    #[error("managedFields must be a list of ManagedFieldsEntry objects")]
    NotAList,
    /// An entry is incomplete or has an unknown operation.
    #[error("managedFields[{index}]: {message}")]
    InvalidEntry {
        /// Position of the entry.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// An entry's fieldsV1 cannot be read.
    #[error("managedFields[{index}].fieldsV1: {source}")]
    InvalidFields {
        /// Position of the entry.
        index: usize,
        /// The parse error.
        source: FieldSetError,
    },
}

/// `Apply` or `Update`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Create, update, or a non-apply patch.
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Apply => "Apply",
            Self::Update => "Update",
        }
    }
}

/// Who writes, and through which path: what identifies a manager's entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Writer<'a> {
    /// The field manager.
    pub manager: &'a str,
    /// Apply or Update.
    pub operation: Operation,
    /// The resource's group/version.
    pub api_version: &'a str,
    /// `""`, `status`, `scale`, ...
    pub subresource: &'a str,
    /// The time to stamp on a changed entry (RFC 3339).
    pub time: &'a str,
}

/// One `managedFields` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedFieldsEntry {
    /// The field manager.
    pub manager: String,
    /// Apply or Update.
    pub operation: Operation,
    /// The group/version the set refers to.
    pub api_version: String,
    /// When the entry last changed the object.
    pub time: Option<String>,
    /// The subresource written through (`""` for the main resource).
    pub subresource: String,
    /// The owned paths.
    pub fields: FieldSet,
}

impl ManagedFieldsEntry {
    /// Whether this entry belongs to `writer` (kube's manager identifier:
    /// apply entries ignore the apiVersion).
    pub fn is_of(&self, writer: &Writer<'_>) -> bool {
        self.manager == writer.manager
            && self.operation == writer.operation
            && self.subresource == writer.subresource
            && (self.operation == Operation::Apply || self.api_version == writer.api_version)
    }

    /// How kube names this manager in conflict messages:
    /// `"kubectl" with subresource "scale" using apps/v1`.
    pub fn describe(&self) -> String {
        let mut text = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            text.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == Operation::Update {
            text.push_str(&format!(" using {}", self.api_version));
        }
        text
    }

    fn decode(index: usize, value: &Value) -> Result<Self, ManagedFieldsError> {
        let invalid = |message: &str| ManagedFieldsError::InvalidEntry {
            index,
            message: message.to_owned(),
        };
        let text = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or_default();
        let operation = match text("operation") {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            other => return Err(invalid(&format!("unknown operation {other:?}"))),
        };
        if text("manager").is_empty() {
            return Err(invalid("manager is required"));
        }
        if text("fieldsType") != "FieldsV1" {
            return Err(invalid("fieldsType must be FieldsV1"));
        }
        let fields = match value.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::new(),
            Some(v) => FieldSet::from_fields_v1(v)
                .map_err(|source| ManagedFieldsError::InvalidFields { index, source })?,
        };
        Ok(Self {
            manager: text("manager").to_owned(),
            operation,
            api_version: text("apiVersion").to_owned(),
            time: value.get("time").and_then(Value::as_str).map(str::to_owned),
            subresource: text("subresource").to_owned(),
            fields,
        })
    }

    fn encode(&self) -> Value {
        let mut entry = Map::new();
        entry.insert("manager".into(), json!(self.manager));
        entry.insert("operation".into(), json!(self.operation.as_str()));
        entry.insert("apiVersion".into(), json!(self.api_version));
        if let Some(time) = &self.time {
            entry.insert("time".into(), json!(time));
        }
        entry.insert("fieldsType".into(), json!("FieldsV1"));
        entry.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if !self.subresource.is_empty() {
            entry.insert("subresource".into(), json!(self.subresource));
        }
        Value::Object(entry)
    }
}

/// All entries of an object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManagedFields {
    /// The entries (unordered until encoded).
    pub entries: Vec<ManagedFieldsEntry>,
}

impl ManagedFields {
    /// Reads a `managedFields` list.
    pub fn decode(value: &Value) -> Result<Self, ManagedFieldsError> {
        let list = value.as_array().ok_or(ManagedFieldsError::NotAList)?;
        let entries = list
            .iter()
            .enumerate()
            .map(|(i, v)| ManagedFieldsEntry::decode(i, v))
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    /// The stored entries of `object`; unreadable ones count as none
    /// (they can only come from an older writer and must not block
    /// writes).
    pub fn of_object(object: Option<&Value>) -> Self {
        object
            .and_then(|o| o.pointer("/metadata/managedFields"))
            .and_then(|v| Self::decode(v).ok())
            .unwrap_or_default()
    }

    /// The `managedFields` list, sorted as kube sorts it.
    pub fn encode(&self) -> Value {
        let mut entries: Vec<&ManagedFieldsEntry> = self
            .entries
            .iter()
            .filter(|e| !e.fields.is_empty())
            .collect();
        entries.sort_by(|a, b| {
            (
                a.operation,
                &a.time,
                &a.manager,
                &a.api_version,
                &a.subresource,
            )
                .cmp(&(
                    b.operation,
                    &b.time,
                    &b.manager,
                    &b.api_version,
                    &b.subresource,
                ))
        });
        Value::Array(
            entries
                .into_iter()
                .map(ManagedFieldsEntry::encode)
                .collect(),
        )
    }

    /// The entry of `writer`, created empty when missing.
    pub fn entry_mut(&mut self, writer: &Writer<'_>) -> &mut ManagedFieldsEntry {
        let position = match self.entries.iter().position(|e| e.is_of(writer)) {
            Some(p) => p,
            None => {
                self.entries.push(ManagedFieldsEntry {
                    manager: writer.manager.to_owned(),
                    operation: writer.operation,
                    api_version: writer.api_version.to_owned(),
                    time: None,
                    subresource: writer.subresource.to_owned(),
                    fields: FieldSet::new(),
                });
                self.entries.len() - 1
            }
        };
        &mut self.entries[position]
    }

    /// Drops entries that own nothing.
    pub fn drop_empty(&mut self) {
        self.entries.retain(|e| !e.fields.is_empty());
    }

    /// Writes the entries into `object` (removing the field when empty).
    pub fn store_in(&self, object: &mut Value) {
        let Some(meta) = object
            .as_object_mut()
            .map(|o| o.entry("metadata").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut)
        else {
            return;
        };
        match self.encode() {
            Value::Array(list) if list.is_empty() => {
                meta.remove("managedFields");
            }
            list => {
                meta.insert("managedFields".into(), list);
            }
        }
    }
}

/// What a request said about `managedFields`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requested {
    /// Nothing usable: keep the stored entries.
    Keep,
    /// `[]` or `[{}]`: clear them.
    Reset,
    /// A valid list replacing them.
    Replace(ManagedFields),
}

/// Reads `metadata.managedFields` of a request's object.
pub fn requested(object: &Value) -> Requested {
    match object.pointer("/metadata/managedFields") {
        None | Some(Value::Null) => Requested::Keep,
        Some(Value::Array(list))
            if list.is_empty()
                || (list.len() == 1 && list[0].as_object().is_some_and(Map::is_empty)) =>
        {
            Requested::Reset
        }
        Some(value) => match ManagedFields::decode(value) {
            Ok(fields) if !fields.entries.is_empty() => Requested::Replace(fields),
            _ => Requested::Keep,
        },
    }
}

/// `object` without the fields no manager owns (and without the
/// caller's `ignored` top-level fields).
pub fn owned_part(object: &Value, ignored: &[&str]) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
        for field in ignored {
            map.remove(*field);
        }
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in UNOWNED_METADATA {
                meta.remove(*field);
            }
            if meta.is_empty() {
                map.remove("metadata");
            }
        }
    }
    copy
}

/// Records an `Update` by `writer` that turned `live` (absent on create)
/// into `new`, and stores the resulting entries in `new`.
pub fn record_update(
    live: Option<&Value>,
    new: &mut Value,
    requested: Requested,
    writer: &Writer<'_>,
    schema: Option<Schema<'_>>,
    ignored: &[&str],
) {
    let mut managed = match requested {
        Requested::Reset => {
            ManagedFields::default().store_in(new);
            return;
        }
        Requested::Replace(fields) => fields,
        Requested::Keep => ManagedFields::of_object(live),
    };
    let comparison = compare(
        live.map(|l| owned_part(l, ignored)).as_ref(),
        Some(&owned_part(new, ignored)),
        schema,
    );
    if !comparison.is_same() {
        take_ownership(&mut managed, &comparison, writer);
    }
    managed.store_in(new);
}

/// Moves the changed paths of `comparison` to `writer`'s entry and drops
/// removed paths everywhere.
fn take_ownership(managed: &mut ManagedFields, comparison: &Comparison, writer: &Writer<'_>) {
    let changed = comparison.changed();
    for entry in &mut managed.entries {
        if !entry.is_of(writer) {
            entry.fields = entry
                .fields
                .difference(&changed)
                .difference(&comparison.removed);
        }
    }
    let mine = managed.entry_mut(writer);
    mine.fields = mine.fields.union(&changed).difference(&comparison.removed);
    mine.time = Some(writer.time.to_owned());
    managed.drop_empty();
}
