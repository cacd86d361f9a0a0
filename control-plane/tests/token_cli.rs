//! `bootstrap token create|list|delete` end to end: the real `bootstrap`
//! binary against a real etcd and the `control-plane apiserver` binary.
//!
//! The test lives here rather than in the bootstrap package because the
//! shared harness (`common/`) starts the apiserver through
//! `CARGO_BIN_EXE_control-plane`, which only this package's tests have.
//! The `bootstrap` binary is built with the same cargo and profile and run
//! by path, exactly as an operator runs it.
//!
//! Covered: create (the Secret in kubeadm's layout, usable for
//! authentication as `system:bootstrap:<id>`), `--print-join-command`
//! (endpoint from `kube-public/cluster-info`, hash checked with openssl),
//! `$KUBECONFIG` as the default, the list table (`23h`, `<forever>`,
//! `<invalid>` for an expired token), a duplicate id refused, delete by id
//! and by whole token, an unknown id named in the error.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use cairn_cluster::client::{Credentials, KubeClient, ServerTrust};
use cairn_pki::KubeconfigFile;
use common::{Apiserver, etcd_and_apiserver, json, kubectl_binary};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The `bootstrap` binary of this workspace, built once with the test's
/// own profile (`target/<profile>/deps/<test>` → `target/<profile>`).
fn bootstrap_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>/deps/<test>")
            .to_owned();
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_owned(),
            Some(other) => other.to_owned(),
        };
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "cairn-bootstrap", "--bin", "bootstrap"])
            .args(["--profile", &profile])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::null())
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p cairn-bootstrap: {status}");
        let binary = profile_dir.join("bootstrap");
        assert!(binary.is_file(), "{} was not built", binary.display());
        binary
    })
}

struct Cli<'a> {
    server: &'a Apiserver,
    kubeconfig: PathBuf,
}

impl Cli<'_> {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(bootstrap_binary())
            .args(args)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .env_remove("KUBECONFIG")
            .env("RUST_LOG", "warn")
            .output()
            .expect("run bootstrap")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "bootstrap {} failed ({}):\nstdout: {}\nstderr: {}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.server.log_tail()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "bootstrap {} unexpectedly succeeded:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// The pin computed by openssl, independently of cairn-pki.
fn openssl_pin(ca: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            "openssl x509 -pubkey -noout -in \"$1\" | openssl pkey -pubin -outform der \
             | sha256sum | cut -d' ' -f1",
        )
        .arg("sh")
        .arg(ca)
        .output()
        .expect("run openssl");
    let hex = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success() && hex.len() == 64,
        "openssl pin of {}: {}{}",
        ca.display(),
        hex,
        String::from_utf8_lossy(&out.stderr)
    );
    format!("sha256:{hex}")
}

/// `kube-public/cluster-info` as node-agent publishes it, with an endpoint
/// that differs from the admin kubeconfig's server so the join command
/// provably takes it from cluster-info.
fn publish_cluster_info(admin: &KubeClient, ca_pem: &str, server: &str) {
    // ByteString serialises as base64, which spares a base64 dependency.
    let ca_data = serde_json::to_value(ByteString(ca_pem.as_bytes().to_vec())).expect("base64");
    let ca_data = ca_data.as_str().expect("a base64 string");
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    \
         server: {server}\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\npreferences: {{}}\nusers: null\n",
        ca_data
    );
    let map = ConfigMap {
        metadata: ObjectMeta {
            name: Some("cluster-info".into()),
            namespace: Some("kube-public".into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("kubeconfig".to_owned(), kubeconfig)])),
        ..ConfigMap::default()
    };
    admin
        .create(Some("kube-public"), &map)
        .expect("create kube-public/cluster-info");
}

/// A token Secret that expired an hour ago, written directly (no token
/// cleaner runs here to remove it).
fn store_expired_token(admin: &KubeClient, id: &str, secret: &str) {
    let expiration = (time::OffsetDateTime::now_utc() - time::Duration::hours(1))
        .replace_nanosecond(0)
        .expect("whole seconds")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let data = [
        ("token-id", id),
        ("token-secret", secret),
        ("expiration", &expiration),
        ("usage-bootstrap-authentication", "true"),
        ("usage-bootstrap-signing", "true"),
        ("description", "expired"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
    .collect();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(format!("bootstrap-token-{id}")),
            namespace: Some("kube-system".into()),
            ..ObjectMeta::default()
        },
        type_: Some("bootstrap.kubernetes.io/token".into()),
        data: Some(data),
        ..Secret::default()
    };
    admin
        .create(Some("kube-system"), &secret)
        .expect("create the expired token");
}

