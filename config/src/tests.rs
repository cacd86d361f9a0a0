//! Tests of parsing, rendering and every validation rule.

use super::*;

const HASH: &str = "sha256:0f6b4bd1a6c8d0e2f4a6b8c0d2e4f6a8b0c2d4e6f8a0b2c4d6e8f0a2b4c6d8e0";
const KEY: &str = "4f8c2a1e6b3d9f0a7c5e2b8d1f4a6c3e9b0d7f2a5c8e1b4d6f9a3c0e7b2d5f8a";

fn full_control_plane() -> String {
    r#"
[cluster]
name = "lab"
control-plane-endpoint = "10.0.0.10:6443"
pod-network-cidr = "10.244.0.0/16"
service-cidr = "10.96.0.0/12"
service-dns-domain = "cluster.local"
apiserver-cert-extra-sans = ["k8s.example.org", "192.168.1.10"]
token = "abcdef.0123456789abcdef"
certificate-key = "KEY"
vip = { address = "10.0.0.10", interface = "eth0" }

[node]
name = "cp-1"
role = "control-plane"
interface = "eth0"
addresses = ["10.0.0.11/24", "fd00::11/64"]
gateway = "10.0.0.1"
dns = ["10.0.0.1", "1.1.1.1"]
labels = { "topology.kubernetes.io/zone" = "rack-1", "example.com/team" = "infra" }
taints = [{ key = "dedicated", value = "infra", effect = "NoSchedule" }]

[kernel]
modules = ["overlay", "br_netfilter"]
sysctls = { "net.ipv4.ip_forward" = 1, "vm.overcommit_memory" = "1" }

[containerd]
sandbox-image = "registry.k8s.io/pause:3.9"
snapshotter = "overlayfs"
registry-mirrors = { "docker.io" = ["https://mirror.example.org"] }
"#
    .replace("KEY", KEY)
}

fn worker_join() -> String {
    format!(
        r#"
[node]
role = "worker"
dhcp = true

[join]
endpoint = "10.0.0.10:6443"
token = "abcdef.0123456789abcdef"
discovery-token-ca-cert-hash = "{HASH}"
"#
    )
}

fn problems_of(text: &str) -> Vec<Problem> {
    match MachineConfig::parse(text, "node-1.toml") {
        Err(error @ ConfigError::Invalid { .. }) => error.problems().to_vec(),
        other => panic!("expected validation problems, got {other:?}"),
    }
}

/// Asserts that `text` is refused with a problem at `key` whose reason
/// contains `needle`.
fn assert_problem(text: &str, key: &str, needle: &str) {
    let problems = problems_of(text);
    assert!(
        problems
            .iter()
            .any(|problem| problem.key == key && problem.reason.contains(needle)),
        "no problem at {key} containing {needle:?}; got {problems:#?}"
    );
}

fn round_trip(text: &str) -> MachineConfig {
    let config = MachineConfig::parse(text, "input.toml").expect("config is valid");
    let rendered = config.to_toml().expect("config renders");
    let reparsed = MachineConfig::parse(&rendered, "rendered.toml")
        .unwrap_or_else(|error| panic!("rendered config reads back: {error}\n{rendered}"));
    assert_eq!(
        reparsed, config,
        "round trip changed the config:\n{rendered}"
    );
    assert!(config.problems().is_empty());
    config
}

#[test]
fn full_control_plane_parses_and_round_trips() {
    let config = round_trip(&full_control_plane());
    assert_eq!(config.cluster_action(), ClusterAction::Init);
    let cluster = config.cluster.as_ref().expect("cluster section");
    assert_eq!(cluster.effective_name(), "lab");
    assert_eq!(cluster.effective_service_cidr().to_string(), "10.96.0.0/12");
    assert_eq!(cluster.apiserver_cert_extra_sans.len(), 2);
    let vip = cluster.vip.as_ref().expect("vip");
    assert_eq!(vip.interface.as_str(), "eth0");
    assert_eq!(config.node.role, NodeRole::ControlPlane);
    let Addressing::Static { addresses, gateway } = &config.node.addressing else {
        panic!("expected static addressing");
    };
    assert_eq!(addresses[0].to_string(), "10.0.0.11/24");
    assert_eq!(
        gateway.map(|ip| ip.to_string()).as_deref(),
        Some("10.0.0.1")
    );
    assert_eq!(config.kernel.sysctls.len(), 2);
    assert_eq!(config.containerd.registry_mirrors.len(), 1);
}

