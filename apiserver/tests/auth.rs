//! Authentication and RBAC end to end: certificates from the cluster PKI,
//! bootstrap tokens, service-account tokens, the bootstrap policy and
//! access reviews.

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_apiserver::auth::authn::unix_now;
use cairn_apiserver::auth::policy::bootstrap_policy;
use cairn_apiserver::auth::review::{ReviewError, review_self, review_subject};
use cairn_apiserver::auth::{
    Attributes, AuthError, Authenticator, BoundTokenRequest, Credentials, InMemoryRbac,
    InMemorySecrets, PodRef, PublicKeySet, RbacAuthorizer, ServiceAccountVerifier, TokenError,
    TokenIssuer, UserInfo,
};
use cairn_pki::cert::{CertRequest, Usage, issue, pem_to_der, self_signed_ca};
use cairn_pki::{ClusterPkiSpec, KeyType, KubeconfigFile, PrivateKey};
use k8s_openapi::ByteString;
use k8s_openapi::api::authorization::v1::{SelfSubjectAccessReview, SubjectAccessReview};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;
use time::OffsetDateTime;

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

// ---------------------------------------------------------------- helpers

struct Pki {
    ca_der: Vec<u8>,
    ca_key: PrivateKey,
}

impl Pki {
    fn new() -> Self {
        let ca_key = PrivateKey::generate(KeyType::EcdsaP256).expect("ca key");
        let ca_pem = self_signed_ca("kubernetes", &ca_key, OffsetDateTime::now_utc()).expect("ca");
        Self {
            ca_der: pem_to_der(&ca_pem).expect("ca der"),
            ca_key,
        }
    }

    fn client_cert(&self, request: &CertRequest) -> Vec<u8> {
        let key = PrivateKey::generate(KeyType::EcdsaP256).expect("client key");
        let pem = issue(
            request,
            &key,
            &self.ca_der,
            &self.ca_key,
            OffsetDateTime::now_utc(),
        )
        .expect("issue");
        pem_to_der(&pem).expect("der")
    }

    fn kubeconfig_cert(&self, file: KubeconfigFile) -> Vec<u8> {
        let spec = ClusterPkiSpec::new(
            "cp1".parse().expect("node name"),
            "10.0.0.10".parse().expect("ip"),
        );
        self.client_cert(&spec.kubeconfig_request(file))
    }
}

fn default_authorizer() -> (RbacAuthorizer, Arc<InMemoryRbac>) {
    let rbac = Arc::new(InMemoryRbac::from_policy(&bootstrap_policy()));
    (RbacAuthorizer::new(rbac.clone()), rbac)
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        ..ObjectMeta::default()
    }
}

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        ..PolicyRule::default()
    }
}

fn subject(kind: &str, name: &str, namespace: Option<&str>) -> Subject {
    Subject {
        api_group: (kind != "ServiceAccount").then(|| "rbac.authorization.k8s.io".to_owned()),
        kind: kind.to_owned(),
        name: name.to_owned(),
        namespace: namespace.map(str::to_owned),
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
    }
}

fn role_binding(ns: &str, name: &str, role: RoleRef, subjects: Vec<Subject>) -> RoleBinding {
    RoleBinding {
        metadata: meta(name, Some(ns)),
        role_ref: role,
        subjects: Some(subjects),
    }
}

async fn can(authz: &RbacAuthorizer, attrs: Attributes) -> bool {
    authz.authorize(&attrs).await.allowed
}

fn res(user: &UserInfo, verb: &str, ns: &str, group: &str, resource: &str) -> Attributes {
    Attributes::resource(user.clone(), verb, ns, group, resource)
}

fn path(user: &UserInfo, p: &str) -> Attributes {
    Attributes::non_resource(user.clone(), "get", p)
}

