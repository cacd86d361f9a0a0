//! The PKI's life on disk: generate, reuse, reissue on change, renew, and
//! refuse to touch anything when existing material is inconsistent.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use cairn_pki::cert::CertInfo;
use cairn_pki::layout::Authority;
use cairn_pki::{
    Action, ClusterPkiSpec, KeyType, KubeconfigFile, Leaf, PkiError, PkiPaths, RenewTarget,
    generate, renew,
};
use time::{Duration, OffsetDateTime};

fn spec() -> ClusterPkiSpec {
    let mut spec = ClusterPkiSpec::new(
        "cp-1".parse().expect("node name"),
        "192.168.50.11".parse().expect("ip"),
    );
    spec.control_plane_endpoint = Some("192.168.50.100".parse().expect("endpoint"));
    spec
}

fn paths(root: &Path) -> PkiPaths {
    PkiPaths::new(root.join("pki"), Some(root.to_path_buf()))
}

/// Every file under `root` with its contents, to prove what changed.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let contents = fs::read(&path).expect("read file");
                files.insert(path, contents);
            }
        }
    }
    files
}

fn changed(
    before: &BTreeMap<PathBuf, Vec<u8>>,
    after: &BTreeMap<PathBuf, Vec<u8>>,
    root: &Path,
) -> Vec<String> {
    let mut names: Vec<String> = after
        .iter()
        .filter(|(path, contents)| before.get(*path) != Some(*contents))
        .map(|(path, _)| {
            path.strip_prefix(root)
                .expect("under root")
                .display()
                .to_string()
        })
        .collect();
    names.sort();
    names
}

fn cert_info(paths: &PkiPaths, base: &str) -> CertInfo {
    CertInfo::from_pem(&fs::read_to_string(paths.cert(base)).expect("read cert"))
        .expect("parse cert")
}

#[test]
fn fresh_generate_then_rerun_reuses_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = paths(dir.path());
    let report = generate(&spec(), &paths, OffsetDateTime::now_utc()).expect("generate");
    assert!(
        report.items.iter().all(|i| i.action == Action::Generated),
        "{report}"
    );
    assert_eq!(report.items.len(), 3 + 7 + 1 + 5);
    let before = snapshot(dir.path());
    assert_eq!(before.len(), 3 * 2 + 7 * 2 + 2 + 5);

    let again = generate(&spec(), &paths, OffsetDateTime::now_utc()).expect("rerun");
    assert!(
        again.items.iter().all(|i| i.action == Action::Reused),
        "{again}"
    );
    assert!(changed(&before, &snapshot(dir.path()), dir.path()).is_empty());
}

#[test]
fn a_new_san_reissues_only_the_apiserver_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = paths(dir.path());
    generate(&spec(), &paths, OffsetDateTime::now_utc()).expect("generate");
    let before = snapshot(dir.path());

    let mut with_san = spec();
    with_san.extra_sans = vec!["api.example.com".parse().expect("san")];
    let report = generate(&with_san, &paths, OffsetDateTime::now_utc()).expect("regenerate");
    match report.action_of("apiserver") {
        Some(Action::Reissued { reason }) => {
            assert!(reason.contains("added DNS:api.example.com"), "{reason}")
        }
        other => panic!("apiserver should be reissued, got {other:?}"),
    }
    assert_eq!(
        changed(&before, &snapshot(dir.path()), dir.path()),
        vec!["pki/apiserver.crt", "pki/apiserver.key"]
    );
    let info = cert_info(&paths, "apiserver");
    assert!(info.sans.contains(&"api.example.com".parse().expect("san")));
}

#[test]
fn a_new_node_name_reissues_what_carries_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = paths(dir.path());
    generate(&spec(), &paths, OffsetDateTime::now_utc()).expect("generate");
    let before = snapshot(dir.path());
    let mut renamed = spec();
    renamed.node_name = "cp-9".parse().expect("name");
    generate(&renamed, &paths, OffsetDateTime::now_utc()).expect("regenerate");
    assert_eq!(
        changed(&before, &snapshot(dir.path()), dir.path()),
        vec![
            "kubelet.conf",
            "pki/apiserver.crt",
            "pki/apiserver.key",
            "pki/etcd/peer.crt",
            "pki/etcd/peer.key",
            "pki/etcd/server.crt",
            "pki/etcd/server.key",
        ]
    );
    assert_eq!(cert_info(&paths, "etcd/server").common_name, "cp-9");
}