#[test]
fn worker_join_parses_and_round_trips() {
    let config = round_trip(&worker_join());
    assert_eq!(config.cluster_action(), ClusterAction::Join);
    assert_eq!(config.node.addressing, Addressing::Dhcp);
    let join = config.join.as_ref().expect("join section");
    assert!(!join.control_plane);
    assert_eq!(join.endpoint.url(6443), "https://10.0.0.10:6443");
}

#[test]
fn control_plane_join_defaults_control_plane_from_role() {
    let text = format!(
        r#"
[cluster]
apiserver-cert-extra-sans = ["cp-2.example.org"]
vip = {{ address = "10.0.0.10", interface = "eth0" }}

[node]
role = "control-plane"
dhcp = true

[join]
endpoint = "10.0.0.10"
token = "abcdef.0123456789abcdef"
discovery-token-ca-cert-hash = "{HASH}"
certificate-key = "{KEY}"
"#
    );
    let config = round_trip(&text);
    assert!(config.join.as_ref().expect("join").control_plane);
}

#[test]
fn minimal_config_is_a_dhcp_node_with_defaults() {
    let config = round_trip("[node]\nrole = \"control-plane\"\n");
    assert_eq!(config.node.addressing, Addressing::Dhcp);
    assert!(config.cluster.is_none());
    let worker = round_trip("[node]\nrole = \"worker\"\n");
    assert_eq!(worker.cluster_action(), ClusterAction::WaitForJoin);
}

#[test]
fn unquoted_dotted_sysctl_keys_mean_the_same_name() {
    let config =
        round_trip("[node]\nrole = \"worker\"\n[kernel.sysctls]\nnet.ipv4.ip_forward = 1\n");
    let (key, value) = config.kernel.sysctls.iter().next().expect("one sysctl");
    assert_eq!((key.as_str(), value.as_str()), ("net.ipv4.ip_forward", "1"));
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let config = MachineConfig::parse(&full_control_plane(), "cp.toml").expect("valid");
    let debug = format!("{config:?}");
    assert!(!debug.contains("0123456789abcdef"), "{debug}");
    assert!(!debug.contains(KEY), "{debug}");
}

#[test]
fn syntax_errors_name_source_line_and_column() {
    let error = MachineConfig::parse("[node]\nrole = \"worker\nname = 1\n", "node-1.toml")
        .expect_err("unterminated string");
    let message = error.to_string();
    assert!(message.starts_with("node-1.toml:2:"), "{message}");
}

#[test]
fn unknown_keys_are_rejected_with_their_path_and_line() {
    let error = MachineConfig::parse(
        "[node]\nrole = \"worker\"\nhostname = \"x\"\n",
        "node-1.toml",
    )
    .expect_err("unknown key");
    let message = error.to_string();
    assert!(
        message.starts_with("node-1.toml:3:1: node.hostname: unknown field `hostname`"),
        "{message}"
    );
    for text in [
        "[nodes]\nrole = \"worker\"\n",
        "[node]\nrole = \"worker\"\n[join]\nunsafe-skip-ca-verification = true\n",
    ] {
        assert!(matches!(
            MachineConfig::parse(text, "x.toml"),
            Err(ConfigError::Parse { .. })
        ));
    }
}

#[test]
fn wrong_value_types_are_parse_errors() {
    let error = MachineConfig::parse("[node]\nrole = \"worker\"\ndhcp = \"yes\"\n", "n.toml")
        .expect_err("dhcp must be a boolean");
    assert!(
        error.to_string().starts_with("n.toml:3:8: node.dhcp: "),
        "{error}"
    );
}

#[test]
fn invalid_address_message_matches_the_documented_form() {
    let text = "[node]\nrole = \"worker\"\naddresses = [\"10.0.0.300/24\"]\n";
    let error = MachineConfig::parse(text, "node-1.toml").expect_err("bad address");
    assert_eq!(
        error.to_string(),
        "node-1.toml: node.addresses[0]: \"10.0.0.300/24\" is not an IP address with a prefix (expected e.g. 10.0.0.11/24)"
    );
}

