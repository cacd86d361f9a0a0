//! The example machine configs shipped in `examples/machine-config/` parse,
//! validate and survive a round trip through `to_toml`, and `load` reports
//! files by path.

use std::path::{Path, PathBuf};

use cairn_bootstrap::config::{ClusterAction, ConfigError, MachineConfig, NodeRole};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/machine-config")
        .join(name)
}

fn load_and_round_trip(name: &str) -> MachineConfig {
    let config = MachineConfig::load(example(name))
        .unwrap_or_else(|error| panic!("example {name} is valid: {error}"));
    let rendered = config.to_toml().expect("example renders as TOML");
    let reparsed = MachineConfig::parse(&rendered, name).expect("rendered example reads back");
    assert_eq!(reparsed, config, "round trip changed {name}:\n{rendered}");
    config
}

#[test]
fn control_plane_example_initialises_a_cluster_behind_a_vip() {
    let config = load_and_round_trip("control-plane.toml");
    assert_eq!(config.node.role, NodeRole::ControlPlane);
    assert_eq!(config.cluster_action(), ClusterAction::Init);
    let cluster = config.cluster.as_ref().expect("example has [cluster]");
    assert!(cluster.vip.is_some());
    assert!(cluster.token.is_some() && cluster.certificate_key.is_some());
}

#[test]
fn worker_example_joins_the_control_plane_example() {
    let worker = load_and_round_trip("worker.toml");
    assert_eq!(worker.cluster_action(), ClusterAction::Join);
    let join = worker.join.as_ref().expect("example has [join]");
    assert!(!join.control_plane);

    // The worker must reach the cluster the control-plane example forms, with
    // the token that node creates.
    let control_plane = load_and_round_trip("control-plane.toml");
    let cluster = control_plane
        .cluster
        .as_ref()
        .expect("example has [cluster]");
    let endpoint = cluster
        .control_plane_endpoint
        .as_ref()
        .expect("example sets the endpoint");
    assert_eq!(join.endpoint.url(6443), endpoint.url(6443));
    assert_eq!(Some(&join.token), cluster.token.as_ref());
}

#[test]
fn load_names_the_file_in_every_error() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("node-1.toml");
    std::fs::write(&path, "[node]\nrole = \"worker\"\nhostname = \"x\"\n").expect("write config");
    let message = MachineConfig::load(&path)
        .expect_err("unknown key")
        .to_string();
    assert!(
        message.starts_with(&format!("{}:3:1: node.hostname: ", path.display())),
        "{message}"
    );

    let missing = dir.path().join("absent.toml");
    let error = MachineConfig::load(&missing).expect_err("no such file");
    assert!(matches!(error, ConfigError::Read { .. }));
    assert!(error.to_string().contains("absent.toml"), "{error}");
}
