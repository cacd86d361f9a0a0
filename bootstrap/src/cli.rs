//! Command-line definitions. Flag names, defaults and meanings follow
//! kubeadm so its users can carry their habits over.

use std::net::IpAddr;
use std::path::PathBuf;

use cairn_pki::layout::{DEFAULT_API_PORT, DEFAULT_CERT_DIR, DEFAULT_SERVICE_CIDR};
use cairn_pki::{Cidr, ControlPlaneEndpoint, DnsDomain, KeyType, NodeName, SubjectAltName};
use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "bootstrap",
    version,
    about = "Create and manage Cairn Kubernetes clusters",
    long_about = "Create and manage Cairn Kubernetes clusters.\n\nThe verbs mirror kubeadm's: `certs` manages the cluster PKI under /etc/kubernetes/pki, `token` creates bootstrap tokens for joining nodes.\nSet RUST_LOG=debug for detailed logs."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process; boxing the larger variant would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Cluster certificates: generate, inspect, renew (kubeadm layout)
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Bootstrap tokens for joining nodes
    #[command(subcommand)]
    Token(TokenCommand),
    /// Build and inspect node images from TOML profiles
    #[command(subcommand)]
    Image(ImageCommand),
    /// Run Cairn nodes in QEMU (KVM when it works, TCG otherwise)
    #[command(subcommand)]
    Qemu(QemuCommand),
    /// Make a node waiting in maintenance mode the first control plane of a
    /// new cluster (kubeadm init).
    ///
    /// Renders a machine config from the flags and checks it with the same
    /// rules the node applies. Then either prints it (--print-config),
    /// writes it (--config-out), or applies it to a node in maintenance mode
    /// (--node, --maintenance-key and --fingerprint, all shown on the
    /// node's console). The node then forms the cluster by itself: PKI,
    /// etcd, apiserver, controller manager, bootstrap token.
    ///
    /// The bootstrap token (and, with --upload-certs, the certificate key) is
    /// generated here unless given, and printed with the join commands for
    /// the other nodes. The CA pin (--discovery-token-ca-cert-hash) only
    /// exists once the node created its CA: the node prints it on its
    /// console as "join workers with: ...".
    Init(InitArgs),
    /// Make a node waiting in maintenance mode join an existing cluster
    /// (kubeadm join).
    ///
    /// First runs token discovery against ENDPOINT from here: reads
    /// cluster-info, checks the CA pin and the token's signature, so a wrong
    /// pin or an unknown token is refused before anything is written or
    /// applied. Then renders a machine config with [node] and [join] (and
    /// [cluster.vip] for a control plane with --vip) and prints, writes or
    /// applies it like `bootstrap init`. The node then joins by itself.
    Join(JoinArgs),
    /// Tear a node down (kubeadm reset, talosctl reset): it leaves the
    /// cluster, wipes its STATE partition and reboots.
    ///
    /// Graceful (the default): the VIP manager stops and releases the VIP,
    /// the Node object is deleted, and a control plane leaves etcd, which
    /// is refused (nothing changes) when the remaining members could lose
    /// quorum. Then STATE (machine config, PKI, etcd data, machine-id) is
    /// wiped and the node reboots; it comes back in maintenance mode, or
    /// with the config its cairn.config= URL, cidata drive or image gives.
    /// Authenticates with a client certificate the node trusts: the
    /// cluster's admin kubeconfig, or --client-cert/--client-key issued by
    /// the config's [api] client-ca.
    Reset(ResetArgs),
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// The node's API, HOST[:PORT] (port 50000 unless given)
    #[arg(long, value_name = "HOST[:PORT]")]
    pub node: String,
    /// The node API certificate's fingerprint, as its console shows it
    /// (sha256:<64 hex>)
    #[arg(long, value_name = "SHA256", value_parser = parse_fingerprint)]
    pub fingerprint: String,
    /// A kubeconfig whose client certificate the node trusts, e.g. the
    /// cluster's admin.conf
    #[arg(long, value_name = "FILE", conflicts_with_all = ["client_cert", "client_key"],
          required_unless_present = "client_cert")]
    pub kubeconfig: Option<PathBuf>,
    /// A client certificate (PEM) issued by the node's [api] client-ca or
    /// the cluster CA
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The private key (PEM) of --client-cert
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Leave the cluster first (VIP, Node object, etcd membership); with
    /// false the node is wiped as it stands
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub graceful: bool,
    /// Power off after the wipe instead of rebooting
    #[arg(long)]
    pub poweroff: bool,
}

