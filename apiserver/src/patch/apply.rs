//! Server-side apply (`application/apply-patch+yaml`).
//!
//! [`server_side_apply`] merges an applied configuration into the live
//! object (absent when the apply creates it) and updates the ownership in
//! `metadata.managedFields`, in kube's order:
//! 1. **merge**: the configuration's fields are set; structs and maps merge
//!    key by key, associative lists item by item by their key fields
//!    (container `name`, port `containerPort`+`protocol`, ...), sets of
//!    primitives as unions; atomic values are replaced;
//! 2. **ownership**: the manager's `Apply` entry becomes exactly the set of
//!    paths the configuration names;
//! 3. **prune**: paths the manager applied last time and no longer applies
//!    are removed from the object, unless some manager (including this
//!    one, through the new configuration) still owns them or something
//!    under them; values nobody ever owned (defaults) stay;
//! 4. **conflicts**: paths the apply adds or changes that another manager
//!    owns are conflicts ([`ApplyError::Conflicts`], a 409); with `force`
//!    they move to the applier instead. Applying the value a field already
//!    has is no conflict: the field becomes shared;
//! 5. paths the apply removed leave every other manager's set;
//! 6. when `kubectl` applies to an object that still carries client-side
//!    apply's `kubectl.kubernetes.io/last-applied-configuration`, the
//!    annotation is set to the applied configuration (as kube's
//!    last-applied updater does), so a later client-side apply diffs
//!    against what was really applied; this is bookkeeping, not a change
//!    of ownership;
//! 7. the upgrade from client-side apply (kube's last-applied manager):
//!    an apply by `kubectl` is not refused for conflicts on fields the
//!    annotation names with the value they still have: what kubectl
//!    applied client-side is the user's, so such conflicts are forced
//!    (the first `kubectl apply --server-side` of a changed manifest after
//!    client-side applies takes the fields over; kubectl then migrates
//!    the `kubectl-client-side-apply` entry). Fields changed since by
//!    anyone else still conflict.
//!
//! The caller then runs the result through the usual update pipeline
//! (defaulting refills pruned fields that have defaults, validation).

use serde_json::{Map, Value};

use super::fieldpath::{
    ChildRef, FieldSet, PathElement, Shape, child_position, compare, display_path, field_set_of,
    shape_of,
};
use super::managed::{ManagedFields, Operation, Writer, owned_part};
use crate::openapi::Schema;

/// Client-side apply's record of the last applied configuration.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The manager whose applies keep [`LAST_APPLIED`] current (kubectl's
/// default server-side manager; others opt out by naming themselves).
const LAST_APPLIED_SYNCING_MANAGER: &str = "kubectl";

/// One field another manager owns with a different value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The owner, as kube names it (`"kubectl" with subresource "scale" using apps/v1`).
    pub manager: String,
    /// The path as kube prints it (`.spec.replicas`).
    pub field: String,
}

/// Why an apply was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The configuration is not a JSON object.
    #[error("the applied configuration must be an object")]
    NotAnObject,
    /// The configuration sets `metadata.managedFields`.
    #[error("metadata.managedFields must be nil")]
    ManagedFieldsInConfiguration,
    /// Fields owned by other managers would change.
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
}

/// kube's message: `Apply failed with 1 conflict: conflict with "m" using apps/v1: .spec.replicas`.
fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.manager, only.field
        );
    }
    let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
    managers.sort_unstable();
    managers.dedup();
    let mut lines = Vec::new();
    for manager in managers {
        lines.push(format!("conflicts with {manager}:"));
        lines.extend(
            conflicts
                .iter()
                .filter(|c| c.manager == manager)
                .map(|c| format!("- {}", c.field)),
        );
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// An apply request.
#[derive(Clone, Debug)]
pub struct ApplyRequest<'a> {
    /// The applier (`Writer::operation` is `Apply`).
    pub writer: Writer<'a>,
    /// `force=true`: take conflicting fields over.
    pub force: bool,
    /// Top-level fields this path cannot own (`status` through the main
    /// resource of kinds with a status subresource).
    pub ignored: &'a [&'a str],
}

