//! `bootstrap certs` and `bootstrap token` as a user runs them, checked with
//! independent tools: openssl for the certificates, kubectl for the
//! kubeconfigs and a rustls mTLS handshake for the two working together.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use base64::Engine;

const LEAVES: [(&str, &str, &str); 7] = [
    ("apiserver", "ca", "sslserver"),
    ("apiserver-kubelet-client", "ca", "sslclient"),
    ("front-proxy-client", "front-proxy-ca", "sslclient"),
    ("etcd/server", "etcd/ca", "sslserver"),
    ("etcd/peer", "etcd/ca", "sslclient"),
    ("etcd/healthcheck-client", "etcd/ca", "sslclient"),
    ("apiserver-etcd-client", "etcd/ca", "sslclient"),
];

const KUBECONFIGS: [(&str, &str); 5] = [
    ("admin.conf", "kubernetes-admin"),
    ("super-admin.conf", "kubernetes-super-admin"),
    ("controller-manager.conf", "system:kube-controller-manager"),
    ("scheduler.conf", "system:kube-scheduler"),
    ("kubelet.conf", "system:node:cp-1"),
];

fn bootstrap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bootstrap"))
        .args(args)
        .output()
        .expect("run bootstrap")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run_tool(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} must be installed (the test script installs it): {e}")
        });
    assert!(
        output.status.success(),
        "{program} {args:?} failed\nstdout: {}\nstderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn generate(root: &Path, extra: &[&str]) -> Output {
    let cert_dir = root.join("pki");
    let cert_dir = cert_dir.to_str().expect("utf-8 path");
    let mut args = vec![
        "certs",
        "generate",
        "--cert-dir",
        cert_dir,
        "--node-name",
        "cp-1",
        "--apiserver-advertise-address",
        "192.168.50.11",
        "--control-plane-endpoint",
        "cluster.example.com:6443",
        "--service-cidr",
        "10.100.0.0/16",
        "--service-dns-domain",
        "corp.local",
        "--apiserver-cert-extra-sans",
        "203.0.113.10,*.apps.example.com,api.example.com",
    ];
    // A flag given in `extra` replaces the default one above.
    for flag in extra.iter().filter(|a| a.starts_with("--")) {
        if let Some(index) = args.iter().position(|a| a == flag) {
            args.drain(index..index + 2);
        }
    }
    args.extend_from_slice(extra);
    bootstrap(&args)
}