#[derive(Debug, Subcommand)]
pub enum QemuCommand {
    /// Boot one VM from a built image and show its serial console until it
    /// powers off
    Boot(QemuBootArgs),
    /// Start a lab: build the image (cached), boot the nodes on a private
    /// network, form a Kubernetes cluster and wait until `kubectl get
    /// nodes` lists every node (with --no-cluster: until each runs
    /// containerd).
    ///
    /// node-1 initialises the cluster from its machine config (etcd,
    /// apiserver, controller manager; with --vip the apiservers answer at
    /// 10.5.0.10); the other nodes are served a [join] config with the
    /// bootstrap token and the CA pin once node-1 is up. `bootstrap qemu
    /// kubeconfig --name NAME` prints the admin kubeconfig's path.
    ///
    /// The lab lives in the network namespace cairn-NAME (bridge br0,
    /// gateway 10.5.0.1/24, node-1 at 10.5.0.11, node-2 at .12, ...) with
    /// dnsmasq for DHCP/PXE and an HTTP server serving each node its machine
    /// config. Nothing is added to the host's network: each node's API
    /// (:50000) and apiserver (:6443) are forwarded from 127.0.0.1. A
    /// detached daemon keeps the lab running after this command returns;
    /// `bootstrap qemu down --name NAME` removes everything. Leftovers of a
    /// crashed lab of the same name are removed first. Needs root.
    Up(QemuUpArgs),
    /// Show each node of a lab: address, VM, node state and services
    Status(QemuStatusArgs),
    /// Print a node's serial console
    Console(QemuConsoleArgs),
    /// Hard power-off of a node (its disk, if any, is kept)
    Kill(QemuNodeArgs),
    /// Boot a node that is not running
    Start(QemuNodeArgs),
    /// Stop a lab and remove its namespace, processes and files
    Down(QemuLabArgs),
    /// Call a node's API with the lab's admin certificate
    Api(QemuApiArgs),
    /// Print the path of the lab cluster's admin kubeconfig (last line),
    /// usable from the host: `kubectl --kubeconfig "$(bootstrap qemu
    /// kubeconfig --name NAME | tail -1)" get nodes`
    Kubeconfig(QemuLabArgs),
    /// Run a lab in the foreground (started by `up`)
    #[command(hide = true)]
    Daemon(QemuDaemonArgs),
}

#[derive(Debug, Args)]
pub struct QemuBootArgs {
    /// A directory written by `image build`
    #[arg(long, value_name = "DIR")]
    pub image: PathBuf,
    /// Boot disk.qcow2 through UEFI firmware (OVMF) instead of loading
    /// vmlinuz + initramfs directly (the PXE path)
    #[arg(long)]
    pub uefi: bool,
    /// Memory in MiB
    #[arg(long, default_value_t = 1024)]
    pub memory: u32,
    /// Give up after this many seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub timeout: u64,
    /// Where the serial log and disk overlay go [default: a temporary directory]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// How lab nodes boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QemuBootMode {
    /// vmlinuz + initramfs loaded by QEMU; config from
    /// cairn.config=http://10.5.0.1:8080/config/${mac}
    Kernel,
    /// disk.qcow2 (overlay) through OVMF; config from a NoCloud cidata drive
    Uefi,
    /// iPXE from DHCP; boot script, kernel and initramfs over HTTP
    Pxe,
}

