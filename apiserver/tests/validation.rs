//! Defaulting and validation of real-world manifests, a catalogue of
//! invalid objects with the exact Kubernetes field path and reason, and the
//! Service allocators.

use std::net::IpAddr;

use cairn_apiserver::openapi::GroupVersionKind;
use cairn_apiserver::validation::{
    AllocationError, ClusterIpAllocator, FieldError, FieldErrorReason, NodePortAllocator,
    carry_over_service_allocations, default_object, invalid_status_message, prepare_job_selector,
    validate_object,
};
use serde_json::{Value, json};

use FieldErrorReason::*;

fn gvk_of(object: &Value) -> GroupVersionKind {
    GroupVersionKind::from_api_version(
        object["apiVersion"].as_str().unwrap_or_default(),
        object["kind"].as_str().unwrap_or_default(),
    )
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("test manifest: {e}"))
}

/// Defaults and validates; returns the defaulted object and the errors.
fn admit(mut object: Value) -> (Value, Vec<FieldError>) {
    let gvk = gvk_of(&object);
    default_object(&gvk, &mut object);
    let errs = validate_object(&gvk, &object, None);
    (object, errs)
}

fn admit_ok(object: Value) -> Value {
    let (object, errs) = admit(object);
    assert!(errs.is_empty(), "unexpected errors: {errs:#?}");
    object
}

/// Asserts exactly one error, at `field` with `reason`; returns it.
fn expect_one(errs: &[FieldError], field: &str, reason: FieldErrorReason) -> FieldError {
    assert_eq!(
        errs.len(),
        1,
        "expected one error at {field}, got {errs:#?}"
    );
    assert_eq!(errs[0].field, field, "{errs:#?}");
    assert_eq!(errs[0].reason, reason, "{errs:#?}");
    errs[0].clone()
}

const NGINX: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx
  namespace: default
  labels: {app: nginx}
spec:
  selector:
    matchLabels: {app: nginx}
  template:
    metadata:
      labels: {app: nginx}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
        ports:
        - containerPort: 80
        resources:
          requests: {cpu: 100m, memory: 64Mi}
          limits: {cpu: "1", memory: 128Mi}
        env:
        - name: POD_NAME
          valueFrom:
            fieldRef: {fieldPath: metadata.name}
        readinessProbe:
          httpGet: {port: 80}
        volumeMounts:
        - {name: html, mountPath: /usr/share/nginx/html}
      - name: sidecar
        image: busybox
        command: [sleep, infinity]
      volumes:
      - name: html
        configMap: {name: html}
"#;

fn nginx() -> Value {
    yaml(NGINX)
}

fn node_port_service() -> Value {
    yaml(
        r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  selector: {app: nginx}
  ports:
  - {name: http, port: 80, targetPort: 80, nodePort: 30080}
  - {name: https, port: 443, nodePort: 30443}
"#,
    )
}

