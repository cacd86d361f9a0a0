//! The node API over real TLS on 127.0.0.1: authentication, routing,
//! limits and the client.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use cairn_node_api::{
    Caller, ClientError, Credentials, MaintenanceKey, NodeClient, ResetRequest,
    RunContainerRequest, ServerIdentity, ServerOptions, ServerTrust,
};
use common::*;

fn pinned(handle: &cairn_node_api::ApiServerHandle, credentials: Credentials) -> NodeClient {
    NodeClient::new(
        handle.local_addr(),
        ServerTrust::Fingerprint(handle.fingerprint().to_string()),
        credentials,
    )
    .expect("client")
    .with_io_timeout(Duration::from_secs(20))
}

fn cert_credentials(ca: &Ca, cn: &str, orgs: &[&str]) -> Credentials {
    let (cert_pem, key_pem) = ca.client(cn, orgs);
    Credentials::ClientCert { cert_pem, key_pem }
}

fn expect_status<T: std::fmt::Debug>(result: Result<T, ClientError>, expected: u16, what: &str) {
    match result {
        Err(e) if e.http_status() == Some(expected) => {}
        other => panic!("{what}: expected HTTP {expected}, got {other:?}"),
    }
}

#[test]
fn client_certificate_from_the_configured_ca_reaches_every_endpoint() -> TestResult {
    let double = Double::new();
    let server = start(&double);
    let ca = Ca::new("cairn-admin-ca");
    server.set_client_ca(Some(&ca.cert_pem()))?;
    let client = pinned(&server, cert_credentials(&ca, "admin", &["system:masters"]));

    let status = client.status()?;
    assert_eq!(
        status,
        sample_status(),
        "status differs from what the node sent"
    );
    assert_eq!(
        client.logs("kubelet", 2)?,
        "kubelet line 1\nkubelet line 2\n"
    );
    assert_eq!(client.read("/etc/os-release")?, b"ID=cairn\n");
    client.apply_config("[cluster]\nname = \"lab\"\n")?;
    let run = client.run_container(&RunContainerRequest {
        image: "busybox:latest".into(),
        args: vec!["echo".into(), "hi".into()],
        timeout_seconds: 5,
    })?;
    assert_eq!((run.exit_code, run.stdout.as_str()), (3, "echo hi"));
    client.reboot()?;
    client.shutdown()?;

    let admin = Caller::Certificate {
        common_name: Some("admin".into()),
        organizations: vec!["system:masters".into()],
    };
    // reboot/shutdown run after their answers, each on its connection's
    // thread, so they may reach the service in either order.
    let deadline = Instant::now() + Duration::from_secs(30);
    let expected = [
        "status",
        "logs kubelet 2",
        "read /etc/os-release 1048576",
        "apply_config",
        "run busybox:latest",
    ];
    loop {
        let calls = double.calls();
        if calls.len() >= expected.len() + 2 || Instant::now() > deadline {
            let mut names: Vec<&str> = calls.iter().map(|(n, _)| n.as_str()).collect();
            let mut after_answer = names.split_off(expected.len().min(names.len()));
            after_answer.sort_unstable();
            assert_eq!(names, expected, "calls seen by the service");
            assert_eq!(
                after_answer,
                ["reboot", "shutdown"],
                "calls run after their answers"
            );
            for (name, caller) in &calls {
                assert_eq!(caller, &admin, "caller of {name}");
            }
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        double.record.lock().map_err(|e| e.to_string())?.configs,
        vec!["[cluster]\nname = \"lab\"\n".to_string()]
    );
    Ok(())
}

#[test]
fn service_errors_reach_the_client_with_status_and_text() -> TestResult {
    let double = Double::new();
    let server = start(&double);
    let ca = Ca::new("ca");
    server.set_client_ca(Some(&ca.cert_pem()))?;
    let client = pinned(&server, cert_credentials(&ca, "admin", &[]));

    match client.logs("nosuch", 10) {
        Err(ClientError::Status {
            status, message, ..
        }) => {
            assert_eq!(status, 404);
            assert_eq!(message, "no service nosuch");
        }
        other => panic!("expected 404 for an unknown service, got {other:?}"),
    }
    expect_status(client.logs("../etc", 10), 400, "bad service name");
    expect_status(client.read("relative/path"), 400, "relative read path");
    expect_status(client.read("/var/big"), 413, "file over 1 MiB");
    expect_status(client.read("/missing"), 404, "missing file");
    expect_status(client.apply_config("busy = true"), 409, "config while busy");
    let err = client
        .logs("nosuch", 1)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("GET /v1/logs/nosuch")
            && err.contains("404")
            && err.contains(&server.local_addr().to_string()),
        "error lacks context: {err}"
    );
    Ok(())
}