#[derive(Debug, Clone, Args)]
pub struct QemuLabArgs {
    /// The lab's name (a-z, 0-9, -; up to 20 characters)
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Where lab directories live
    #[arg(
        long,
        value_name = "DIR",
        env = "CAIRN_LAB_ROOT",
        default_value = "/run/cairn/lab"
    )]
    pub lab_root: PathBuf,
}

#[derive(Debug, Args)]
pub struct QemuUpArgs {
    #[command(flatten)]
    pub lab: QemuLabArgs,
    /// The image profile to build (cached under the cache directory)
    #[arg(long, value_name = "FILE", default_value = "profiles/default.toml")]
    pub profile: PathBuf,
    /// Use this already built image directory instead of building --profile
    #[arg(long, value_name = "DIR", conflicts_with = "profile")]
    pub image: Option<PathBuf>,
    /// Build cache [default: $CAIRN_CACHE or ~/.cache/cairn]
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Number of nodes: node-1 is the control-plane node, the others
    /// workers (same as --control-planes 1 --workers N-1)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=89), conflicts_with_all = ["control_planes", "workers"])]
    pub nodes: Option<u16>,
    /// Control-plane nodes (node-1 ... node-N): node-1 initialises the
    /// cluster, the others join it as control planes (own etcd member,
    /// apiserver, controller manager and VIP manager)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=9))]
    pub control_planes: u16,
    /// Worker nodes after the control-plane nodes
    #[arg(long, value_name = "M", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=88))]
    pub workers: u16,
    /// Put a virtual IP (10.5.0.10) in front of the apiservers and make it
    /// the control-plane endpoint
    #[arg(long)]
    pub vip: bool,
    /// Do not form a Kubernetes cluster, only boot the nodes (every node a
    /// worker waiting for a join config)
    #[arg(long)]
    pub no_cluster: bool,
    /// Memory per node in MiB
    #[arg(long, value_name = "MiB", default_value_t = 2048)]
    pub memory: u32,
    /// How nodes boot
    #[arg(long, value_enum, default_value = "kernel")]
    pub boot: QemuBootMode,
    /// Boot kernel and PXE nodes without a disk: STATE (config, machine-id,
    /// containerd's images) lives in memory and is lost on reboot. UEFI
    /// nodes always boot from their disk.
    #[arg(long)]
    pub diskless: bool,
    /// Give up waiting for the nodes after this many seconds (the lab keeps
    /// running so you can look at it)
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    pub timeout: u64,
}

/// Output formats of `qemu status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusOutput {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct QemuStatusArgs {
    #[command(flatten)]
    pub lab: QemuLabArgs,
    /// Output format
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: StatusOutput,
}

#[derive(Debug, Args)]
pub struct QemuNodeArgs {
    #[command(flatten)]
    pub lab: QemuLabArgs,
    /// The node, e.g. node-1
    #[arg(value_name = "NODE")]
    pub node: String,
}

#[derive(Debug, Args)]
pub struct QemuConsoleArgs {
    #[command(flatten)]
    pub node: QemuNodeArgs,
    /// Keep printing new console output until interrupted
    #[arg(long, short = 'f')]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct QemuApiArgs {
    #[command(flatten)]
    pub node: QemuNodeArgs,
    #[command(subcommand)]
    pub call: QemuApiCall,
}

