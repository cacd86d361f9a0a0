//! What a DELETE does to a stored object, decided without storage: kube's
//! graceful deletion and its garbage-collection finalizers.
//!
//! The decision follows kube-apiserver's generic store (`BeforeDelete`,
//! `deletionFinalizersForGarbageCollection`, `markAsDeleting`):
//!
//! 1. **Grace period** (pods only, the one kind with a graceful delete
//!    strategy). A pod not yet being deleted gets `deletionTimestamp` =
//!    now + grace and `deletionGracePeriodSeconds` = grace, where grace is
//!    the request's `gracePeriodSeconds`, else
//!    `spec.terminationGracePeriodSeconds`, else 30; it is 0 for a pod that
//!    is not bound to a node or already `Succeeded`/`Failed`, and a negative
//!    request counts as 1. A pod already counting down may only have its
//!    grace period shortened (the deadline moves by the difference); any
//!    other DELETE leaves it untouched, finalizers included, as kube does.
//! 2. **Finalizers**: an explicit `propagationPolicy` (or the legacy
//!    `orphanDependents`, already folded into it by the HTTP layer) sets
//!    `orphan` (Orphan) or `foregroundDeletion` (Foreground) and removes the
//!    other; Background removes both. Without a policy, the finalizers the
//!    object carries stay. Every kind served here defaults to Background,
//!    as apps/v1 and core/v1 do in kube.
//! 3. **Outcome**: with finalizers left, the object stays with a
//!    `deletionTimestamp` (kept when already set and not later than now)
//!    and, outside a graceful countdown, `deletionGracePeriodSeconds: 0`;
//!    a pod counting down stays; anything else is removed at once.
//!
//! The garbage collector in the controller manager does the rest: it
//! deletes dependents and removes `foregroundDeletion`, or strips the
//! owner references and removes `orphan`.

use serde_json::{Value, json};

use super::fields::{meta_str, metadata_mut};
use crate::http::clock::{format_rfc3339, parse_rfc3339};
use crate::http::request::PropagationPolicy;

/// The finalizer of an object whose dependents are deleted first.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// The finalizer of an object whose dependents lose their reference to it.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// A pod's grace period when neither the request nor the pod names one.
pub const DEFAULT_POD_GRACE_SECONDS: i64 = 30;

/// The DeleteOptions that matter for the decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeleteRequest {
    pub propagation_policy: Option<PropagationPolicy>,
    pub grace_period_seconds: Option<i64>,
}

/// How the deleted object's kind is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindStrategy {
    /// Removed at once unless finalizers hold it.
    Immediate,
    /// Pods: a grace period lets the node stop the containers first.
    GracefulPod,
}

/// What the registry does with the stored object.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Remove it from storage now.
    Remove,
    /// Store this new state; the object stays until its finalizers are
    /// gone or its grace period is over.
    Keep(Value),
    /// A graceful deletion is already pending and the request does not
    /// shorten it: nothing changes.
    Pending,
}

/// Decides what deleting `current` with `request` does at `now` (seconds
/// since the epoch).
pub fn plan(current: &Value, request: DeleteRequest, kind: KindStrategy, now: i64) -> Outcome {
    let mut object = current.clone();
    let being_deleted = meta_str(current, "deletionTimestamp").is_some();
    let grace = match kind {
        KindStrategy::Immediate => None,
        KindStrategy::GracefulPod => {
            let requested = request
                .grace_period_seconds
                .map(|g| if g < 0 { 1 } else { g });
            if being_deleted {
                match shorten_pending_grace(&mut object, requested, now) {
                    PendingGrace::Expired => None,
                    PendingGrace::Unchanged => return Outcome::Pending,
                    PendingGrace::Shortened(grace) => Some(grace),
                }
            } else {
                let grace = pod_grace_period(current, requested);
                start_deletion(&mut object, now + grace, grace);
                Some(grace)
            }
        }
    };
    let finalizers = finalizers_after(current, request.propagation_policy);
    set_finalizers(&mut object, &finalizers);
    let held = !finalizers.is_empty();
    match grace {
        Some(grace) if grace > 0 || held => Outcome::Keep(object),
        Some(_) => Outcome::Remove,
        None if held => {
            mark_as_deleting(&mut object, now);
            Outcome::Keep(object)
        }
        None => Outcome::Remove,
    }
}

