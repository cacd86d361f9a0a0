//! End-to-end checks with the real kubectl binaries (1.27, 1.29, 1.33 when
//! installed next to `kubectl`): a small plain-HTTP server on 127.0.0.1
//! serves discovery, the OpenAPI documents and deployments/pods/services/
//! configmaps stored in memory, applying PATCH bodies with the `patch`
//! module. Skipped when no versioned kubectl is found.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use cairn_apiserver::openapi::{
    Definitions, GroupVersionKind, OpenApiDocuments, ResourceDescriptor,
};
use cairn_apiserver::patch::{json_patch, merge_patch, strategic_merge_patch};
use serde_json::{Value, json};

fn kubectl(version: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("kubectl");
        if let Ok(real) = std::fs::canonicalize(&candidate) {
            let versioned = real.parent()?.join(format!("kubectl.{version}"));
            if versioned.exists() {
                return Some(versioned);
            }
        }
    }
    None
}

fn resources() -> Vec<ResourceDescriptor> {
    vec![
        ResourceDescriptor::new("apps", "v1", "Deployment", "deployments", true).scale(),
        ResourceDescriptor::new("", "v1", "Pod", "pods", true),
        ResourceDescriptor::new("", "v1", "Service", "services", true),
        ResourceDescriptor::new("", "v1", "ConfigMap", "configmaps", true),
    ]
}

/// A recorded PATCH: content type and body.
type PatchLog = Arc<Mutex<Vec<(String, Value)>>>;

struct Server {
    port: u16,
    patches: PatchLog,
}

fn status(code: u16, reason: &str, message: &str) -> (u16, String, Vec<u8>) {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    (
        code,
        "application/json".into(),
        body.to_string().into_bytes(),
    )
}

fn start_server() -> Server {
    let defs = Definitions::embedded().expect("embedded definitions");
    let docs = Arc::new(OpenApiDocuments::new(defs, &resources()).expect("documents"));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let store: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
    let patches: PatchLog = Arc::default();
    let log = patches.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let docs = docs.clone();
            let store = store.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                let _ = serve_connection(stream, defs, &docs, &store, &log);
            });
        }
    });
    Server { port, patches }
}

fn serve_connection(
    stream: TcpStream,
    defs: &'static Definitions,
    docs: &OpenApiDocuments,
    store: &Mutex<HashMap<String, Value>>,
    log: &PatchLog,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("").to_owned();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (target.clone(), None),
        };
        let (code, ctype, out) = handle(
            &method,
            &path,
            query.as_deref(),
            &headers,
            &body,
            defs,
            docs,
            store,
            log,
        );
        let head = format!(
            "HTTP/1.1 {code} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
            out.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(&out)?;
        stream.flush()?;
    }
}

fn discovery(path: &str) -> Option<Value> {
    let verbs = json!([
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch"
    ]);
    let res = |name: &str, singular: &str, kind: &str, short: &[&str]| {
        json!({"name": name, "singularName": singular, "namespaced": true, "kind": kind,
               "verbs": verbs, "shortNames": short})
    };
    match path {
        "/api" => Some(json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})),
        "/apis" => Some(
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [{"name": "apps",
            "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
            "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}]}),
        ),
        "/api/v1" => Some(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1",
            "resources": [res("pods", "pod", "Pod", &["po"]), res("services", "service", "Service", &["svc"]),
                          res("configmaps", "configmap", "ConfigMap", &["cm"])]}),
        ),
        "/apis/apps/v1" => Some(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1",
            "resources": [res("deployments", "deployment", "Deployment", &["deploy"]),
                {"name": "deployments/scale", "singularName": "", "namespaced": true, "group": "autoscaling",
                 "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}]}),
        ),
        "/version" => Some(
            json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "gitCommit": "0",
            "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24",
            "compiler": "gc", "platform": "linux/amd64"}),
        ),
        _ => None,
    }
}

fn gvk_for_plural(plural: &str) -> Option<GroupVersionKind> {
    Some(match plural {
        "deployments" => GroupVersionKind::new("apps", "v1", "Deployment"),
        "pods" => GroupVersionKind::new("", "v1", "Pod"),
        "services" => GroupVersionKind::new("", "v1", "Service"),
        "configmaps" => GroupVersionKind::new("", "v1", "ConfigMap"),
        _ => return None,
    })
}