fn generated(extra: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = generate(dir.path(), extra);
    assert!(
        output.status.success(),
        "generate failed\nstdout: {}\nstderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
    dir
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn san_list(cert: &Path) -> Vec<String> {
    let out = run_tool(
        "openssl",
        &[
            "x509",
            "-noout",
            "-ext",
            "subjectAltName",
            "-in",
            path_str(cert),
        ],
    );
    let mut sans: Vec<String> = out
        .lines()
        .skip(1)
        .flat_map(|line| line.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    sans.sort();
    sans
}

fn subject(cert: &Path) -> String {
    run_tool(
        "openssl",
        &["x509", "-noout", "-subject", "-in", path_str(cert)],
    )
    .trim()
    .to_owned()
}

#[test]
fn every_leaf_verifies_against_its_ca_with_openssl() {
    let dir = generated(&[]);
    let pki = dir.path().join("pki");
    for (leaf, ca, purpose) in LEAVES {
        let ca_file = pki.join(format!("{ca}.crt"));
        let leaf_file = pki.join(format!("{leaf}.crt"));
        let out = run_tool(
            "openssl",
            &[
                "verify",
                "-purpose",
                purpose,
                "-CAfile",
                path_str(&ca_file),
                path_str(&leaf_file),
            ],
        );
        assert!(out.trim_end().ends_with(": OK"), "{leaf}: {out}");
    }
    // A leaf must not verify against a CA that did not sign it.
    let wrong = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(pki.join("etcd/ca.crt"))
        .arg(pki.join("apiserver.crt"))
        .output()
        .expect("openssl");
    assert!(
        !wrong.status.success(),
        "apiserver.crt verified against etcd/ca.crt"
    );
}

#[test]
fn subjects_and_sans_match_kubeadm() {
    let dir = generated(&[]);
    let pki = dir.path().join("pki");
    let expected_subjects = [
        ("ca", "subject=CN = kubernetes"),
        ("front-proxy-ca", "subject=CN = front-proxy-ca"),
        ("etcd/ca", "subject=CN = etcd-ca"),
        ("apiserver", "subject=CN = kube-apiserver"),
        (
            "apiserver-kubelet-client",
            "subject=O = kubeadm:cluster-admins, CN = kube-apiserver-kubelet-client",
        ),
        ("front-proxy-client", "subject=CN = front-proxy-client"),
        ("etcd/server", "subject=CN = cp-1"),
        ("etcd/peer", "subject=CN = cp-1"),
        (
            "etcd/healthcheck-client",
            "subject=CN = kube-etcd-healthcheck-client",
        ),
        (
            "apiserver-etcd-client",
            "subject=CN = kube-apiserver-etcd-client",
        ),
    ];
    for (name, expected) in expected_subjects {
        assert_eq!(
            subject(&pki.join(format!("{name}.crt"))),
            expected,
            "{name}"
        );
    }

    let mut apiserver_sans: Vec<String> = [
        "DNS:cp-1",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.corp.local",
        "DNS:localhost",
        "DNS:cluster.example.com",
        "DNS:*.apps.example.com",
        "DNS:api.example.com",
        "IP Address:10.100.0.1",
        "IP Address:192.168.50.11",
        "IP Address:127.0.0.1",
        "IP Address:203.0.113.10",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    apiserver_sans.sort();
    assert_eq!(san_list(&pki.join("apiserver.crt")), apiserver_sans);

    let mut etcd_sans: Vec<String> = [
        "DNS:cp-1",
        "DNS:localhost",
        "IP Address:192.168.50.11",
        "IP Address:127.0.0.1",
        "IP Address:0:0:0:0:0:0:0:1",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    etcd_sans.sort();
    assert_eq!(san_list(&pki.join("etcd/server.crt")), etcd_sans);
    assert_eq!(san_list(&pki.join("etcd/peer.crt")), etcd_sans);

    let ca_text = run_tool(
        "openssl",
        &[
            "x509",
            "-noout",
            "-text",
            "-in",
            path_str(&pki.join("ca.crt")),
        ],
    );
    assert!(ca_text.contains("CA:TRUE"), "{ca_text}");
    assert!(ca_text.contains("Certificate Sign"), "{ca_text}");
    let server_text = run_tool(
        "openssl",
        &[
            "x509",
            "-noout",
            "-text",
            "-in",
            path_str(&pki.join("etcd/server.crt")),
        ],
    );
    assert!(
        server_text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{server_text}"
    );
}

#[test]
fn validity_periods_follow_kubeadm() {
    let dir = generated(&[]);
    let pki = dir.path().join("pki");
    let seconds = |cert: &Path, check: &str| {
        Command::new("openssl")
            .args(["x509", "-noout", "-checkend", check, "-in"])
            .arg(cert)
            .status()
            .expect("openssl")
            .success()
    };
    let day = 86_400u64;
    // Leaves: valid for 364 more days, not for 366.
    assert!(seconds(
        &pki.join("apiserver.crt"),
        &(364 * day).to_string()
    ));
    assert!(!seconds(
        &pki.join("apiserver.crt"),
        &(366 * day).to_string()
    ));
    // CAs: 10 years.
    assert!(seconds(&pki.join("ca.crt"), &(3649 * day).to_string()));
    assert!(!seconds(&pki.join("ca.crt"), &(3651 * day).to_string()));
    let start = run_tool(
        "openssl",
        &[
            "x509",
            "-noout",
            "-startdate",
            "-in",
            path_str(&pki.join("ca.crt")),
        ],
    );
    let start = start.trim().trim_start_matches("notBefore=");
    let start_epoch = run_tool("date", &["-d", start, "+%s"]);
    let now_epoch = run_tool("date", &["+%s"]);
    let backdate: i64 = now_epoch.trim().parse::<i64>().expect("now")
        - start_epoch.trim().parse::<i64>().expect("start");
    assert!(
        (299..=330).contains(&backdate),
        "notBefore backdated by {backdate}s, expected ~300s"
    );
}

#[test]
fn ca_hash_matches_the_openssl_pipeline() {
    let dir = generated(&[]);
    let pki = dir.path().join("pki");
    let ours = bootstrap(&["certs", "ca-hash", "--cert-dir", path_str(&pki)]);
    assert!(ours.status.success(), "{}", text(&ours.stderr));
    let pipeline = format!(
        "openssl x509 -pubkey -noout -in {} | openssl pkey -pubin -outform der | sha256sum",
        pki.join("ca.crt").display()
    );
    let theirs = run_tool("sh", &["-c", &pipeline]);
    let hex = theirs.split_whitespace().next().expect("sha256sum output");
    assert_eq!(text(&ours.stdout).trim(), format!("sha256:{hex}"));
    assert!(
        text(&generate(dir.path(), &[]).stdout).contains(&format!("sha256:{hex}")),
        "generate prints the same hash"
    );
}

#[test]
fn kubeconfigs_are_read_by_kubectl() {
    let dir = generated(&[]);
    for (file, user) in KUBECONFIGS {
        let path = dir.path().join(file);
        let mode = fs::metadata(&path).expect("kubeconfig").mode() & 0o777;
        assert_eq!(mode, 0o600, "{file} mode");
        let path_arg = format!("--kubeconfig={}", path.display());
        let server = run_tool(
            "kubectl",
            &[
                "config",
                "view",
                &path_arg,
                "--minify",
                "-o",
                "jsonpath={.clusters[0].cluster.server}",
            ],
        );
        let expected_server = if file == "controller-manager.conf" || file == "scheduler.conf" {
            "https://192.168.50.11:6443"
        } else {
            "https://cluster.example.com:6443"
        };
        assert_eq!(server, expected_server, "{file}");
        let context_user = run_tool(
            "kubectl",
            &[
                "config",
                "view",
                &path_arg,
                "--minify",
                "-o",
                "jsonpath={.contexts[0].context.user}",
            ],
        );
        assert_eq!(context_user, user, "{file}");
        let current = run_tool("kubectl", &["config", "current-context", &path_arg]);
        assert_eq!(current.trim(), format!("{user}@kubernetes"), "{file}");

        let cert_b64 = run_tool(
            "kubectl",
            &[
                "config",
                "view",
                &path_arg,
                "--raw",
                "-o",
                "jsonpath={.users[0].user.client-certificate-data}",
            ],
        );
        let cert_pem = base64::engine::general_purpose::STANDARD
            .decode(cert_b64.trim())
            .expect("base64 client cert");
        let cert_file = dir.path().join(format!("{file}.crt"));
        fs::write(&cert_file, cert_pem).expect("write cert");
        let verify = run_tool(
            "openssl",
            &[
                "verify",
                "-purpose",
                "sslclient",
                "-CAfile",
                path_str(&dir.path().join("pki/ca.crt")),
                path_str(&cert_file),
            ],
        );
        assert!(verify.trim_end().ends_with(": OK"), "{file}: {verify}");
        let expected_subject = match file {
            "admin.conf" => "subject=O = kubeadm:cluster-admins, CN = kubernetes-admin".to_owned(),
            "super-admin.conf" => {
                "subject=O = system:masters, CN = kubernetes-super-admin".to_owned()
            }
            "kubelet.conf" => "subject=O = system:nodes, CN = system:node:cp-1".to_owned(),
            _ => format!("subject=CN = {user}"),
        };
        assert_eq!(subject(&cert_file), expected_subject, "{file}");
    }
}

#[test]
fn files_have_the_right_modes() {
    let dir = generated(&[]);
    let pki = dir.path().join("pki");
    for entry in walk(&pki) {
        let mode = fs::metadata(&entry).expect("stat").mode() & 0o777;
        let expected = if entry.extension().is_some_and(|e| e == "key") {
            0o600
        } else {
            0o644
        };
        assert_eq!(mode, expected, "{}", entry.display());
    }
    assert!(
        walk(dir.path())
            .iter()
            .all(|p| !p.to_string_lossy().contains(".tmp-")),
        "temporary files left behind"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn load_chain(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .expect("certificates")
}

fn load_key(pem: &[u8]) -> rustls::pki_types::PrivateKeyDer<'static> {
    rustls_pemfile::private_key(&mut &pem[..])
        .expect("read key")
        .expect("a private key")
}

fn admin_credentials(kubeconfig: &Path) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&fs::read_to_string(kubeconfig).expect("kubeconfig")).expect("yaml");
    let decode = |value: &serde_yaml::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(value.as_str().expect("string"))
            .expect("base64")
    };
    let user = &yaml["users"][0]["user"];
    (
        decode(&yaml["clusters"][0]["cluster"]["certificate-authority-data"]),
        decode(&user["client-certificate-data"]),
        decode(&user["client-key-data"]),
    )
}

/// Runs one TLS exchange between a server using the PKI's apiserver
/// certificate (requiring client certificates from `client_ca_pem`) and a
/// client using `kubeconfig`'s credentials. Returns the client's outcome.
fn mtls_exchange(
    pki: &Path,
    client_ca_pem: &[u8],
    kubeconfig: &Path,
    server_name: &str,
) -> Result<String, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client_roots = rustls::RootCertStore::empty();
    for cert in load_chain(client_ca_pem) {
        client_roots.add(cert).expect("client CA");
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(client_roots),
        provider.clone(),
    )
    .build()
    .expect("client verifier");
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            load_chain(&fs::read(pki.join("apiserver.crt")).expect("apiserver.crt")),
            load_key(&fs::read(pki.join("apiserver.key")).expect("apiserver.key")),
        )
        .expect("server config");

    let (ca_pem, cert_pem, key_pem) = admin_credentials(kubeconfig);
    let mut server_roots = rustls::RootCertStore::empty();
    for cert in load_chain(&ca_pem) {
        server_roots.add(cert).expect("server CA");
    }
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(server_roots)
        .with_client_auth_cert(load_chain(&cert_pem), load_key(&key_pem))
        .expect("client config");

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    let server = std::thread::spawn(move || -> Result<(), String> {
        let (socket, _) = listener.accept().map_err(|e| e.to_string())?;
        let connection =
            rustls::ServerConnection::new(Arc::new(server_config)).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(connection, socket);
        let mut request = [0u8; 4];
        tls.read_exact(&mut request).map_err(|e| e.to_string())?;
        let peer = tls
            .conn
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|c| c.len())
            .unwrap_or(0);
        tls.write_all(format!("ok {peer}").as_bytes())
            .map_err(|e| e.to_string())?;
        tls.conn.send_close_notify();
        tls.flush().map_err(|e| e.to_string())
    });

    let name =
        rustls::pki_types::ServerName::try_from(server_name.to_owned()).expect("server name");
    let connection = rustls::ClientConnection::new(Arc::new(client_config), name).expect("client");
    let socket = TcpStream::connect(addr).expect("connect");
    let mut tls = rustls::StreamOwned::new(connection, socket);
    let result = tls
        .write_all(b"ping")
        .and_then(|()| {
            let mut reply = String::new();
            tls.read_to_string(&mut reply).map(|_| reply)
        })
        .map_err(|e| e.to_string());
    let server_result = server.join().expect("server thread");
    match (result, server_result) {
        (Ok(reply), Ok(())) => Ok(reply),
        (client, server) => Err(format!("client: {client:?}; server: {server:?}")),
    }
}