/// Whether a write of `object` (an update or patch) removes it instead: it
/// is being deleted, no finalizer is left and no grace period is counting
/// down (a terminating pod stays until its node deletes it with grace 0).
pub fn removed_on_write(object: &Value) -> bool {
    meta_str(object, "deletionTimestamp").is_some()
        && finalizers(object).is_empty()
        && object
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .is_none_or(|grace| grace <= 0)
}

/// A pod's grace period for a first DELETE.
fn pod_grace_period(pod: &Value, requested: Option<i64>) -> i64 {
    let unbound = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    let terminal = matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if unbound || terminal {
        return 0;
    }
    requested
        .or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(DEFAULT_POD_GRACE_SECONDS)
        .max(0)
}

enum PendingGrace {
    /// No countdown (grace 0 or unset): deletion continues as for other kinds.
    Expired,
    /// The request does not shorten the countdown.
    Unchanged,
    /// The countdown now ends earlier; the new grace period.
    Shortened(i64),
}

/// A second DELETE of a pod being deleted: only a shorter grace period
/// changes anything; the deadline moves back by the difference.
fn shorten_pending_grace(object: &mut Value, requested: Option<i64>, now: i64) -> PendingGrace {
    let pending = object
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if pending <= 0 {
        return PendingGrace::Expired;
    }
    let Some(requested) = requested.filter(|g| *g < pending) else {
        return PendingGrace::Unchanged;
    };
    let deadline = meta_str(object, "deletionTimestamp")
        .and_then(parse_rfc3339)
        .unwrap_or(now + pending);
    let meta = metadata_mut(object);
    meta.insert(
        "deletionTimestamp".into(),
        json!(format_rfc3339(deadline - pending + requested)),
    );
    meta.insert("deletionGracePeriodSeconds".into(), json!(requested));
    PendingGrace::Shortened(requested)
}

/// First deletion mark: the deadline, the grace period and, as kube does
/// for objects with a generation, a generation bump.
fn start_deletion(object: &mut Value, deadline: i64, grace: i64) {
    let meta = metadata_mut(object);
    meta.insert("deletionTimestamp".into(), json!(format_rfc3339(deadline)));
    meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
    if let Some(generation) = meta
        .get("generation")
        .and_then(Value::as_i64)
        .filter(|g| *g > 0)
    {
        meta.insert("generation".into(), json!(generation + 1));
    }
}

/// kube's `markAsDeleting`: an object held by finalizers is being deleted
/// from now (an earlier timestamp stays) with no grace period.
fn mark_as_deleting(object: &mut Value, now: i64) {
    let existing = meta_str(object, "deletionTimestamp").map(|t| parse_rfc3339(t).unwrap_or(now));
    match existing {
        None => start_deletion(object, now, 0),
        Some(at) => {
            let meta = metadata_mut(object);
            if at > now {
                meta.insert("deletionTimestamp".into(), json!(format_rfc3339(now)));
            }
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        }
    }
}