#[derive(Debug, Subcommand)]
pub enum QemuApiCall {
    /// GET /v1/status, printed as JSON
    Status,
    /// The last lines of a service's log
    Logs {
        /// e.g. containerd
        service: String,
        #[arg(long, default_value_t = 200)]
        lines: usize,
    },
    /// A file from the node (at most 1 MiB)
    Read {
        /// Absolute path on the node
        path: String,
    },
    /// Run a container from an image the node has, print its output
    Run {
        /// Image reference
        image: String,
        /// Command and arguments
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
        /// Kill it after this many seconds
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Apply a machine config file (with the maintenance key from the
    /// console when the node has no config yet)
    Apply {
        /// The machine config (TOML)
        file: PathBuf,
    },
    /// Reboot the node
    Reboot,
    /// Power the node off
    Shutdown,
    /// Reset the node: leave the cluster, wipe STATE, reboot (see
    /// `bootstrap reset`)
    Reset {
        /// Wipe without leaving the cluster first
        #[arg(long)]
        no_graceful: bool,
    },
}

#[derive(Debug, Args)]
pub struct QemuDaemonArgs {
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub state_dir: PathBuf,
    #[arg(long)]
    pub image: PathBuf,
    #[arg(long)]
    pub nodes: u16,
    /// Form a cluster with this many control-plane nodes (0: no cluster).
    #[arg(long, default_value_t = 0)]
    pub control_planes: u16,
    #[arg(long)]
    pub vip: bool,
    #[arg(long)]
    pub memory: u32,
    #[arg(long, value_enum)]
    pub boot: QemuBootMode,
    #[arg(long)]
    pub diskless: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build every output of a profile into a directory.
    ///
    /// Outputs: vmlinuz, initramfs.cpio.zst, rootfs.squashfs, cmdline,
    /// cairn.efi, disk.raw, disk.qcow2, boot.ipxe, manifest.json,
    /// sbom.spdx.json. They are written to a temporary directory and moved
    /// into place only when the whole build succeeded. Set SOURCE_DATE_EPOCH
    /// for byte-identical rebuilds.
    Build(ImageBuildArgs),
    /// Print the fully resolved profile (after `extends`)
    Show(ImageShowArgs),
    /// Show what a built image contains: outputs, packages, sizes, files
    Inspect(ImageInspectArgs),
}

#[derive(Debug, Args)]
pub struct ImageBuildArgs {
    /// The profile to build
    #[arg(long, value_name = "FILE")]
    pub profile: PathBuf,
    /// Output directory (replaced as a whole when the build succeeds)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Download cache [default: $CAIRN_CACHE or ~/.cache/cairn]
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Parallel jobs for compression [default: number of CPUs]
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Take Debian packages from this directory of .deb files instead of apt
    #[arg(long, value_name = "DIR")]
    pub debs: Option<PathBuf>,
    /// Take Cairn's binaries from this directory instead of building them
    #[arg(long, value_name = "DIR")]
    pub binaries: Option<PathBuf>,
    /// Refresh apt's package lists even if they are recent
    #[arg(long)]
    pub refresh: bool,
    /// Rebuild every artifact even when an identical one is cached
    #[arg(long)]
    pub no_reuse: bool,
}

#[derive(Debug, Args)]
pub struct ImageShowArgs {
    /// The profile to resolve
    #[arg(long, value_name = "FILE")]
    pub profile: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImageInspectArgs {
    /// A directory written by `image build`
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Also list every file of the root filesystem
    #[arg(long)]
    pub files: bool,
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Generate the PKI and kubeconfigs of a control-plane node.
    ///
    /// Missing material is created; existing material is reused: an existing
    /// CA signs new leaves, and a leaf whose identity no longer matches the
    /// flags (for example a new --apiserver-cert-extra-sans entry) is
    /// reissued, with the reason printed. Nothing is written unless the whole
    /// run succeeds.
    Generate(GenerateArgs),
    /// Print the CA pin joining nodes verify (--discovery-token-ca-cert-hash)
    CaHash(CertDirArgs),
    /// Show when every certificate and kubeconfig expires
    CheckExpiration(DirsArgs),
    /// Reissue certificates with a new validity, keeping CN, O and SANs
    Renew(RenewArgs),
    /// Print a new random certificate key (64 hex digits) for --upload-certs
    CertificateKey,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a new random bootstrap token ([a-z0-9]{6}.[a-z0-9]{16})
    Generate,
    /// Create a bootstrap token on the cluster and print it.
    ///
    /// The token is stored as the Secret kube-system/bootstrap-token-<id>
    /// (type bootstrap.kubernetes.io/token), exactly as kubeadm stores it.
    /// Without TOKEN a random one is generated. An id that already exists
    /// is refused.
    Create(TokenCreateArgs),
    /// List the cluster's bootstrap tokens (kubeadm's table)
    List(TokenListArgs),
    /// Delete bootstrap tokens, given by id or as whole tokens
    Delete(TokenDeleteArgs),
}

#[derive(Debug, Clone, Args)]
pub struct TokenKubeconfigArgs {
    /// The kubeconfig to talk to the cluster with [default: the first entry
    /// of $KUBECONFIG, else /etc/kubernetes/admin.conf]
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
}

impl TokenKubeconfigArgs {
    /// kubeadm's lookup: the flag, else `$KUBECONFIG` (its first entry when
    /// it lists several files), else the admin kubeconfig of the node.
    pub fn kubeconfig_path(&self) -> PathBuf {
        crate::commands::token::kubeconfig_path(
            self.kubeconfig.as_deref(),
            std::env::var_os("KUBECONFIG").as_deref(),
        )
    }
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// The token to create ([a-z0-9]{6}.[a-z0-9]{16}) [default: a random one]
    #[arg(value_name = "TOKEN")]
    pub token: Option<cairn_pki::BootstrapToken>,
    /// How long the token is valid (Go duration: 24h0m0s, 90m, 2h30m); 0
    /// never expires
    #[arg(long, value_name = "DURATION", default_value = "24h0m0s")]
    pub ttl: crate::commands::token::GoDuration,
    /// A human-friendly description of what the token is for
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// What the token may be used for
    #[arg(
        long,
        value_name = "USAGE,...",
        value_enum,
        value_delimiter = ',',
        default_value = "signing,authentication"
    )]
    pub usages: Vec<crate::commands::token::TokenUsage>,
    /// Extra groups the token authenticates as (each
    /// system:bootstrappers:...); only with the authentication usage
    /// [default: system:bootstrappers:kubeadm:default-node-token]
    #[arg(long, value_name = "GROUP,...", value_delimiter = ',')]
    pub groups: Option<Vec<crate::commands::token::TokenGroup>>,
    /// Print the whole `bootstrap join` command instead of only the token
    #[arg(long)]
    pub print_join_command: bool,
    #[command(flatten)]
    pub kubeconfig: TokenKubeconfigArgs,
}

#[derive(Debug, Args)]
pub struct TokenListArgs {
    #[command(flatten)]
    pub kubeconfig: TokenKubeconfigArgs,
}

#[derive(Debug, Args)]
pub struct TokenDeleteArgs {
    /// Token ids ([a-z0-9]{6}) or whole tokens
    #[arg(value_name = "ID|TOKEN", required = true, num_args = 1..)]
    pub tokens: Vec<crate::commands::token::TokenRef>,
    #[command(flatten)]
    pub kubeconfig: TokenKubeconfigArgs,
}

#[derive(Debug, Args)]
pub struct CertDirArgs {
    /// Directory holding the PKI
    #[arg(long, value_name = "DIR", default_value = DEFAULT_CERT_DIR)]
    pub cert_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct DirsArgs {
    #[command(flatten)]
    pub cert: CertDirArgs,
    /// Directory holding the kubeconfig files [default: the parent of --cert-dir]
    #[arg(long, value_name = "DIR")]
    pub kubeconfig_dir: Option<PathBuf>,
}

impl DirsArgs {
    /// kubeadm keeps kubeconfigs in /etc/kubernetes, the parent of its
    /// cert dir; following the cert dir keeps a relocated PKI together.
    pub fn kubeconfig_dir(&self) -> PathBuf {
        self.kubeconfig_dir.clone().unwrap_or_else(|| {
            self.cert
                .cert_dir
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), PathBuf::from)
        })
    }
}

