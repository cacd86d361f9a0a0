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
