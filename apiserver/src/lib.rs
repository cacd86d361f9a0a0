//! Cairn's Kubernetes API server (being built).
//!
//! Layers, each a module with its own tests, the way kube-apiserver is
//! layered:
//!
//! - `storage`: the key-value store behind every object (etcd, and an
//!   in-memory store for tests) with revisions, optimistic concurrency and
//!   watches.
//! - `patch`: JSON patch, JSON merge patch and strategic merge patch with
//!   the Kubernetes merge keys.
//! - `auth`: who a request comes from (client certificates, bootstrap
//!   tokens, service-account tokens) and what RBAC lets them do.
//! - `http`: the HTTPS front: request parsing into Kubernetes request
//!   attributes, content negotiation, Status errors, watch streams,
//!   discovery.
pub mod auth;
pub mod http;
pub mod openapi;
pub mod patch;
pub mod registry;
pub mod resources;
pub mod server;
pub mod storage;
pub mod validation;
