//! The network-namespace lab: several Cairn nodes in QEMU on a private
//! network, reachable from the host only through loopback port forwards.
//!
//! # Layout
//!
//! A lab `NAME` owns:
//!
//! - the network namespace `cairn-NAME` with a bridge `br0` holding the
//!   gateway address [`GATEWAY`]`/24` and one tap (`tap1`, `tap2`, ...) per
//!   node. Labs are isolated from each other and from the host, so every
//!   lab uses the same subnet; nothing is added to the host's own network.
//! - `dnsmasq` in the namespace: DHCP with a reservation per node (MAC
//!   `52:54:00:ca:<lab byte>:<index>`, address `10.5.0.<10+index>`, host
//!   name `node-<index>`) and, for iPXE clients, the URL of the node's boot
//!   script ([`dnsmasq`]).
//! - an HTTP server on `http://10.5.0.1:8080` in the namespace serving each
//!   node's machine config at `/config/<mac>` and the image files for PXE
//!   ([`http`]).
//! - port forwards `127.0.0.1:<ephemeral>` → `<node>:50000` (node API) and
//!   `<node>:6443` (apiserver) ([`forward`]).
//! - one QEMU per running node, inside the namespace, on its tap.
//! - an admin CA and client certificate ([`admin`]); every node's generated
//!   machine config trusts that CA in `[api] client-ca`.
//! - the lab directory `<root>/NAME` (root [`default_root`], i.e.
//!   `/run/cairn/lab` unless `CAIRN_LAB_ROOT` says otherwise):
//!
//! ```text
//! state.json                 what runs where (see LabState); `down` after a crash reads it
//! admin/{ca.crt,ca.key,admin.crt,admin.key}
//! configs/<node>.toml        the machine config each node is served
//! <node>.serial.log          serial console (appended across restarts and reboots)
//! <node>.qemu.log            QEMU's own messages
//! <node>.disk.qcow2          overlay of the image's disk.qcow2 (uefi boot, or --disk)
//! <node>.cidata.img          NoCloud drive (uefi boot, or cidata = true)
//! <node>.vars.fd             UEFI variables (uefi boot)
//! dnsmasq.{leases,log,pid}   http.log   daemon.log, control.sock (daemon only)
//! ```
//!
//! # Boot paths
//!
//! - [`BootMode::Kernel`]: QEMU loads `vmlinuz` + `initramfs.cpio.zst` with
//!   the image's cmdline plus `cairn.config=http://10.5.0.1:8080/config/${mac}`
//!   (node-agent substitutes `${mac}` and fetches it after DHCP).
//! - [`BootMode::Uefi`]: OVMF boots an overlay of `disk.qcow2`; the UKI's
//!   cmdline is fixed, so the config comes on a NoCloud `cidata` drive.
//! - [`BootMode::Pxe`]: SeaBIOS runs the NIC's iPXE ROM; dnsmasq hands it
//!   `/pxe/<mac>/boot.ipxe`, the image's script with `cairn.config=` added.
//!
//! QEMU runs without `-no-reboot`: a guest reboot resets the machine in
//! the same QEMU process (same serial log, same disk), and a guest power-off
//! ends QEMU; the node then shows as not running until [`Lab::start`].
//!
//! # Lifecycle
//!
//! [`Lab::up`] first removes leftovers of a crashed lab of the same name
//! ([`cleanup`]: processes whose command line mentions the lab directory,
//! the namespace, the directory). Dropping a [`Lab`] (or [`Lab::down`])
//! stops every VM, dnsmasq, the HTTP server and the forwards, deletes the
//! namespace (and with it bridge and taps) and removes the lab directory.
//! `bootstrap qemu up` keeps a lab running in a detached daemon
//! ([`control`]); tests use [`Lab`] in-process.

pub mod admin;
pub mod cidata;
pub mod cluster;
pub mod control;
pub mod dnsmasq;
pub mod forward;
pub mod http;
pub mod netns;
pub mod procs;
pub mod ready;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cairn_config::{MachineConfig, NodeRole};
use serde::{Deserialize, Serialize};

use crate::accel::Accel;
use crate::console;
use crate::vm::{Boot, Drive, Nic, Vm, VmConfig, VmError};

