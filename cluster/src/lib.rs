//! Cluster formation for Cairn nodes and the `bootstrap` CLI.
//!
//! Everything a node needs to form or join a cluster through the Kubernetes
//! API, synchronous so that node-agent (PID 1, no async runtime) and the CLI
//! share it:
//!
//! - [`client`]: a small blocking HTTPS client for the Kubernetes API
//!   (kubeconfig, client certificates, bearer tokens, CA trust).
//! - [`jws`]: the detached HS256 JWS that the bootstrap signer puts into
//!   `cluster-info` and joiners verify with their token.
//! - [`discovery`]: kubeadm's token discovery of the cluster CA and API
//!   address (signature, CA pin, then a verified re-read).
//! - [`tls_bootstrap`]: the node's client certificate through a
//!   CertificateSigningRequest made with the bootstrap token.
//! - [`node`]: Node registration, the node Lease and Ready conditions, as
//!   kubelet keeps them.

pub mod client;
pub mod discovery;
pub mod duration;
pub mod jws;
pub mod node;
pub mod tls_bootstrap;
pub mod token;