#[allow(clippy::too_many_arguments)]
fn handle(
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &HashMap<String, String>,
    body: &[u8],
    defs: &'static Definitions,
    docs: &OpenApiDocuments,
    store: &Mutex<HashMap<String, Value>>,
    log: &PatchLog,
) -> (u16, String, Vec<u8>) {
    if let Some(v) = discovery(path) {
        return (200, "application/json".into(), v.to_string().into_bytes());
    }
    if path.starts_with("/openapi/") {
        return match docs.serve(path, query, headers.get("accept").map(String::as_str)) {
            Ok(Some(r)) => (r.status, r.content_type.into(), r.body.to_vec()),
            Ok(None) => status(404, "NotFound", "no such document"),
            Err(e) => status(500, "InternalError", &e.to_string()),
        };
    }
    // /api/v1/namespaces/NS/PLURAL[/NAME] or /apis/apps/v1/namespaces/NS/PLURAL[/NAME]
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ns_at = match segs.iter().position(|s| *s == "namespaces") {
        Some(i) => i,
        None => return status(404, "NotFound", "not found"),
    };
    let (Some(ns), Some(plural)) = (segs.get(ns_at + 1), segs.get(ns_at + 2)) else {
        return status(404, "NotFound", "not found");
    };
    let Some(gvk) = gvk_for_plural(plural) else {
        return status(404, "NotFound", "not found");
    };
    let name = segs.get(ns_at + 3).copied();
    let mut store = store.lock().expect("store");
    let key = |n: &str| format!("{ns}/{plural}/{n}");
    let ok = |code: u16, v: &Value| {
        (
            code,
            "application/json".to_owned(),
            v.to_string().into_bytes(),
        )
    };
    match (method, name) {
        ("GET", Some(n)) => match store.get(&key(n)) {
            Some(v) => ok(200, v),
            None => status(404, "NotFound", &format!("{plural} \"{n}\" not found")),
        },
        ("GET", None) => {
            let items: Vec<Value> = store
                .iter()
                .filter(|(k, _)| k.starts_with(&format!("{ns}/{plural}/")))
                .map(|(_, v)| v.clone())
                .collect();
            ok(
                200,
                &json!({"kind": format!("{}List", gvk.kind), "apiVersion": gvk.api_version(),
                "metadata": {"resourceVersion": "1"}, "items": items}),
            )
        }
        ("POST", None) => {
            let Ok(mut obj) = serde_json::from_slice::<Value>(body) else {
                return status(400, "BadRequest", "body is not JSON");
            };
            let n = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            obj["metadata"]["namespace"] = json!(ns);
            obj["metadata"]["uid"] = json!(format!("uid-{n}"));
            obj["metadata"]["resourceVersion"] = json!("1");
            store.insert(key(&n), obj.clone());
            ok(201, &obj)
        }
        ("PATCH", Some(n)) => {
            let Some(live) = store.get(&key(n)).cloned() else {
                return status(404, "NotFound", &format!("{plural} \"{n}\" not found"));
            };
            let Ok(patch) = serde_json::from_slice::<Value>(body) else {
                return status(400, "BadRequest", "body is not JSON");
            };
            let ctype = headers.get("content-type").cloned().unwrap_or_default();
            log.lock()
                .expect("log")
                .push((ctype.clone(), patch.clone()));
            let result = match ctype.split(';').next().unwrap_or("") {
                "application/strategic-merge-patch+json" => {
                    strategic_merge_patch(&live, &patch, defs.for_gvk(&gvk))
                }
                "application/merge-patch+json" => Ok(merge_patch(&live, &patch)),
                "application/json-patch+json" => json_patch(&live, &patch),
                other => {
                    return status(415, "UnsupportedMediaType", &format!("unsupported {other}"));
                }
            };
            match result {
                Ok(v) => {
                    store.insert(key(n), v.clone());
                    ok(200, &v)
                }
                Err(e) => status(422, "Invalid", &e.to_string()),
            }
        }
        _ => status(405, "MethodNotAllowed", "not supported"),
    }
}

