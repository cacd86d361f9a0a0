//! batch/v1: Job and CronJob.

use serde_json::{Map, Value};

use super::FieldError;
use super::apps::{selector_matches, validate_label_selector};
use super::cron::validate_cron_schedule;
use super::path::{
    Errs, Path, bool_field, enum_field, field, immutable, int_field, non_negative, str_field,
};
use super::pod::{require_restart_policy, validate_pod_template};

/// Gives a Job without `manualSelector: true` the selector and template
/// labels Kubernetes generates from its uid (`controller-uid`,
/// `batch.kubernetes.io/controller-uid`, `job-name`,
/// `batch.kubernetes.io/job-name`). The registry calls it on create, after
/// assigning the uid and before validation.
pub fn prepare_job_selector(job: &mut Value, uid: &str) {
    let name = job
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let Some(spec) = job.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let mut generated = Map::new();
    generated.insert("batch.kubernetes.io/controller-uid".into(), uid.into());
    let mut labels = generated.clone();
    labels.insert("controller-uid".into(), uid.into());
    labels.insert("batch.kubernetes.io/job-name".into(), name.clone().into());
    labels.insert("job-name".into(), name.into());
    if spec.get("selector").is_none_or(Value::is_null) {
        spec.insert(
            "selector".into(),
            serde_json::json!({ "matchLabels": Value::Object(generated) }),
        );
    }
    let template = spec
        .entry("template")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(t) = template.as_object_mut() {
        let meta = t
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(m) = meta.as_object_mut() {
            let existing = m
                .entry("labels")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(existing) = existing.as_object_mut() {
                for (k, v) in labels {
                    existing.entry(k).or_insert(v);
                }
            }
        }
    }
}

/// A JobSpec at `path` (in a Job, or a CronJob's jobTemplate when
/// `in_template`, where the selector is generated later).
fn validate_job_spec(spec: &Value, path: &Path, in_template: bool, errs: &mut Errs) {
    for key in [
        "parallelism",
        "completions",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        non_negative(spec, key, path, errs);
    }
    if let Some(v) = int_field(spec, "activeDeadlineSeconds", path, errs)
        && v <= 0
    {
        errs.push(FieldError::invalid(
            path.child("activeDeadlineSeconds"),
            &Value::from(v),
            "must be greater than 0",
        ));
    }
    enum_field(
        spec,
        "completionMode",
        path,
        &["NonIndexed", "Indexed"],
        false,
        errs,
    );
    if spec.get("completionMode").and_then(Value::as_str) == Some("Indexed")
        && spec.get("completions").is_none_or(Value::is_null)
    {
        errs.push(FieldError::required(
            path.child("completions"),
            "when completion mode is Indexed",
        ));
    }
    let manual = bool_field(spec, "manualSelector", path, errs) == Some(true);
    let template = field(spec, "template");
    let tp = path.child("template");
    match spec.get("selector").filter(|s| !s.is_null()) {
        Some(selector) => {
            validate_label_selector(selector, &path.child("selector"), errs);
            let labels = field(field(template, "metadata"), "labels");
            if !selector_matches(selector, labels) {
                errs.push(FieldError::invalid(
                    tp.child("metadata").child("labels"),
                    labels,
                    "`selector` does not match template `labels`",
                ));
            }
        }
        None if !in_template || manual => {
            errs.push(FieldError::required(path.child("selector"), ""))
        }
        None => {}
    }
    validate_pod_template(template, &tp, &[], errs);
    if let Some(policy) = template
        .pointer("/spec/restartPolicy")
        .and_then(Value::as_str)
        && policy == "Always"
    {
        require_restart_policy(template, &tp, &["OnFailure", "Never"], errs);
    }
}

pub(crate) fn validate_job(object: &Value, old: Option<&Value>, errs: &mut Errs) {
    let path = Path::root("spec");
    let spec = field(object, "spec");
    validate_job_spec(spec, &path, false, errs);
    if let Some(old) = old {
        let old_spec = field(old, "spec");
        for key in ["selector", "completionMode"] {
            immutable(spec, old_spec, key, &path, errs);
        }
        let indexed_scaling = spec.get("completionMode").and_then(Value::as_str) == Some("Indexed")
            && spec.get("completions") == spec.get("parallelism");
        if !indexed_scaling {
            immutable(spec, old_spec, "completions", &path, errs);
        }
        // The template may change only while the Job is suspended (the
        // scheduling directives); it is treated as immutable here.
        let suspended = spec.get("suspend").and_then(Value::as_bool) == Some(true);
        if !suspended {
            immutable(spec, old_spec, "template", &path, errs);
        }
    }
}

pub(crate) fn validate_cron_job(object: &Value, errs: &mut Errs) {
    let path = Path::root("spec");
    let spec = field(object, "spec");
    match str_field(spec, "schedule", &path, errs) {
        None | Some("") => errs.push(FieldError::required(path.child("schedule"), "")),
        Some(schedule) => {
            if schedule.contains("TZ") {
                errs.push(FieldError::invalid(
                    path.child("schedule"),
                    &Value::from(schedule),
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                ));
            } else if let Err(msg) = validate_cron_schedule(schedule) {
                errs.push(FieldError::invalid(
                    path.child("schedule"),
                    &Value::from(schedule),
                    &msg,
                ));
            }
        }
    }
    if let Some(tz) = str_field(spec, "timeZone", &path, errs) {
        let ok = !tz.is_empty()
            && !tz.starts_with('/')
            && !tz.contains("..")
            && tz
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'/' | b'_' | b'-' | b'+'));
        if !ok {
            errs.push(FieldError::invalid(
                path.child("timeZone"),
                &Value::from(tz),
                "unknown time zone",
            ));
        }
    }
    enum_field(
        spec,
        "concurrencyPolicy",
        &path,
        &["Allow", "Forbid", "Replace"],
        true,
        errs,
    );
    for key in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        non_negative(spec, key, &path, errs);
    }
    let jt = field(spec, "jobTemplate");
    let jp = path.child("jobTemplate");
    validate_job_spec(field(jt, "spec"), &jp.child("spec"), true, errs);
}