#[test]
fn multiple_problems_are_reported_together() {
    let text = r#"
[cluster]
pod-network-cidr = "10.244.0.0"
service-dns-domain = "bad_domain"
vip = { address = "10.0.0.10", interface = "eth0" }

[node]
role = "worker"
addresses = ["10.0.0.300/24"]
dns = ["1.1.1.1", "not-an-ip"]
labels = { "Bad Key" = "x" }

[kernel]
modules = ["overlay.ko"]
sysctls = { "NET.ipv4" = 1 }

[containerd]
sandbox-image = "pause"
"#;
    let error = MachineConfig::parse(text, "node-1.toml").expect_err("many problems");
    let keys: Vec<&str> = error.problems().iter().map(|p| p.key.as_str()).collect();
    for key in [
        "cluster.pod-network-cidr",
        "cluster.service-dns-domain",
        "cluster.vip",
        "node.addresses[0]",
        "node.dns[1]",
        "node.labels.\"Bad Key\"",
        "kernel.modules[0]",
        "kernel.sysctls.\"NET.ipv4\"",
        "containerd.sandbox-image",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    let message = error.to_string();
    assert_eq!(message.lines().count(), error.problems().len());
    assert!(
        message
            .lines()
            .all(|line| line.starts_with("node-1.toml: ")),
        "{message}"
    );
}

#[test]
fn every_value_rule_names_its_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("[node]\n", "node.role", "missing"),
        ("[node]\nrole = \"master\"\n", "node.role", "not a role"),
        (
            "[node]\nrole = \"worker\"\nname = \"Node_1\"\n",
            "node.name",
            "RFC 1123",
        ),
        (
            "[node]\nrole = \"worker\"\ninterface = \"eth0:1\"\n",
            "node.interface",
            "interface name",
        ),
        (
            "[node]\nrole = \"worker\"\naddresses = [\"10.0.0.11\"]\n",
            "node.addresses[0]",
            "no prefix length",
        ),
        (
            "[node]\nrole = \"worker\"\nlabels = { rack = \"-x\" }\n",
            "node.labels.rack",
            "not a valid value",
        ),
        (
            "[node]\nrole = \"worker\"\ntaints = [{ key = \"a\", effect = \"Never\" }]\n",
            "node.taints[0].effect",
            "not a taint effect",
        ),
        (
            "[node]\nrole = \"worker\"\ntaints = [{ key = \"a\" }]\n",
            "node.taints[0].effect",
            "missing",
        ),
        (
            "[cluster]\nservice-cidr = \"10.96.0.1/12\"\n[node]\nrole = \"control-plane\"\n",
            "cluster.service-cidr",
            "host bits",
        ),
        (
            "[cluster]\ncontrol-plane-endpoint = \"https://x\"\n[node]\nrole = \"control-plane\"\n",
            "cluster.control-plane-endpoint",
            "scheme",
        ),
        (
            "[cluster]\napiserver-cert-extra-sans = [\"a b\"]\n[node]\nrole = \"control-plane\"\n",
            "cluster.apiserver-cert-extra-sans[0]",
            "neither",
        ),
        (
            "[cluster]\ntoken = \"nope\"\n[node]\nrole = \"control-plane\"\n",
            "cluster.token",
            "invalid token",
        ),
        (
            "[cluster]\nname = \"Lab\"\n[node]\nrole = \"control-plane\"\n",
            "cluster.name",
            "cluster name",
        ),
        (
            "[cluster]\nvip = { address = \"10.0.0.10/24\", interface = \"eth0\" }\n[node]\nrole = \"control-plane\"\n",
            "cluster.vip.address",
            "without a /prefix",
        ),
        (
            "[cluster]\nvip = { address = \"10.0.0.10\" }\n[node]\nrole = \"control-plane\"\n",
            "cluster.vip.interface",
            "missing",
        ),
        (
            "[node]\nrole = \"worker\"\n[kernel]\nsysctls = { \"net.ipv4.ip_forward\" = true }\n",
            "kernel.sysctls.\"net.ipv4.ip_forward\"",
            "write 1 instead of true",
        ),
        (
            "[node]\nrole = \"worker\"\n[containerd]\nsnapshotter = \"zfs\"\n",
            "containerd.snapshotter",
            "supported snapshotter",
        ),
        (
            "[node]\nrole = \"worker\"\n[containerd]\nregistry-mirrors = { \"docker.io\" = [\"ftp://x\"] }\n",
            "containerd.registry-mirrors.\"docker.io\"[0]",
            "http",
        ),
        (
            "[node]\nrole = \"worker\"\n[containerd]\nregistry-mirrors = { \"docker.io\" = [] }\n",
            "containerd.registry-mirrors.\"docker.io\"",
            "no mirror",
        ),
    ];
    for (text, key, needle) in cases {
        assert_problem(text, key, needle);
    }
}