/// The object's finalizers.
pub fn finalizers(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The finalizers after a DELETE with `policy`: the garbage-collection
/// ones follow the policy; without one, whatever the object carries stays.
fn finalizers_after(object: &Value, policy: Option<PropagationPolicy>) -> Vec<String> {
    let current = finalizers(object);
    let Some(policy) = policy else {
        return current;
    };
    let mut kept: Vec<String> = current
        .iter()
        .filter(|f| *f != ORPHAN_FINALIZER && *f != FOREGROUND_FINALIZER)
        .cloned()
        .collect();
    match policy {
        PropagationPolicy::Orphan => kept.push(ORPHAN_FINALIZER.to_owned()),
        PropagationPolicy::Foreground => kept.push(FOREGROUND_FINALIZER.to_owned()),
        PropagationPolicy::Background => {}
    }
    // The same set in another order is no change (kube compares sets).
    let mut before = current.clone();
    let mut after = kept.clone();
    before.sort();
    after.sort();
    if before == after { current } else { kept }
}

fn set_finalizers(object: &mut Value, finalizers: &[String]) {
    let meta = metadata_mut(object);
    if finalizers.is_empty() {
        meta.remove("finalizers");
    } else {
        meta.insert("finalizers".into(), json!(finalizers));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn object(finalizers: &[&str]) -> Value {
        let mut o = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "generation": 2},
        });
        if !finalizers.is_empty() {
            o["metadata"]["finalizers"] = json!(finalizers);
        }
        o
    }

    fn pod(node: Option<&str>, phase: &str, termination_grace: Option<i64>) -> Value {
        let mut p = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "uid": "u2"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": phase},
        });
        if let Some(node) = node {
            p["spec"]["nodeName"] = json!(node);
        }
        if let Some(grace) = termination_grace {
            p["spec"]["terminationGracePeriodSeconds"] = json!(grace);
        }
        p
    }

    fn request(policy: Option<PropagationPolicy>, grace: Option<i64>) -> DeleteRequest {
        DeleteRequest {
            propagation_policy: policy,
            grace_period_seconds: grace,
        }
    }

    fn kept(outcome: Outcome) -> Value {
        match outcome {
            Outcome::Keep(o) => o,
            other => panic!("expected the object to stay, got {other:?}"),
        }
    }

    #[test]
    fn background_and_no_policy_remove_objects_without_finalizers() {
        for policy in [None, Some(PropagationPolicy::Background)] {
            let outcome = plan(
                &object(&[]),
                request(policy, None),
                KindStrategy::Immediate,
                NOW,
            );
            assert_eq!(outcome, Outcome::Remove, "{policy:?}");
        }
    }

    #[test]
    fn foreground_and_orphan_add_their_finalizer_and_keep_the_object() {
        for (policy, finalizer) in [
            (PropagationPolicy::Foreground, FOREGROUND_FINALIZER),
            (PropagationPolicy::Orphan, ORPHAN_FINALIZER),
        ] {
            let o = kept(plan(
                &object(&[]),
                request(Some(policy), None),
                KindStrategy::Immediate,
                NOW,
            ));
            assert_eq!(finalizers(&o), [finalizer]);
            assert_eq!(
                meta_str(&o, "deletionTimestamp"),
                Some(&*format_rfc3339(NOW))
            );
            assert_eq!(o["metadata"]["deletionGracePeriodSeconds"], 0);
            assert_eq!(o["metadata"]["generation"], 3, "generation bumped");
        }
    }

    #[test]
    fn a_second_delete_swaps_or_drops_the_gc_finalizers() {
        let mut orphaning = object(&["example.com/keep", ORPHAN_FINALIZER]);
        orphaning["metadata"]["deletionTimestamp"] = json!(format_rfc3339(NOW - 10));
        orphaning["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        let o = kept(plan(
            &orphaning,
            request(Some(PropagationPolicy::Foreground), None),
            KindStrategy::Immediate,
            NOW,
        ));
        assert_eq!(finalizers(&o), ["example.com/keep", FOREGROUND_FINALIZER]);
        assert_eq!(
            meta_str(&o, "deletionTimestamp"),
            Some(&*format_rfc3339(NOW - 10)),
            "the first deletion time stays"
        );
        // No policy: what the object carries stays.
        let o = kept(plan(
            &orphaning,
            request(None, None),
            KindStrategy::Immediate,
            NOW,
        ));
        assert_eq!(finalizers(&o), ["example.com/keep", ORPHAN_FINALIZER]);
        // Background drops the GC finalizer; the last one gone means removal.
        let mut only_orphan = object(&[ORPHAN_FINALIZER]);
        only_orphan["metadata"]["deletionTimestamp"] = json!(format_rfc3339(NOW - 10));
        assert_eq!(
            plan(
                &only_orphan,
                request(Some(PropagationPolicy::Background), None),
                KindStrategy::Immediate,
                NOW
            ),
            Outcome::Remove
        );
    }

    #[test]
    fn other_finalizers_hold_a_background_delete() {
        let o = kept(plan(
            &object(&["example.com/keep"]),
            request(Some(PropagationPolicy::Background), None),
            KindStrategy::Immediate,
            NOW,
        ));
        assert_eq!(finalizers(&o), ["example.com/keep"]);
        assert!(meta_str(&o, "deletionTimestamp").is_some());
    }

    #[test]
    fn bound_pods_count_down_their_grace_period() {
        let cases = [
            (None, None, 30),
            (Some(12), None, 12),
            (Some(12), Some(5), 5),
            (None, Some(-3), 1),
        ];
        for (spec_grace, requested, expected) in cases {
            let p = kept(plan(
                &pod(Some("node-1"), "Running", spec_grace),
                request(None, requested),
                KindStrategy::GracefulPod,
                NOW,
            ));
            assert_eq!(
                p["metadata"]["deletionGracePeriodSeconds"], expected,
                "spec {spec_grace:?}, request {requested:?}"
            );
            assert_eq!(
                meta_str(&p, "deletionTimestamp"),
                Some(&*format_rfc3339(NOW + expected))
            );
        }
    }

    #[test]
    fn unbound_terminal_and_zero_grace_pods_go_at_once() {
        let cases = [
            (pod(None, "Pending", Some(30)), None),
            (pod(Some("node-1"), "Succeeded", Some(30)), None),
            (pod(Some("node-1"), "Failed", Some(30)), None),
            (pod(Some("node-1"), "Running", Some(30)), Some(0)),
        ];
        for (p, grace) in cases {
            assert_eq!(
                plan(&p, request(None, grace), KindStrategy::GracefulPod, NOW),
                Outcome::Remove,
                "{p}"
            );
        }
        // Finalizers still hold a pod deleted with no grace period.
        let mut held = pod(None, "Pending", None);
        held["metadata"]["finalizers"] = json!(["example.com/keep"]);
        let p = kept(plan(
            &held,
            request(None, None),
            KindStrategy::GracefulPod,
            NOW,
        ));
        assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 0);
    }

    #[test]
    fn a_later_delete_may_only_shorten_the_grace_period() {
        let terminating = kept(plan(
            &pod(Some("node-1"), "Running", Some(30)),
            request(None, None),
            KindStrategy::GracefulPod,
            NOW,
        ));
        for longer in [None, Some(30), Some(60)] {
            assert_eq!(
                plan(
                    &terminating,
                    request(Some(PropagationPolicy::Foreground), longer),
                    KindStrategy::GracefulPod,
                    NOW + 5
                ),
                Outcome::Pending,
                "{longer:?}"
            );
        }
        let shorter = kept(plan(
            &terminating,
            request(None, Some(10)),
            KindStrategy::GracefulPod,
            NOW + 5,
        ));
        assert_eq!(shorter["metadata"]["deletionGracePeriodSeconds"], 10);
        assert_eq!(
            meta_str(&shorter, "deletionTimestamp"),
            Some(&*format_rfc3339(NOW + 10)),
            "the deadline moves back by the difference"
        );
        assert_eq!(
            plan(
                &terminating,
                request(None, Some(0)),
                KindStrategy::GracefulPod,
                NOW + 5
            ),
            Outcome::Remove,
            "--grace-period=0 --force removes a terminating pod"
        );
    }

    #[test]
    fn a_graceful_pod_with_foreground_keeps_both() {
        let p = kept(plan(
            &pod(Some("node-1"), "Running", Some(30)),
            request(Some(PropagationPolicy::Foreground), None),
            KindStrategy::GracefulPod,
            NOW,
        ));
        assert_eq!(finalizers(&p), [FOREGROUND_FINALIZER]);
        assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 30);
    }
}