struct Kubectl {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Kubectl {
    fn new(bin: PathBuf, port: u16) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    namespace: default\ncurrent-context: c\nusers: []\n"
        );
        std::fs::write(dir.path().join("kubeconfig"), kubeconfig).expect("kubeconfig");
        Self { bin, dir }
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).expect("write");
        p
    }

    fn run(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(&self.bin)
            .args(args)
            .arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .env("HOME", self.dir.path())
            .env_remove("KUBECONFIG")
            .output()
            .expect("run kubectl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn get_json(&self, ns: &str, what: &str) -> Value {
        let (ok, out) = self.run(&["get", "-n", ns, what, "-o", "json"]);
        assert!(ok, "kubectl get {what}: {out}");
        serde_json::from_str(&out).expect("get -o json output")
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn kubectl_explain_reads_the_v3_documents() {
    let server = start_server();
    let mut ran = 0;
    for version in ["1.33", "1.29", "1.27"] {
        let Some(bin) = kubectl(version) else {
            eprintln!("kubectl {version} not installed; skipped");
            continue;
        };
        ran += 1;
        let k = Kubectl::new(bin, server.port);
        let (ok, out) = k.run(&["explain", "deployment.spec.template.spec.containers"]);
        assert!(ok, "kubectl {version} explain failed: {out}");
        assert!(out.contains("KIND:"), "{version}: {out}");
        assert!(out.contains("Deployment"), "{version}: {out}");
        assert!(
            out.contains("List of containers belonging to the pod"),
            "{version}: {out}"
        );
        assert!(out.contains("imagePullPolicy"), "{version}: {out}");

        let (ok, out) = k.run(&["explain", "pods.spec.containers.ports"]);
        assert!(ok, "kubectl {version} explain pods failed: {out}");
        assert!(out.contains("containerPort"), "{version}: {out}");

        let (ok, out) = k.run(&["explain", "service.spec.ports.targetPort"]);
        assert!(ok, "kubectl {version} explain service failed: {out}");
        assert!(
            out.contains("IntOrString")
                || out.contains("<IntOrString>")
                || out.contains("Number or name"),
            "{version}: {out}"
        );
    }
    if ran == 0 {
        eprintln!("no versioned kubectl found; test skipped");
    }
}

const DEPLOY_V1: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: nginx:1
        ports:
        - containerPort: 80
        - containerPort: 443
        env:
        - name: A
          value: "1"
      - name: sidecar
        image: busybox:1
        command: ["sleep", "infinity"]
"#;

// Image changed, env var added, port 443 removed, containers reordered.
const DEPLOY_V2: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: sidecar
        image: busybox:1
        command: ["sleep", "infinity"]
      - name: app
        image: nginx:2
        ports:
        - containerPort: 80
        env:
        - name: A
          value: "1"
        - name: B
          value: "2"
"#;

#[test]
fn kubectl_apply_patch_and_set_image_through_strategic_merge() {
    let server = start_server();
    let mut ran = 0;
    for version in ["1.33", "1.29", "1.27"] {
        let Some(bin) = kubectl(version) else {
            eprintln!("kubectl {version} not installed; skipped");
            continue;
        };
        ran += 1;
        let k = Kubectl::new(bin, server.port);
        let ns = format!("v{}", version.replace('.', ""));
        let v1 = k.write("v1.yaml", DEPLOY_V1);
        let v2 = k.write("v2.yaml", DEPLOY_V2);
        let (ok, out) = k.run(&["apply", "-n", &ns, "-f", path_str(&v1)]);
        assert!(ok, "{version} apply v1: {out}");
        // Someone else adds a label and a third container; apply must keep them.
        let (ok, out) = k.run(&["label", "-n", &ns, "deployment/web", "team=blue"]);
        assert!(ok, "{version} label: {out}");
        let (ok, out) = k.run(&["apply", "-n", &ns, "-f", path_str(&v2)]);
        assert!(ok, "{version} apply v2: {out}");
        let d = k.get_json(&ns, "deployment/web");
        let containers = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["name"], "sidecar", "{version}: {containers}");
        assert_eq!(containers[1]["name"], "app", "{version}: {containers}");
        assert_eq!(containers[1]["image"], "nginx:2");
        assert_eq!(containers[1]["ports"], json!([{"containerPort": 80}]));
        assert_eq!(
            containers[1]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        );
        assert_eq!(
            d["metadata"]["labels"],
            json!({"app": "web", "team": "blue"})
        );

        let (ok, out) = k.run(&["set", "image", "-n", &ns, "deployment/web", "app=nginx:3"]);
        assert!(ok, "{version} set image: {out}");
        let (ok, out) = k.run(&[
            "patch",
            "-n",
            &ns,
            "deployment/web",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:2"}]}}}}"#,
        ]);
        assert!(ok, "{version} patch: {out}");
        let d = k.get_json(&ns, "deployment/web");
        let containers = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(
            containers[0]["image"], "busybox:2",
            "{version}: {containers}"
        );
        assert_eq!(containers[0]["command"], json!(["sleep", "infinity"]));
        assert_eq!(containers[1]["image"], "nginx:3", "{version}: {containers}");
    }
    if ran > 0 {
        let log = server.patches.lock().expect("log");
        for (ctype, body) in log.iter() {
            eprintln!("PATCH {ctype} {body}");
        }
        // Per version: label (merge patch), then apply, set image and patch
        // (strategic merge patches).
        let strategic = log
            .iter()
            .filter(|(ctype, _)| ctype.starts_with("application/strategic-merge-patch+json"))
            .count();
        assert_eq!(strategic, 3 * ran, "{log:?}");
    } else {
        eprintln!("no versioned kubectl found; test skipped");
    }
}