/// Applies `config` to `live` (see the module documentation); the result
/// carries the new `managedFields`.
pub fn server_side_apply(
    live: Option<&Value>,
    config: &Value,
    schema: Option<Schema<'_>>,
    request: &ApplyRequest<'_>,
) -> Result<Value, ApplyError> {
    let Value::Object(config_map) = config else {
        return Err(ApplyError::NotAnObject);
    };
    if config
        .pointer("/metadata/managedFields")
        .is_some_and(|v| !v.is_null())
    {
        return Err(ApplyError::ManagedFieldsInConfiguration);
    }
    let mut config_map = config_map.clone();
    for field in request.ignored {
        config_map.remove(*field);
    }
    let config = Value::Object(config_map);
    let writer = Writer {
        operation: Operation::Apply,
        ..request.writer.clone()
    };

    let mut merged = merge(live, &config, schema);
    let mut managed = ManagedFields::of_object(live);
    let applied = field_set_of(&owned_part(&config, request.ignored), schema);
    let entry_is_new = !managed.entries.iter().any(|e| e.is_of(&writer));
    let previous = std::mem::replace(&mut managed.entry_mut(&writer).fields, applied.clone());

    let owned_by_anyone = managed
        .entries
        .iter()
        .fold(FieldSet::new(), |all, e| all.union(&e.fields));
    let dropped = previous.difference(&applied);
    prune(&mut merged, &dropped, &owned_by_anyone, schema);

    let comparison = compare(
        live.map(|l| owned_part(l, request.ignored)).as_ref(),
        Some(&owned_part(&merged, request.ignored)),
        schema,
    );
    let changed = comparison.changed();
    let mut conflicts: Vec<(Vec<PathElement>, Conflict)> = Vec::new();
    for entry in managed.entries.iter_mut().filter(|e| !e.is_of(&writer)) {
        let conflicting = entry.fields.intersection(&changed);
        if !conflicting.is_empty() {
            conflicts.extend(conflicting.paths().into_iter().map(|path| {
                let conflict = Conflict {
                    manager: entry.describe(),
                    field: display_path(&path),
                };
                (path, conflict)
            }));
            entry.fields = entry.fields.difference(&conflicting);
        }
        entry.fields = entry.fields.difference(&comparison.removed);
    }
    if !conflicts.is_empty()
        && !request.force
        && writer.manager == LAST_APPLIED_SYNCING_MANAGER
        && let Some(live) = live
    {
        let allowed = fields_still_as_last_applied(live, schema, request.ignored);
        conflicts.retain(|(path, _)| !allowed.contains(path));
    }
    if !conflicts.is_empty() && !request.force {
        return Err(ApplyError::Conflicts(
            conflicts.into_iter().map(|(_, c)| c).collect(),
        ));
    }
    if entry_is_new || !comparison.is_same() {
        managed.entry_mut(&writer).time = Some(writer.time.to_owned());
    }
    managed.drop_empty();
    managed.store_in(&mut merged);
    if writer.manager == LAST_APPLIED_SYNCING_MANAGER {
        sync_last_applied(&mut merged, &config);
    }
    Ok(merged)
}

/// The fields [`LAST_APPLIED`] of `live` names that still have the value
/// it records (kube's allowed conflicts of the client-side apply upgrade);
/// empty without a readable annotation of the object's own apiVersion.
fn fields_still_as_last_applied(
    live: &Value,
    schema: Option<Schema<'_>>,
    ignored: &[&str],
) -> FieldSet {
    let Some(last_applied) = live
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .filter(Value::is_object)
    else {
        return FieldSet::new();
    };
    // A configuration of another version names other paths.
    if last_applied.get("apiVersion") != live.get("apiVersion") {
        return FieldSet::new();
    }
    let last_applied = owned_part(&last_applied, ignored);
    let live = owned_part(live, ignored);
    let differences = compare(Some(&last_applied), Some(&live), schema);
    field_set_of(&last_applied, schema)
        .difference(&differences.modified)
        .difference(&differences.added)
        .difference(&differences.removed)
}