#[derive(Debug, Args)]
pub struct RenewArgs {
    /// What to renew: `all`, a certificate (apiserver, etcd-server, ...) or a kubeconfig (admin.conf, ...)
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Names or addresses the renewed apiserver certificate covers in
    /// addition to its current SANs (with `apiserver` or `all`): adds a SAN
    /// to a running control plane without re-initialising it
    #[arg(long, value_name = "SAN,...", value_delimiter = ',')]
    pub apiserver_cert_extra_sans: Vec<SubjectAltName>,
    /// Renew on a running Cairn control plane through its node API instead
    /// of in local directories: the SANs are added to the node's machine
    /// config, the node reissues its apiserver certificate and restarts
    /// its apiserver (HOST[:PORT], port 50000 unless given)
    #[arg(long, value_name = "HOST[:PORT]", requires_all = ["fingerprint", "kubeconfig"])]
    pub node: Option<String>,
    /// With --node: the node API certificate's fingerprint, as its console
    /// shows it
    #[arg(long, value_name = "SHA256", requires = "node", value_parser = parse_fingerprint)]
    pub fingerprint: Option<String>,
    /// With --node: a kubeconfig whose client certificate the node trusts
    /// (the cluster's admin.conf)
    #[arg(long, value_name = "FILE", requires = "node")]
    pub kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    pub dirs: DirsArgs,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub dirs: DirsArgs,
    /// Skip the kubeconfig files
    #[arg(long)]
    pub skip_kubeconfigs: bool,
    /// This node's name, used in the apiserver, etcd and kubelet certificates [default: the host name]
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<NodeName>,
    /// The IP address the apiserver advertises to cluster members
    #[arg(long, value_name = "IP", value_parser = parse_advertise_address)]
    pub apiserver_advertise_address: IpAddr,
    /// Port the apiserver listens on
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_API_PORT)]
    pub apiserver_bind_port: u16,
    /// Stable address of the control plane (a VIP or DNS name), `HOST[:PORT]`
    #[arg(long, value_name = "HOST[:PORT]")]
    pub control_plane_endpoint: Option<ControlPlaneEndpoint>,
    /// Service network; its first address goes into the apiserver certificate (comma-separated for dual-stack)
    #[arg(long, value_name = "CIDR", value_delimiter = ',', default_value = DEFAULT_SERVICE_CIDR)]
    pub service_cidr: Vec<Cidr>,
    /// Cluster DNS domain
    #[arg(long, value_name = "DOMAIN", default_value = "cluster.local")]
    pub service_dns_domain: DnsDomain,
    /// Extra subject alternative names for the apiserver certificate: IPs or DNS names, wildcards allowed
    #[arg(long, value_name = "SAN,...", value_delimiter = ',')]
    pub apiserver_cert_extra_sans: Vec<SubjectAltName>,
    /// Key algorithm for new keys
    #[arg(long, value_name = "TYPE", default_value = "ecdsa-p256", value_parser = clap::builder::PossibleValuesParser::new(KeyType::NAMES).map(|s| s.parse::<KeyType>().unwrap_or_default()))]
    pub key_type: KeyType,
}

