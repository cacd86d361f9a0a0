//! The Cairn node API: the HTTPS interface node-agent (PID 1 of every node)
//! serves on TCP :50000, and its client.
//!
//! # Design
//!
//! * [`protocol`]: the JSON types both sides share. They are
//!   `#[serde(default)]`, so older clients read newer answers and the other
//!   way round.
//! * [`ApiServer`]: a small synchronous HTTP/1.1 server over rustls. No
//!   async runtime: node-agent is a small static binary. One thread per
//!   connection, one request per connection (`Connection: close`),
//!   `Content-Length` bodies only. Limits: request line + headers 16 KiB
//!   (431), body 1 MiB (413), 30 s per socket read/write, 60 s for the whole
//!   request (408), 64 open connections (more are closed at once).
//!   Malformed requests get 400; a panicking handler gets 500; neither
//!   affects other connections.
//! * [`NodeService`]: what the node does. The server parses, authenticates,
//!   authorizes and routes, then calls one trait method; node-agent
//!   implements it and tests use a double. Errors are [`ApiError`]s that
//!   carry their HTTP status. Reboot and shutdown are called only after
//!   their 202 answer has been sent.
//! * [`NodeClient`]: a blocking client with typed methods, used by the
//!   QEMU lab and `bootstrap`.
//!
//! # Endpoints
//!
//! | request | answer | maintenance key |
//! |---|---|---|
//! | `GET /v1/status` | 200 [`NodeStatus`] | yes |
//! | `POST /v1/config` (TOML body) | 202 [`ApplyConfigResponse`], 422 with problems, 409 when not taking a config | yes |
//! | `GET /v1/logs/{service}?lines=N` | 200 text, 404 unknown service | no |
//! | `GET /v1/read?path=/abs` | 200 bytes (at most 1 MiB, else 413) | no |
//! | `POST /v1/reboot`, `POST /v1/shutdown` | 202 | no |
//! | `POST /v1/reset` ([`ResetRequest`]) | 202 [`ResetResponse`] after leaving the cluster; 409 when leaving is refused; then STATE is wiped and the node restarts | no |
//! | `POST /v1/containers/run` ([`RunContainerRequest`]) | 200 [`RunContainerResponse`] | no |
//!
//! Errors have the body [`ErrorBody`]: `{"error": "...", "problems": [...]}`.
//!
//! # Authentication
//!
//! **The server's identity** is a [`ServerIdentity`]: normally a
//! self-signed ECDSA P-256 certificate that node-agent creates on first
//! boot and keeps in `api.key` (0600) and `api.crt`
//! ([`ServerIdentity::load_or_generate`]). node-agent prints its
//! fingerprint, `sha256:<64 lowercase hex>` of the certificate DER, on the
//! console. Clients pin it, SSH-style ([`ServerTrust::Fingerprint`]): the
//! certificate must hash to exactly that value and must sign the handshake;
//! names and dates are not checked, so a node is reachable by any address
//! and with a wrong clock. A node with a CA-issued certificate can be
//! trusted through the CA instead ([`ServerTrust::CaPem`]).
//!
//! **Callers** are established per request, in this order:
//!
//! 1. **Client certificate** (mTLS). The server asks for one and verifies
//!    it against the client-CA set given to
//!    [`ApiServerHandle::set_client_ca`] (node-agent takes it from the
//!    machine config, later the cluster CA; it can be replaced at any time
//!    and applies to new connections). A certificate that does not chain to
//!    the set fails the TLS handshake. A valid one allows every endpoint;
//!    the caller is [`Caller::Certificate`] with the subject's CN and O.
//!    With no CA set, no certificate is asked for.
//! 2. **Maintenance key**: `Authorization: Bearer <key>`. node-agent
//!    generates a [`MaintenanceKey`] (e.g. `7K2QD-M9XPA-0RTVB-4HN3C`, 100
//!    random bits in Crockford base32) when it has no valid machine config,
//!    prints it on the console and passes it to
//!    [`ApiServerHandle::set_maintenance_key`]; it clears it once a config
//!    is applied. The key is compared in constant time and only opens
//!    `GET /v1/status` and `POST /v1/config` (other endpoints: 403). A wrong
//!    key, or any key while none is set: 401. TLS still protects it: the
//!    client pins the fingerprint printed next to the key.
//! 3. **Anonymous**: 401 for every request (with `WWW-Authenticate`).
//!
//! Certificate-less clients are allowed at the TLS layer (rustls'
//! `WebPkiClientVerifier` with unauthenticated clients allowed) so that the
//! maintenance key can work; the HTTP layer enforces the rules above. The
//! established [`Caller`] is passed to every [`NodeService`] method, and
//! [`NodeService::event`] sees every answered request and failed
//! connection, for logging.
//!
//! # Console contract
//!
//! node-agent prints on the console, for operators and for `bootstrap` and
//! the QEMU lab, which read them from there: the server certificate's
//! fingerprint ([`ServerIdentity::fingerprint`], `sha256:<64 hex>`) once
//! the API listens, and, while it waits for a machine config, the
//! maintenance key in its [`Display`](std::fmt::Display) form. The exact
//! wording of those lines belongs to node-agent; clients should find the
//! `sha256:` token and parse the key with [`MaintenanceKey`]'s `FromStr`.

mod client;
mod http;
mod identity;
mod key;
pub mod protocol;
mod server;

pub use client::{ClientError, Credentials, NodeClient, ServerTrust};
pub use identity::{
    CERT_FILE, GENERATED_COMMON_NAME, IdentityError, KEY_FILE, ServerIdentity,
    certificate_fingerprint,
};
pub use key::{MaintenanceKey, MaintenanceKeyError};
pub use protocol::{
    ApplyConfigResponse, BootTimings, ClusterStatus, ErrorBody, NodeState, NodeStatus,
    ResetRequest, ResetResponse, RunContainerRequest, RunContainerResponse, ServiceState,
    ServiceStatus, Versions,
};
pub use server::{
    ApiError, ApiEvent, ApiServer, ApiServerHandle, Caller, DEFAULT_LOG_LINES, MAX_LOG_LINES,
    MAX_READ_BYTES, NodeService, ServerError, ServerOptions,
};