/// Sets [`LAST_APPLIED`] to `config` (without the annotation itself) when
/// `object` carries it.
fn sync_last_applied(object: &mut Value, config: &Value) {
    let Some(annotations) = object
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
        .filter(|a| a.contains_key(LAST_APPLIED))
    else {
        return;
    };
    let mut applied = config.clone();
    if let Some(own) = applied
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        own.remove(LAST_APPLIED);
    }
    if let Ok(text) = serde_json::to_string(&applied) {
        // kubectl writes the annotation with a trailing newline.
        annotations.insert(LAST_APPLIED.to_owned(), Value::String(format!("{text}\n")));
    }
}

/// Merges `config` into `live` by the schema's rules; `null`s in the
/// configuration are ignored.
pub fn merge(live: Option<&Value>, config: &Value, schema: Option<Schema<'_>>) -> Value {
    match shape_of(schema, config) {
        Shape::Leaf => config.clone(),
        Shape::Fields(schema) => {
            let mut out = match live {
                Some(Value::Object(map)) => map.clone(),
                _ => Map::new(),
            };
            for (key, value) in config.as_object().into_iter().flatten() {
                if value.is_null() {
                    continue;
                }
                let child_schema = schema.and_then(|s| s.child(key));
                let merged = merge(out.get(key), value, child_schema);
                out.insert(key.clone(), merged);
            }
            Value::Object(out)
        }
        Shape::Associative { keys, items } => {
            let mut out = match live {
                Some(Value::Array(list)) => list.clone(),
                _ => Vec::new(),
            };
            for item in config.as_array().into_iter().flatten() {
                let element = PathElement::key_of(item, &keys);
                let position = out
                    .iter()
                    .position(|x| element.is_some() && PathElement::key_of(x, &keys) == element);
                match position.and_then(|p| out.get_mut(p)) {
                    Some(slot) => *slot = merge(Some(slot), item, items),
                    None => out.push(merge(None, item, items)),
                }
            }
            Value::Array(out)
        }
        Shape::Set => {
            let mut out = match live {
                Some(Value::Array(list)) => list.clone(),
                _ => Vec::new(),
            };
            for item in config.as_array().into_iter().flatten() {
                if !out.contains(item) {
                    out.push(item.clone());
                }
            }
            Value::Array(out)
        }
    }
}

/// Removes from `value` the paths of `dropped` that `kept` has nothing at
/// or under; a kept descendant keeps its ancestors. Objects emptied by the
/// removal go too.
pub fn prune(value: &mut Value, dropped: &FieldSet, kept: &FieldSet, schema: Option<Schema<'_>>) {
    let keys = match shape_of(schema, value) {
        Shape::Associative { keys, .. } => keys,
        _ => Vec::new(),
    };
    let empty = FieldSet::new();
    let mut removals: Vec<ChildRef> = Vec::new();
    for (element, dropped_child) in dropped.children() {
        let Some(position) = child_position(value, element, &keys) else {
            continue;
        };
        let kept_child = kept.node(std::slice::from_ref(element)).unwrap_or(&empty);
        if dropped_child.is_member() && kept_child.is_empty() {
            removals.push(position);
            continue;
        }
        let child_schema = match &position {
            ChildRef::Field(name) => schema.and_then(|s| s.child(name)),
            ChildRef::Item(_) => schema.and_then(|s| s.items()),
        };
        let Some(child) = child_mut(value, &position) else {
            continue;
        };
        let was_empty = child.as_object().is_some_and(Map::is_empty);
        prune(child, dropped_child, kept_child, child_schema);
        if !was_empty && child.as_object().is_some_and(Map::is_empty) && kept_child.is_empty() {
            removals.push(position);
        }
    }
    // Later list positions first, so earlier ones stay valid.
    removals.sort_by(|a, b| match (a, b) {
        (ChildRef::Item(x), ChildRef::Item(y)) => y.cmp(x),
        _ => std::cmp::Ordering::Equal,
    });
    for removal in removals {
        match (removal, &mut *value) {
            (ChildRef::Field(name), Value::Object(map)) => {
                map.remove(&name);
            }
            (ChildRef::Item(index), Value::Array(list)) if index < list.len() => {
                list.remove(index);
            }
            _ => {}
        }
    }
}