/// The list table as rows of cells (split on runs of 3+ spaces, as the
/// columns are separated by at least 3).
fn table(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|line| {
            line.split("   ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

fn row_of<'t>(rows: &'t [Vec<String>], token_id: &str) -> Option<&'t Vec<String>> {
    rows.iter().find(|row| {
        row.first()
            .is_some_and(|t| t.starts_with(&format!("{token_id}.")))
    })
}

#[test]
fn token_create_list_delete_against_a_real_apiserver() {
    let Some(kubectl) = kubectl_binary("1.33").or_else(|| kubectl_binary("1.27")) else {
        eprintln!("skipping: no versioned kubectl binary next to kubectl on PATH");
        return;
    };
    // Build before starting servers so a slow build does not eat their
    // timeouts.
    let _ = bootstrap_binary();
    let (_runtime, etcd, mut server) = etcd_and_apiserver();
    server.wait_ready(&kubectl);
    let admin_conf = server.local_kubeconfig(KubeconfigFile::Admin);
    let admin = KubeClient::from_kubeconfig(&admin_conf).expect("admin client");
    let cli = Cli {
        server: &server,
        kubeconfig: admin_conf.clone(),
    };
    let ca_path = server.pki.cert("ca");
    let ca_pem = std::fs::read_to_string(&ca_path).expect("read ca.crt");

    // --print-join-command without cluster-info: refused, no token left.
    let err = cli.fails(&["token", "create", "--print-join-command"]);
    assert!(err.contains("kube-public/cluster-info"), "{err}");
    let secrets = server.ok(
        &kubectl,
        &["get", "secrets", "-n", "kube-system", "-o", "json"],
    );
    assert!(
        !secrets.contains("bootstrap.kubernetes.io/token"),
        "a token was stored although the join command could not be made:\n{secrets}"
    );

    publish_cluster_info(&admin, &ca_pem, "https://10.9.8.7:6443");

    // create --print-join-command with a description.
    let join = cli.ok(&[
        "token",
        "create",
        "--print-join-command",
        "--description",
        "for node-4",
    ]);
    let words: Vec<&str> = join.split_whitespace().collect();
    assert_eq!(
        (
            words.len(),
            words[0],
            words[1],
            words[2],
            words[3],
            words[5]
        ),
        (
            7,
            "bootstrap",
            "join",
            "10.9.8.7:6443",
            "--token",
            "--discovery-token-ca-cert-hash"
        ),
        "join command: {join}"
    );
    assert_eq!(words[6], openssl_pin(&ca_path), "join command: {join}");
    let token = words[4].to_owned();
    let (id, secret_part) = token.split_once('.').expect("id.secret");

    // The Secret is kubeadm's layout.
    let stored = json(&server.ok(
        &kubectl,
        &[
            "get",
            "secret",
            "-n",
            "kube-system",
            &format!("bootstrap-token-{id}"),
            "-o",
            "json",
        ],
    ));
    assert_eq!(stored["type"], "bootstrap.kubernetes.io/token");
    let field = |key: &str| {
        let bytes: ByteString = serde_json::from_value(stored["data"][key].clone())
            .unwrap_or_else(|e| panic!("data.{key} ({e}): {stored}"));
        String::from_utf8(bytes.0).expect("utf-8")
    };
    assert_eq!(field("token-id"), id);
    assert_eq!(field("token-secret"), secret_part);
    assert_eq!(field("usage-bootstrap-signing"), "true");
    assert_eq!(field("usage-bootstrap-authentication"), "true");
    assert_eq!(
        field("auth-extra-groups"),
        "system:bootstrappers:kubeadm:default-node-token"
    );
    assert_eq!(field("description"), "for node-4");
    let expires = time::OffsetDateTime::parse(
        &field("expiration"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339 expiration");
    let left = expires - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::hours(23) && left <= time::Duration::hours(24),
        "expiration {expires} is not 24 h from now"
    );

    // The apiserver accepts it: it authenticates as system:bootstrap:<id>.
    let as_token = KubeClient::new(
        &format!("https://127.0.0.1:{}", server.port),
        ServerTrust::CaPem(ca_pem.clone().into_bytes()),
        Credentials::BearerToken(token.clone()),
    )
    .expect("token client");
    let (status, body) = as_token
        .request(
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            Some(br#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#),
        )
        .expect("SelfSubjectReview");
    let review = json(&String::from_utf8_lossy(&body));
    assert_eq!(status, 201, "SelfSubjectReview as the new token: {review}");
    assert_eq!(
        review["status"]["userInfo"]["username"],
        format!("system:bootstrap:{id}")
    );
    let groups = review["status"]["userInfo"]["groups"].to_string();
    assert!(
        groups.contains("system:bootstrappers:kubeadm:default-node-token"),
        "{groups}"
    );

    // The same token again: 409, said plainly.
    let err = cli.fails(&["token", "create", &token]);
    assert!(
        err.contains(&format!(
            "a bootstrap token with id \"{id}\" already exists"
        )),
        "{err}"
    );

    // A given token, never expiring, signing only (no groups then).
    let forever = "qwerty.0123456789abcdef";
    assert_eq!(
        cli.ok(&[
            "token", "create", forever, "--ttl", "0", "--usages", "signing"
        ])
        .trim(),
        forever
    );
    // Groups without authentication are refused before anything is sent.
    let err = cli.fails(&[
        "token",
        "create",
        "--usages",
        "signing",
        "--groups",
        "system:bootstrappers:extra",
    ]);
    assert!(
        err.contains("--groups needs the authentication usage"),
        "{err}"
    );

    store_expired_token(&admin, "oldtok", "0123456789abcdef");

    // list, with $KUBECONFIG as the only hint where the cluster is.
    let out = Command::new(bootstrap_binary())
        .args(["token", "list"])
        .env("KUBECONFIG", &admin_conf)
        .output()
        .expect("run bootstrap token list");
    assert!(
        out.status.success(),
        "token list with $KUBECONFIG: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows = table(&listing);
    assert_eq!(
        rows[0],
        [
            "TOKEN",
            "TTL",
            "EXPIRES",
            "USAGES",
            "DESCRIPTION",
            "EXTRA GROUPS"
        ],
        "{listing}"
    );
    assert_eq!(rows.len(), 4, "three tokens expected:\n{listing}");
    let created = row_of(&rows, id).unwrap_or_else(|| panic!("{id} missing:\n{listing}"));
    assert_eq!(created[0], token, "{listing}");
    assert_eq!(created[1], "23h", "{listing}");
    assert_eq!(created[3], "authentication,signing", "{listing}");
    assert_eq!(created[4], "for node-4", "{listing}");
    assert_eq!(
        created[5], "system:bootstrappers:kubeadm:default-node-token",
        "{listing}"
    );
    let never = row_of(&rows, "qwerty").unwrap_or_else(|| panic!("qwerty missing:\n{listing}"));
    assert_eq!(
        never[1..],
        ["<forever>", "<never>", "signing", "<none>"],
        "{listing}"
    );
    let expired = row_of(&rows, "oldtok").unwrap_or_else(|| panic!("oldtok missing:\n{listing}"));
    assert_eq!(expired[1], "<invalid>", "{listing}");
    // Columns line up: every row's second cell starts where TTL does.
    let ttl_column = listing
        .lines()
        .next()
        .and_then(|h| h.find("TTL"))
        .expect("TTL");
    for line in listing.lines().skip(1) {
        assert_eq!(
            line.as_bytes().get(ttl_column - 1),
            Some(&b' '),
            "misaligned row {line:?}:\n{listing}"
        );
    }

    // delete by id and by whole token; an unknown id is named and does not
    // stop the others.
    let out = cli.run(&["token", "delete", id, forever, "zzzzzz"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "deleting an unknown id succeeded: {stdout}"
    );
    assert!(
        stderr.contains("bootstrap token \"zzzzzz\" not found"),
        "stderr: {stderr}"
    );
    assert_eq!(
        stdout,
        format!("bootstrap token \"{id}\" deleted\nbootstrap token \"qwerty\" deleted\n")
    );
    let listing = cli.ok(&["token", "list"]);
    let rows = table(&listing);
    assert_eq!(
        rows.len(),
        2,
        "only the expired token should be left:\n{listing}"
    );
    assert!(row_of(&rows, "oldtok").is_some(), "{listing}");
    assert_eq!(
        cli.ok(&["token", "delete", "oldtok.0123456789abcdef"]),
        "bootstrap token \"oldtok\" deleted\n"
    );
    let listing = cli.ok(&["token", "list"]);
    assert_eq!(
        table(&listing).len(),
        1,
        "no token should be left:\n{listing}"
    );

    drop(server);
    drop(etcd);
}