/// The delete path through the registry on in-memory storage: what is
/// stored and answered, and updates that remove the last finalizer.
#[cfg(test)]
mod registry_tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use serde_json::{Value, json};

    use super::{FOREGROUND_FINALIZER, ORPHAN_FINALIZER, finalizers};
    use crate::auth::UserInfo;
    use crate::http::{ApiResponse, BodyType, Output, RequestAttributes, RequestContext};
    use crate::registry::{Registry, RegistryOptions, objects};
    use crate::storage::MemoryStorage;

    fn registry() -> Registry {
        Registry::new(Arc::new(MemoryStorage::new()), RegistryOptions::default())
            .expect("registry on memory storage")
    }

    /// One request through the verbs: (HTTP status, body).
    async fn call(
        registry: &Registry,
        method: &str,
        path: &str,
        query: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut attributes = RequestAttributes::parse(method, path, query).expect("attributes");
        if method == "DELETE"
            && let Some(options) = &body
        {
            attributes
                .query
                .merge_delete_options(options)
                .expect("delete options");
        }
        let resource = registry
            .descriptor(&attributes.group, &attributes.resource)
            .cloned();
        let desc = resource.clone().expect("a served resource");
        let ctx = RequestContext {
            method: method.parse().expect("method"),
            version: http::Version::HTTP_11,
            attributes,
            resource,
            peer_certificates: Vec::new(),
            remote_addr: "127.0.0.1:1".parse().expect("address"),
            headers: http::HeaderMap::new(),
            output: Output::Json,
            body_type: match (&body, method) {
                (None, _) => BodyType::Empty,
                (Some(_), "PATCH") => BodyType::MergePatch,
                (Some(_), _) => BodyType::Json,
            },
        };
        let bytes = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let user = UserInfo::new("admin", ["system:masters"]);
        let response = objects::handle(registry, &user, &desc, &ctx, bytes)
            .await
            .unwrap_or_else(ApiResponse::from);
        match response {
            ApiResponse::Object { status, object } => (status, object),
            ApiResponse::List(list) => (200, list),
            ApiResponse::Status(e) => (e.code, json!({"message": e.message})),
            ApiResponse::Warnings(_, inner) => match *inner {
                ApiResponse::Object { status, object } => (status, object),
                other => panic!("unexpected answer {other:?}"),
            },
            other => panic!("unexpected answer {other:?}"),
        }
    }

    async fn setup() -> Registry {
        let registry = registry();
        let (status, _) = call(
            &registry,
            "POST",
            "/api/v1/namespaces",
            "",
            Some(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})),
        )
        .await;
        assert_eq!(status, 201);
        registry
    }

    async fn create_config_map(registry: &Registry, name: &str, finalizers: &[&str]) {
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
        if !finalizers.is_empty() {
            cm["metadata"]["finalizers"] = json!(finalizers);
        }
        let (status, body) = call(
            registry,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "",
            Some(cm),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }

    async fn get(registry: &Registry, path: &str) -> Option<Value> {
        match call(registry, "GET", path, "", None).await {
            (200, object) => Some(object),
            (404, _) => None,
            (status, body) => panic!("GET {path}: {status} {body}"),
        }
    }

    async fn create_pod(registry: &Registry, name: &str, node: Option<&str>) {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        });
        if let Some(node) = node {
            pod["spec"]["nodeName"] = json!(node);
        }
        let (status, body) = call(
            registry,
            "POST",
            "/api/v1/namespaces/default/pods",
            "",
            Some(pod),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }

    #[tokio::test]
    async fn foreground_keeps_the_object_until_the_finalizer_is_removed() {
        let registry = setup().await;
        create_config_map(&registry, "owner", &[]).await;
        let path = "/api/v1/namespaces/default/configmaps/owner";
        let (status, marked) = call(
            &registry,
            "DELETE",
            path,
            "",
            Some(json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"})),
        )
        .await;
        assert_eq!(status, 200, "{marked}");
        assert_eq!(finalizers(&marked), [FOREGROUND_FINALIZER]);
        assert!(marked["metadata"]["deletionTimestamp"].is_string());
        let stored = get(&registry, path).await.expect("still stored");
        assert_eq!(finalizers(&stored), [FOREGROUND_FINALIZER]);

        // A second DELETE with Orphan swaps the finalizer.
        let (status, swapped) =
            call(&registry, "DELETE", path, "propagationPolicy=Orphan", None).await;
        assert_eq!(status, 200);
        assert_eq!(finalizers(&swapped), [ORPHAN_FINALIZER]);

        // The garbage collector's finalizer removal deletes it.
        let rv = swapped["metadata"]["resourceVersion"].clone();
        let (status, body) = call(
            &registry,
            "PATCH",
            path,
            "",
            Some(json!({"metadata": {"resourceVersion": rv, "finalizers": null}})),
        )
        .await;
        assert!(status == 200, "{status} {body}");
        assert!(
            get(&registry, path).await.is_none(),
            "removed with its last finalizer"
        );
    }

    #[tokio::test]
    async fn background_removes_at_once_unless_other_finalizers_hold() {
        let registry = setup().await;
        create_config_map(&registry, "plain", &[]).await;
        create_config_map(&registry, "held", &["example.com/keep"]).await;
        let (status, answer) = call(
            &registry,
            "DELETE",
            "/api/v1/namespaces/default/configmaps/plain",
            "propagationPolicy=Background",
            None,
        )
        .await;
        assert_eq!((status, answer["kind"].as_str()), (200, Some("Status")));
        assert!(
            get(&registry, "/api/v1/namespaces/default/configmaps/plain")
                .await
                .is_none()
        );
        let (status, held) = call(
            &registry,
            "DELETE",
            "/api/v1/namespaces/default/configmaps/held",
            "",
            Some(json!({"orphanDependents": false})),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(finalizers(&held), ["example.com/keep"]);
    }

    #[tokio::test]
    async fn delete_collection_applies_the_policy_to_each_object() {
        let registry = setup().await;
        create_config_map(&registry, "a", &[]).await;
        create_config_map(&registry, "b", &[]).await;
        let (status, _) = call(
            &registry,
            "DELETE",
            "/api/v1/namespaces/default/configmaps",
            "propagationPolicy=Orphan",
            None,
        )
        .await;
        assert_eq!(status, 200);
        for name in ["a", "b"] {
            let cm = get(
                &registry,
                &format!("/api/v1/namespaces/default/configmaps/{name}"),
            )
            .await
            .expect("kept by the orphan finalizer");
            assert_eq!(finalizers(&cm), [ORPHAN_FINALIZER], "{name}");
        }
    }

    #[tokio::test]
    async fn bound_pods_terminate_gracefully_and_force_deletes_them() {
        let registry = setup().await;
        create_pod(&registry, "bound", Some("node-1")).await;
        create_pod(&registry, "unbound", None).await;
        let bound = "/api/v1/namespaces/default/pods/bound";
        let (status, terminating) = call(&registry, "DELETE", bound, "", None).await;
        assert_eq!(status, 200, "{terminating}");
        assert_eq!(terminating["metadata"]["deletionGracePeriodSeconds"], 30);
        assert!(terminating["metadata"]["deletionTimestamp"].is_string());

        // A status update from the node keeps the terminating pod.
        let mut status_update = get(&registry, bound).await.expect("terminating");
        status_update["status"]["phase"] = json!("Running");
        let (status, _) = call(
            &registry,
            "PUT",
            &format!("{bound}/status"),
            "",
            Some(status_update),
        )
        .await;
        assert_eq!(status, 200);
        assert!(get(&registry, bound).await.is_some(), "still terminating");

        // A longer grace period changes nothing; a shorter one shortens it.
        let (_, same) = call(&registry, "DELETE", bound, "gracePeriodSeconds=60", None).await;
        assert_eq!(same["metadata"]["deletionGracePeriodSeconds"], 30);
        let (_, shorter) = call(&registry, "DELETE", bound, "gracePeriodSeconds=10", None).await;
        assert_eq!(shorter["metadata"]["deletionGracePeriodSeconds"], 10);
        let (status, _) = call(
            &registry,
            "DELETE",
            bound,
            "",
            Some(json!({"gracePeriodSeconds": 0, "propagationPolicy": "Background"})),
        )
        .await;
        assert_eq!(status, 200);
        assert!(get(&registry, bound).await.is_none(), "grace 0 removes it");

        let (status, _) = call(
            &registry,
            "DELETE",
            "/api/v1/namespaces/default/pods/unbound",
            "",
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert!(
            get(&registry, "/api/v1/namespaces/default/pods/unbound")
                .await
                .is_none(),
            "an unbound pod goes at once"
        );
    }
}