#[test]
fn node_network_rules() {
    let node = |rest: &str| format!("[node]\nrole = \"worker\"\n{rest}");
    assert_problem(
        &node("dhcp = true\naddresses = [\"10.0.0.11/24\"]\n"),
        "node.addresses",
        "conflicts with dhcp",
    );
    assert_problem(
        &node("dhcp = true\ngateway = \"10.0.0.1\"\n"),
        "node.gateway",
        "DHCP provides",
    );
    assert_problem(
        &node("dhcp = false\n"),
        "node.addresses",
        "dhcp = false needs",
    );
    assert_problem(
        &node("gateway = \"10.0.0.1\"\n"),
        "node.gateway",
        "needs static",
    );
    assert_problem(
        &node("addresses = [\"10.0.0.11/24\"]\ngateway = \"10.0.1.1\"\n"),
        "node.gateway",
        "outside the subnets",
    );
    assert_problem(
        &node("addresses = [\"10.0.0.11/24\"]\ngateway = \"10.0.0.11\"\n"),
        "node.gateway",
        "one of node.addresses",
    );
    assert_problem(
        &node("addresses = [\"10.0.0.11/24\", \"10.0.0.11/16\"]\n"),
        "node.addresses[1]",
        "listed twice",
    );
    assert_problem(
        &node("dns = [\"1.1.1.1\", \"1.0.0.1\", \"8.8.8.8\", \"8.8.4.4\"]\n"),
        "node.dns",
        "at most 3",
    );
}

#[test]
fn label_taint_and_kernel_rules() {
    let node = |rest: &str| format!("[node]\nrole = \"worker\"\n{rest}");
    assert_problem(
        &node("labels = { \"node-role.kubernetes.io/worker\" = \"\" }\n"),
        "node.labels.\"node-role.kubernetes.io/worker\"",
        "come from node.role",
    );
    assert_problem(
        &node("labels = { \"kubernetes.io/team\" = \"a\" }\n"),
        "node.labels.\"kubernetes.io/team\"",
        "NodeRestriction",
    );
    round_trip(&node(
        "labels = { \"node.kubernetes.io/pool\" = \"a\", \"kubernetes.io/arch\" = \"amd64\" }\n",
    ));
    assert_problem(
        &node(
            "taints = [{ key = \"a\", effect = \"NoSchedule\" }, { key = \"a\", value = \"b\", effect = \"NoSchedule\" }]\n",
        ),
        "node.taints[1]",
        "repeats node.taints[0]",
    );
    assert_problem(
        &node("[kernel]\nmodules = [\"br_netfilter\", \"br-netfilter\"]\n"),
        "kernel.modules[1]",
        "listed twice",
    );
    assert_problem(
        &node("[kernel.sysctls]\n\"net.ipv4.ip_forward\" = 1\nnet.ipv4.ip_forward = 1\n"),
        "kernel.sysctls.\"net.ipv4.ip_forward\"",
        "set twice",
    );
}

#[test]
fn join_rules() {
    let join = |role: &str, extra: &str| {
        format!(
            "[node]\nrole = \"{role}\"\n[join]\nendpoint = \"10.0.0.10\"\ntoken = \"abcdef.0123456789abcdef\"\ndiscovery-token-ca-cert-hash = \"{HASH}\"\n{extra}"
        )
    };
    assert_problem(
        &join("control-plane", ""),
        "join.certificate-key",
        "control-plane join needs",
    );
    assert_problem(
        &join("worker", &format!("certificate-key = \"{KEY}\"\n")),
        "join.certificate-key",
        "only a control-plane join",
    );
    assert_problem(
        &join("worker", "control-plane = true\n"),
        "join.control-plane",
        "must agree",
    );
    assert_problem(
        &join("worker", "certificate-key = \"xyz\"\n"),
        "join.certificate-key",
        "64 hex digits",
    );
    assert_problem(
        "[node]\nrole = \"worker\"\n[join]\n",
        "join.endpoint",
        "bootstrap token create --print-join-command",
    );
    let problems = problems_of("[node]\nrole = \"worker\"\n[join]\n");
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "join.endpoint",
            "join.token",
            "join.discovery-token-ca-cert-hash"
        ]
    );
    assert_problem(
        &join("worker", "token = \"x\"\n").replace("token = \"abcdef.0123456789abcdef\"\n", ""),
        "join.token",
        "invalid token",
    );
    assert_problem(
        &join("worker", "").replace(HASH, "sha256:abc"),
        "join.discovery-token-ca-cert-hash",
        "64 hex digits",
    );
}