fn bootstrap_secret(id: &str, secret: &str, extra: &[(&str, &str)]) -> Secret {
    let mut data: BTreeMap<String, ByteString> = [
        ("token-id", id),
        ("token-secret", secret),
        ("usage-bootstrap-authentication", "true"),
        ("usage-bootstrap-signing", "true"),
        (
            "auth-extra-groups",
            "system:bootstrappers:kubeadm:default-node-token",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
    .collect();
    for (k, v) in extra {
        if v.is_empty() {
            data.remove(*k);
        } else {
            data.insert((*k).to_owned(), ByteString(v.as_bytes().to_vec()));
        }
    }
    Secret {
        metadata: meta(&format!("bootstrap-token-{id}"), Some("kube-system")),
        type_: Some("bootstrap.kubernetes.io/token".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn authenticate_header(authn: &Authenticator, header: &str) -> Result<UserInfo, AuthError> {
    authn
        .authenticate(&Credentials {
            client_certificate: None,
            authorization: Some(header),
        })
        .await
}

// ------------------------------------------------------------------ x509

#[tokio::test]
async fn admin_conf_certificate_is_cluster_admin_through_kubeadm_group() {
    let pki = Pki::new();
    let der = pki.kubeconfig_cert(KubeconfigFile::Admin);
    let authn = Authenticator::new();
    let chain = [der];
    let user = authn
        .authenticate(&Credentials::from_chain(&chain, None))
        .await
        .expect("authenticated");
    assert_eq!(user.name, "kubernetes-admin");
    assert_eq!(
        user.groups,
        ["kubeadm:cluster-admins", "system:authenticated"]
    );

    let (authz, _) = default_authorizer();
    let decision = authz
        .authorize(&res(&user, "delete", "kube-system", "", "secrets").with_name("x"))
        .await;
    assert!(decision.allowed);
    assert_eq!(
        decision.reason,
        "RBAC: allowed by ClusterRoleBinding \"kubeadm:cluster-admins\" of ClusterRole \"cluster-admin\" to Group \"kubeadm:cluster-admins\""
    );
    assert!(can(&authz, path(&user, "/metrics")).await);
}

#[tokio::test]
async fn super_admin_is_in_system_masters_and_always_allowed() {
    let pki = Pki::new();
    let der = pki.kubeconfig_cert(KubeconfigFile::SuperAdmin);
    let chain = [der];
    let user = Authenticator::new()
        .authenticate(&Credentials::from_chain(&chain, None))
        .await
        .expect("authenticated");
    assert_eq!(user.name, "kubernetes-super-admin");
    assert!(user.in_group("system:masters"));
    // Even with no RBAC objects at all.
    let authz = RbacAuthorizer::new(Arc::new(InMemoryRbac::new()));
    assert!(
        can(
            &authz,
            res(
                &user,
                "escalate",
                "",
                "rbac.authorization.k8s.io",
                "clusterroles"
            )
        )
        .await
    );
    assert!(can(&authz, path(&user, "/anything")).await);
}

#[tokio::test]
async fn plain_user_certificate_gets_only_the_authenticated_defaults() {
    let pki = Pki::new();
    let der = pki.client_cert(&CertRequest::new("alice", Usage::Client));
    let chain = [der];
    // A certificate wins over a bearer token in the same request.
    let user = Authenticator::new()
        .authenticate(&Credentials::from_chain(&chain, Some("Bearer garbage")))
        .await
        .expect("authenticated");
    assert_eq!(user.name, "alice");
    assert_eq!(user.groups, ["system:authenticated"]);

    let (authz, _) = default_authorizer();
    assert!(!can(&authz, res(&user, "list", "default", "", "pods")).await);
    assert!(can(&authz, path(&user, "/api")).await);
    assert!(can(&authz, path(&user, "/apis/apps/v1")).await);
    assert!(can(&authz, path(&user, "/version")).await);
    assert!(!can(&authz, path(&user, "/metrics")).await);
    assert!(
        can(
            &authz,
            res(
                &user,
                "create",
                "",
                "authorization.k8s.io",
                "selfsubjectaccessreviews"
            )
        )
        .await
    );
}

#[tokio::test]
async fn certificate_without_common_name_is_refused() {
    let pki = Pki::new();
    let der = pki.client_cert(&CertRequest::new("", Usage::Client).with_organization("x"));
    let chain = [der];
    let err = Authenticator::new()
        .authenticate(&Credentials::from_chain(&chain, None))
        .await
        .expect_err("empty CN");
    assert!(matches!(err, AuthError::Certificate(_)), "{err}");
}

// ------------------------------------------------------------- anonymous

#[tokio::test]
async fn anonymous_may_read_health_version_and_cluster_info_only() {
    let authn = Authenticator::new();
    let user = authn
        .authenticate(&Credentials::default())
        .await
        .expect("anonymous");
    assert_eq!(user, UserInfo::anonymous());
    // A non-bearer scheme is no credential either.
    assert_eq!(
        authenticate_header(&authn, "Basic YWRtaW46YWRtaW4=")
            .await
            .expect("anonymous"),
        user
    );

    let (authz, _) = default_authorizer();
    for allowed in ["/version", "/healthz", "/livez", "/readyz"] {
        assert!(can(&authz, path(&user, allowed)).await, "{allowed}");
    }
    assert!(!can(&authz, path(&user, "/api")).await);
    assert!(!can(&authz, path(&user, "/api/v1/pods")).await);
    assert!(!can(&authz, res(&user, "list", "", "", "pods")).await);
    assert!(
        can(
            &authz,
            res(&user, "get", "kube-public", "", "configmaps").with_name("cluster-info")
        )
        .await
    );
    assert!(
        !can(
            &authz,
            res(&user, "get", "kube-public", "", "configmaps").with_name("other")
        )
        .await
    );
    assert!(!can(&authz, res(&user, "list", "kube-public", "", "configmaps")).await);

    let err = Authenticator::new()
        .with_anonymous(false)
        .authenticate(&Credentials::default())
        .await
        .expect_err("anonymous disabled");
    assert!(matches!(err, AuthError::AnonymousDisabled));
}

// ------------------------------------------------------- bootstrap tokens

fn bootstrap_authn(secrets: &Arc<InMemorySecrets>) -> Authenticator {
    Authenticator::new().with_bootstrap_tokens(secrets.clone())
}

#[tokio::test]
async fn bootstrap_token_user_may_create_csrs_but_not_list_secrets() {
    let secrets = Arc::new(InMemorySecrets::new());
    secrets.insert(bootstrap_secret(
        "abcdef",
        "0123456789abcdef",
        &[("expiration", "2999-01-01T00:00:00Z")],
    ));
    let user = authenticate_header(&bootstrap_authn(&secrets), "Bearer abcdef.0123456789abcdef")
        .await
        .expect("bootstrap token");
    assert_eq!(user.name, "system:bootstrap:abcdef");
    assert_eq!(
        user.groups,
        [
            "system:bootstrappers",
            "system:bootstrappers:kubeadm:default-node-token",
            "system:authenticated"
        ]
    );

    let (authz, _) = default_authorizer();
    let csr = |verb: &str| {
        res(
            &user,
            verb,
            "",
            "certificates.k8s.io",
            "certificatesigningrequests",
        )
    };
    assert!(can(&authz, csr("create")).await);
    assert!(can(&authz, csr("get")).await);
    assert!(!can(&authz, csr("delete")).await);
    assert!(can(&authz, csr("create").with_subresource("nodeclient")).await);
    assert!(!can(&authz, res(&user, "list", "kube-system", "", "secrets")).await);
    assert!(!can(&authz, res(&user, "list", "", "", "secrets")).await);
    assert!(can(&authz, res(&user, "get", "", "", "nodes").with_name("cp1")).await);
    assert!(
        can(
            &authz,
            res(&user, "get", "kube-system", "", "configmaps").with_name("kubeadm-config")
        )
        .await
    );
    assert!(
        can(
            &authz,
            res(&user, "get", "kube-system", "", "configmaps").with_name("kubelet-config")
        )
        .await
    );
}

#[tokio::test]
async fn bootstrap_tokens_refused_when_expired_wrong_or_unusable() {
    let secrets = Arc::new(InMemorySecrets::new());
    secrets.insert(bootstrap_secret(
        "expire",
        "0123456789abcdef",
        &[("expiration", "2020-01-01T00:00:00Z")],
    ));
    secrets.insert(bootstrap_secret(
        "badexp",
        "0123456789abcdef",
        &[("expiration", "soon")],
    ));
    secrets.insert(bootstrap_secret("goodid", "0123456789abcdef", &[]));
    secrets.insert(bootstrap_secret(
        "nousag",
        "0123456789abcdef",
        &[("usage-bootstrap-authentication", "")],
    ));
    secrets.insert(bootstrap_secret(
        "badgrp",
        "0123456789abcdef",
        &[("auth-extra-groups", "system:masters")],
    ));
    let mut wrong_type = bootstrap_secret("wrongt", "0123456789abcdef", &[]);
    wrong_type.type_ = Some("Opaque".to_owned());
    secrets.insert(wrong_type);
    let authn = bootstrap_authn(&secrets);

    let reason = |result: Result<UserInfo, AuthError>| match result {
        Err(AuthError::BootstrapToken { reason, .. }) => reason,
        other => panic!("expected a bootstrap token error, got {other:?}"),
    };
    assert!(
        reason(authenticate_header(&authn, &bearer("expire.0123456789abcdef")).await)
            .contains("expired")
    );
    assert!(
        reason(authenticate_header(&authn, &bearer("badexp.0123456789abcdef")).await)
            .contains("expired")
    );
    assert!(
        reason(authenticate_header(&authn, &bearer("goodid.0123456789abcdee")).await)
            .contains("does not match")
    );
    assert!(
        reason(authenticate_header(&authn, &bearer("nousag.0123456789abcdef")).await)
            .contains("authentication")
    );
    assert!(
        reason(authenticate_header(&authn, &bearer("badgrp.0123456789abcdef")).await)
            .contains("system:masters")
    );
    assert!(
        reason(authenticate_header(&authn, &bearer("wrongt.0123456789abcdef")).await)
            .contains("type")
    );
    assert!(
        reason(authenticate_header(&authn, &bearer("nosuch.0123456789abcdef")).await)
            .contains("no such")
    );
    assert!(
        authenticate_header(&authn, &bearer("goodid.0123456789abcdef"))
            .await
            .is_ok()
    );

    // Without bootstrap-token authentication the token means nothing.
    let err = authenticate_header(&Authenticator::new(), &bearer("goodid.0123456789abcdef"))
        .await
        .expect_err("not enabled");
    assert!(matches!(err, AuthError::UnknownToken));
}

// ------------------------------------------------- service-account tokens

struct SaKeys {
    _dir: tempfile::TempDir,
    key_path: std::path::PathBuf,
    pub_path: std::path::PathBuf,
}

fn sa_keys(key_type: KeyType) -> SaKeys {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = PrivateKey::generate(key_type).expect("sa key");
    let key_path = dir.path().join("sa.key");
    let pub_path = dir.path().join("sa.pub");
    std::fs::write(&key_path, key.to_pem()).expect("write sa.key");
    std::fs::write(&pub_path, key.public_key_pem()).expect("write sa.pub");
    SaKeys {
        _dir: dir,
        key_path,
        pub_path,
    }
}

fn bound_request(now: i64) -> BoundTokenRequest {
    BoundTokenRequest {
        namespace: "team".to_owned(),
        service_account_name: "builder".to_owned(),
        service_account_uid: "uid-sa".to_owned(),
        audiences: Vec::new(),
        pod: Some(PodRef {
            name: "builder-0".to_owned(),
            uid: "uid-pod".to_owned(),
        }),
        issued_at: now,
        expiration_seconds: 3600,
    }
}

fn verifier_for(paths: &[&std::path::Path]) -> ServiceAccountVerifier {
    ServiceAccountVerifier::new(
        PublicKeySet::from_files(paths).expect("public keys"),
        vec![ISSUER.to_owned()],
        Vec::new(),
    )
}

async fn sa_round_trip(key_type: KeyType) {
    let keys = sa_keys(key_type);
    let issuer = TokenIssuer::from_file(&keys.key_path, ISSUER).expect("issuer");
    let now = unix_now();
    let token = issuer.issue_bound(&bound_request(now)).expect("token");
    let authn = Authenticator::new().with_service_accounts(verifier_for(&[&keys.pub_path]));
    let user = authenticate_header(&authn, &bearer(&token))
        .await
        .expect("verified");
    assert_eq!(user.name, "system:serviceaccount:team:builder");
    assert_eq!(user.uid, "uid-sa");
    assert_eq!(
        user.groups,
        [
            "system:serviceaccounts",
            "system:serviceaccounts:team",
            "system:authenticated"
        ]
    );
    assert_eq!(
        user.extra.get("authentication.kubernetes.io/pod-name"),
        Some(&vec!["builder-0".to_owned()])
    );
    assert!(
        user.extra
            .contains_key("authentication.kubernetes.io/credential-id")
    );
}

#[tokio::test]
async fn ecdsa_service_account_tokens_verify() {
    sa_round_trip(KeyType::EcdsaP256).await;
}

#[tokio::test]
async fn rsa_service_account_tokens_verify() {
    sa_round_trip(KeyType::Rsa2048).await;
}

#[tokio::test]
async fn service_account_tokens_refused_for_wrong_key_issuer_audience_or_time() {
    let keys = sa_keys(KeyType::EcdsaP256);
    let other = sa_keys(KeyType::EcdsaP256);
    let issuer = TokenIssuer::from_file(&keys.key_path, ISSUER).expect("issuer");
    let now = unix_now();
    let verifier = verifier_for(&[&keys.pub_path]);

    // Signed by a key the server does not know.
    let foreign = TokenIssuer::from_file(&other.key_path, ISSUER).expect("issuer");
    let token = foreign.issue_bound(&bound_request(now)).expect("token");
    assert!(matches!(
        verifier.verify(&token, now).await,
        Err(TokenError::BadSignature)
    ));
    // ... unless that key is configured too (several key files).
    let both = verifier_for(&[&keys.pub_path, &other.pub_path]);
    assert!(both.verify(&token, now).await.is_ok());

    // Another issuer.
    let elsewhere = TokenIssuer::from_file(&keys.key_path, "https://elsewhere").expect("issuer");
    let mut request = bound_request(now);
    request.audiences = vec![ISSUER.to_owned()];
    let token = elsewhere.issue_bound(&request).expect("token");
    assert!(matches!(
        verifier.verify(&token, now).await,
        Err(TokenError::Issuer(_))
    ));
    // Accepted when that issuer is one of several allowed.
    let multi = ServiceAccountVerifier::new(
        PublicKeySet::from_files(&[&keys.pub_path]).expect("keys"),
        vec![ISSUER.to_owned(), "https://elsewhere".to_owned()],
        vec![ISSUER.to_owned()],
    );
    assert!(multi.verify(&token, now).await.is_ok());

    // Another audience.
    let mut request = bound_request(now);
    request.audiences = vec!["vault".to_owned()];
    let token = issuer.issue_bound(&request).expect("token");
    assert!(matches!(
        verifier.verify(&token, now).await,
        Err(TokenError::Audience { .. })
    ));

    // Expired, beyond the leeway; and not yet valid.
    let token = issuer
        .issue_bound(&bound_request(now - 7200))
        .expect("token");
    assert!(matches!(
        verifier.verify(&token, now).await,
        Err(TokenError::Expired)
    ));
    let token = issuer
        .issue_bound(&bound_request(now - 3630))
        .expect("token");
    assert!(verifier.verify(&token, now).await.is_ok(), "within leeway");
    let token = issuer
        .issue_bound(&bound_request(now + 600))
        .expect("token");
    assert!(matches!(
        verifier.verify(&token, now).await,
        Err(TokenError::NotYetValid)
    ));

    // Tampered payload.
    let token = issuer.issue_bound(&bound_request(now)).expect("token");
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let forged = issuer
        .issue_bound(&BoundTokenRequest {
            namespace: "kube-system".to_owned(),
            ..bound_request(now)
        })
        .expect("token");
    parts[1] = forged.split('.').nth(1).expect("payload").to_owned();
    assert!(matches!(
        verifier.verify(&parts.join("."), now).await,
        Err(TokenError::BadSignature)
    ));

    // alg=none.
    use base64::Engine;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none"})),
        b64(json!({"iss": ISSUER}))
    );
    assert!(matches!(
        verifier.verify(&none, now).await,
        Err(TokenError::Algorithm(_))
    ));

    // Through the authenticator every failure is a 401 error, never anonymous.
    let authn = Authenticator::new().with_service_accounts(verifier);
    assert!(matches!(
        authenticate_header(&authn, &bearer(&none)).await,
        Err(AuthError::ServiceAccountToken(_))
    ));
    assert!(matches!(
        authenticate_header(&authn, "Bearer not-a-token").await,
        Err(AuthError::UnknownToken)
    ));
}

#[tokio::test]
async fn legacy_secret_tokens_need_their_secret() {
    let keys = sa_keys(KeyType::EcdsaP256);
    let issuer = TokenIssuer::from_file(&keys.key_path, ISSUER).expect("issuer");
    let token = issuer
        .sign(&json!({
            "iss": "kubernetes/serviceaccount",
            "sub": "system:serviceaccount:default:deployer",
            "kubernetes.io/serviceaccount/namespace": "default",
            "kubernetes.io/serviceaccount/service-account.name": "deployer",
            "kubernetes.io/serviceaccount/service-account.uid": "uid-d",
            "kubernetes.io/serviceaccount/secret.name": "deployer-token",
        }))
        .expect("token");
    let secrets = Arc::new(InMemorySecrets::new());
    let verifier = verifier_for(&[&keys.pub_path]).with_secret_lookup(secrets.clone());
    let now = unix_now();
    assert!(matches!(
        verifier.verify(&token, now).await,
        Err(TokenError::Legacy(_))
    ));

    let mut data = BTreeMap::new();
    data.insert("token".to_owned(), ByteString(token.as_bytes().to_vec()));
    secrets.insert(Secret {
        metadata: meta("deployer-token", Some("default")),
        type_: Some("kubernetes.io/service-account-token".to_owned()),
        data: Some(data),
        ..Secret::default()
    });
    let user = verifier.verify(&token, now).await.expect("legacy token");
    assert_eq!(user.name, "system:serviceaccount:default:deployer");
    assert_eq!(user.uid, "uid-d");

    secrets.remove("default", "deployer-token");
    assert!(verifier.verify(&token, now).await.is_err());
}

// ------------------------------------------------------------------- RBAC

#[tokio::test]
async fn namespaced_role_and_cluster_role_bound_in_a_namespace() {
    let (authz, rbac) = default_authorizer();
    rbac.add_role(Role {
        metadata: meta("pod-reader", Some("dev")),
        rules: Some(vec![rule(&["get", "list", "watch"], &[""], &["pods"])]),
    });
    rbac.add_role_binding(role_binding(
        "dev",
        "jane-reads-pods",
        role_ref("Role", "pod-reader"),
        vec![subject("User", "jane", None)],
    ));
    // A RoleBinding to a ClusterRole only grants in its own namespace.
    rbac.add_role_binding(role_binding(
        "dev",
        "devs-edit",
        role_ref("ClusterRole", "edit"),
        vec![subject("Group", "developers", None)],
    ));
    let jane = UserInfo::new("jane", ["system:authenticated"]);
    let decision = authz
        .authorize(&res(&jane, "list", "dev", "", "pods"))
        .await;
    assert!(decision.allowed);
    assert_eq!(
        decision.reason,
        "RBAC: allowed by RoleBinding \"jane-reads-pods/dev\" of Role \"pod-reader\" to User \"jane\""
    );
    assert!(!can(&authz, res(&jane, "list", "prod", "", "pods")).await);
    assert!(!can(&authz, res(&jane, "list", "", "", "pods")).await);
    assert!(!can(&authz, res(&jane, "delete", "dev", "", "pods")).await);

    let dev = UserInfo::new("bob", ["developers", "system:authenticated"]);
    assert!(can(&authz, res(&dev, "create", "dev", "apps", "deployments")).await);
    assert!(can(&authz, res(&dev, "get", "dev", "", "secrets")).await);
    assert!(!can(&authz, res(&dev, "create", "prod", "apps", "deployments")).await);
    assert!(!can(&authz, res(&dev, "list", "", "apps", "deployments")).await);
    // edit does not include RBAC writes (admin does).
    assert!(
        !can(
            &authz,
            res(
                &dev,
                "create",
                "dev",
                "rbac.authorization.k8s.io",
                "rolebindings"
            )
        )
        .await
    );
}

#[tokio::test]
async fn resource_names_subresources_and_scale() {
    let (authz, rbac) = default_authorizer();
    rbac.add_cluster_role(ClusterRole {
        metadata: meta("limited", None),
        rules: Some(vec![
            PolicyRule {
                resource_names: Some(vec!["app-config".to_owned()]),
                ..rule(&["get", "update"], &[""], &["configmaps"])
            },
            rule(&["get"], &[""], &["pods/log"]),
            rule(&["get", "update", "patch"], &["*"], &["*/scale"]),
            rule(&["get"], &["apps"], &["statefulsets/*"]),
        ]),
        aggregation_rule: None,
    });
    rbac.add_cluster_role_binding(ClusterRoleBinding {
        metadata: meta("carol-limited", None),
        role_ref: role_ref("ClusterRole", "limited"),
        subjects: Some(vec![subject("User", "carol", None)]),
    });
    let carol = UserInfo::new("carol", ["system:authenticated"]);
    let cm = |verb: &str| res(&carol, verb, "default", "", "configmaps");
    assert!(can(&authz, cm("get").with_name("app-config")).await);
    assert!(can(&authz, cm("update").with_name("app-config")).await);
    assert!(!can(&authz, cm("get").with_name("other")).await);
    assert!(
        !can(&authz, cm("list")).await,
        "resourceNames never allow list"
    );

    assert!(
        can(
            &authz,
            res(&carol, "get", "default", "", "pods").with_subresource("log")
        )
        .await
    );
    assert!(!can(&authz, res(&carol, "get", "default", "", "pods")).await);
    assert!(
        !can(
            &authz,
            res(&carol, "get", "default", "", "pods").with_subresource("exec")
        )
        .await
    );

    let scale = |group: &str, resource: &str| {
        res(&carol, "patch", "default", group, resource).with_subresource("scale")
    };
    assert!(can(&authz, scale("apps", "deployments")).await);
    assert!(can(&authz, scale("apps", "statefulsets")).await);
    assert!(can(&authz, scale("", "replicationcontrollers")).await);
    assert!(
        !can(
            &authz,
            res(&carol, "patch", "default", "apps", "deployments")
        )
        .await
    );
    assert!(
        can(
            &authz,
            res(&carol, "get", "default", "apps", "statefulsets").with_subresource("status")
        )
        .await
    );
    assert!(
        !can(
            &authz,
            res(&carol, "get", "default", "apps", "statefulsets")
        )
        .await
    );
}

#[tokio::test]
async fn non_resource_urls_exact_and_prefix() {
    let (authz, rbac) = default_authorizer();
    rbac.add_cluster_role(ClusterRole {
        metadata: meta("log-reader", None),
        rules: Some(vec![PolicyRule {
            verbs: vec!["get".to_owned()],
            non_resource_urls: Some(vec!["/logs/*".to_owned(), "/metrics".to_owned()]),
            ..PolicyRule::default()
        }]),
        aggregation_rule: None,
    });
    rbac.add_cluster_role_binding(ClusterRoleBinding {
        metadata: meta("ops-logs", None),
        role_ref: role_ref("ClusterRole", "log-reader"),
        subjects: Some(vec![subject("Group", "ops", None)]),
    });
    let ops = UserInfo::new("dan", ["ops", "system:authenticated"]);
    assert!(can(&authz, path(&ops, "/logs/kube-apiserver.log")).await);
    assert!(can(&authz, path(&ops, "/logs/")).await);
    assert!(!can(&authz, path(&ops, "/logs")).await);
    assert!(can(&authz, path(&ops, "/metrics")).await);
    assert!(!can(&authz, path(&ops, "/metricsx")).await);
    assert!(
        !can(
            &authz,
            Attributes::non_resource(ops.clone(), "post", "/metrics")
        )
        .await
    );
}

#[tokio::test]
async fn aggregated_view_edit_admin_for_a_service_account() {
    let (authz, rbac) = default_authorizer();
    rbac.add_role_binding(role_binding(
        "team",
        "builder-view",
        role_ref("ClusterRole", "view"),
        // No namespace on the subject: the binding's namespace applies.
        vec![subject("ServiceAccount", "builder", None)],
    ));
    rbac.add_role_binding(role_binding(
        "team",
        "lead-admin",
        role_ref("ClusterRole", "admin"),
        vec![subject("User", "lead", None)],
    ));
    let sa = UserInfo::new(
        "system:serviceaccount:team:builder",
        [
            "system:serviceaccounts",
            "system:serviceaccounts:team",
            "system:authenticated",
        ],
    );
    assert!(can(&authz, res(&sa, "list", "team", "", "pods")).await);
    assert!(
        can(
            &authz,
            res(&sa, "get", "team", "", "pods").with_subresource("log")
        )
        .await
    );
    assert!(
        can(
            &authz,
            res(&sa, "get", "team", "apps", "deployments").with_subresource("scale")
        )
        .await
    );
    assert!(!can(&authz, res(&sa, "get", "team", "", "secrets")).await);
    assert!(!can(&authz, res(&sa, "create", "team", "", "pods")).await);
    assert!(!can(&authz, res(&sa, "list", "default", "", "pods")).await);
    // The same name in another namespace is another service account.
    let other = UserInfo::new(
        "system:serviceaccount:other:builder",
        ["system:authenticated"],
    );
    assert!(!can(&authz, res(&other, "list", "team", "", "pods")).await);

    // admin aggregates edit, which aggregates view.
    let lead = UserInfo::new("lead", ["system:authenticated"]);
    assert!(can(&authz, res(&lead, "list", "team", "", "pods")).await);
    assert!(can(&authz, res(&lead, "delete", "team", "apps", "deployments")).await);
    assert!(
        can(
            &authz,
            res(
                &lead,
                "create",
                "team",
                "rbac.authorization.k8s.io",
                "rolebindings"
            )
        )
        .await
    );
    assert!(!can(&authz, res(&lead, "create", "team", "", "resourcequotas")).await);

    // A ClusterRole labelled later joins the aggregation.
    let mut extra = ClusterRole {
        metadata: meta("crontabs-view", None),
        rules: Some(vec![rule(
            &["get", "list"],
            &["stable.example.com"],
            &["crontabs"],
        )]),
        aggregation_rule: None,
    };
    extra.metadata.labels = Some(BTreeMap::from([(
        "rbac.authorization.k8s.io/aggregate-to-view".to_owned(),
        "true".to_owned(),
    )]));
    rbac.add_cluster_role(extra);
    assert!(
        can(
            &authz,
            res(&sa, "list", "team", "stable.example.com", "crontabs")
        )
        .await
    );
    assert!(
        can(
            &authz,
            res(&lead, "list", "team", "stable.example.com", "crontabs")
        )
        .await
    );
}

#[tokio::test]
async fn dangling_references_are_reported_not_allowed() {
    let (authz, rbac) = default_authorizer();
    rbac.add_role(Role {
        metadata: meta("only-in-b", Some("b")),
        rules: Some(vec![rule(&["*"], &["*"], &["*"])]),
    });
    // A RoleBinding cannot reach a Role of another namespace.
    rbac.add_role_binding(role_binding(
        "a",
        "cross",
        role_ref("Role", "only-in-b"),
        vec![subject("User", "eve", None)],
    ));
    rbac.add_cluster_role_binding(ClusterRoleBinding {
        metadata: meta("ghost", None),
        role_ref: role_ref("ClusterRole", "does-not-exist"),
        subjects: Some(vec![subject("User", "eve", None)]),
    });
    let eve = UserInfo::new("eve", ["system:authenticated"]);
    let decision = authz.authorize(&res(&eve, "get", "a", "", "pods")).await;
    assert!(!decision.allowed);
    assert!(!decision.denied);
    let error = decision.evaluation_error.expect("evaluation error");
    assert!(
        error.contains("only-in-b") && error.contains("does-not-exist"),
        "{error}"
    );
}

#[tokio::test]
async fn control_plane_components_have_their_default_grants() {
    let (authz, _) = default_authorizer();
    let scheduler = UserInfo::new("system:kube-scheduler", ["system:authenticated"]);
    assert!(
        can(
            &authz,
            res(&scheduler, "create", "default", "", "pods").with_subresource("binding")
        )
        .await
    );
    assert!(
        can(
            &authz,
            res(
                &scheduler,
                "update",
                "default",
                "",
                "persistentvolumeclaims"
            )
        )
        .await
    );
    assert!(!can(&authz, res(&scheduler, "get", "default", "", "secrets")).await);
    let cm = UserInfo::new("system:kube-controller-manager", ["system:authenticated"]);
    assert!(can(&authz, res(&cm, "watch", "", "apps", "deployments")).await);
    // The garbage collector's grants (generic-garbage-collector).
    for verb in ["get", "list", "watch", "patch", "update", "delete"] {
        assert!(
            can(&authz, res(&cm, verb, "default", "apps", "replicasets")).await,
            "{verb} replicasets"
        );
        assert!(
            can(&authz, res(&cm, verb, "", "", "namespaces")).await,
            "{verb} namespaces"
        );
    }
    assert!(
        can(
            &authz,
            res(&cm, "get", "kube-system", "", "configmaps")
                .with_name("extension-apiserver-authentication")
        )
        .await
    );
    let node = UserInfo::new("system:node:cp1", ["system:nodes", "system:authenticated"]);
    assert!(
        can(
            &authz,
            res(
                &node,
                "create",
                "",
                "certificates.k8s.io",
                "certificatesigningrequests"
            )
            .with_subresource("selfnodeclient")
        )
        .await
    );
}

// ---------------------------------------------------------- access reviews

#[tokio::test]
async fn self_subject_access_review_as_kubectl_sends_it() {
    let pki = Pki::new();
    let der = pki.kubeconfig_cert(KubeconfigFile::Admin);
    let chain = [der];
    let admin = Authenticator::new()
        .authenticate(&Credentials::from_chain(&chain, None))
        .await
        .expect("admin");
    let (authz, _) = default_authorizer();
    let body = json!({
        "kind": "SelfSubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": {"resourceAttributes": {"namespace": "default", "verb": "create", "group": "apps", "resource": "deployments"}},
        "status": {"allowed": false}
    });
    let review: SelfSubjectAccessReview = serde_json::from_value(body).expect("review");
    let answered = review_self(&authz, &admin, review.clone())
        .await
        .expect("answered");
    let status = answered.status.clone().expect("status");
    assert!(status.allowed);
    assert_eq!(status.denied, None);
    assert!(
        status
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("kubeadm:cluster-admins"))
    );
    let json = serde_json::to_value(&answered).expect("json");
    assert_eq!(json["status"]["allowed"], true);
    assert_eq!(
        json["spec"]["resourceAttributes"]["resource"],
        "deployments"
    );

    let anonymous = UserInfo::anonymous();
    let answered = review_self(&authz, &anonymous, review)
        .await
        .expect("answered");
    let status = answered.status.expect("status");
    assert!(!status.allowed);
    assert_eq!(status.reason, None);

    let version: SelfSubjectAccessReview = serde_json::from_value(json!({
        "spec": {"nonResourceAttributes": {"path": "/version", "verb": "get"}}
    }))
    .expect("review");
    let answered = review_self(&authz, &anonymous, version)
        .await
        .expect("answered");
    assert!(answered.status.expect("status").allowed);

    let neither: SelfSubjectAccessReview =
        serde_json::from_value(json!({"spec": {}})).expect("review");
    assert_eq!(
        review_self(&authz, &anonymous, neither).await.err(),
        Some(ReviewError::AttributesRequired)
    );
}

#[tokio::test]
async fn subject_access_review_for_another_user() {
    let (authz, _) = default_authorizer();
    let review: SubjectAccessReview = serde_json::from_value(json!({
        "spec": {
            "user": "system:bootstrap:abcdef",
            "groups": ["system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token", "system:authenticated"],
            "resourceAttributes": {"verb": "create", "group": "certificates.k8s.io", "resource": "certificatesigningrequests"}
        }
    }))
    .expect("review");
    let answered = review_subject(&authz, review).await.expect("answered");
    let status = answered.status.expect("status");
    assert!(status.allowed);
    assert!(
        status
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("kubeadm:kubelet-bootstrap"))
    );

    let nobody: SubjectAccessReview = serde_json::from_value(json!({
        "spec": {"nonResourceAttributes": {"path": "/version", "verb": "get"}}
    }))
    .expect("review");
    assert_eq!(
        review_subject(&authz, nobody).await.err(),
        Some(ReviewError::SubjectRequired)
    );
}