#[test]
fn apiserver_and_admin_conf_complete_an_mtls_handshake() {
    let dir = generated(&[]);
    let pki = dir.path().join("pki");
    let ca = fs::read(pki.join("ca.crt")).expect("ca");
    for name in [
        "127.0.0.1",
        "192.168.50.11",
        "kubernetes.default.svc",
        "cluster.example.com",
        "x.apps.example.com",
    ] {
        let reply = mtls_exchange(&pki, &ca, &dir.path().join("admin.conf"), name)
            .unwrap_or_else(|e| panic!("handshake as {name} failed: {e}"));
        assert!(reply.starts_with("ok "), "{reply}");
    }
    // The server name must be one of the SANs.
    assert!(
        mtls_exchange(
            &pki,
            &ca,
            &dir.path().join("admin.conf"),
            "not-in-sans.example.org"
        )
        .is_err()
    );
    // A client certificate from another cluster is refused.
    let other = generated(&[]);
    assert!(mtls_exchange(&pki, &ca, &other.path().join("admin.conf"), "127.0.0.1").is_err());
}

#[test]
fn rsa_pki_verifies_and_handshakes() {
    let dir = generated(&["--key-type", "rsa-2048"]);
    let pki = dir.path().join("pki");
    let key_text = run_tool(
        "openssl",
        &[
            "pkey",
            "-noout",
            "-text",
            "-in",
            path_str(&pki.join("apiserver.key")),
        ],
    );
    assert!(key_text.contains("Private-Key: (2048 bit"), "{key_text}");
    let ca = fs::read(pki.join("ca.crt")).expect("ca");
    mtls_exchange(&pki, &ca, &dir.path().join("admin.conf"), "127.0.0.1").expect("rsa handshake");
}

