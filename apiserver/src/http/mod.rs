//! The HTTPS front of the apiserver.
//!
//! A request goes through these steps, each in its own module:
//!
//! 1. [`server`]: TLS (rustls with ring; client certificates requested,
//!    verified against the client CA when sent, but optional so token and
//!    anonymous clients connect), HTTP/2 or HTTP/1.1 by ALPN (hyper-util's
//!    auto builder), graceful shutdown.
//! 2. [`request`]: the path, method and query become
//!    [`RequestAttributes`] (kube-apiserver's RequestInfo: verb, group,
//!    version, namespace, resource, name, subresource) with typed
//!    [`QueryOptions`]; [`selector`] parses label and field selectors.
//! 3. The server answers `/version`, `/healthz`, `/livez`, `/readyz` and
//!    discovery itself ([`discovery`], built from the
//!    [`ResourceDescriptor`] table); any other resource path must name a
//!    descriptor and a verb it allows, else 404/405.
//! 4. [`negotiate`]: `Accept` picks JSON, a Table, PartialObjectMetadata
//!    or aggregated discovery; `Content-Type` tells how the body is
//!    encoded. Bodies over 3 MiB are refused (413). YAML and Kubernetes
//!    protobuf bodies ([`protobuf`], sent by kubectl 1.32+) are turned
//!    into JSON, so the handler only sees JSON and patch documents.
//! 5. The [`ApiHandler`] (the registry) gets a [`RequestContext`] and the
//!    body and returns an [`ApiResponse`]: an object, a list, a watch
//!    stream, raw bytes or an [`ApiError`].
//! 6. The server renders the answer as negotiated: [`table`] computes the
//!    columns `kubectl get` prints; [`watch`] writes events as
//!    newline-delimited JSON, flushed per event, until the timeout, the
//!    client leaving or shutdown. Errors are `metav1.Status` ([`status`]).
//!
//! Replies are always JSON (YAML only for clients that take nothing
//! else); kubectl accepts JSON answers to protobuf requests.

pub mod clock;
pub mod discovery;
pub mod negotiate;
pub mod protobuf;
pub mod request;
pub mod selector;
pub mod server;
pub mod status;
pub mod table;
pub mod watch;

pub use discovery::{
    Discovery, ResourceDescriptor, SubresourceDescriptor, VersionInfo, builtin_resources,
};
pub use negotiate::{BodyType, Output};
pub use request::{QueryOptions, RequestAttributes, Verb};
pub use selector::{FieldSelector, LabelSelector};
pub use server::{
    ApiHandler, ApiResponse, HealthCheck, HttpError, RequestContext, ServerConfig, TlsFiles,
    load_tls_config, serve,
};
pub use status::{ApiError, StatusCause, StatusDetails, StatusReason};
pub use watch::{WatchEvent, WatchEventType, WatchStream};
