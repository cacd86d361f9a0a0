//! The three PATCH bodies of the Kubernetes API, applied to
//! `serde_json::Value`s.
//!
//! - [`json_patch`]: RFC 6902 (`application/json-patch+json`), all six
//!   operations, atomic; errors name the failing operation and its path.
//! - [`merge_patch`]: RFC 7386 (`application/merge-patch+json`): objects
//!   merge recursively, `null` deletes, everything else replaces.
//! - [`strategic_merge_patch`]: Kubernetes' strategic merge patch
//!   (`application/strategic-merge-patch+json`), what `kubectl apply`,
//!   `kubectl patch` and `kubectl set image` send for built-in kinds. The
//!   merge behaviour of each field comes from the schema
//!   ([`crate::openapi::Schema`]): `x-kubernetes-patch-strategy` and
//!   `x-kubernetes-patch-merge-key`.
//!
//! # Strategic merge rules implemented
//!
//! Maps:
//! - keys merge recursively; a `null` value deletes the key; a key absent
//!   from the live object takes the patch value (cleaned of directives and
//!   nulls); a scalar, or a value of another type, replaces;
//! - `$patch: replace` replaces the whole map by the rest of the patch map;
//!   `$patch: delete` empties it; `$patch: merge` is the default;
//! - `$retainKeys: [k...]` first drops every live key not listed (used by
//!   fields with the `retainKeys` strategy: Deployment `strategy`, volume
//!   sources);
//! - `$deleteFromPrimitiveList/<field>: [v...]` removes those values from
//!   the live primitive list `<field>`;
//! - `$setElementOrder/<field>: [...]` gives the final order of list
//!   `<field>` (merge-key stubs such as `{"name": "app"}` for lists of maps,
//!   the values for primitive lists), also when `<field>` itself is not in
//!   the patch.
//!
//! Lists:
//! - strategy `merge` with a merge key (containers by `name`, ports by
//!   `containerPort`, Service ports by `port`, env by `name`, volumes by
//!   `name`, volumeMounts by `mountPath`, ...): a patch item whose key
//!   matches a live item is merged into it as a map (recursively), other
//!   items are added; an item `{"$patch": "delete", <key>: v}` removes the
//!   live item with that key; a patch item without the merge key is an
//!   error;
//! - strategy `merge` on a primitive list (finalizers): set union;
//! - any list containing `{"$patch": "replace"}` is replaced by its other
//!   items;
//! - no `merge` strategy (or no schema): the list is replaced.
//!
//! Order of a merged list, as Kubernetes produces it: items named in
//! `$setElementOrder` (or, without it, items present in the patch) are
//! placed in that order; items only in the live object keep their live
//! relative order; the two sequences are interleaved by comparing live
//! positions, and a new item (no live position) goes before the live item
//! it is compared with. So without `$setElementOrder` a newly added item
//! comes *first* (the behaviour the Kubernetes documentation shows for
//! `kubectl patch` adding a container), while merged items stay in place.
//!
//! Without a schema (a field missing from the definitions) the rules are
//! those of JSON merge patch: maps merge, lists are replaced; directives are
//! still interpreted so they never end up in stored objects.
//!
//! # Field ownership and server-side apply
//!
//! - [`fieldpath`]: field sets in the fieldsV1 form, the field set of a
//!   value and the comparison of two versions, walked by the same schema
//!   metadata (list-map keys, merge keys, atomic types);
//! - [`managed`]: `metadata.managedFields` entries and the `Update`
//!   ownership every create, update and patch records;
//! - [`apply`]: server-side apply (`application/apply-patch+yaml`):
//!   merge, pruning of dropped fields, conflicts and `force`.

pub mod apply;
pub mod fieldpath;
mod json;
pub mod managed;
mod strategic;

pub use apply::{ApplyError, ApplyRequest, Conflict, server_side_apply};
pub use json::{json_patch, merge_patch};
pub use managed::{ManagedFields, Operation, Requested, Writer, record_update, requested};
pub use strategic::strategic_merge_patch;

/// Errors applying a patch. `path` is the dotted field path of the problem
/// (`spec.template.spec.containers[1]`), empty for the root.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The JSON patch document is malformed.
    #[error("invalid JSON patch: {message}")]
    InvalidJsonPatch {
        /// What is wrong.
        message: String,
    },
    /// A JSON patch operation failed.
    #[error("JSON patch operation {index} ({op} {path}) failed: {message}")]
    JsonPatchFailed {
        /// Index of the operation in the patch.
        index: usize,
        /// Operation name (`test`, `remove`, ...).
        op: String,
        /// The operation's path (JSON pointer).
        path: String,
        /// Why it failed.
        message: String,
    },
    /// A value that must be an object is not.
    #[error("{what} at {path:?} must be a JSON object")]
    NotAnObject {
        /// Where.
        path: String,
        /// What was expected to be an object.
        what: &'static str,
    },
    /// A `$patch`, `$retainKeys`, `$setElementOrder` or
    /// `$deleteFromPrimitiveList` directive is malformed.
    #[error("invalid directive at {path:?}: {message}")]
    InvalidDirective {
        /// Where.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// An item of a merge list lacks the merge key.
    #[error("list item at {path:?} does not contain declared merge key {key:?}")]
    MissingMergeKey {
        /// The item's path.
        path: String,
        /// The merge key.
        key: String,
    },
}