#[test]
fn secrets_are_not_echoed_in_problems() {
    let text = "[node]\nrole = \"worker\"\n[join]\nendpoint = \"x\"\ntoken = \"secret.leakyleakyleaky\"\ndiscovery-token-ca-cert-hash = \"sha256:00\"\ncertificate-key = \"topsecretkeymaterial\"\n";
    let message = MachineConfig::parse(text, "n.toml")
        .expect_err("invalid")
        .to_string();
    assert!(!message.contains("leakyleakyleaky"), "{message}");
    assert!(!message.contains("topsecretkeymaterial"), "{message}");
}

#[test]
fn cluster_sections_must_fit_role_and_join() {
    let join_worker = worker_join();
    for key in [
        "name = \"lab\"",
        "pod-network-cidr = \"10.244.0.0/16\"",
        "service-cidr = \"10.96.0.0/12\"",
        "service-dns-domain = \"cluster.local\"",
        "token = \"abcdef.0123456789abcdef\"",
    ] {
        let text = format!("[cluster]\n{key}\n{join_worker}");
        let name = key.split(' ').next().expect("key name");
        assert_problem(
            &text,
            &format!("cluster.{name}"),
            "decided when the cluster is initialised",
        );
    }
    assert_problem(
        "[cluster]\npod-network-cidr = \"10.244.0.0/16\"\n[node]\nrole = \"worker\"\n",
        "cluster.pod-network-cidr",
        "only the control-plane node that initialises",
    );
    assert_problem(
        "[cluster]\nvip = { address = \"10.0.0.10\", interface = \"eth0\" }\n[node]\nrole = \"worker\"\n",
        "cluster.vip",
        "only control-plane nodes hold the VIP",
    );
    assert_problem(
        "[cluster]\napiserver-cert-extra-sans = [\"x.example\"]\n[node]\nrole = \"worker\"\n",
        "cluster.apiserver-cert-extra-sans",
        "runs no apiserver",
    );
    assert_problem(
        &format!("[cluster]\ncontrol-plane-endpoint = \"10.0.0.20\"\n{join_worker}"),
        "join.endpoint",
        "must agree",
    );
    // The same endpoint written with and without the default port agrees.
    round_trip(&format!(
        "[cluster]\ncontrol-plane-endpoint = \"10.0.0.10\"\n{join_worker}"
    ));
}

#[test]
fn network_and_vip_rules_on_the_init_node() {
    let cp = |cluster: &str, node: &str| {
        format!(
            "[cluster]\n{cluster}\n[node]\nrole = \"control-plane\"\ninterface = \"eth0\"\n{node}"
        )
    };
    assert_problem(
        &cp("pod-network-cidr = \"10.96.0.0/16\"", "dhcp = true"),
        "cluster.service-cidr",
        "overlaps cluster.pod-network-cidr 10.96.0.0/16",
    );
    assert_problem(
        &cp("", "addresses = [\"10.244.3.4/24\"]"),
        "node.addresses[0]",
        "inside cluster.pod-network-cidr 10.244.0.0/16 (the default)",
    );
    assert_problem(
        &cp(
            "vip = { address = \"10.0.0.11\", interface = \"eth0\" }",
            "addresses = [\"10.0.0.11/24\"]",
        ),
        "cluster.vip.address",
        "the VIP must be an address no node owns",
    );
    assert_problem(
        &cp(
            "vip = { address = \"10.9.0.10\", interface = \"eth0\" }",
            "addresses = [\"10.0.0.11/24\"]",
        ),
        "cluster.vip.address",
        "outside the subnets",
    );
    assert_problem(
        &cp(
            "vip = { address = \"10.96.0.10\", interface = \"eth1\" }",
            "dhcp = true",
        ),
        "cluster.vip.address",
        "inside cluster.service-cidr",
    );
    assert_problem(
        &cp(
            "control-plane-endpoint = \"10.0.0.12\"\nvip = { address = \"10.0.0.10\", interface = \"eth0\" }",
            "addresses = [\"10.0.0.11/24\"]",
        ),
        "cluster.control-plane-endpoint",
        "point the endpoint at the VIP",
    );
}