#[test]
fn nginx_deployment_gets_kubernetes_defaults() {
    let d = admit_ok(nginx());
    let spec = &d["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(spec["progressDeadlineSeconds"], 600);
    assert_eq!(
        spec["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Always");
    assert_eq!(pod["dnsPolicy"], "ClusterFirst");
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    assert_eq!(pod["schedulerName"], "default-scheduler");
    assert_eq!(pod["securityContext"], json!({}));
    assert!(pod.get("enableServiceLinks").is_none(), "Pods only");
    let c = &pod["containers"][0];
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(c["terminationMessagePolicy"], "File");
    assert_eq!(c["ports"][0]["protocol"], "TCP");
    assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
    assert_eq!(
        c["readinessProbe"],
        json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
               "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
    );
    assert_eq!(pod["containers"][1]["imagePullPolicy"], "Always");
    assert_eq!(pod["volumes"][0]["configMap"]["defaultMode"], 420);
}

#[test]
fn defaulting_keeps_what_is_set() {
    let mut d = nginx();
    d["spec"]["replicas"] = json!(3);
    d["spec"]["strategy"] = json!({"type": "Recreate"});
    d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("Always");
    let d = admit_ok(d);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "Always"
    );
}

#[test]
fn node_port_service_gets_defaults() {
    let s = admit_ok(node_port_service());
    let spec = &s["spec"];
    assert_eq!(spec["sessionAffinity"], "None");
    assert_eq!(spec["externalTrafficPolicy"], "Cluster");
    assert_eq!(spec["internalTrafficPolicy"], "Cluster");
    assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
    assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
    assert_eq!(spec["ports"][0]["protocol"], "TCP");
    assert_eq!(spec["ports"][1]["targetPort"], 443);

    let mut c = yaml(
        "{apiVersion: v1, kind: Service, metadata: {name: db, namespace: x}, spec: {ports: [{port: 5432}], clusterIP: 10.96.0.20}}",
    );
    c = admit_ok(c);
    assert_eq!(c["spec"]["type"], "ClusterIP");
    assert_eq!(c["spec"]["clusterIPs"], json!(["10.96.0.20"]));
    assert!(c["spec"].get("externalTrafficPolicy").is_none());

    let headless = admit_ok(yaml(
        "{apiVersion: v1, kind: Service, metadata: {name: h, namespace: x}, spec: {clusterIP: None, selector: {app: db}}}",
    ));
    assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
    let external = admit_ok(yaml(
        "{apiVersion: v1, kind: Service, metadata: {name: ext, namespace: x}, spec: {type: ExternalName, externalName: db.example.com}}",
    ));
    assert!(external["spec"].get("ipFamilyPolicy").is_none());
}

#[test]
fn cron_job_passes_with_defaults() {
    let cj = admit_ok(yaml(
        r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: backup, namespace: ops}
spec:
  schedule: "*/15 2-5 * * mon-fri"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - {name: backup, image: "registry.local:5000/backup:v2", args: ["--all"]}
"#,
    ));
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
    assert_eq!(cj["spec"]["suspend"], false);
    assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
    assert_eq!(cj["spec"]["failedJobsHistoryLimit"], 1);
    let pod = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["imagePullPolicy"], "IfNotPresent");
    assert_eq!(pod["restartPolicy"], "OnFailure");
}

#[test]
fn config_map_and_secret_pass() {
    let cm = admit_ok(yaml(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: html, namespace: default}
data:
  index.html: "<h1>hello</h1>"
  APP_MODE: production
binaryData:
  logo.png: iVBORw0KGgo=
"#,
    ));
    assert!(cm.get("immutable").is_none());
    let secret = admit_ok(yaml(
        "{apiVersion: v1, kind: Secret, metadata: {name: s, namespace: default}, data: {password: cGFzcw==}}",
    ));
    assert_eq!(secret["type"], "Opaque");
}

#[test]
fn stateful_set_with_claim_templates_passes() {
    let sts = admit_ok(yaml(
        r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: default}
spec:
  serviceName: db
  replicas: 3
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db, tier: data}}
    spec:
      containers:
      - name: postgres
        image: postgres:16
        ports: [{containerPort: 5432, name: pg}]
        volumeMounts: [{name: data, mountPath: /var/lib/postgresql/data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 10Gi}}
