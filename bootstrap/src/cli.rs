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
