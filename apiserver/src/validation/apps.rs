//! apps/v1: Deployment, ReplicaSet, DaemonSet, StatefulSet.

use serde_json::Value;

use super::FieldError;
use super::meta::validate_labels;
use super::names::is_qualified_name;
use super::path::{
    Errs, Path, array_field, enum_field, field, int_field, non_negative, object_field, str_field,
    string_map,
};
use super::pod::{require_restart_policy, validate_pod_template};
use super::quantity::Quantity;

const PERCENT_MSG: &str = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";

/// A LabelSelector's syntax at `path`.
pub(crate) fn validate_label_selector(selector: &Value, path: &Path, errs: &mut Errs) {
    validate_labels(selector, "matchLabels", path, errs);
    for (i, expr) in array_field(selector, "matchExpressions", path, errs)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let ep = path.child("matchExpressions").index(i);
        let key = str_field(expr, "key", &ep, errs).unwrap_or("");
        for msg in is_qualified_name(key) {
            errs.push(FieldError::invalid(
                ep.child("key"),
                &Value::from(key),
                &msg,
            ));
        }
        let values = array_field(expr, "values", &ep, errs).map_or(0, Vec::len);
        match str_field(expr, "operator", &ep, errs).unwrap_or("") {
            "In" | "NotIn" => {
                if values == 0 {
                    errs.push(FieldError::required(
                        ep.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if values > 0 {
                    errs.push(FieldError::forbidden(
                        ep.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errs.push(FieldError::invalid(
                ep.child("operator"),
                &Value::from(other),
                "not a valid selector operator",
            )),
        }
    }
}

fn selector_is_empty(selector: &Value) -> bool {
    let labels = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.is_empty());
    let exprs = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_none_or(|a| a.is_empty());
    labels && exprs
}

/// Whether `selector` selects an object carrying `labels`.
pub(crate) fn selector_matches(selector: &Value, labels: &Value) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    if let Some(m) = selector.get("matchLabels").and_then(Value::as_object)
        && !m.iter().all(|(k, v)| label(k) == v.as_str())
    {
        return false;
    }
    let exprs = selector.get("matchExpressions").and_then(Value::as_array);
    exprs.into_iter().flatten().all(|e| {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match e.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" => label(key).is_some_and(|v| values.contains(&v)),
            "NotIn" => label(key).is_none_or(|v| !values.contains(&v)),
            "Exists" => label(key).is_some(),
            "DoesNotExist" => label(key).is_none(),
            _ => false,
        }
    })
}

/// `spec.selector` required, non-empty, valid, and matching the template's
/// labels. `what` names the kind in the empty-selector message.
pub(crate) fn validate_selector_and_template(
    spec: &Value,
    path: &Path,
    what: &str,
    errs: &mut Errs,
) {
    let sp = path.child("selector");
    match spec.get("selector") {
        None | Some(Value::Null) => errs.push(FieldError::required(&sp, "")),
        Some(selector) if !selector.is_object() => {
            errs.push(FieldError::invalid(&sp, selector, "must be of type object"));
        }
        Some(selector) => {
            validate_label_selector(selector, &sp, errs);
            if selector_is_empty(selector) {
                errs.push(FieldError::invalid(
                    &sp,
                    selector,
                    &format!("empty selector is invalid for {what}"),
                ));
            } else {
                let labels = field(field(field(spec, "template"), "metadata"), "labels");
                if !selector_matches(selector, labels) {
                    let shown = if labels.is_null() {
                        Value::Object(Default::default())
                    } else {
                        labels.clone()
                    };
                    errs.push(FieldError::invalid(
                        path.child("template").child("metadata").child("labels"),
                        &shown,
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
    }
}

/// An IntOrString that must be a non-negative int or a `N%` string;
/// returns the value as (number, is_percent).
fn int_or_percent(obj: &Value, key: &str, path: &Path, errs: &mut Errs) -> Option<(i64, bool)> {
    let fp = path.child(key);
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => {
            let v = n.as_i64().unwrap_or(-1);
            if v < 0 {
                errs.push(FieldError::invalid(
                    &fp,
                    &Value::from(v),
                    "must be greater than or equal to 0",
                ));
                None
            } else {
                Some((v, false))
            }
        }
        Some(Value::String(s)) => match s
            .strip_suffix('%')
            .and_then(|d| d.parse::<i64>().ok())
            .filter(|_| s.len() > 1 && s[..s.len() - 1].bytes().all(|c| c.is_ascii_digit()))
        {
            Some(p) => Some((p, true)),
            None => {
                errs.push(FieldError::invalid(
                    &fp,
                    &Value::from(s.as_str()),
                    PERCENT_MSG,
                ));
                None
            }
        },
        Some(other) => {
            errs.push(FieldError::invalid(
                &fp,
                other,
                "must be an integer or percentage",
            ));
            None
        }
    }
}

/// maxUnavailable/maxSurge of a rolling update; `surge_zero_msg` is the
/// kind's wording when both are zero.
fn validate_rolling(ru: &Value, path: &Path, zero_msg: &str, errs: &mut Errs) {
    let unavailable = int_or_percent(ru, "maxUnavailable", path, errs);
    let surge = int_or_percent(ru, "maxSurge", path, errs);
    if let Some((p, true)) = unavailable
        && p > 100
    {
        errs.push(FieldError::invalid(
            path.child("maxUnavailable"),
            field(ru, "maxUnavailable"),
            "must not be greater than 100%",
        ));
    }
    if matches!(unavailable, Some((0, _))) && matches!(surge, Some((0, _)) | None) {
        errs.push(FieldError::invalid(
            path.child("maxUnavailable"),
            field(ru, "maxUnavailable"),
            zero_msg,
        ));
    }
}

fn immutable_selector(spec: &Value, old: Option<&Value>, path: &Path, errs: &mut Errs) {
    if let Some(old) = old {
        super::path::immutable(spec, field(old, "spec"), "selector", path, errs);
    }
}

fn spec_of<'a>(object: &'a Value, errs: &mut Errs) -> Option<(&'a Value, Path)> {
    let path = Path::root("spec");
    match object.get("spec") {
        Some(spec @ Value::Object(_)) => Some((spec, path)),
        _ => {
            errs.push(FieldError::required("spec.selector", ""));
            None
        }
    }
}

pub(crate) fn validate_deployment(object: &Value, old: Option<&Value>, errs: &mut Errs) {
    let Some((spec, path)) = spec_of(object, errs) else {
        return;
    };
    for key in [
        "replicas",
        "minReadySeconds",
        "revisionHistoryLimit",
        "progressDeadlineSeconds",
    ] {
        non_negative(spec, key, &path, errs);
    }
    validate_selector_and_template(spec, &path, "deployment", errs);
    let template = field(spec, "template");
    validate_pod_template(template, &path.child("template"), &[], errs);
    require_restart_policy(template, &path.child("template"), &["Always"], errs);
    let strategy = field(spec, "strategy");
    let stp = path.child("strategy");
    enum_field(
        strategy,
        "type",
        &stp,
        &["Recreate", "RollingUpdate"],
        true,
        errs,
    );
    let ru = field(strategy, "rollingUpdate");
    match strategy.get("type").and_then(Value::as_str) {
        Some("Recreate") if !ru.is_null() => errs.push(FieldError::forbidden(
            stp.child("rollingUpdate"),
            "may not be specified when strategy `type` is 'Recreate'",
        )),
        Some("RollingUpdate") if ru.is_object() => validate_rolling(
            ru,
            &stp.child("rollingUpdate"),
            "may not be 0 when `maxSurge` is 0",
            errs,
        ),
        _ => {}
    }
    if let (Some(deadline), Some(min_ready)) = (
        int_field(spec, "progressDeadlineSeconds", &path, errs),
        spec.get("minReadySeconds").and_then(Value::as_i64),
    ) && deadline <= min_ready
    {
        errs.push(FieldError::invalid(
            path.child("progressDeadlineSeconds"),
            &Value::from(deadline),
            "must be greater than minReadySeconds",
        ));
    }
    immutable_selector(spec, old, &path, errs);
}

pub(crate) fn validate_replica_set(object: &Value, old: Option<&Value>, errs: &mut Errs) {
    let Some((spec, path)) = spec_of(object, errs) else {
        return;
    };
    for key in ["replicas", "minReadySeconds"] {
        non_negative(spec, key, &path, errs);
    }
    validate_selector_and_template(spec, &path, "deployment", errs);
    let template = field(spec, "template");
    validate_pod_template(template, &path.child("template"), &[], errs);
    require_restart_policy(template, &path.child("template"), &["Always"], errs);
    immutable_selector(spec, old, &path, errs);
}

pub(crate) fn validate_daemon_set(object: &Value, old: Option<&Value>, errs: &mut Errs) {
    let Some((spec, path)) = spec_of(object, errs) else {
        return;
    };
    for key in ["minReadySeconds", "revisionHistoryLimit"] {
        non_negative(spec, key, &path, errs);
    }
    validate_selector_and_template(spec, &path, "daemonset", errs);
    let template = field(spec, "template");
    validate_pod_template(template, &path.child("template"), &[], errs);
    require_restart_policy(template, &path.child("template"), &["Always"], errs);
    let strategy = field(spec, "updateStrategy");
    let stp = path.child("updateStrategy");
    enum_field(
        strategy,
        "type",
        &stp,
        &["OnDelete", "RollingUpdate"],
        true,
        errs,
    );
    let ru = field(strategy, "rollingUpdate");
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") && ru.is_object() {
        validate_rolling(
            ru,
            &stp.child("rollingUpdate"),
            "cannot be 0 when maxSurge is 0",
            errs,
        );
    }
    immutable_selector(spec, old, &path, errs);
}

const STS_UPDATABLE: &[&str] = &[
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

pub(crate) fn validate_stateful_set(object: &Value, old: Option<&Value>, errs: &mut Errs) {
    let Some((spec, path)) = spec_of(object, errs) else {
        return;
    };
    for key in ["replicas", "minReadySeconds", "revisionHistoryLimit"] {
        non_negative(spec, key, &path, errs);
    }
    enum_field(
        spec,
        "podManagementPolicy",
        &path,
        &["OrderedReady", "Parallel"],
        true,
        errs,
    );
    let strategy = field(spec, "updateStrategy");
    let stp = path.child("updateStrategy");
    enum_field(
        strategy,
        "type",
        &stp,
        &["RollingUpdate", "OnDelete"],
        true,
        errs,
    );
    let ru = field(strategy, "rollingUpdate");
    if ru.is_object() {
        if strategy.get("type").and_then(Value::as_str) == Some("OnDelete") {
            errs.push(FieldError::invalid(
                stp.child("rollingUpdate"),
                ru,
                "only allowed for updateStrategy 'RollingUpdate'",
            ));
        }
        non_negative(ru, "partition", &stp.child("rollingUpdate"), errs);
    }
    let retention = field(spec, "persistentVolumeClaimRetentionPolicy");
    if retention.is_object() {
        let rp = path.child("persistentVolumeClaimRetentionPolicy");
        for key in ["whenDeleted", "whenScaled"] {
            enum_field(retention, key, &rp, &["Retain", "Delete"], false, errs);
        }
    }
    let mut claim_names = Vec::new();
    for (i, claim) in array_field(spec, "volumeClaimTemplates", &path, errs)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let cp = path.child("volumeClaimTemplates").index(i);
        let meta = field(claim, "metadata");
        match str_field(meta, "name", &cp.child("metadata"), errs) {
            None | Some("") => {
                errs.push(FieldError::required(cp.child("metadata").child("name"), ""))
            }
            Some(name) => claim_names.push(name.to_owned()),
        }
        validate_pvc_spec(field(claim, "spec"), &cp.child("spec"), errs);
    }
    validate_selector_and_template(spec, &path, "statefulset", errs);
    let template = field(spec, "template");
    validate_pod_template(template, &path.child("template"), &claim_names, errs);
    require_restart_policy(template, &path.child("template"), &["Always"], errs);
    if let Some(old) = old {
        let strip = |v: &Value| {
            let mut s = field(v, "spec").clone();
            if let Some(m) = s.as_object_mut() {
                m.retain(|k, _| !STS_UPDATABLE.contains(&k.as_str()));
            }
            s
        };
        if strip(object) != strip(old) {
            errs.push(FieldError::forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
    }
}

fn validate_pvc_spec(spec: &Value, path: &Path, errs: &mut Errs) {
    const MODES: &[&str] = &[
        "ReadOnlyMany",
        "ReadWriteMany",
        "ReadWriteOnce",
        "ReadWriteOncePod",
    ];
    let modes = array_field(spec, "accessModes", path, errs);
    if modes.is_none_or(|m| m.is_empty()) {
        errs.push(FieldError::required(
            path.child("accessModes"),
            "at least 1 access mode is required",
        ));
    }
    for (i, m) in modes.into_iter().flatten().enumerate() {
        if !m.as_str().is_some_and(|s| MODES.contains(&s)) {
            errs.push(FieldError::not_supported(
                path.child("accessModes").index(i),
                m,
                MODES,
            ));
        }
    }
    let rp = path.child("resources");
    let requests: Vec<(&str, &str)> = string_map(field(spec, "resources"), "requests", &rp, errs);
    let _ = object_field(spec, "resources", path, errs);
    match requests.iter().find(|(k, _)| *k == "storage") {
        None => errs.push(FieldError::required(rp.key("storage"), "")),
        Some((_, q)) => match Quantity::parse(q) {
            Ok(v) if v.as_nanos() > 0 => {}
            Ok(_) => errs.push(FieldError::invalid(
                rp.child("requests").key("storage"),
                &Value::from(*q),
                "must be greater than zero",
            )),
            Err(_) => errs.push(FieldError::invalid(
                rp.child("requests").key("storage"),
                &Value::from(*q),
                super::quantity::QUANTITY_MSG,
            )),
        },
    }
    enum_field(
        spec,
        "volumeMode",
        path,
        &["Block", "Filesystem"],
        false,
        errs,
    );
}