#[test]
fn a_new_endpoint_rewrites_the_kubeconfigs_that_use_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = paths(dir.path());
    generate(&spec(), &paths, OffsetDateTime::now_utc()).expect("generate");
    let before = snapshot(dir.path());
    let mut moved = spec();
    moved.control_plane_endpoint = Some("k8s.example.com:443".parse().expect("endpoint"));
    let report = generate(&moved, &paths, OffsetDateTime::now_utc()).expect("regenerate");
    assert!(
        matches!(report.action_of("admin.conf"), Some(Action::Reissued { reason }) if reason.contains("server changed"))
    );
    assert_eq!(
        changed(&before, &snapshot(dir.path()), dir.path()),
        vec![
            "admin.conf",
            "kubelet.conf",
            "pki/apiserver.crt",
            "pki/apiserver.key",
            "super-admin.conf",
        ]
    );
}

#[test]
fn an_existing_ca_signs_new_leaves_and_is_never_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = paths(dir.path());
    generate(&spec(), &paths, OffsetDateTime::now_utc()).expect("generate");
    let ca_before = fs::read(paths.cert("ca")).expect("ca");
    for leaf in Leaf::ALL {
        fs::remove_file(paths.cert(leaf.base_path())).expect("rm cert");
        fs::remove_file(paths.key(leaf.base_path())).expect("rm key");
    }
    let report = generate(&spec(), &paths, OffsetDateTime::now_utc()).expect("regenerate");
    assert_eq!(report.action_of("ca"), Some(&Action::Reused));
    assert_eq!(report.action_of("apiserver"), Some(&Action::Generated));
    assert_eq!(fs::read(paths.cert("ca")).expect("ca"), ca_before);
}

#[test]
fn leaves_of_a_lost_ca_are_reissued_by_the_new_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = paths(dir.path());
    generate(&spec(), &paths, OffsetDateTime::now_utc()).expect("generate");
    fs::remove_file(paths.cert("etcd/ca")).expect("rm");
    fs::remove_file(paths.key("etcd/ca")).expect("rm");
    let report = generate(&spec(), &paths, OffsetDateTime::now_utc()).expect("regenerate");
    assert_eq!(report.action_of("etcd-ca"), Some(&Action::Generated));
    assert!(
        matches!(report.action_of("etcd-server"), Some(Action::Reissued { reason }) if reason.contains("not signed by the current etcd-ca"))
    );
    assert_eq!(report.action_of("apiserver"), Some(&Action::Reused));
}

#[test]
fn a_ca_key_that_does_not_match_stops_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let other = tempfile::tempdir().expect("tempdir");
    let paths = paths(dir.path());
    generate(&spec(), &paths, OffsetDateTime::now_utc()).expect("generate");
    generate(
        &spec(),
        &self::paths(other.path()),
        OffsetDateTime::now_utc(),
    )
    .expect("generate other");
    fs::copy(other.path().join("pki/ca.key"), paths.key("ca")).expect("swap key");
    fs::remove_file(paths.cert("apiserver")).expect("rm");
    let before = snapshot(dir.path());

    let err = generate(&spec(), &paths, OffsetDateTime::now_utc()).expect_err("mismatch");
    assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("ca.key does not match"), "{err}");
    assert!(changed(&before, &snapshot(dir.path()), dir.path()).is_empty());
    assert!(!paths.cert("apiserver").exists(), "nothing may be written");
}

#[test]
fn an_external_ca_is_trusted_but_cannot_sign() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = paths(dir.path());
    generate(&spec(), &paths, OffsetDateTime::now_utc()).expect("generate");
    fs::remove_file(paths.key("front-proxy-ca")).expect("rm key");
    let report = generate(&spec(), &paths, OffsetDateTime::now_utc()).expect("regenerate");
    assert_eq!(
        report.action_of("front-proxy-ca"),
        Some(&Action::ReusedExternal)
    );

    fs::remove_file(paths.cert("front-proxy-client")).expect("rm leaf");
    let err = generate(&spec(), &paths, OffsetDateTime::now_utc()).expect_err("cannot sign");
    assert!(matches!(err, PkiError::CaKeyRequired { .. }), "{err}");
}

#[test]
fn a_ca_key_without_its_certificate_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = paths(dir.path());
    generate(&spec(), &paths, OffsetDateTime::now_utc()).expect("generate");
    fs::remove_file(paths.cert("ca")).expect("rm");
    let err = generate(&spec(), &paths, OffsetDateTime::now_utc()).expect_err("half CA");
    assert!(matches!(err, PkiError::MissingCaCert { .. }), "{err}");
}

#[test]
fn expired_leaves_are_reissued() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = paths(dir.path());
    let long_ago = OffsetDateTime::now_utc() - Duration::days(400);
    generate(&spec(), &paths, long_ago).expect("generate in the past");
    let report = generate(&spec(), &paths, OffsetDateTime::now_utc()).expect("regenerate");
    assert_eq!(report.action_of("ca"), Some(&Action::Reused));
    assert!(
        matches!(report.action_of("apiserver"), Some(Action::Reissued { reason }) if reason.contains("expired"))
    );
    assert!(cert_info(&paths, "apiserver").not_after > OffsetDateTime::now_utc());
}