fn parse_advertise_address(text: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = text
        .parse()
        .map_err(|_| format!("{text:?} is not an IP address"))?;
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(format!(
            "{ip} cannot be advertised; give the address other nodes reach this one on"
        ));
    }
    Ok(ip)
}

/// Where a rendered machine config goes: printed, written to a file,
/// applied to a node in maintenance mode (any combination, at least one).
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("destination").required(true).multiple(true).args(["print_config", "config_out", "node"]))]
pub struct ConfigDestinationArgs {
    /// Print the machine config (TOML) on stdout; it holds the token and the
    /// certificate key, so treat it as a secret
    #[arg(long)]
    pub print_config: bool,
    /// Write the machine config to FILE (mode 0600, replaced atomically),
    /// e.g. to serve it as a cairn.config= URL or a NoCloud drive
    #[arg(long, value_name = "FILE")]
    pub config_out: Option<PathBuf>,
    /// Apply the config to this node's API (it must be in maintenance mode,
    /// waiting for a config); port 50000 unless given
    #[arg(long, value_name = "HOST[:PORT]", requires_all = ["maintenance_key", "fingerprint"])]
    pub node: Option<String>,
    /// The node's one-time maintenance key, as its console shows it
    /// (e.g. 7K2QD-M9XPA-0RTVB-4HN3C)
    #[arg(long, value_name = "KEY", requires = "node")]
    pub maintenance_key: Option<cairn_node_api::MaintenanceKey>,
    /// The node API certificate's fingerprint, as its console shows it
    /// (sha256:<64 hex>); the connection is refused if the node presents
    /// another certificate
    #[arg(long, value_name = "SHA256", requires = "node", value_parser = parse_fingerprint)]
    pub fingerprint: Option<String>,
    /// PEM file with the CA whose client certificates may use the node API
    /// once the config is applied (the config's [api] client-ca); without
    /// it the maintenance key stops working after the config is applied and
    /// only the cluster CA is trusted
    #[arg(long, value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
}