fn child_mut<'v>(value: &'v mut Value, position: &ChildRef) -> Option<&'v mut Value> {
    match (position, value) {
        (ChildRef::Field(name), Value::Object(map)) => map.get_mut(name),
        (ChildRef::Item(index), Value::Array(list)) => list.get_mut(*index),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::openapi::{Definitions, GroupVersionKind};
    use crate::patch::managed::{Requested, record_update};

    fn schema() -> Option<Schema<'static>> {
        let defs = Definitions::embedded().expect("embedded definitions");
        defs.for_gvk(&GroupVersionKind::new("apps", "v1", "Deployment"))
    }

    fn writer(
        manager: &'static str,
        operation: Operation,
        subresource: &'static str,
    ) -> Writer<'static> {
        Writer {
            manager,
            operation,
            api_version: "apps/v1",
            subresource,
            time: "2026-01-01T00:00:00Z",
        }
    }

    fn apply(
        live: Option<&Value>,
        config: &Value,
        manager: &'static str,
        force: bool,
    ) -> Result<Value, ApplyError> {
        let request = ApplyRequest {
            writer: writer(manager, Operation::Apply, ""),
            force,
            ignored: &["status"],
        };
        server_side_apply(live, config, schema(), &request)
    }

    fn config(labels: Value, image: &str, replicas: Option<i64>) -> Value {
        let mut c = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": labels},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "web", "image": image}]}}
            }
        });
        if let Some(r) = replicas {
            c["spec"]["replicas"] = json!(r);
        }
        c
    }

    fn managers(object: &Value) -> Vec<String> {
        ManagedFields::of_object(Some(object))
            .entries
            .iter()
            .map(|e| format!("{}/{:?}/{}", e.manager, e.operation, e.subresource))
            .collect()
    }

    /// `.spec.template.spec.containers[name="web"].image`.
    fn image_path() -> Vec<PathElement> {
        vec![
            PathElement::field("spec"),
            PathElement::field("template"),
            PathElement::field("spec"),
            PathElement::field("containers"),
            PathElement::key_of(&json!({"name": "web"}), &["name".to_owned()]).expect("key"),
            PathElement::field("image"),
        ]
    }

    /// `live` after `kubectl scale --replicas=5`: an Update through the
    /// scale subresource.
    fn scaled_to_five(live: &Value) -> Value {
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        record_update(
            Some(live),
            &mut scaled,
            Requested::Keep,
            &writer("kubectl", Operation::Update, "scale"),
            schema(),
            &["status"],
        );
        scaled
    }

    #[test]
    fn create_then_reapply_is_a_no_op() {
        let first = apply(
            None,
            &config(json!({"app": "web"}), "nginx:1", Some(2)),
            "kubectl",
            false,
        )
        .expect("create");
        assert_eq!(first["spec"]["replicas"], 2);
        assert_eq!(managers(&first), vec!["kubectl/Apply/"]);
        let entry = &first["metadata"]["managedFields"][0];
        assert_eq!(entry["fieldsType"], "FieldsV1");
        assert_eq!(entry["fieldsV1"]["f:spec"]["f:replicas"], json!({}));
        assert!(entry["fieldsV1"]["f:metadata"].get("f:name").is_none());
        let again = apply(
            Some(&first),
            &config(json!({"app": "web"}), "nginx:1", Some(2)),
            "kubectl",
            false,
        )
        .expect("re-apply");
        assert_eq!(again, first);
    }

    #[test]
    fn dropped_fields_are_removed_and_changed_ones_set() {
        let live = apply(
            None,
            &config(json!({"app": "web", "tier": "front"}), "nginx:1", Some(2)),
            "kubectl",
            false,
        )
        .expect("create");
        let next = apply(
            Some(&live),
            &config(json!({"app": "web"}), "nginx:2", Some(2)),
            "kubectl",
            false,
        )
        .expect("apply");
        assert_eq!(next["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(
            next["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:2"
        );
        // Dropping the only label removes the emptied map too.
        let mut unlabelled = config(json!({}), "nginx:2", None);
        if let Some(meta) = unlabelled["metadata"].as_object_mut() {
            meta.remove("labels");
        }
        let none = apply(Some(&next), &unlabelled, "kubectl", false).expect("apply");
        assert!(none["metadata"].get("labels").is_none(), "{none}");
        assert!(none["spec"].get("replicas").is_none(), "{none}");
    }

    #[test]
    fn fields_owned_by_another_manager_survive_being_dropped() {
        let live = apply(
            None,
            &config(json!({"app": "web"}), "nginx:1", Some(2)),
            "a",
            false,
        )
        .expect("create");
        // "b" applies the same replicas: shared, no conflict.
        let shared =
            apply(Some(&live), &json!({"spec": {"replicas": 2}}), "b", false).expect("share");
        assert_eq!(managers(&shared).len(), 2);
        // "a" stops applying replicas: "b" still owns it, so it stays.
        let dropped = apply(
            Some(&shared),
            &config(json!({"app": "web"}), "nginx:1", None),
            "a",
            false,
        )
        .expect("drop");
        assert_eq!(dropped["spec"]["replicas"], 2);
        // "b" changes it: nobody else owns it any more, no conflict.
        let changed = apply(
            Some(&dropped),
            &json!({"spec": {"replicas": 4}}),
            "b",
            false,
        )
        .expect("change");
        assert_eq!(changed["spec"]["replicas"], 4);
    }

    #[test]
    fn conflicts_name_the_owner_and_force_takes_over() {
        let live = apply(
            None,
            &config(json!({"app": "web"}), "nginx:1", Some(3)),
            "kubectl",
            false,
        )
        .expect("create");
        // A scale through the scale subresource, recorded as an Update.
        let scaled = scaled_to_five(&live);
        assert_eq!(
            managers(&scaled),
            vec!["kubectl/Apply/", "kubectl/Update/scale"]
        );
        let apply_config = config(json!({"app": "web"}), "nginx:1", Some(3));
        let err = apply(Some(&scaled), &apply_config, "kubectl", false).expect_err("conflict");
        let ApplyError::Conflicts(conflicts) = &err else {
            panic!("{err:?}");
        };
        assert_eq!(
            conflicts,
            &vec![Conflict {
                manager: "\"kubectl\" with subresource \"scale\" using apps/v1".into(),
                field: ".spec.replicas".into(),
            }]
        );
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas"
        );
        let forced = apply(Some(&scaled), &apply_config, "kubectl", true).expect("force");
        assert_eq!(forced["spec"]["replicas"], 3);
        assert_eq!(managers(&forced), vec!["kubectl/Apply/"]);
    }

    #[test]
    fn updates_move_ownership_and_resets_clear_it() {
        let live = apply(
            None,
            &config(json!({"app": "web"}), "nginx:1", Some(2)),
            "kubectl",
            false,
        )
        .expect("create");
        let mut edited = live.clone();
        edited["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:9");
        record_update(
            Some(&live),
            &mut edited,
            Requested::Keep,
            &writer("kubectl-edit", Operation::Update, ""),
            schema(),
            &["status"],
        );
        let managed = ManagedFields::of_object(Some(&edited));
        let image = image_path();
        let owner: Vec<&str> = managed
            .entries
            .iter()
            .filter(|e| e.fields.contains(&image))
            .map(|e| e.manager.as_str())
            .collect();
        assert_eq!(owner, vec!["kubectl-edit"]);
        let mut cleared = edited.clone();
        cleared["metadata"]["managedFields"] = json!([{}]);
        let requested = crate::patch::requested(&cleared);
        assert_eq!(requested, Requested::Reset);
        record_update(
            Some(&edited),
            &mut cleared,
            requested,
            &writer("x", Operation::Update, ""),
            schema(),
            &[],
        );
        assert!(cleared["metadata"].get("managedFields").is_none());
        // Invalid entries are ignored: the stored ones stay.
        let mut bogus = edited.clone();
        bogus["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Bogus"}]);
        assert_eq!(crate::patch::requested(&bogus), Requested::Keep);
    }

    #[test]
    fn kubectl_keeps_the_client_side_annotation_current() {
        let mut live = apply(
            None,
            &config(json!({"app": "web"}), "nginx:1", Some(2)),
            "other",
            false,
        )
        .expect("create");
        live["metadata"]["annotations"] = json!({LAST_APPLIED: "{}\n"});
        let applied = config(json!({"app": "web"}), "nginx:1", Some(2));
        let next = apply(Some(&live), &applied, "kubectl", false).expect("apply");
        let text = next["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .expect("annotation");
        assert_eq!(
            serde_json::from_str::<Value>(text.trim_end()).expect("json"),
            applied
        );
        // Other managers leave it alone.
        let other = apply(Some(&live), &applied, "helm", false).expect("apply");
        assert_eq!(other["metadata"]["annotations"][LAST_APPLIED], "{}\n");
    }

    /// An object as `kubectl apply` (client-side) leaves it: written by
    /// `kubectl-client-side-apply` with the configuration in the annotation.
    fn client_side_applied(applied: &Value) -> Value {
        let mut object = applied.clone();
        object["metadata"]["annotations"] =
            json!({LAST_APPLIED: format!("{}\n", serde_json::to_string(applied).expect("json"))});
        record_update(
            None,
            &mut object,
            Requested::Keep,
            &writer("kubectl-client-side-apply", Operation::Update, ""),
            schema(),
            &["status"],
        );
        object
    }

    #[test]
    fn kubectl_takes_over_what_it_applied_client_side() {
        let live = client_side_applied(&config(json!({"app": "web"}), "nginx:1", Some(2)));
        let changed = config(json!({"app": "web"}), "nginx:2", Some(2));
        // Another manager changing the image conflicts with the client-side owner.
        let err = apply(Some(&live), &changed, "helm", false).expect_err("conflict");
        assert!(
            err.to_string().contains("kubectl-client-side-apply"),
            "expected a conflict with the client-side applier, got {err}"
        );
        // kubectl's own server-side apply is the upgrade path: no conflict.
        let upgraded = apply(Some(&live), &changed, "kubectl", false)
            .unwrap_or_else(|e| panic!("kubectl's apply of its own fields was refused: {e}"));
        assert_eq!(
            upgraded["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:2"
        );
        let image = image_path();
        let owners: Vec<String> = ManagedFields::of_object(Some(&upgraded))
            .entries
            .iter()
            .filter(|e| e.fields.contains(&image))
            .map(|e| e.manager.clone())
            .collect();
        assert_eq!(owners, ["kubectl"], "the image moved to the applier");
        let text = upgraded["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .unwrap_or_default();
        assert!(text.contains("nginx:2"), "annotation not synced: {text}");
    }

    #[test]
    fn fields_changed_since_the_client_side_apply_still_conflict() {
        let live = client_side_applied(&config(json!({"app": "web"}), "nginx:1", Some(2)));
        // A scale after the client-side apply: replicas no longer match
        // the annotation.
        let scaled = scaled_to_five(&live);
        let changed = config(json!({"app": "web"}), "nginx:2", Some(3));
        let err = apply(Some(&scaled), &changed, "kubectl", false).expect_err("conflict");
        let ApplyError::Conflicts(conflicts) = &err else {
            panic!("expected conflicts, got {err:?}");
        };
        let fields: Vec<&str> = conflicts.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            [".spec.replicas"],
            "only the field changed since the client-side apply conflicts: {err}"
        );
    }

    #[test]
    fn managed_fields_in_the_configuration_are_refused() {
        let mut c = config(json!({}), "nginx", None);
        c["metadata"]["managedFields"] = json!([]);
        assert_eq!(
            apply(None, &c, "kubectl", false),
            Err(ApplyError::ManagedFieldsInConfiguration)
        );
    }
}