fn assert_rejected(output: &Output, needles: &[&str]) {
    let stderr = text(&output.stderr);
    assert!(
        !output.status.success(),
        "expected failure, stdout: {}",
        text(&output.stdout)
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "stderr should mention {needle:?}:\n{stderr}"
        );
    }
}

#[test]
fn bad_flags_fail_clearly_and_write_nothing() {
    let cases: [(&[&str], &[&str]); 8] = [
        (
            &["--service-cidr", "10.96.0.0/40"],
            &["--service-cidr", "prefix length"],
        ),
        (
            &["--service-cidr", "10.96.0.1/12"],
            &["--service-cidr", "did you mean 10.96.0.0/12"],
        ),
        (
            &["--service-cidr", "10.96.0.0/12,10.97.0.0/16"],
            &["--service-cidr", "different IP families"],
        ),
        (
            &["--apiserver-advertise-address", "300.1.1.1"],
            &["--apiserver-advertise-address", "not an IP address"],
        ),
        (
            &["--apiserver-advertise-address", "0.0.0.0"],
            &["--apiserver-advertise-address", "cannot be advertised"],
        ),
        (
            &["--apiserver-cert-extra-sans", "ok.example.com,bad_name!"],
            &[
                "--apiserver-cert-extra-sans",
                "neither an IP address nor a DNS name",
            ],
        ),
        (
            &["--control-plane-endpoint", "https://vip:6443"],
            &["--control-plane-endpoint", "without a scheme"],
        ),
        (&["--key-type", "dsa"], &["--key-type", "ecdsa-p256"]),
    ];
    for (extra, needles) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let output = generate(dir.path(), extra);
        assert_rejected(&output, needles);
        assert!(walk(dir.path()).is_empty(), "{extra:?} wrote files");
        assert!(
            !dir.path().join("pki").exists(),
            "{extra:?} created the cert dir"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let output = bootstrap(&[
        "certs",
        "generate",
        "--cert-dir",
        path_str(&dir.path().join("pki")),
        "--node-name",
        "Node_1",
        "--apiserver-advertise-address",
        "10.0.0.1",
    ]);
    assert_rejected(&output, &["--node-name", "RFC 1123"]);
}

#[test]
fn an_unwritable_directory_fails_without_partial_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blocker = dir.path().join("blocker");
    fs::write(&blocker, "a file where a directory should be").expect("write");
    // The kubeconfigs go to a fine directory, the certificates cannot.
    let output = bootstrap(&[
        "certs",
        "generate",
        "--cert-dir",
        path_str(&blocker.join("pki")),
        "--kubeconfig-dir",
        path_str(&dir.path().join("conf")),
        "--node-name",
        "cp-1",
        "--apiserver-advertise-address",
        "10.0.0.1",
    ]);
    assert_rejected(&output, &["cannot write", "blocker"]);
    let left: Vec<_> = walk(dir.path());
    assert_eq!(left, vec![blocker.clone()], "partial output left behind");
}