#[test]
fn sa_pub_is_restored_from_sa_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = paths(dir.path());
    generate(&spec(), &paths, OffsetDateTime::now_utc()).expect("generate");
    let public = fs::read(paths.service_account_public_key()).expect("sa.pub");
    let private = fs::read(paths.service_account_key()).expect("sa.key");
    fs::remove_file(paths.service_account_public_key()).expect("rm");
    generate(&spec(), &paths, OffsetDateTime::now_utc()).expect("regenerate");
    assert_eq!(
        fs::read(paths.service_account_public_key()).expect("sa.pub"),
        public
    );
    assert_eq!(
        fs::read(paths.service_account_key()).expect("sa.key"),
        private
    );
}

#[test]
fn renew_keeps_identity_and_extends_validity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = paths(dir.path());
    let mut spec = spec();
    spec.extra_sans = vec!["*.apps.example.com".parse().expect("san")];
    let earlier = OffsetDateTime::now_utc() - Duration::days(30);
    generate(&spec, &paths, earlier).expect("generate");
    let before = cert_info(&paths, "apiserver");

    let report = renew(&paths, RenewTarget::All, OffsetDateTime::now_utc()).expect("renew");
    assert!(
        report.items.iter().all(|i| i.action == Action::Renewed),
        "{report}"
    );
    let after = cert_info(&paths, "apiserver");
    assert_eq!(after.sans, before.sans);
    assert_eq!(after.common_name, before.common_name);
    assert!(after.not_after > before.not_after + Duration::days(29));
    let ca = cert_info(&paths, Authority::Kubernetes.base_path());
    assert_eq!(after.issuer_raw, ca.subject_raw);
    // Renewal must leave the spec-derived state consistent: a rerun reuses all.
    let rerun = generate(&spec, &paths, OffsetDateTime::now_utc()).expect("rerun");
    assert!(
        rerun.items.iter().all(|i| i.action == Action::Reused),
        "{rerun}"
    );
}

#[test]
fn renewing_the_apiserver_certificate_can_add_sans_without_reinit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = paths(dir.path());
    generate(&spec(), &paths, OffsetDateTime::now_utc()).expect("generate");
    let before = cert_info(&paths, "apiserver");
    let added: Vec<cairn_pki::SubjectAltName> = vec![
        "api.example.org".parse().expect("dns"),
        "192.0.2.10".parse().expect("ip"),
    ];
    cairn_pki::renew_adding_apiserver_sans(
        &paths,
        RenewTarget::Leaf(cairn_pki::Leaf::Apiserver),
        &added,
        OffsetDateTime::now_utc(),
    )
    .expect("renew with extra SANs");
    let after = cert_info(&paths, "apiserver");
    for san in &before.sans {
        assert!(after.sans.contains(san), "lost {san:?}: {:?}", after.sans);
    }
    for san in &added {
        assert!(
            after.sans.contains(san),
            "missing {san:?}: {:?}",
            after.sans
        );
    }
    let ca = cert_info(&paths, Authority::Kubernetes.base_path());
    assert_eq!(after.issuer_raw, ca.subject_raw);

    let err = cairn_pki::renew_adding_apiserver_sans(
        &paths,
        RenewTarget::Kubeconfig(KubeconfigFile::Admin),
        &added,
        OffsetDateTime::now_utc(),
    )
    .expect_err("SANs on a kubeconfig");
    assert!(err.to_string().contains("admin.conf"), "{err}");
}

#[test]
fn renew_of_a_missing_item_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = paths(dir.path());
    let err = renew(
        &paths,
        RenewTarget::Kubeconfig(KubeconfigFile::Admin),
        OffsetDateTime::now_utc(),
    )
    .expect_err("missing");
    assert!(
        err.to_string().contains("admin.conf does not exist"),
        "{err}"
    );
    assert!(RenewTarget::parse("apiserver-typo").is_err());
}

#[test]
fn rsa_keys_are_available() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = PkiPaths::new(dir.path().join("pki"), None);
    let mut spec = spec();
    spec.key_type = KeyType::Rsa2048;
    generate(&spec, &paths, OffsetDateTime::now_utc()).expect("generate rsa");
    let key =
        cairn_pki::PrivateKey::from_pem(&fs::read_to_string(paths.key("apiserver")).expect("key"))
            .expect("parse");
    assert_eq!(key.key_type(), Some(KeyType::Rsa2048));
}