#[test]
fn certificate_from_another_ca_is_refused() -> TestResult {
    let double = Double::new();
    let server = start(&double);
    let trusted = Ca::new("trusted");
    let other = Ca::new("other");
    server.set_client_ca(Some(&trusted.cert_pem()))?;

    let intruder = pinned(
        &server,
        cert_credentials(&other, "admin", &["system:masters"]),
    );
    match intruder.status() {
        Err(ClientError::Tls { message, .. }) => assert!(
            message.contains("UnknownCA") || message.to_lowercase().contains("certificate"),
            "expected the node to refuse the certificate: {message}"
        ),
        other => panic!("expected a TLS failure for a foreign CA's certificate, got {other:?}"),
    }
    // The server keeps serving the legitimate client.
    let good = pinned(&server, cert_credentials(&trusted, "admin", &[]));
    good.status()?;
    // The handshake failure was reported for logging (by the server's
    // connection thread, which may finish after the client saw the alert).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let failures = double
            .record
            .lock()
            .map_err(|e| e.to_string())?
            .failures
            .clone();
        if failures
            .iter()
            .any(|f| f.to_lowercase().contains("certificate"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expected a certificate failure event, saw {failures:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

#[test]
fn client_ca_can_be_replaced_and_cleared_at_runtime() -> TestResult {
    let double = Double::new();
    let server = start(&double);
    let first = Ca::new("first");
    let second = Ca::new("second");
    let first_client = pinned(&server, cert_credentials(&first, "a", &[]));
    let second_client = pinned(&server, cert_credentials(&second, "b", &[]));

    // No CA: certificates are not asked for, so the caller is anonymous.
    expect_status(
        first_client.status(),
        401,
        "certificate with no client CA set",
    );

    server.set_client_ca(Some(&first.cert_pem()))?;
    first_client.status()?;
    assert!(
        second_client.status().is_err(),
        "second CA accepted before it was set"
    );

    // A bundle of both.
    server.set_client_ca(Some(&format!("{}{}", first.cert_pem(), second.cert_pem())))?;
    first_client.status()?;
    second_client.status()?;

    // Garbage is refused and the previous set stays.
    assert!(server.set_client_ca(Some("not a pem")).is_err());
    second_client.status()?;

    server.set_client_ca(None)?;
    expect_status(
        first_client.status(),
        401,
        "certificate after the CA was cleared",
    );
    Ok(())
}

#[test]
fn anonymous_callers_get_401_everywhere() -> TestResult {
    let double = Double::new();
    let server = start(&double);
    let ca = Ca::new("ca");
    server.set_client_ca(Some(&ca.cert_pem()))?;
    server.set_maintenance_key(Some(MaintenanceKey::generate()?));
    let client = pinned(&server, Credentials::Anonymous);

    expect_status(client.status(), 401, "status");
    expect_status(client.logs("kubelet", 1), 401, "logs");
    expect_status(client.read("/etc/os-release"), 401, "read");
    expect_status(client.apply_config("x = 1"), 401, "config");
    expect_status(client.reboot(), 401, "reboot");
    expect_status(client.shutdown(), 401, "shutdown");
    expect_status(
        client.run_container(&RunContainerRequest::default()),
        401,
        "run",
    );
    assert!(
        double.calls().is_empty(),
        "service called: {:?}",
        double.calls()
    );
    let requests = double
        .record
        .lock()
        .map_err(|e| e.to_string())?
        .requests
        .clone();
    assert_eq!(requests.len(), 7, "{requests:?}");
    assert!(
        requests
            .iter()
            .all(|(caller, _, _, status)| caller.is_none() && *status == 401)
    );
    Ok(())
}

#[test]
fn reset_leaves_first_and_wipes_only_after_answering() -> TestResult {
    let double = Double::new();
    let server = start(&double);
    let ca = Ca::new("cairn-admin-ca");
    server.set_client_ca(Some(&ca.cert_pem()))?;
    let client = pinned(&server, cert_credentials(&ca, "admin", &["system:masters"]));

    let answer = client.reset(&ResetRequest::default())?;
    assert_eq!(answer.steps, ["Node node-1 deleted"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let names: Vec<String> = double.calls().into_iter().map(|(n, _)| n).collect();
        if names.len() >= 2 || Instant::now() > deadline {
            assert_eq!(
                names,
                ["reset graceful=true", "reset_finish reboot=true"],
                "leave, answer, then wipe"
            );
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }

    // A refused leave answers 409 and never wipes.
    let refused = client.reset(&ResetRequest {
        graceful: true,
        reboot: false,
    });
    expect_status(refused, 409, "refused reset");
    thread::sleep(Duration::from_millis(200));
    assert!(
        !double
            .calls()
            .iter()
            .any(|(n, _)| n == "reset_finish reboot=false"),
        "a refused reset went on to wipe: {:?}",
        double.calls()
    );

    // The maintenance key never resets.
    let key = MaintenanceKey::generate()?;
    server.set_maintenance_key(Some(key.clone()));
    let keyed = pinned(&server, Credentials::MaintenanceKey(key));
    expect_status(
        keyed.reset(&ResetRequest::default()),
        403,
        "reset with the key",
    );
    Ok(())
}

#[test]
fn maintenance_key_opens_status_and_config_only_while_set() -> TestResult {
    let double = Double::new();
    let server = start(&double);
    let key = MaintenanceKey::generate()?;
    let client = pinned(&server, Credentials::MaintenanceKey(key.clone()));

    expect_status(client.status(), 401, "key before it is set");
    server.set_maintenance_key(Some(key.clone()));

    assert_eq!(client.status()?.hostname, "node-1");
    client.apply_config("[cluster]\n")?;
    expect_status(client.logs("kubelet", 1), 403, "logs with the key");
    expect_status(client.read("/etc/os-release"), 403, "read with the key");
    expect_status(client.reboot(), 403, "reboot with the key");
    expect_status(client.shutdown(), 403, "shutdown with the key");
    expect_status(
        client.run_container(&RunContainerRequest {
            image: "x".into(),
            ..Default::default()
        }),
        403,
        "run with the key",
    );

    // A typed-in key in another spelling is the same key.
    let typed: MaintenanceKey = key.to_string().to_lowercase().replace('-', " ").parse()?;
    pinned(&server, Credentials::MaintenanceKey(typed)).status()?;

    let wrong = pinned(
        &server,
        Credentials::MaintenanceKey(MaintenanceKey::generate()?),
    );
    expect_status(wrong.status(), 401, "wrong key");
    expect_status(wrong.apply_config("[cluster]\n"), 401, "wrong key, config");

    server.set_maintenance_key(None);
    expect_status(client.status(), 401, "key after it was cleared");
    expect_status(
        client.apply_config("[cluster]\n"),
        401,
        "config after it was cleared",
    );

    let calls = double.calls();
    let names: Vec<&str> = calls.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["status", "apply_config", "status"],
        "calls seen by the service"
    );
    assert!(calls.iter().all(|(_, c)| *c == Caller::MaintenanceKey));
    Ok(())
}

#[test]
fn wrong_pinned_fingerprint_names_expected_and_seen() -> TestResult {
    let double = Double::new();
    let server = start(&double);
    server.set_maintenance_key(Some(MaintenanceKey::generate()?));
    let expected = format!("sha256:{}", "0".repeat(64));
    let client = NodeClient::new(
        server.local_addr(),
        ServerTrust::Fingerprint(expected.clone()),
        Credentials::Anonymous,
    )?;
    match client.status() {
        Err(e @ ClientError::FingerprintMismatch { .. }) => {
            let text = e.to_string();
            let ClientError::FingerprintMismatch {
                expected: seen_expected,
                seen,
                ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!(seen_expected, expected);
            assert_eq!(seen, server.fingerprint());
            assert!(
                text.contains(&expected) && text.contains(server.fingerprint()),
                "message lacks the fingerprints: {text}"
            );
        }
        other => panic!("expected a fingerprint mismatch, got {other:?}"),
    }
    assert!(double.calls().is_empty());
    // Malformed pins are refused up front.
    assert!(matches!(
        NodeClient::new(
            server.local_addr(),
            ServerTrust::Fingerprint("sha256:abc".into()),
            Credentials::Anonymous
        ),
        Err(ClientError::Trust(_))
    ));
    Ok(())
}

#[test]
fn ca_trust_mode_checks_the_chain_and_the_name() -> TestResult {
    let double = Double::new();
    let server_ca = Ca::new("node-ca");
    let (cert_pem, key_pem) = server_ca.server(&["127.0.0.1", "node-1.lab"]);
    let identity = ServerIdentity::from_pem(&cert_pem, &key_pem)?;
    let server = start_with(&double, identity, ServerOptions::default());
    let key = MaintenanceKey::generate()?;
    server.set_maintenance_key(Some(key.clone()));

    let client = NodeClient::new(
        server.local_addr(),
        ServerTrust::CaPem(server_ca.cert_pem()),
        Credentials::MaintenanceKey(key.clone()),
    )?;
    assert_eq!(client.status()?.hostname, "node-1");
    client.clone().with_server_name("node-1.lab")?.status()?;

    let wrong_name = client.clone().with_server_name("node-2.lab")?;
    match wrong_name.status() {
        Err(ClientError::Tls { message, .. }) => {
            assert!(message.to_lowercase().contains("name"), "{message}")
        }
        other => panic!("expected a name mismatch, got {other:?}"),
    }
    let other_ca = Ca::new("other");
    let untrusting = NodeClient::new(
        server.local_addr(),
        ServerTrust::CaPem(other_ca.cert_pem()),
        Credentials::MaintenanceKey(key),
    )?;
    match untrusting.status() {
        Err(ClientError::Tls { message, .. }) => assert!(
            message.to_lowercase().contains("issuer"),
            "expected an unknown-issuer error: {message}"
        ),
        other => panic!("expected an untrusted server certificate, got {other:?}"),
    }
    Ok(())
}

#[test]
fn config_problems_reach_the_client() -> TestResult {
    let double = Double::new();
    let server = start(&double);
    let key = MaintenanceKey::generate()?;
    server.set_maintenance_key(Some(key.clone()));
    let client = pinned(&server, Credentials::MaintenanceKey(key));
    match client.apply_config("bad = true") {
        Err(ClientError::ConfigRejected { problems, .. }) => {
            assert_eq!(
                problems, BAD_CONFIG_PROBLEMS,
                "problems as the client saw them"
            )
        }
        other => panic!("expected the config to be rejected with problems, got {other:?}"),
    }
    Ok(())
}

#[test]
fn malformed_and_oversized_requests_get_4xx_and_the_server_keeps_serving() -> TestResult {
    let double = Double::new();
    let server_ca = Ca::new("node-ca");
    let (cert_pem, key_pem) = server_ca.server(&["127.0.0.1"]);
    let server = start_with(
        &double,
        ServerIdentity::from_pem(&cert_pem, &key_pem)?,
        ServerOptions::default(),
    );
    let key = MaintenanceKey::generate()?;
    server.set_maintenance_key(Some(key.clone()));
    let addr = server.local_addr();
    let ca = server_ca.cert_pem();

    let mut big_header = b"GET /v1/status HTTP/1.1\r\nX-Big: ".to_vec();
    big_header.extend(std::iter::repeat_n(b'a', 20 * 1024));
    big_header.extend_from_slice(b"\r\n\r\n");
    let mut big_body = format!(
        "POST /v1/config HTTP/1.1\r\nAuthorization: Bearer {key}\r\nContent-Length: {}\r\n\r\n",
        2 * 1024 * 1024
    )
    .into_bytes();
    big_body.extend(std::iter::repeat_n(b'x', 2 * 1024 * 1024));
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec(), 400),
        ("header without colon", b"GET /v1/status HTTP/1.1\r\nbroken\r\n\r\n".to_vec(), 400),
        ("bad Content-Length", b"POST /v1/config HTTP/1.1\r\nContent-Length: x\r\n\r\n".to_vec(), 400),
        ("binary junk", vec![0xff, 0x00, 0x13, b'\r', b'\n', b'\r', b'\n'], 400),
        ("oversized headers", big_header, 431),
        ("oversized body", big_body, 413),
        ("chunked body", b"POST /v1/config HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), 501),
        ("unknown path", format!("GET /v2/nothing HTTP/1.1\r\nAuthorization: Bearer {key}\r\n\r\n").into_bytes(), 404),
        ("wrong method", format!("DELETE /v1/status HTTP/1.1\r\nAuthorization: Bearer {key}\r\n\r\n").into_bytes(), 405),
        ("bad bearer", b"GET /v1/status HTTP/1.1\r\nAuthorization: Bearer nope\r\n\r\n".to_vec(), 401),
        ("config not UTF-8", [format!("POST /v1/config HTTP/1.1\r\nAuthorization: Bearer {key}\r\nContent-Length: 2\r\n\r\n").into_bytes(), vec![0xff, 0xfe]].concat(), 400),
    ];
    for (what, bytes, expected) in &cases {
        let answer = raw_tls_exchange(addr, &ca, bytes);
        assert_eq!(
            status_of(&answer),
            Some(*expected),
            "{what}: answer was {:?}",
            answer.chars().take(300).collect::<String>()
        );
    }

    // Plain TCP garbage (no TLS) and a silent connection that just closes.
    {
        let mut tcp = TcpStream::connect(addr)?;
        tcp.write_all(b"GET / HTTP/1.1\r\n\r\n")?;
    }
    drop(TcpStream::connect(addr)?);

    let client = NodeClient::new(
        addr,
        ServerTrust::CaPem(ca),
        Credentials::MaintenanceKey(key),
    )?;
    assert_eq!(
        client.status()?.hostname,
        "node-1",
        "server stopped serving"
    );
    Ok(())
}

#[test]
fn slow_requests_time_out_with_408() -> TestResult {
    let double = Double::new();
    let server_ca = Ca::new("node-ca");
    let (cert_pem, key_pem) = server_ca.server(&["127.0.0.1"]);
    let options = ServerOptions {
        io_timeout: Duration::from_millis(500),
        request_deadline: Duration::from_secs(1),
        ..ServerOptions::default()
    };
    let server = start_with(
        &double,
        ServerIdentity::from_pem(&cert_pem, &key_pem)?,
        options,
    );
    let started = Instant::now();
    let answer = raw_tls_exchange(
        server.local_addr(),
        &server_ca.cert_pem(),
        b"GET /v1/status HTTP/1.1\r\nHost: x\r\n",
    );
    assert_eq!(status_of(&answer), Some(408), "answer {answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    Ok(())
}

#[test]
fn a_panicking_service_gets_500_and_the_server_survives() -> TestResult {
    let double = Double::new();
    let server = start(&double);
    let ca = Ca::new("ca");
    server.set_client_ca(Some(&ca.cert_pem()))?;
    let client = pinned(&server, cert_credentials(&ca, "admin", &[]));
    expect_status(client.logs("panic", 1), 500, "panicking handler");
    client.status()?;
    Ok(())
}

#[test]
fn several_clients_at_once() -> TestResult {
    let double = Double::new();
    let server = start(&double);
    let ca = Ca::new("ca");
    server.set_client_ca(Some(&ca.cert_pem()))?;
    let key = MaintenanceKey::generate()?;
    server.set_maintenance_key(Some(key.clone()));

    let mut workers = Vec::new();
    for i in 0..8 {
        let client = if i % 2 == 0 {
            pinned(&server, cert_credentials(&ca, &format!("client-{i}"), &[]))
        } else {
            pinned(&server, Credentials::MaintenanceKey(key.clone()))
        };
        workers.push(thread::spawn(move || -> Result<usize, String> {
            let mut ok = 0;
            for _ in 0..5 {
                let status = client.status().map_err(|e| e.to_string())?;
                if status.hostname == "node-1" {
                    ok += 1;
                }
            }
            Ok(ok)
        }));
    }
    let mut total = 0;
    for worker in workers {
        total += worker.join().map_err(|_| "worker panicked")??;
    }
    assert_eq!(total, 40, "successful status calls");
    Ok(())
}

#[test]
fn connections_over_the_cap_are_closed_and_service_resumes() -> TestResult {
    let double = Double::new();
    let options = ServerOptions {
        max_connections: 1,
        io_timeout: Duration::from_secs(5),
        ..ServerOptions::default()
    };
    let server = start_with(&double, ServerIdentity::generate(&["127.0.0.1"])?, options);
    let key = MaintenanceKey::generate()?;
    server.set_maintenance_key(Some(key.clone()));
    let client = pinned(&server, Credentials::MaintenanceKey(key));

    let hog = TcpStream::connect(server.local_addr())?;
    // Let the server accept it before the next one arrives.
    thread::sleep(Duration::from_millis(200));
    assert!(
        client.status().is_err(),
        "a second connection was served over the cap"
    );
    assert_eq!(double.record.lock().map_err(|e| e.to_string())?.rejected, 1);
    drop(hog);

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.status() {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => {
                return Err(format!("server did not recover after the hog left: {e}").into());
            }
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
    Ok(())
}

#[test]
fn identity_is_persisted_and_reloaded() -> TestResult {
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("node-api");
    let first = ServerIdentity::load_or_generate(&state, &["10.5.0.11"])?;
    let mode = std::fs::metadata(state.join("api.key"))?
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "api.key mode {mode:o}");
    assert!(state.join("api.crt").is_file());
    let leftovers: Vec<_> = std::fs::read_dir(&state)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // Different SANs on the second boot: the pinned identity stays.
    let second = ServerIdentity::load_or_generate(&state, &["10.5.0.99"])?;
    assert_eq!(
        second.fingerprint(),
        first.fingerprint(),
        "fingerprint changed on reload"
    );

    // The reloaded identity serves, and the pin printed at first boot works.
    let double = Double::new();
    let server = start_with(&double, second, ServerOptions::default());
    let key = MaintenanceKey::generate()?;
    server.set_maintenance_key(Some(key.clone()));
    let client = NodeClient::new(
        server.local_addr(),
        ServerTrust::Fingerprint(first.fingerprint().to_string()),
        Credentials::MaintenanceKey(key),
    )?;
    client.status()?;

    // A corrupt pair is an error, not a silent new identity.
    std::fs::write(state.join("api.crt"), "garbage")?;
    assert!(ServerIdentity::load_or_generate(&state, &["10.5.0.11"]).is_err());
    // A missing file means a fresh identity.
    std::fs::remove_file(state.join("api.crt"))?;
    let third = ServerIdentity::load_or_generate(&state, &["10.5.0.11"])?;
    assert_ne!(third.fingerprint(), first.fingerprint());
    Ok(())
}

#[test]
fn shutdown_stops_the_listener() -> TestResult {
    let double = Double::new();
    let server = start(&double);
    let addr = server.local_addr();
    server.shutdown();
    thread::sleep(Duration::from_millis(100));
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(),
        "{addr} still accepts connections after shutdown"
    );
    Ok(())
}

#[test]
fn unreachable_node_is_a_connect_error_with_the_address() -> TestResult {
    // Bind then drop to find a port nobody listens on.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let client = NodeClient::new(
        addr,
        ServerTrust::Fingerprint(format!("sha256:{}", "a".repeat(64))),
        Credentials::Anonymous,
    )?
    .with_connect_timeout(Duration::from_secs(2));
    match client.status() {
        Err(e @ ClientError::Connect { .. }) => {
            assert!(e.to_string().contains(&addr.to_string()), "{e}")
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    Ok(())
}

#[test]
fn shared_handle_is_usable_from_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<cairn_node_api::ApiServerHandle>();
    assert_send_sync::<NodeClient>();
    let _: Option<Arc<dyn cairn_node_api::NodeService>> = None;
}
