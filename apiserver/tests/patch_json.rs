//! RFC 6902 JSON patch and RFC 7386 JSON merge patch.

use cairn_apiserver::patch::{PatchError, json_patch, merge_patch};
use serde_json::json;

#[test]
fn json_patch_applies_all_operations() {
    let doc = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"replicas": 1, "list": [1, 2, 3]}});
    let patch = json!([
        {"op": "test", "path": "/metadata/name", "value": "a"},
        {"op": "add", "path": "/metadata/labels/y", "value": "2"},
        {"op": "remove", "path": "/metadata/labels/x"},
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/spec/list/-", "value": 4},
        {"op": "copy", "from": "/spec/replicas", "path": "/spec/copied"},
        {"op": "move", "from": "/spec/list/0", "path": "/spec/first"},
    ]);
    let out = json_patch(&doc, &patch).expect("patch applies");
    assert_eq!(
        out,
        json!({"metadata": {"name": "a", "labels": {"y": "2"}},
               "spec": {"replicas": 3, "list": [2, 3, 4], "copied": 3, "first": 1}})
    );
}

#[test]
fn json_patch_failing_test_names_operation_and_path_and_changes_nothing() {
    let doc = json!({"spec": {"replicas": 1}});
    let patch = json!([
        {"op": "replace", "path": "/spec/replicas", "value": 5},
        {"op": "test", "path": "/spec/replicas", "value": 2},
    ]);
    let err = json_patch(&doc, &patch).expect_err("test must fail");
    match &err {
        PatchError::JsonPatchFailed {
            index, op, path, ..
        } => {
            assert_eq!(*index, 1);
            assert_eq!(op, "test");
            assert_eq!(path, "/spec/replicas");
        }
        other => panic!("unexpected error {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("test") && text.contains("/spec/replicas"),
        "{text}"
    );
}

#[test]
fn json_patch_remove_of_missing_path_fails() {
    let err = json_patch(&json!({"a": 1}), &json!([{"op": "remove", "path": "/b"}]))
        .expect_err("missing path");
    assert!(
        matches!(err, PatchError::JsonPatchFailed { index: 0, ref op, ref path, .. } if op == "remove" && path == "/b")
    );
}

#[test]
fn json_patch_rejects_malformed_documents() {
    assert!(matches!(
        json_patch(&json!({}), &json!({"op": "add"})),
        Err(PatchError::InvalidJsonPatch { .. })
    ));
    assert!(matches!(
        json_patch(&json!({}), &json!([{"op": "frobnicate", "path": "/a"}])),
        Err(PatchError::InvalidJsonPatch { .. })
    ));
}

#[test]
fn merge_patch_follows_rfc7386() {
    // The examples of RFC 7386 appendix A.
    let cases = [
        (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
        (
            json!({"a": "b"}),
            json!({"b": "c"}),
            json!({"a": "b", "b": "c"}),
        ),
        (json!({"a": "b"}), json!({"a": null}), json!({})),
        (
            json!({"a": "b", "b": "c"}),
            json!({"a": null}),
            json!({"b": "c"}),
        ),
        (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
        (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
        (
            json!({"a": {"b": "c"}}),
            json!({"a": {"b": "d", "c": null}}),
            json!({"a": {"b": "d"}}),
        ),
        (
            json!({"a": [{"b": "c"}]}),
            json!({"a": [1]}),
            json!({"a": [1]}),
        ),
        (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
        (json!({"a": "b"}), json!(["c"]), json!(["c"])),
        (json!({"a": "foo"}), json!(null), json!(null)),
        (json!({"a": "foo"}), json!("bar"), json!("bar")),
        (
            json!({"e": null}),
            json!({"a": 1}),
            json!({"e": null, "a": 1}),
        ),
        (
            json!([1, 2]),
            json!({"a": "b", "c": null}),
            json!({"a": "b"}),
        ),
        (
            json!({}),
            json!({"a": {"bb": {"ccc": null}}}),
            json!({"a": {"bb": {}}}),
        ),
    ];
    for (doc, patch, want) in cases {
        assert_eq!(merge_patch(&doc, &patch), want, "doc {doc} patch {patch}");
    }
}

#[test]
fn merge_patch_of_labels_like_kubectl_label() {
    let live =
        json!({"metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {"replicas": 1}});
    let out = merge_patch(&live, &json!({"metadata": {"labels": {"team": "blue"}}}));
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app": "web", "team": "blue"})
    );
    assert_eq!(out["spec"], json!({"replicas": 1}));
}