#[test]
fn a_mismatched_ca_key_is_refused_and_nothing_changes() {
    let dir = generated(&[]);
    let other = generated(&[]);
    let pki = dir.path().join("pki");
    fs::copy(other.path().join("pki/ca.key"), pki.join("ca.key")).expect("swap key");
    fs::remove_file(pki.join("apiserver.crt")).expect("rm");
    let before: Vec<(PathBuf, Vec<u8>)> = walk(dir.path())
        .into_iter()
        .map(|p| {
            let c = fs::read(&p).expect("read");
            (p, c)
        })
        .collect();
    let output = generate(dir.path(), &[]);
    assert_rejected(&output, &["ca.key does not match", "ca.crt"]);
    for (path, contents) in before {
        assert_eq!(
            fs::read(&path).expect("read"),
            contents,
            "{} changed",
            path.display()
        );
    }
    assert!(!pki.join("apiserver.crt").exists());
}

#[test]
fn adding_a_san_reissues_the_apiserver_certificate() {
    let dir = generated(&[]);
    let pki = dir.path().join("pki");
    let ca_before = fs::read(pki.join("ca.crt")).expect("ca");
    let output = generate(
        dir.path(),
        &[
            "--apiserver-cert-extra-sans",
            "203.0.113.10,*.apps.example.com,api.example.com,new.example.com",
        ],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("Regenerated \"apiserver\" certificate and key: its SANs changed (added DNS:new.example.com)"), "{stdout}");
    assert!(san_list(&pki.join("apiserver.crt")).contains(&"DNS:new.example.com".to_owned()));
    assert_eq!(
        fs::read(pki.join("ca.crt")).expect("ca"),
        ca_before,
        "the CA must be kept"
    );
}

