//! Cairn's control-plane components, behind the multi-call `control-plane`
//! binary.
//!
//! - `control-plane apiserver`: the Kubernetes API server
//!   ([`cairn_apiserver::server`]).
//! - `control-plane controller-manager` ([`controllers`]): the controllers
//!   that cluster formation needs (bootstrap signer, token cleaner, CSR
//!   approver and signer).
//! - `control-plane vip` ([`vip`]): the virtual IP in front of the
//!   apiservers, held by the leader of an etcd election.

pub mod controllers;
pub mod vip;
