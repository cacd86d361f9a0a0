//! Cairn's cluster PKI.
//!
//! Everything kubeadm's `certs` and `kubeconfig` phases produce, with the
//! same file names, subjects and extensions: three CAs (`ca`,
//! `front-proxy-ca`, `etcd/ca`), the leaves they sign, the service-account
//! key pair and the component kubeconfigs. On top of that: bootstrap tokens,
//! the certificate key that encrypts shared CA material for control-plane
//! joins, and the CA pin joiners verify.
//!
//! Design:
//! - [`types`] holds validated newtypes (CIDR, node name, SAN, endpoint), so
//!   bad input is rejected before anything is generated.
//! - [`layout`] describes the kubeadm layout and derives, from a
//!   [`ClusterPkiSpec`], the identity every certificate must carry.
//! - Operations ([`generate()`], [`renew()`], [`check_expiration()`]) are
//!   functions of the spec, the paths and the current time. They decide in
//!   memory, then write through one [`fileset::FileSet`]: every file or none.
//! - Existing material is reused: CAs are never replaced, and a leaf is
//!   reissued only when it no longer fits the request (subject, usage, SANs,
//!   issuer, key, expiry), with the reason in the [`Report`].
//! - Keys are ECDSA P-256 by default (first boot runs under emulation, where
//!   RSA generation is painfully slow); RSA-2048 is available.

pub mod cert;
pub mod certkey;
pub mod error;
pub mod expiration;
pub mod fileset;
pub mod generate;
pub mod key;
pub mod kubeconfig;
pub mod layout;
pub mod pin;
pub mod renew;
pub mod report;
pub mod store;
pub mod token;
pub mod types;

pub use certkey::{CertificateKey, SHARED_CA_FILES};
pub use error::PkiError;
pub use expiration::{ExpirationReport, check_expiration};
pub use generate::generate;
pub use key::{KeyType, PrivateKey};
pub use layout::{Authority, ClusterPkiSpec, KubeconfigFile, Leaf, PkiPaths};
pub use pin::{ca_cert_hash, parse_ca_cert_hash};
pub use renew::{RenewTarget, renew, renew_adding_apiserver_sans};
pub use report::{Action, Report};
pub use token::BootstrapToken;
pub use types::{Cidr, ControlPlaneEndpoint, DnsDomain, NodeName, SubjectAltName};