pub use admin::{AdminCredentials, AdminPaths};
pub use cluster::LabCluster;
pub use forward::Forward;

/// The gateway (bridge) address of every lab.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 1);
/// Prefix length of the lab subnet.
pub const PREFIX: u8 = 24;
/// The bridge inside the namespace.
pub const BRIDGE: &str = "br0";
/// Port of the HTTP server on the gateway.
pub const HTTP_PORT: u16 = 8080;
/// The node API port.
pub const API_PORT: u16 = 50000;
/// The apiserver port.
pub const KUBE_PORT: u16 = 6443;
/// Size of the disk overlay a node gets.
pub const DISK_SIZE: u64 = 2 * 1024 * 1024 * 1024;

/// Errors of the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(
        "invalid lab name {0:?}: use 1-20 characters of a-z, 0-9 and -, starting with a letter or digit"
    )]
    InvalidName(String),
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Net {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("admin credentials: {0}")]
    Pki(String),
    #[error("machine config of {node}: {message}")]
    Config { node: String, message: String },
    #[error("lab {lab} has no node {node:?} (it has: {known})")]
    UnknownNode {
        lab: String,
        node: String,
        known: String,
    },
    #[error("starting {node}: {source}")]
    Vm {
        node: String,
        #[source]
        source: Box<VmError>,
    },
    #[error("lab {0} is not running (no {1}); start it with `bootstrap qemu up --name {0}`")]
    NotRunning(String, PathBuf),
    #[error("{0}")]
    NotReady(String),
    #[error("lab control: {0}")]
    Control(String),
}

impl LabError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// How nodes boot; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BootMode {
    #[default]
    Kernel,
    Uefi,
    Pxe,
}

impl std::fmt::Display for BootMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Kernel => "kernel",
            Self::Uefi => "uefi",
            Self::Pxe => "pxe",
        })
    }
}

impl std::str::FromStr for BootMode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "kernel" => Ok(Self::Kernel),
            "uefi" => Ok(Self::Uefi),
            "pxe" => Ok(Self::Pxe),
            other => Err(format!(
                "unknown boot mode {other:?}: use kernel, uefi or pxe"
            )),
        }
    }
}

/// One node of a lab to be.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Node name and DHCP host name, e.g. `node-1`.
    pub name: String,
    pub role: NodeRole,
    /// Machine config text to serve instead of the generated one.
    pub config: Option<String>,
    /// Attach a NoCloud `cidata` drive with the config (always with
    /// [`BootMode::Uefi`]).
    pub cidata: bool,
    /// Attach an overlay of `disk.qcow2` (grown to 2 GiB) so STATE
    /// persists across reboots; on by default, always with
    /// [`BootMode::Uefi`]. Off: a diskless node with STATE in memory.
    pub disk: bool,
}

impl NodeSpec {
    pub fn new(name: impl Into<String>, role: NodeRole) -> Self {
        Self {
            name: name.into(),
            role,
            config: None,
            cidata: false,
            disk: true,
        }
    }
}

/// What [`Lab::up`] builds.
#[derive(Debug, Clone)]
pub struct LabSpec {
    /// Lab name: `[a-z0-9][a-z0-9-]{0,19}`.
    pub name: String,
    /// Parent of the lab directory.
    pub root: PathBuf,
    /// A directory written by `image build` (only read when a VM starts or
    /// a PXE file is asked for).
    pub image: PathBuf,
    pub nodes: Vec<NodeSpec>,
    pub boot: BootMode,
    pub memory_mib: u32,
    pub cpus: u32,
    /// `None`: probe KVM with the image's kernel (see [`Accel::detect`]).
    pub accel: Option<Accel>,
    /// Guest ports forwarded from 127.0.0.1 for every node.
    pub forward_ports: Vec<u16>,
    /// Boot every node at the end of [`Lab::up`].
    pub start_nodes: bool,
    /// Remove leftovers of an earlier lab of this name first.
    pub clean_leftovers: bool,
    /// Form a Kubernetes cluster (see [`cluster`]); `None`: the nodes only
    /// boot (every node a worker without `[join]`).
    pub cluster: Option<LabCluster>,
}