fn parse_fingerprint(text: &str) -> Result<String, String> {
    let text = text.trim();
    let hex_part = text
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("{text:?} does not start with sha256: (expected sha256:<64 hex digits>, as the node's console shows it)"))?;
    if hex_part.len() != 64 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{text:?} is not sha256: followed by 64 hex digits, as the node's console shows it"
        ));
    }
    Ok(format!("sha256:{}", hex_part.to_ascii_lowercase()))
}

/// The node's identity and network (`[node]`).
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("addressing").required(true).args(["address", "dhcp"]))]
pub struct NodeNetworkArgs {
    /// The node's name: Node object and hostname (lower-case RFC 1123)
    #[arg(long, value_name = "NAME")]
    pub node_name: NodeName,
    /// Static address(es) of the node with prefix length, e.g.
    /// 10.5.0.11/24 (repeat or comma-separate for several)
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    pub address: Vec<cairn_config::InterfaceAddress>,
    /// Default gateway for static addressing; must lie in an --address subnet
    #[arg(long, value_name = "IP", requires = "address")]
    pub gateway: Option<IpAddr>,
    /// Get the address, gateway and DNS servers by DHCPv4
    #[arg(long)]
    pub dhcp: bool,
    /// The interface the address belongs to [default: the first Ethernet
    /// interface with a link]
    #[arg(long, value_name = "IF")]
    pub interface: Option<cairn_config::InterfaceName>,
}