#[test]
fn problems_checks_configs_built_in_code() {
    let mut config = MachineConfig::parse(&worker_join(), "w.toml").expect("valid");
    config.cluster = Some(ClusterConfig {
        vip: Some(VipConfig {
            address: "10.0.0.10".parse().expect("ip"),
            interface: "eth0".parse().expect("interface"),
        }),
        ..ClusterConfig::default()
    });
    let problems = config.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "cluster.vip");
}

#[test]
fn serde_deserialize_validates_too() {
    let error = toml::from_str::<MachineConfig>(
        "[node]\nrole = \"worker\"\naddresses = [\"10.0.0.300/24\"]\n",
    )
    .expect_err("invalid address");
    assert!(error.to_string().contains("node.addresses[0]"), "{error}");
    let config: MachineConfig = toml::from_str(&worker_join()).expect("valid");
    assert_eq!(config.node.role, NodeRole::Worker);
}

fn api_section(pem: &str) -> String {
    format!("[node]\nrole = \"worker\"\n\n[api]\nclient-ca = \"\"\"\n{pem}\"\"\"\n")
}

fn test_ca_pem(common_name: &str) -> (String, cairn_pki::PrivateKey) {
    let key = cairn_pki::PrivateKey::generate(cairn_pki::KeyType::EcdsaP256).expect("key");
    let pem = cairn_pki::cert::self_signed_ca(common_name, &key, time::OffsetDateTime::now_utc())
        .expect("CA");
    (pem, key)
}

#[test]
fn api_client_ca_accepts_ca_bundles_and_round_trips() {
    let (first, _) = test_ca_pem("lab-admin-ca");
    let (second, _) = test_ca_pem("other-ca");
    let config = round_trip(&api_section(&format!("{first}{second}")));
    let bundle = config.api.client_ca.expect("client-ca");
    assert_eq!(pem::parse_many(bundle.as_pem()).expect("pem").len(), 2);
}

#[test]
fn api_client_ca_refuses_keys_leaves_and_garbage() {
    let (ca, ca_key) = test_ca_pem("lab-admin-ca");
    let ca_der = cairn_pki::cert::pem_to_der(&ca).expect("der");
    let leaf_key = cairn_pki::PrivateKey::generate(cairn_pki::KeyType::EcdsaP256).expect("key");
    let request = cairn_pki::cert::CertRequest::new("admin", cairn_pki::cert::Usage::Client);
    let leaf = cairn_pki::cert::issue(
        &request,
        &leaf_key,
        &ca_der,
        &ca_key,
        time::OffsetDateTime::now_utc(),
    )
    .expect("leaf");
    assert_problem(&api_section(&leaf), "api.client-ca", "not a CA certificate");
    assert_problem(
        &api_section(&leaf_key.to_pem()),
        "api.client-ca",
        "never put private keys here",
    );
    assert_problem(&api_section("hello"), "api.client-ca", "PEM");
}

#[test]
fn skip_phases_are_kubeadm_names_with_cairn_rules() {
    let with = |phases: &str| {
        full_control_plane().replace(
            "[cluster]\n",
            &format!("[cluster]\nskip-phases = [{phases}]\n"),
        )
    };
    let config = round_trip(&with("\"show-join-command\", \"mark-control-plane\""));
    let cluster = config.cluster.as_ref().expect("cluster");
    assert!(!cluster.runs(InitPhase::ShowJoinCommand));
    assert!(!cluster.runs(InitPhase::MarkControlPlane));
    assert!(cluster.runs(InitPhase::Preflight));

    assert_problem(
        &with("\"addon\""),
        "cluster.skip-phases[0]",
        "not an init phase",
    );
    assert_problem(
        &with("\"certs/apiserver\""),
        "cluster.skip-phases[0]",
        "only whole phases",
    );
    assert_problem(&with("\"etcd\""), "cluster.skip-phases", "stacked etcd");
    assert_problem(
        &with("\"control-plane\""),
        "cluster.skip-phases",
        "cannot be skipped",
    );
    assert_problem(
        &with("\"certs\""),
        "cluster.skip-phases",
        "skip both or neither",
    );
    round_trip(&with("\"certs\", \"kubeconfig\""));

    let join = |phases: &str| format!("[cluster]\nskip-phases = [{phases}]\n{}", worker_join());
    round_trip(&join("\"preflight\""));
    assert_problem(
        &join("\"upload-config\""),
        "cluster.skip-phases",
        "may skip \"preflight\" only",
    );
}