impl LabSpec {
    /// `nodes` nodes that only boot (workers waiting for a `[join]`);
    /// kernel boot, 2 GiB and one vCPU each, forwards for the node API and
    /// the apiserver, every node started.
    pub fn new(name: impl Into<String>, image: impl Into<PathBuf>, nodes: usize) -> Self {
        Self {
            name: name.into(),
            root: default_root(),
            image: image.into(),
            nodes: (1..=nodes)
                .map(|index| NodeSpec::new(format!("node-{index}"), NodeRole::Worker))
                .collect(),
            boot: BootMode::Kernel,
            memory_mib: 2048,
            cpus: 1,
            accel: None,
            forward_ports: vec![API_PORT, KUBE_PORT],
            start_nodes: true,
            clean_leftovers: true,
            cluster: None,
        }
    }

    /// A lab that forms a cluster: `node-1` … `node-<control_planes>` are
    /// control-plane nodes, the rest workers; with `vip`, the apiservers
    /// are reached at [`cluster::VIP`].
    pub fn with_cluster(
        name: impl Into<String>,
        image: impl Into<PathBuf>,
        control_planes: usize,
        workers: usize,
        vip: bool,
    ) -> Self {
        let mut spec = Self::new(name, image, control_planes + workers);
        for node in spec.nodes.iter_mut().take(control_planes) {
            node.role = NodeRole::ControlPlane;
        }
        spec.cluster = Some(LabCluster::new(control_planes, vip));
        // etcd's client port too, to check membership from the host.
        spec.forward_ports.push(cluster::ETCD_PORT);
        spec
    }
}

/// Where lab directories go: `$CAIRN_LAB_ROOT` or `/run/cairn/lab`.
pub fn default_root() -> PathBuf {
    std::env::var_os("CAIRN_LAB_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/cairn/lab"))
}

/// The lab directory of `name` under `root`.
pub fn lab_dir(root: &Path, name: &str) -> PathBuf {
    root.join(name)
}

/// The namespace of lab `name`.
pub fn netns_name(name: &str) -> String {
    format!("cairn-{name}")
}

/// Checks a lab name.
pub fn validate_name(name: &str) -> Result<(), LabError> {
    let ok = !name.is_empty()
        && name.len() <= 20
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(LabError::InvalidName(name.to_owned()))
    }
}

/// A byte derived from the lab name (FNV-1a), part of every node MAC so
/// that two labs' MACs differ.
fn lab_byte(name: &str) -> u8 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in name.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash ^ (hash >> 8) ^ (hash >> 16) ^ (hash >> 24)) as u8
}

/// The MAC of node `index` (1-based) of lab `name`.
pub fn node_mac(name: &str, index: usize) -> String {
    format!("52:54:00:ca:{:02x}:{:02x}", lab_byte(name), index & 0xff)
}

/// The address of node `index` (1-based): `10.5.0.(10 + index)`.
pub fn node_ip(index: usize) -> Ipv4Addr {
    let [a, b, c, _] = GATEWAY.octets();
    Ipv4Addr::new(a, b, c, (10 + index).min(99) as u8)
}

/// The machine config the lab serves a node unless told otherwise: its
/// name and role, the static address of its DHCP reservation with the
/// gateway, and the lab's admin CA as `[api] client-ca`. Validated with
/// `cairn-config`.
pub fn default_config(
    lab: &str,
    name: &str,
    role: NodeRole,
    ip: Ipv4Addr,
    admin_ca_pem: &str,
) -> Result<String, LabError> {
    let text = format!(
        "# Machine config of {name} in QEMU lab {lab}, generated by the lab.\n\
         \n\
         [node]\n\
         name = \"{name}\"\n\
         role = \"{role}\"\n\
         addresses = [\"{ip}/{PREFIX}\"]\n\
         gateway = \"{GATEWAY}\"\n\
         \n\
         [api]\n\
         client-ca = \"\"\"\n{}\n\"\"\"\n",
        admin_ca_pem.trim()
    );
    MachineConfig::parse(&text, &format!("{name}.toml")).map_err(|e| LabError::Config {
        node: name.to_owned(),
        message: e.to_string(),
    })?;
    Ok(text)
}