/// `[cluster.vip]`: a virtual IP in front of the apiservers.
#[derive(Debug, Args)]
pub struct VipArgs {
    /// A virtual IP held by one healthy control plane at a time (a free
    /// address in the node subnet, no prefix), e.g. 10.5.0.10
    #[arg(long, value_name = "ADDRESS", requires = "vip_interface")]
    pub vip: Option<IpAddr>,
    /// The interface the VIP is added to and announced on, e.g. eth0
    #[arg(long, value_name = "IF", requires = "vip")]
    pub vip_interface: Option<cairn_config::InterfaceName>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub network: NodeNetworkArgs,
    /// The node's role; init always makes the first control plane (workers
    /// and further control planes use `bootstrap join`)
    #[arg(long, value_name = "ROLE", default_value = "control-plane", value_parser = parse_init_role)]
    pub role: cairn_config::NodeRole,
    /// Stable address of the control plane (the VIP or a DNS name),
    /// `HOST[:PORT]` [default: the VIP if set, else the node's address,
    /// port 6443]
    #[arg(long, value_name = "HOST[:PORT]")]
    pub control_plane_endpoint: Option<ControlPlaneEndpoint>,
    /// The network pod addresses come from [default: 10.244.0.0/16]
    #[arg(long, value_name = "CIDR")]
    pub pod_network_cidr: Option<Cidr>,
    /// The network ClusterIP Services get addresses from [default: 10.96.0.0/12]
    #[arg(long, value_name = "CIDR")]
    pub service_cidr: Option<Cidr>,
    /// The DNS domain of Services [default: cluster.local]
    #[arg(long, value_name = "DOMAIN")]
    pub service_dns_domain: Option<DnsDomain>,
    /// Extra IPs or DNS names for the apiserver certificate
    #[arg(long, value_name = "SAN,...", value_delimiter = ',')]
    pub apiserver_cert_extra_sans: Vec<SubjectAltName>,
    /// The bootstrap token the node creates ([a-z0-9]{6}.[a-z0-9]{16})
    /// [default: a random one, printed]
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<cairn_pki::BootstrapToken>,
    /// Upload the shared CA files encrypted with the certificate key, so
    /// that other control planes can join (kubeadm-certs Secret)
    #[arg(long)]
    pub upload_certs: bool,
    /// The key encrypting the uploaded CA files (64 hex digits)
    /// [default: a random one, printed]
    #[arg(long, value_name = "KEY", requires = "upload_certs")]
    pub certificate_key: Option<cairn_pki::CertificateKey>,
    /// Phases the node leaves out (kubeadm's names): preflight, certs and
    /// kubeconfig (together; the PKI must then be on the node already),
    /// wait-control-plane, upload-config, upload-certs, mark-control-plane,
    /// bootstrap-token, vip, show-join-command
    #[arg(long, value_name = "PHASE,...", value_delimiter = ',')]
    pub skip_phases: Vec<cairn_config::InitPhase>,
    #[command(flatten)]
    pub vip: VipArgs,
    #[command(flatten)]
    pub destination: ConfigDestinationArgs,
    /// With --node: a client certificate (PEM) issued by the --client-ca
    /// CA. init then waits until the node has created its cluster CA, reads
    /// it through the node API and prints the join commands with the real
    /// --discovery-token-ca-cert-hash
    #[arg(long, value_name = "FILE", requires_all = ["client_key", "client_ca", "node"])]
    pub client_cert: Option<PathBuf>,
    /// The private key (PEM) of --client-cert
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// How long to wait for the node's cluster CA with --client-cert
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub wait_timeout: u64,
}

fn parse_init_role(text: &str) -> Result<cairn_config::NodeRole, String> {
    match text.parse::<cairn_config::NodeRole>() {
        Ok(cairn_config::NodeRole::ControlPlane) => Ok(cairn_config::NodeRole::ControlPlane),
        Ok(cairn_config::NodeRole::Worker) => Err(
            "init makes the first control plane of a new cluster; a worker joins one with `bootstrap join`"
                .to_owned(),
        ),
        Err(e) => Err(format!("{e}; init only takes control-plane")),
    }
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The cluster's control-plane endpoint, `HOST[:PORT]` (port 6443 when
    /// omitted), as printed by `bootstrap init`
    #[arg(value_name = "ENDPOINT")]
    pub endpoint: ControlPlaneEndpoint,
    /// A bootstrap token of the cluster (`bootstrap token create` on a
    /// control plane)
    #[arg(long, value_name = "TOKEN")]
    pub token: cairn_pki::BootstrapToken,
    /// The cluster CA's pin, sha256:<64 hex> (on a control plane: `bootstrap
    /// certs ca-hash`; the first node's console prints it)
    #[arg(long, value_name = "sha256:HASH")]
    pub discovery_token_ca_cert_hash: cairn_config::CaCertHash,
    /// Join as a control plane (own etcd member, apiserver, controller
    /// manager); needs --certificate-key
    #[arg(long)]
    pub control_plane: bool,
    /// The certificate key the first control plane uploaded the shared CA
    /// files with (64 hex digits); control planes only
    #[arg(long, value_name = "KEY")]
    pub certificate_key: Option<cairn_pki::CertificateKey>,
    /// Do not run token discovery from here. Use it when ENDPOINT is not
    /// reachable from where this command runs (e.g. a VIP only reachable
    /// inside the node network); the node still checks the pin and the
    /// token itself before it sends anything, and shows a refusal in its
    /// status and on its console.
    #[arg(long)]
    pub skip_discovery: bool,
    #[command(flatten)]
    pub network: NodeNetworkArgs,
    #[command(flatten)]
    pub vip: VipArgs,
    #[command(flatten)]
    pub destination: ConfigDestinationArgs,
}