#[test]
fn check_expiration_and_renew_work_like_kubeadm() {
    let dir = generated(&[]);
    let pki = dir.path().join("pki");
    let output = bootstrap(&["certs", "check-expiration", "--cert-dir", path_str(&pki)]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let table = text(&output.stdout);
    assert!(table.starts_with("CERTIFICATE "), "{table}");
    for name in [
        "admin.conf",
        "apiserver",
        "etcd-server",
        "front-proxy-client",
        "scheduler.conf",
    ] {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} row missing:\n{table}"));
        assert!(row.contains(" 364d "), "{row}");
    }
    let ca_row = table
        .lines()
        .find(|l| l.starts_with("etcd-ca "))
        .expect("etcd-ca row");
    assert!(ca_row.contains(" 9y "), "{ca_row}");

    let sans_before = san_list(&pki.join("apiserver.crt"));
    let serial = |p: &Path| {
        run_tool(
            "openssl",
            &["x509", "-noout", "-serial", "-in", path_str(p)],
        )
    };
    let serial_before = serial(&pki.join("apiserver.crt"));
    let output = bootstrap(&["certs", "renew", "all", "--cert-dir", path_str(&pki)]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("Renewed \"admin.conf\""),
        "{}",
        text(&output.stdout)
    );
    assert_eq!(san_list(&pki.join("apiserver.crt")), sans_before);
    assert_ne!(serial(&pki.join("apiserver.crt")), serial_before);
    assert_eq!(
        subject(&pki.join("apiserver-kubelet-client.crt")),
        "subject=O = kubeadm:cluster-admins, CN = kube-apiserver-kubelet-client"
    );

    let output = bootstrap(&["certs", "renew", "apiserverr", "--cert-dir", path_str(&pki)]);
    assert_rejected(
        &output,
        &[
            "unknown certificate \"apiserverr\"",
            "apiserver-etcd-client",
        ],
    );
}

#[test]
fn tokens_and_certificate_keys_have_the_documented_shape() {
    let token = text(&bootstrap(&["token", "generate"]).stdout);
    let token = token.trim();
    let (id, secret) = token.split_once('.').expect("id.secret");
    assert_eq!((id.len(), secret.len()), (6, 16), "{token}");
    assert!(
        token
            .bytes()
            .all(|b| b == b'.' || b.is_ascii_lowercase() || b.is_ascii_digit()),
        "{token}"
    );

    let key = text(&bootstrap(&["certs", "certificate-key"]).stdout);
    let key = key.trim();
    assert_eq!(key.len(), 64, "{key}");
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
}