/// One node of a running lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabNode {
    pub name: String,
    /// 1-based.
    pub index: usize,
    pub role: NodeRole,
    pub mac: String,
    pub ip: Ipv4Addr,
    /// Its tap in the lab namespace.
    pub tap: String,
    /// Guest port → forwarded address on the host's loopback.
    pub forwards: BTreeMap<u16, SocketAddr>,
    pub cidata: bool,
    pub disk: bool,
    pub serial_log: PathBuf,
}

impl LabNode {
    /// The host address forwarded to the node API (port 50000).
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.forwards.get(&API_PORT).copied()
    }

    /// The fingerprint of the node API certificate the console announced
    /// last (`sha256:<hex>`).
    pub fn api_fingerprint(&self) -> Option<String> {
        console::api_fingerprint(&console::read_lossy(&self.serial_log))
    }

    /// The maintenance key the console announced last.
    pub fn maintenance_key(&self) -> Option<String> {
        console::maintenance_key(&console::read_lossy(&self.serial_log))
    }

    /// The last `lines` console lines.
    pub fn console_tail(&self, lines: usize) -> String {
        console::tail(&self.serial_log, lines)
    }
}

/// `state.json`: what the lab consists of, for the CLI and for cleaning up
/// after a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    pub name: String,
    pub dir: PathBuf,
    pub netns: String,
    pub image: PathBuf,
    pub boot: BootMode,
    pub gateway: Ipv4Addr,
    /// `http://10.5.0.1:8080` (inside the namespace).
    pub http_url: String,
    pub admin: AdminPaths,
    /// The daemon that keeps the lab alive (`bootstrap qemu daemon`), if any.
    pub daemon_pid: Option<u32>,
    pub dnsmasq_pid: Option<u32>,
    pub nodes: Vec<LabNode>,
    /// Node name → QEMU pid of the running nodes.
    pub qemu_pids: BTreeMap<String, u32>,
    /// The cluster the lab forms, if any.
    #[serde(default)]
    pub cluster: Option<LabCluster>,
}

impl LabState {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("state.json")
    }

    /// Reads `<dir>/state.json`.
    pub fn load(dir: &Path) -> Result<Self, LabError> {
        let path = Self::path(dir);
        let text = std::fs::read_to_string(&path).map_err(|e| LabError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| {
            LabError::io(
                &path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })
    }

    fn save(&self) -> Result<(), LabError> {
        let path = Self::path(&self.dir);
        let temporary = self.dir.join(".state.json.tmp");
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        std::fs::write(&temporary, text + "\n").map_err(|e| LabError::io(&temporary, e))?;
        std::fs::rename(&temporary, &path).map_err(|e| LabError::io(&path, e))
    }

    pub fn node(&self, name: &str) -> Result<&LabNode, LabError> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| unknown_node(&self.name, name, &self.nodes))
    }

    /// Whether QEMU of `node` is alive (by the recorded pid).
    pub fn is_running(&self, node: &str) -> bool {
        self.qemu_pids
            .get(node)
            .is_some_and(|pid| procs::alive(*pid))
    }
}