"#,
    ));
    let spec = &sts["spec"];
    assert_eq!(spec["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        spec["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    );
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(
        spec["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    assert_eq!(
        spec["volumeClaimTemplates"][0]["spec"]["volumeMode"],
        "Filesystem"
    );
}

#[test]
fn job_passes_with_generated_selector() {
    let mut job = yaml(
        r#"
apiVersion: batch/v1
kind: Job
metadata: {name: pi, namespace: default}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: pi, image: perl:5.34.0, command: [perl, "-Mbignum=bpi", "-wle", "print bpi(2000)"]}
  backoffLimit: 4
"#,
    );
    let gvk = gvk_of(&job);
    default_object(&gvk, &mut job);
    prepare_job_selector(&mut job, "5a3c-uid");
    let errs = validate_object(&gvk, &job, None);
    assert!(errs.is_empty(), "{errs:#?}");
    let spec = &job["spec"];
    assert_eq!(spec["backoffLimit"], 4);
    assert_eq!(spec["completions"], 1);
    assert_eq!(spec["parallelism"], 1);
    assert_eq!(spec["completionMode"], "NonIndexed");
    assert_eq!(spec["suspend"], false);
    assert_eq!(
        spec["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        "5a3c-uid"
    );
    assert_eq!(spec["template"]["metadata"]["labels"]["job-name"], "pi");

    // Without the generated selector the Job is incomplete.
    let (_, errs) = admit(yaml(
        "{apiVersion: batch/v1, kind: Job, metadata: {name: j, namespace: d}, spec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: i}]}}}}",
    ));
    expect_one(&errs, "spec.selector", FieldValueRequired);
}

#[test]
fn namespace_and_others_get_defaults() {
    let ns = admit_ok(yaml(
        "{apiVersion: v1, kind: Namespace, metadata: {name: team-a}}",
    ));
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(ns["status"]["phase"], "Active");
    assert_eq!(
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "team-a"
    );
    admit_ok(yaml(
        "{apiVersion: v1, kind: ServiceAccount, metadata: {name: builder, namespace: ci}}",
    ));
    admit_ok(yaml(
        "{apiVersion: coordination.k8s.io/v1, kind: Lease, metadata: {name: kube-scheduler, namespace: kube-system}, spec: {holderIdentity: node-1, leaseDurationSeconds: 15}}",
    ));
    let rb = admit_ok(yaml(
        "{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRoleBinding, metadata: {name: 'system:admins'}, roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}, subjects: [{kind: Group, name: 'system:masters'}, {kind: ServiceAccount, name: admin, namespace: kube-system}]}",
    ));
    assert_eq!(rb["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
    assert_eq!(rb["subjects"][1]["apiGroup"], "");
    admit_ok(yaml(
        "{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, metadata: {name: 'system:reader'}, rules: [{apiGroups: [''], resources: [pods], verbs: [get, list]}, {nonResourceURLs: ['/healthz'], verbs: [get]}]}",
    ));
    let slice = admit_ok(yaml(
        "{apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {name: web-abc, namespace: default}, addressType: IPv4, endpoints: [{addresses: [10.244.0.5]}], ports: [{port: 80}]}",
    ));
    assert_eq!(slice["ports"][0]["protocol"], "TCP");
    let pod = admit_ok(yaml(
        "{apiVersion: v1, kind: Pod, metadata: {name: p, namespace: d}, spec: {containers: [{name: c, image: 'busybox:1.36', resources: {limits: {cpu: 500m}}}]}}",
    ));
    assert_eq!(pod["spec"]["enableServiceLinks"], true);
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "500m"
    );
}

// ---- the catalogue of invalid objects --------------------------------

#[test]
fn missing_image() {
    let mut d = nginx();
    d["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .map(|c| c.remove("image"));
    let (_, errs) = admit(d);
    let e = expect_one(
        &errs,
        "spec.template.spec.containers[0].image",
        FieldValueRequired,
    );
    assert_eq!(
        e.to_string(),
        "spec.template.spec.containers[0].image: Required value"
    );
}

#[test]
fn duplicate_container_name() {
    let mut d = nginx();
    d["spec"]["template"]["spec"]["containers"][1]["name"] = json!("nginx");
    let (_, errs) = admit(d);
    let e = expect_one(
        &errs,
        "spec.template.spec.containers[1].name",
        FieldValueDuplicate,
    );
    assert_eq!(e.message, "Duplicate value: \"nginx\"");
}

#[test]
fn selector_not_matching_template_labels() {
    let mut d = nginx();
    d["spec"]["selector"]["matchLabels"]["app"] = json!("web");
    let (_, errs) = admit(d);
    let e = expect_one(&errs, "spec.template.metadata.labels", FieldValueInvalid);
    assert!(
        e.message
            .ends_with("`selector` does not match template `labels`"),
        "{e}"
    );
}

#[test]
fn negative_replicas() {
    let mut d = nginx();
    d["spec"]["replicas"] = json!(-1);
    let (_, errs) = admit(d);
    let e = expect_one(&errs, "spec.replicas", FieldValueInvalid);
    assert_eq!(
        e.to_string(),
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    );
    assert_eq!(e.reason.as_str(), "FieldValueInvalid");
    assert_eq!(
        invalid_status_message(&gvk_of(&nginx()), "nginx", &errs),
        "Deployment.apps \"nginx\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    );
}

#[test]
fn wrong_json_type_names_the_field() {
    let mut d = nginx();
    d["spec"]["replicas"] = json!("three");
    let (_, errs) = admit(d);
    expect_one(&errs, "spec.replicas", FieldValueInvalid);
}

#[test]
fn bad_names() {
    let mut d = nginx();
    d["metadata"]["name"] = json!("Nginx_Web");
    let (_, errs) = admit(d);
    let e = expect_one(&errs, "metadata.name", FieldValueInvalid);
    assert!(
        e.message
            .starts_with("Invalid value: \"Nginx_Web\": a lowercase RFC 1123 subdomain"),
        "{e}"
    );

    let mut s = node_port_service();
    s["metadata"]["name"] = json!("1web");
    let (_, errs) = admit(s);
    let e = expect_one(&errs, "metadata.name", FieldValueInvalid);
    assert!(e.message.contains("DNS-1035 label"), "{e}");

    let (_, errs) = admit(yaml(
        "{apiVersion: v1, kind: Namespace, metadata: {name: team.a}}",
    ));
    expect_one(&errs, "metadata.name", FieldValueInvalid);

    let mut d = nginx();
    d["metadata"].as_object_mut().map(|m| m.remove("name"));
    let (_, errs) = admit(d.clone());
    let e = expect_one(&errs, "metadata.name", FieldValueRequired);
    assert_eq!(
        e.message,
        "Required value: name or generateName is required"
    );
    d["metadata"]["generateName"] = json!("nginx-");
    admit_ok(d);

    let mut d = nginx();
    d["metadata"].as_object_mut().map(|m| m.remove("namespace"));
    let (_, errs) = admit(d);
    expect_one(&errs, "metadata.namespace", FieldValueRequired);
    let (_, errs) = admit(yaml(
        "{apiVersion: v1, kind: Namespace, metadata: {name: a, namespace: b}}",
    ));
    expect_one(&errs, "metadata.namespace", FieldValueForbidden);
}

#[test]
fn container_ports_0_and_70000() {
    for (port, reason) in [(0, FieldValueRequired), (70000, FieldValueInvalid)] {
        let mut d = nginx();
        d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(port);
        let (_, errs) = admit(d);
        expect_one(
            &errs,
            "spec.template.spec.containers[0].ports[0].containerPort",
            reason,
        );
    }
}

#[test]
fn service_ports_0_and_70000() {
    for port in [0, 70000] {
        let mut s = node_port_service();
        s["spec"]["ports"][0]["port"] = json!(port);
        s["spec"]["ports"][0]["targetPort"] = json!(8080);
        let (_, errs) = admit(s);
        let e = expect_one(&errs, "spec.ports[0].port", FieldValueInvalid);
        assert_eq!(
            e.message,
            format!("Invalid value: {port}: must be between 1 and 65535, inclusive")
        );
    }
}

#[test]
fn node_port_rules() {
    let mut s = node_port_service();
    s["spec"]["type"] = json!("ClusterIP");
    s["spec"]
        .as_object_mut()
        .map(|m| m.remove("externalTrafficPolicy"));
    let (_, errs) = admit(s);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!(errs[0].field, "spec.ports[0].nodePort");
    assert_eq!(errs[0].reason, FieldValueForbidden);
    assert_eq!(
        errs[0].message,
        "Forbidden: may not be used when `type` is 'ClusterIP'"
    );

    let mut s = node_port_service();
    s["spec"]["ports"][1]["nodePort"] = json!(30080);
    let (_, errs) = admit(s);
    expect_one(&errs, "spec.ports[1].nodePort", FieldValueDuplicate);

    let mut s = node_port_service();
    s["spec"]["ports"][0]["nodePort"] = json!(70000);
    let (_, errs) = admit(s);
    expect_one(&errs, "spec.ports[0].nodePort", FieldValueInvalid);

    // The configured range is the allocator's business.
    let mut ports = NodePortAllocator::new("30000-32767").unwrap_or_else(|e| panic!("{e}"));
    let err = ports
        .allocate_specific(29999)
        .err()
        .unwrap_or_else(|| panic!("out of range accepted"));
    assert_eq!(
        err.field_error("spec.ports[0].nodePort").to_string(),
        "spec.ports[0].nodePort: Invalid value: 29999: provided port is not in the valid range. The range of valid ports is 30000-32767"
    );
}

#[test]
fn other_service_errors() {
    let cases: &[(&str, &str, FieldErrorReason)] = &[
        (
            "{type: Fancy, ports: [{port: 80}]}",
            "spec.type",
            FieldValueNotSupported,
        ),
        ("{ports: []}", "spec.ports", FieldValueRequired),
        (
            "{ports: [{port: 80}, {port: 81, name: b}]}",
            "spec.ports[0].name",
            FieldValueRequired,
        ),
        (
            "{ports: [{port: 80, name: a}, {port: 81, name: a}]}",
            "spec.ports[1].name",
            FieldValueDuplicate,
        ),
        (
            "{ports: [{port: 80, protocol: HTTP}]}",
            "spec.ports[0].protocol",
            FieldValueNotSupported,
        ),
        (
            "{ports: [{port: 80}], clusterIP: 10.0.0.300}",
            "spec.clusterIPs[0]",
            FieldValueInvalid,
        ),
        (
            "{type: ExternalName}",
            "spec.externalName",
            FieldValueRequired,
        ),
        (
            "{ports: [{port: 80}], sessionAffinity: Sticky}",
            "spec.sessionAffinity",
            FieldValueNotSupported,
        ),
        (
            "{ports: [{port: 80, targetPort: 'Not_A_Name'}]}",
            "spec.ports[0].targetPort",
            FieldValueInvalid,
        ),
    ];
    for (spec, field, reason) in cases {
        let mut s = yaml("{apiVersion: v1, kind: Service, metadata: {name: s, namespace: d}}");
        s["spec"] = yaml(spec);
        let (_, errs) = admit(s);
        assert!(
            errs.iter()
                .any(|e| e.field == *field && e.reason == *reason),
            "{spec}: expected {field} {reason:?}, got {errs:#?}"
        );
    }
    // headless Services need no ports
    admit_ok(yaml(
        "{apiVersion: v1, kind: Service, metadata: {name: s, namespace: d}, spec: {clusterIP: None}}",
    ));
}

#[test]
fn invalid_cron_schedule() {
    for (schedule, reason) in [
        ("61 * * * *", FieldValueInvalid),
        ("every day", FieldValueInvalid),
        ("", FieldValueRequired),
    ] {
        let mut cj = yaml(
            "{apiVersion: batch/v1, kind: CronJob, metadata: {name: c, namespace: d}, spec: {jobTemplate: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: i}]}}}}}}",
        );
        cj["spec"]["schedule"] = json!(schedule);
        let (_, errs) = admit(cj);
        expect_one(&errs, "spec.schedule", reason);
    }
    let long = "a".repeat(53);
    let cj = yaml(&format!(
        "{{apiVersion: batch/v1, kind: CronJob, metadata: {{name: {long}, namespace: d}}, spec: {{schedule: '@hourly', jobTemplate: {{spec: {{template: {{spec: {{restartPolicy: Never, containers: [{{name: c, image: i}}]}}}}}}}}}}}}"
    ));
    let (_, errs) = admit(cj);
    let e = expect_one(&errs, "metadata.name", FieldValueInvalid);
    assert!(e.message.ends_with("must be no more than 52 characters"));
}

#[test]
fn job_restart_policy_always_is_rejected() {
    let mut job = yaml(
        "{apiVersion: batch/v1, kind: Job, metadata: {name: j, namespace: d}, spec: {template: {spec: {containers: [{name: c, image: i}]}}}}",
    );
    let gvk = gvk_of(&job);
    default_object(&gvk, &mut job);
    prepare_job_selector(&mut job, "u1");
    let errs = validate_object(&gvk, &job, None);
    let e = expect_one(
        &errs,
        "spec.template.spec.restartPolicy",
        FieldValueNotSupported,
    );
    assert_eq!(
        e.message,
        "Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
    );
}

#[test]
fn label_value_too_long() {
    let mut d = nginx();
    d["metadata"]["labels"]["tier"] = json!("x".repeat(64));
    let (_, errs) = admit(d);
    let e = expect_one(&errs, "metadata.labels", FieldValueInvalid);
    assert!(
        e.message.ends_with("must be no more than 63 characters"),
        "{e}"
    );

    let mut d = nginx();
    d["metadata"]["labels"]["bad key"] = json!("v");
    let (_, errs) = admit(d);
    expect_one(&errs, "metadata.labels", FieldValueInvalid);

    let mut d = nginx();
    d["metadata"]["annotations"] = json!({"big": "x".repeat(300 * 1024)});
    let (_, errs) = admit(d);
    let e = expect_one(&errs, "metadata.annotations", FieldValueTooLong);
    assert_eq!(e.message, "Too long: may not be more than 262144 bytes");
}

#[test]
fn pod_spec_catalogue() {
    let cases: &[(&str, &str, FieldErrorReason)] = &[
        ("{containers: []}", "spec.containers", FieldValueRequired),
        (
            "{containers: [{name: c, image: i, volumeMounts: [{name: nope, mountPath: /x}]}]}",
            "spec.containers[0].volumeMounts[0].name",
            FieldValueNotFound,
        ),
        (
            "{containers: [{name: c, image: i}], volumes: [{name: v, emptyDir: {}}, {name: v, emptyDir: {}}]}",
            "spec.volumes[1].name",
            FieldValueDuplicate,
        ),
        (
            "{containers: [{name: c, image: i}], volumes: [{name: v}]}",
            "spec.volumes[0]",
            FieldValueRequired,
        ),
        (
            "{containers: [{name: c, image: i}], restartPolicy: Sometimes}",
            "spec.restartPolicy",
            FieldValueNotSupported,
        ),
        (
            "{containers: [{name: c, image: i, env: [{name: 'A=B', value: x}]}]}",
            "spec.containers[0].env[0].name",
            FieldValueInvalid,
        ),
        (
            "{containers: [{name: c, image: i, resources: {limits: {cpu: lots}}}]}",
            "spec.containers[0].resources.limits[cpu]",
            FieldValueInvalid,
        ),
        (
            "{containers: [{name: c, image: i, resources: {requests: {memory: 2Gi}, limits: {memory: 1Gi}}}]}",
            "spec.containers[0].resources.requests[memory]",
            FieldValueInvalid,
        ),
        (
            "{containers: [{name: c, image: i, ports: [{containerPort: 80, name: web}, {containerPort: 81, name: web}]}]}",
            "spec.containers[0].ports[1].name",
            FieldValueDuplicate,
        ),
        (
            "{containers: [{name: c, image: i, ports: [{containerPort: 80, protocol: ICMP}]}]}",
            "spec.containers[0].ports[0].protocol",
            FieldValueNotSupported,
        ),
        (
            "{containers: [{name: C, image: i}]}",
            "spec.containers[0].name",
            FieldValueInvalid,
        ),
        (
            "{containers: [{name: c, image: i, imagePullPolicy: Sometimes}]}",
            "spec.containers[0].imagePullPolicy",
            FieldValueNotSupported,
        ),
    ];
    for (spec, field, reason) in cases {
        let mut pod = yaml("{apiVersion: v1, kind: Pod, metadata: {name: p, namespace: d}}");
        pod["spec"] = yaml(spec);
        let (_, errs) = admit(pod);
        let e = expect_one(&errs, field, *reason);
        assert!(!e.message.is_empty());
    }
}

#[test]
fn config_map_and_secret_errors() {
    let (_, errs) = admit(yaml(
        "{apiVersion: v1, kind: ConfigMap, metadata: {name: c, namespace: d}, data: {'bad key': v}}",
    ));
    expect_one(&errs, "data[bad key]", FieldValueInvalid);
    let big = "x".repeat(1024 * 1024 + 1);
    let mut cm = yaml("{apiVersion: v1, kind: ConfigMap, metadata: {name: c, namespace: d}}");
    cm["data"] = json!({"big": big});
    let (_, errs) = admit(cm);
    expect_one(&errs, "", FieldValueTooLong);
    let (_, errs) = admit(yaml(
        "{apiVersion: v1, kind: Secret, metadata: {name: s, namespace: d}, type: kubernetes.io/tls, data: {tls.crt: eA==}}",
    ));
    expect_one(&errs, "data[tls.key]", FieldValueRequired);
}

#[test]
fn rbac_lease_slice_errors() {
    let (_, errs) = admit(yaml(
        "{apiVersion: rbac.authorization.k8s.io/v1, kind: Role, metadata: {name: r, namespace: d}, rules: [{apiGroups: [''], resources: [pods], verbs: []}]}",
    ));
    let e = expect_one(&errs, "rules[0].verbs", FieldValueRequired);
    assert_eq!(
        e.message,
        "Required value: verbs must contain at least one value"
    );
    let (_, errs) = admit(yaml(
        "{apiVersion: rbac.authorization.k8s.io/v1, kind: Role, metadata: {name: r, namespace: d}, rules: [{nonResourceURLs: [/x], verbs: [get]}]}",
    ));
    expect_one(&errs, "rules[0].nonResourceURLs", FieldValueInvalid);
    let (_, errs) = admit(yaml(
        "{apiVersion: coordination.k8s.io/v1, kind: Lease, metadata: {name: l, namespace: d}, spec: {leaseDurationSeconds: 0}}",
    ));
    expect_one(&errs, "spec.leaseDurationSeconds", FieldValueInvalid);
    let (_, errs) = admit(yaml(
        "{apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {name: e, namespace: d}, addressType: IPv5, endpoints: []}",
    ));
    expect_one(&errs, "addressType", FieldValueNotSupported);
}

// ---- updates -----------------------------------------------------------

fn update(old: &Value, new: Value) -> Vec<FieldError> {
    let gvk = gvk_of(&new);
    let mut new = new;
    default_object(&gvk, &mut new);
    validate_object(&gvk, &new, Some(old))
}

#[test]
fn immutable_selector_change_on_update() {
    let old = admit_ok(nginx());
    let mut new = nginx();
    new["spec"]["selector"]["matchLabels"]["tier"] = json!("web");
    new["spec"]["template"]["metadata"]["labels"]["tier"] = json!("web");
    let errs = update(&old, new);
    let e = expect_one(&errs, "spec.selector", FieldValueInvalid);
    assert!(e.message.ends_with("field is immutable"), "{e}");

    // Other changes pass.
    let mut new = nginx();
    new["spec"]["replicas"] = json!(5);
    new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    assert!(update(&old, new).is_empty());

    let mut new = nginx();
    new["metadata"]["name"] = json!("other");
    expect_one(&update(&old, new), "metadata.name", FieldValueInvalid);
}

#[test]
fn cluster_ip_change_on_update() {
    let mut old = node_port_service();
    old["spec"]["clusterIP"] = json!("10.96.0.50");
    let old = admit_ok(old);
    let mut new = node_port_service();
    new["spec"]["clusterIP"] = json!("10.96.0.51");
    let errs = update(&old, new);
    let e = expect_one(&errs, "spec.clusterIPs[0]", FieldValueInvalid);
    assert_eq!(
        e.message,
        "Invalid value: \"10.96.0.51\": may not change once set"
    );

    // A replace without the allocated fields keeps them.
    let mut new = node_port_service();
    new["spec"]["ports"][1]
        .as_object_mut()
        .map(|p| p.remove("nodePort"));
    let gvk = gvk_of(&new);
    carry_over_service_allocations(&mut new, &old);
    default_object(&gvk, &mut new);
    assert!(validate_object(&gvk, &new, Some(&old)).is_empty());
    assert_eq!(new["spec"]["clusterIP"], "10.96.0.50");
    assert_eq!(new["spec"]["ports"][1]["nodePort"], 30443);
}

#[test]
fn immutable_config_map_and_stateful_set_spec() {
    let old = admit_ok(yaml(
        "{apiVersion: v1, kind: ConfigMap, metadata: {name: c, namespace: d}, immutable: true, data: {a: '1'}}",
    ));
    let errs = update(
        &old,
        yaml(
            "{apiVersion: v1, kind: ConfigMap, metadata: {name: c, namespace: d}, immutable: true, data: {a: '2'}}",
        ),
    );
    expect_one(&errs, "data", FieldValueForbidden);

    let sts = "{apiVersion: apps/v1, kind: StatefulSet, metadata: {name: s, namespace: d}, spec: {serviceName: s, selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i}]}}}}";
    let old = admit_ok(yaml(sts));
    let mut new = yaml(sts);
    new["spec"]["serviceName"] = json!("other");
    expect_one(&update(&old, new), "spec", FieldValueForbidden);
    let mut new = yaml(sts);
    new["spec"]["replicas"] = json!(4);
    assert!(update(&old, new).is_empty());
}

// ---- allocators ----------------------------------------------------------

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn cluster_ip_allocator() {
    let mut a = ClusterIpAllocator::new("10.96.0.0/24").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.kubernetes_service_ip(), ip("10.96.0.1"));
    assert_eq!(a.free(), 254);
    a.allocate_specific(ip("10.96.0.1"))
        .unwrap_or_else(|e| panic!("{e}"));
    a.allocate_specific(ip("10.96.0.10"))
        .unwrap_or_else(|e| panic!("{e}"));
    // Dynamic allocation starts above the static band (16 addresses).
    let first = a.allocate_next().unwrap_or_else(|e| panic!("{e}"));
    let second = a.allocate_next().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((first, second), (ip("10.96.0.17"), ip("10.96.0.18")));
    let err = a.allocate_specific(ip("10.96.0.10")).err();
    assert_eq!(
        err,
        Some(AllocationError::IpAlreadyAllocated(ip("10.96.0.10")))
    );
    assert_eq!(
        err.map(|e| e.field_error("spec.clusterIPs").to_string()),
        Some("spec.clusterIPs: Invalid value: [\"10.96.0.10\"]: failed to allocate IP 10.96.0.10: provided IP is already allocated".to_owned())
    );
    for outside in ["10.96.0.0", "10.96.0.255", "10.97.0.1", "fd00::1"] {
        assert!(
            matches!(
                a.allocate_specific(ip(outside)),
                Err(AllocationError::IpNotInRange { .. })
            ),
            "{outside}"
        );
    }
    assert!(a.release(first));
    assert!(!a.release(first));
    // Not reused at once.
    assert_eq!(a.allocate_next().ok(), Some(ip("10.96.0.19")));
    a.allocate_specific(first).unwrap_or_else(|e| panic!("{e}"));
    // Exhaustion: every address but the kubernetes one gets handed out.
    let mut n = 0;
    while a.allocate_next().is_ok() {
        n += 1;
    }
    assert_eq!(n, 254 - 5);
    assert_eq!(a.allocate_next(), Err(AllocationError::Full));
    assert_eq!(a.free(), 0);
}

#[test]
fn cluster_ip_allocator_restore_and_small_ranges() {
    let mut a = ClusterIpAllocator::new("10.96.0.0/12").unwrap_or_else(|e| panic!("{e}"));
    let outside = a.restore([
        ip("10.96.0.1"),
        ip("10.96.0.10"),
        ip("10.96.1.0"),
        ip("192.168.0.1"),
    ]);
    assert_eq!(outside, vec![ip("192.168.0.1")]);
    assert!(a.is_allocated(ip("10.96.1.0")));
    // The static band of a /12 is 256 addresses; 10.96.1.0 was restored.
    assert_eq!(a.allocate_next().ok(), Some(ip("10.96.1.1")));
    assert!(a.allocate_specific(ip("10.96.0.10")).is_err());

    let mut tiny = ClusterIpAllocator::new("10.0.0.0/30").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tiny.allocate_next().ok(), Some(ip("10.0.0.2")));
    assert_eq!(tiny.allocate_next(), Err(AllocationError::Full));
    assert!(ClusterIpAllocator::new("10.0.0.0/31").is_err());
    assert!(ClusterIpAllocator::new("10.0.0.0").is_err());

    let mut v6 = ClusterIpAllocator::new("fd00:10:96::/112").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v6.kubernetes_service_ip(), ip("fd00:10:96::1"));
    assert!(v6.allocate_specific(ip("fd00:10:96::a")).is_ok());
    assert!(v6.allocate_next().is_ok());
}

#[test]
fn node_port_allocator() {
    let mut p = NodePortAllocator::new("30000-32767").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.free(), 2768);
    p.allocate_specific(30080).unwrap_or_else(|e| panic!("{e}"));
    let err = p
        .allocate_specific(30080)
        .err()
        .unwrap_or_else(|| panic!("conflict not detected"));
    assert_eq!(
        err.field_error("spec.ports[0].nodePort").to_string(),
        "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
    );
    // Dynamic ports come from above the static band (86 ports here).
    assert_eq!(p.allocate_next().ok(), Some(30086));
    assert_eq!(p.allocate_next().ok(), Some(30087));
    assert!(p.release(30086));
    assert_eq!(p.allocate_next().ok(), Some(30088));

    let mut small = NodePortAllocator::new("30000+3").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(small.range(), "30000-30003");
    assert_eq!(small.restore([30001, 40000]), vec![40000]);
    let mut got = Vec::new();
    while let Ok(port) = small.allocate_next() {
        got.push(port);
    }
    got.sort_unstable();
    assert_eq!(got, vec![30000, 30002, 30003]);
    assert_eq!(small.allocate_next(), Err(AllocationError::Full));
    assert!(NodePortAllocator::new("32767-30000").is_err());
    assert!(NodePortAllocator::new("abc").is_err());
}