fn unknown_node(lab: &str, node: &str, nodes: &[LabNode]) -> LabError {
    LabError::UnknownNode {
        lab: lab.to_owned(),
        node: node.to_owned(),
        known: nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// What [`cleanup`] found and removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cleanup {
    pub killed: Vec<procs::LabProcess>,
    pub netns_removed: bool,
    pub dir_removed: bool,
}

impl Cleanup {
    pub fn is_empty(&self) -> bool {
        self.killed.is_empty() && !self.netns_removed && !self.dir_removed
    }
}

/// Removes everything of lab `name` under `root`, running or left over
/// from a crash: every process whose command line mentions the lab
/// directory (the daemon, QEMU, dnsmasq), the namespace, the directory.
/// Does not need state.json.
pub fn cleanup(root: &Path, name: &str) -> Result<Cleanup, LabError> {
    validate_name(name)?;
    let dir = lab_dir(root, name);
    let killed = procs::kill_all(&dir, Duration::from_secs(10));
    let ns = netns_name(name);
    let netns_removed = netns::exists(&ns);
    netns::delete(&ns)?;
    let dir_removed = dir.exists();
    if dir_removed {
        std::fs::remove_dir_all(&dir).map_err(|e| LabError::io(&dir, e))?;
    }
    let _ = std::fs::remove_file(control::daemon_log(root, name));
    Ok(Cleanup {
        killed,
        netns_removed,
        dir_removed,
    })
}

/// A running lab; dropping it tears everything down.
#[derive(Debug)]
pub struct Lab {
    spec: LabSpec,
    state: LabState,
    admin: AdminCredentials,
    content: Arc<RwLock<http::Content>>,
    vms: BTreeMap<String, Vm>,
    /// When each node's VM was last started.
    started: BTreeMap<String, std::time::Instant>,
    forwards: Vec<Forward>,
    http: Option<http::HttpServer>,
    dnsmasq: Option<dnsmasq::Dnsmasq>,
    torn_down: bool,
}

impl Lab {
    /// Builds the lab: namespace, bridge, taps, admin credentials, HTTP
    /// server, dnsmasq, forwards, state.json; then boots every node if
    /// `spec.start_nodes`. On error, whatever was built is removed again.
    pub fn up(spec: LabSpec) -> Result<Lab, LabError> {
        validate_name(&spec.name)?;
        if spec.nodes.is_empty() || spec.nodes.len() > 89 {
            return Err(LabError::Config {
                node: "(all)".into(),
                message: format!("a lab has 1 to 89 nodes, not {}", spec.nodes.len()),
            });
        }
        let dir = lab_dir(&spec.root, &spec.name);
        if spec.clean_leftovers {
            let cleaned = cleanup(&spec.root, &spec.name)?;
            if !cleaned.is_empty() {
                tracing::info!(lab = %spec.name, ?cleaned, "removed leftovers of an earlier run");
            }
        }
        std::fs::create_dir_all(dir.join("configs")).map_err(|e| LabError::io(&dir, e))?;
        let mut lab = match Self::prepare(spec, dir.clone()) {
            Ok(lab) => lab,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        lab.state.save()?;
        lab.build_network()?;
        if lab.spec.start_nodes {
            let names: Vec<String> = lab.state.nodes.iter().map(|n| n.name.clone()).collect();
            for name in names {
                lab.start(&name)?;
            }
        }
        Ok(lab)
    }

    /// Admin credentials, node identities and configs: nothing running yet.
    fn prepare(spec: LabSpec, dir: PathBuf) -> Result<Lab, LabError> {
        let netns = netns_name(&spec.name);
        let http_url = format!("http://{GATEWAY}:{HTTP_PORT}");
        let admin = AdminCredentials::generate(&spec.name, &dir)?;
        let nodes: Vec<LabNode> = spec
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| LabNode {
                name: node.name.clone(),
                index: i + 1,
                role: node.role,
                mac: node_mac(&spec.name, i + 1),
                ip: node_ip(i + 1),
                tap: format!("tap{}", i + 1),
                forwards: BTreeMap::new(),
                cidata: node.cidata || spec.boot == BootMode::Uefi,
                disk: node.disk || spec.boot == BootMode::Uefi,
                serial_log: dir.join(format!("{}.serial.log", node.name)),
            })
            .collect();
        let mut served = Vec::new();
        for (index, (node, node_spec)) in nodes.iter().zip(&spec.nodes).enumerate() {
            let config = match (&node_spec.config, &spec.cluster) {
                (Some(text), _) => Some(text.clone()),
                (None, None) => Some(default_config(
                    &spec.name,
                    &node.name,
                    node.role,
                    node.ip,
                    &admin.ca_pem,
                )?),
                // The first node initialises the cluster; the others are
                // served their `[join]` once it exists (`cluster::form`).
                (None, Some(cluster)) if index == 0 => Some(
                    default_config(&spec.name, &node.name, node.role, node.ip, &admin.ca_pem)?
                        + &cluster.init_section(),
                ),
                (None, Some(_)) => None,
            };
            served.push(http::ServedNode {
                name: node.name.clone(),
                mac: node.mac.clone(),
                config,
            });
        }
        let content = Arc::new(RwLock::new(http::Content {
            image: spec.image.clone(),
            base_url: http_url.clone(),
            nodes: served,
        }));
        let state = LabState {
            name: spec.name.clone(),
            dir: dir.clone(),
            netns: netns.clone(),
            image: spec.image.clone(),
            boot: spec.boot,
            gateway: GATEWAY,
            http_url,
            admin: admin.paths.clone(),
            daemon_pid: None,
            dnsmasq_pid: None,
            nodes,
            qemu_pids: BTreeMap::new(),
            cluster: spec.cluster.clone(),
        };
        Ok(Lab {
            spec,
            state,
            admin,
            content,
            vms: BTreeMap::new(),
            started: BTreeMap::new(),
            forwards: Vec::new(),
            http: None,
            dnsmasq: None,
            torn_down: false,
        })
    }

    fn build_network(&mut self) -> Result<(), LabError> {
        let taps: Vec<String> = self.state.nodes.iter().map(|n| n.tap.clone()).collect();
        netns::create(&netns::Topology {
            netns: &self.state.netns,
            bridge: BRIDGE,
            gateway_cidr: &format!("{GATEWAY}/{PREFIX}"),
            taps: &taps,
        })?;
        for node in &self.state.nodes {
            self.write_config_file(&node.name)?;
        }
        let listener = netns::in_namespace(&self.state.netns, || {
            TcpListener::bind(SocketAddrV4::new(GATEWAY, HTTP_PORT))
        })
        .map_err(|source| LabError::Net {
            what: format!(
                "HTTP server on {GATEWAY}:{HTTP_PORT} in {}",
                self.state.netns
            ),
            source,
        })?;
        let http = http::HttpServer::start(
            listener,
            self.content.clone(),
            Some(self.state.dir.join("http.log")),
        )
        .map_err(|source| LabError::Net {
            what: "starting the HTTP server".into(),
            source,
        })?;
        self.http = Some(http);
        let [a, b, c, _] = GATEWAY.octets();
        let dnsmasq = dnsmasq::Dnsmasq::start(dnsmasq::DnsmasqConfig {
            netns: self.state.netns.clone(),
            bridge: BRIDGE.to_owned(),
            range: (
                format!("{a}.{b}.{c}.100"),
                format!("{a}.{b}.{c}.199"),
                "255.255.255.0".to_owned(),
            ),
            reservations: self
                .state
                .nodes
                .iter()
                .map(|node| dnsmasq::Reservation {
                    mac: node.mac.clone(),
                    ip: node.ip.to_string(),
                    name: node.name.clone(),
                    ipxe_url: format!("{}/pxe/{}/boot.ipxe", self.state.http_url, node.mac),
                })
                .collect(),
            dir: self.state.dir.clone(),
        })?;
        self.state.dnsmasq_pid = Some(dnsmasq.pid());
        self.dnsmasq = Some(dnsmasq);
        let ports = self.spec.forward_ports.clone();
        for index in 0..self.state.nodes.len() {
            for port in &ports {
                let target = SocketAddr::from((self.state.nodes[index].ip, *port));
                let forward = Forward::start(&self.state.netns, target, 0).map_err(|source| {
                    LabError::Net {
                        what: format!("forwarding 127.0.0.1 to {target}"),
                        source,
                    }
                })?;
                self.state.nodes[index]
                    .forwards
                    .insert(*port, forward.listen);
                self.forwards.push(forward);
            }
        }
        if let Some(cluster) = &mut self.state.cluster
            && let Some(vip) = cluster.vip
        {
            let target = SocketAddr::from((vip, KUBE_PORT));
            let forward =
                Forward::start(&self.state.netns, target, 0).map_err(|source| LabError::Net {
                    what: format!("forwarding 127.0.0.1 to {target}"),
                    source,
                })?;
            cluster.api_forward = Some(forward.listen);
            self.forwards.push(forward);
        }
        self.state.save()
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// The lab directory.
    pub fn dir(&self) -> &Path {
        &self.state.dir
    }

    /// The namespace, `cairn-NAME`.
    pub fn netns(&self) -> &str {
        &self.state.netns
    }

    /// What state.json holds.
    pub fn state(&self) -> &LabState {
        &self.state
    }

    /// The admin CA and client certificate.
    pub fn admin(&self) -> &AdminCredentials {
        &self.admin
    }

    pub fn nodes(&self) -> &[LabNode] {
        &self.state.nodes
    }

    pub fn node(&self, name: &str) -> Result<&LabNode, LabError> {
        self.state.node(name)
    }

    /// Records the pid of a daemon keeping this lab alive in state.json.
    pub fn set_daemon_pid(&mut self, pid: Option<u32>) -> Result<(), LabError> {
        self.state.daemon_pid = pid;
        self.state.save()
    }

    /// The HTTP server's requests so far (e.g. to see a node fetch its
    /// config).
    pub fn http_requests(&self) -> Vec<http::Request> {
        self.http.as_ref().map(|h| h.requests()).unwrap_or_default()
    }

    /// The current dnsmasq leases (`<expiry> <mac> <ip> <name> <client-id>`).
    pub fn dhcp_leases(&self) -> Vec<String> {
        self.dnsmasq
            .as_ref()
            .map(|d| d.leases())
            .unwrap_or_default()
    }

    /// The machine config served to `node` (None: answered with 404).
    pub fn config(&self, node: &str) -> Result<Option<String>, LabError> {
        self.node(node)?;
        let content = self.content.read().map_err(|_| poisoned())?;
        Ok(content
            .nodes
            .iter()
            .find(|n| n.name == node)
            .and_then(|n| n.config.clone()))
    }

    /// Serves `config` to `node` from now on (`None`: 404, so the node
    /// finds no config over HTTP). A NoCloud drive gets it at the next
    /// [`Lab::start`].
    pub fn set_config(&mut self, node: &str, config: Option<String>) -> Result<(), LabError> {
        self.node(node)?;
        {
            let mut content = self.content.write().map_err(|_| poisoned())?;
            if let Some(served) = content.nodes.iter_mut().find(|n| n.name == node) {
                served.config = config;
            }
        }
        self.write_config_file(node)
    }

    /// The config [`default_config`] generates for `node`.
    pub fn default_config(&self, node: &str) -> Result<String, LabError> {
        let node = self.node(node)?;
        default_config(
            &self.state.name,
            &node.name,
            node.role,
            node.ip,
            &self.admin.ca_pem,
        )
    }

    fn write_config_file(&self, node: &str) -> Result<(), LabError> {
        let path = self.state.dir.join("configs").join(format!("{node}.toml"));
        match self.config(node)? {
            Some(text) => std::fs::write(&path, text).map_err(|e| LabError::io(&path, e)),
            None => {
                let _ = std::fs::remove_file(&path);
                Ok(())
            }
        }
    }

    fn accel(&self) -> Accel {
        self.spec
            .accel
            .unwrap_or_else(|| Accel::detect(&self.spec.image.join("vmlinuz")))
    }

    /// Boots `node` (no-op if it runs). Its serial log is appended to.
    pub fn start(&mut self, name: &str) -> Result<(), LabError> {
        if self.is_running(name)? {
            return Ok(());
        }
        let node = self.node(name)?.clone();
        let vm_error = |source| LabError::Vm {
            node: name.to_owned(),
            source: Box::new(source),
        };
        let image = &self.spec.image;
        let dir = &self.state.dir;
        let mut drives = Vec::new();
        if node.disk {
            let overlay = dir.join(format!("{name}.disk.qcow2"));
            if !overlay.is_file() {
                crate::vm::create_overlay(&image.join("disk.qcow2"), &overlay, Some(DISK_SIZE))
                    .map_err(vm_error)?;
            }
            drives.push(Drive {
                path: overlay,
                format: "qcow2",
                read_only: false,
            });
        }
        if node.cidata {
            let path = dir.join(format!("{name}.cidata.img"));
            let config = self.config(name)?.unwrap_or_default();
            cidata::write(&path, &config, name)?;
            drives.push(Drive {
                path,
                format: "raw",
                read_only: false,
            });
        }
        let boot = match self.spec.boot {
            BootMode::Kernel => {
                let cmdline_path = image.join("cmdline");
                let cmdline = std::fs::read_to_string(&cmdline_path)
                    .map_err(|e| LabError::io(&cmdline_path, e))?;
                Boot::Kernel {
                    kernel: image.join("vmlinuz"),
                    initrd: image.join("initramfs.cpio.zst"),
                    cmdline: format!(
                        "{} cairn.config={}/config/${{mac}}",
                        cmdline.trim(),
                        self.state.http_url
                    ),
                }
            }
            BootMode::Uefi => Boot::UefiDrives,
            BootMode::Pxe => Boot::Network,
        };
        let mut config = VmConfig::new(name, boot, self.accel(), dir.clone());
        config.memory_mib = self.spec.memory_mib;
        config.cpus = self.spec.cpus;
        config.drives = drives;
        config.nic = Some(Nic {
            tap: node.tap.clone(),
            mac: node.mac.clone(),
        });
        config.netns = Some(self.state.netns.clone());
        config.no_reboot = false;
        config.append_serial = true;
        let vm = Vm::start(config).map_err(vm_error)?;
        self.state.qemu_pids.insert(name.to_owned(), vm.pid());
        self.vms.insert(name.to_owned(), vm);
        self.started
            .insert(name.to_owned(), std::time::Instant::now());
        self.state.save()
    }

    /// Whether `node`'s QEMU runs (false after a guest power-off or
    /// [`Lab::kill`]).
    pub fn is_running(&mut self, name: &str) -> Result<bool, LabError> {
        self.node(name)?;
        let running = self
            .vms
            .get_mut(name)
            .is_some_and(|vm| vm.try_exit().is_none());
        if !running && self.vms.remove(name).is_some() {
            self.state.qemu_pids.remove(name);
            self.state.save()?;
        }
        Ok(running)
    }

    /// Hard power-off of `node` (kills QEMU). Its disk overlay stays.
    /// Cuts `name` off the lab network (its tap down) or reconnects it;
    /// the VM keeps running.
    pub fn set_link(&mut self, name: &str, up: bool) -> Result<(), LabError> {
        let tap = self.node(name)?.tap.clone();
        netns::ip(&[
            "-n",
            &self.state.netns,
            "link",
            "set",
            &tap,
            if up { "up" } else { "down" },
        ])
    }

    pub fn kill(&mut self, name: &str) -> Result<(), LabError> {
        self.node(name)?;
        if let Some(mut vm) = self.vms.remove(name) {
            vm.kill();
        }
        self.state.qemu_pids.remove(name);
        self.state.save()
    }

    /// Waits for a console line of `node` containing `text` (a line from an
    /// earlier boot counts too; use [`Lab::console_mark`] and
    /// [`Lab::wait_for_console_after`] to skip those).
    pub fn wait_for_console(
        &mut self,
        node: &str,
        text: &str,
        timeout: Duration,
    ) -> Result<String, LabError> {
        self.wait_for_console_after(node, 0, text, timeout)
    }

    /// The current length of `node`'s console log.
    pub fn console_mark(&self, node: &str) -> Result<u64, LabError> {
        Ok(console::mark(&self.node(node)?.serial_log))
    }

    /// Waits for a console line containing `text` written after `mark`
    /// (from [`Lab::console_mark`]). Fails early when the VM stops.
    pub fn wait_for_console_after(
        &mut self,
        node: &str,
        mark: u64,
        text: &str,
        timeout: Duration,
    ) -> Result<String, LabError> {
        let log = self.node(node)?.serial_log.clone();
        let mut vm = self.vms.get_mut(node);
        console::wait_for_line_after(&log, mark, text, timeout, || match vm.as_mut() {
            Some(vm) => match vm.try_exit() {
                Some(status) => Err(format!("QEMU exited: {status}; {}", vm.qemu_messages())),
                None => Ok(()),
            },
            None => Err("the node is not running".into()),
        })
        .map_err(|e| LabError::Vm {
            node: node.to_owned(),
            source: Box::new(e.into()),
        })
    }

    /// Tears the lab down; errors are reported (dropping does the same and
    /// ignores them).
    pub fn down(mut self) -> Result<(), LabError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), LabError> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        for (_, mut vm) in std::mem::take(&mut self.vms) {
            vm.kill();
        }
        self.forwards.clear();
        self.http = None;
        self.dnsmasq = None;
        let dir = self.state.dir.clone();
        // Anything else that still names the lab directory (never the
        // daemon calling this: procs skips its own pid).
        procs::kill_all(&dir, Duration::from_secs(10));
        netns::delete(&self.state.netns)?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| LabError::io(&dir, e))?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            tracing::warn!("tearing down lab {}: {e}", self.state.name);
        }
    }
}

fn poisoned() -> LabError {
    LabError::Control("lab state lock poisoned".into())
}
