//! What can go wrong talking to the Kubernetes API, with enough context
//! (verb, URL, kind, the server's own words) to act on the message alone.

use std::io;

use serde::Deserialize;

/// Errors of [`KubeClient`](super::KubeClient).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server URL cannot be used.
    #[error("invalid API server URL {url:?}: {reason}")]
    InvalidUrl {
        /// What was given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A kubeconfig could not be read or lacks what the client needs.
    #[error("kubeconfig {origin}: {reason}")]
    Kubeconfig {
        /// The file path, or `<inline>`.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// The CA bundle is unusable.
    #[error("invalid server trust: {0}")]
    Trust(String),
    /// The client certificate, key or token is unusable.
    #[error("invalid client credentials: {0}")]
    Credentials(String),
    /// Name resolution or the TCP connect failed (or timed out).
    #[error("{method} {url}: cannot connect: {source}")]
    Connect {
        /// HTTP method.
        method: String,
        /// Full URL.
        url: String,
        /// The last connect error.
        source: io::Error,
    },
    /// The TLS handshake failed: untrusted server certificate, wrong name,
    /// client certificate refused.
    #[error("{method} {url}: TLS: {message}")]
    Tls {
        /// HTTP method.
        method: String,
        /// Full URL.
        url: String,
        /// rustls' description.
        message: String,
    },
    /// The connection broke, timed out, or the answer was not HTTP.
    #[error("{method} {url}: {source}")]
    Io {
        /// HTTP method.
        method: String,
        /// Full URL.
        url: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The API server answered with an error status.
    #[error("{method} {url}: {status} {reason}: {message}")]
    Api {
        /// HTTP method.
        method: String,
        /// Full URL.
        url: String,
        /// HTTP status code.
        status: u16,
        /// The Status `reason` (`NotFound`, `AlreadyExists`, `Conflict`,
        /// `Forbidden`, ...), or the HTTP reason phrase.
        reason: String,
        /// The Status `message`, or the start of the body.
        message: String,
    },
    /// The answer is not the expected kind.
    #[error("{method} {url}: cannot decode the answer as {kind}: {source}")]
    Decode {
        /// HTTP method.
        method: String,
        /// Full URL.
        url: String,
        /// The expected kind.
        kind: &'static str,
        /// serde's error.
        source: serde_json::Error,
    },
    /// An object could not be serialized.
    #[error("cannot encode {kind} as JSON: {source}")]
    Encode {
        /// The object's kind.
        kind: &'static str,
        /// serde's error.
        source: serde_json::Error,
    },
}

impl Error {
    /// The HTTP status of an [`Error::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The Status reason of an [`Error::Api`].
    pub fn reason(&self) -> Option<&str> {
        match self {
            Error::Api { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// 404: the object (or its namespace) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// 409 for a create whose name is taken.
    pub fn is_already_exists(&self) -> bool {
        self.status() == Some(409) && self.reason() == Some("AlreadyExists")
    }

    /// 409 for a write based on a stale resourceVersion.
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409) && self.reason() != Some("AlreadyExists")
    }

    /// 403: authenticated but not allowed.
    pub fn is_forbidden(&self) -> bool {
        self.status() == Some(403)
    }

    /// 401: the credentials were not accepted.
    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(401)
    }
}

/// The fields of a `meta/v1 Status` the client reports.
#[derive(Debug, Default, Deserialize)]
struct StatusBody {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

/// Longest body excerpt quoted when the answer is not a Status.
const EXCERPT: usize = 300;

/// Builds [`Error::Api`] from an error answer: the Status' reason and
/// message, or the HTTP reason phrase and the start of the body.
pub(crate) fn api_error(method: &str, url: &str, status: u16, body: &[u8]) -> Error {
    let parsed = serde_json::from_slice::<StatusBody>(body).unwrap_or_default();
    let reason = if parsed.reason.is_empty() {
        http_reason(status).to_owned()
    } else {
        parsed.reason
    };
    let message = if parsed.message.is_empty() {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        match text.char_indices().nth(EXCERPT) {
            Some((cut, _)) => format!("{}...", &text[..cut]),
            None if text.is_empty() => "(empty body)".to_owned(),
            None => text.to_owned(),
        }
    } else {
        parsed.message
    };
    Error::Api {
        method: method.to_owned(),
        url: url.to_owned(),
        status,
        reason,
        message,
    }
}

fn http_reason(status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bodies_give_reason_and_message() {
        let body = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
            "message":"configmaps \"x\" already exists","reason":"AlreadyExists",
            "details":{"name":"x","kind":"configmaps"},"code":409}"#;
        let err = api_error(
            "POST",
            "https://h/api/v1/namespaces/d/configmaps",
            409,
            body,
        );
        assert!(err.is_already_exists());
        assert!(!err.is_conflict());
        assert_eq!(
            err.to_string(),
            "POST https://h/api/v1/namespaces/d/configmaps: 409 AlreadyExists: configmaps \"x\" already exists"
        );
        let conflict = api_error(
            "PUT",
            "u",
            409,
            br#"{"kind":"Status","reason":"Conflict","message":"the object has been modified"}"#,
        );
        assert!(conflict.is_conflict());
        assert!(!conflict.is_already_exists());
    }

    #[test]
    fn other_bodies_fall_back_to_the_http_reason_and_an_excerpt() {
        let err = api_error("GET", "u", 404, b"404 page not found\n");
        assert!(err.is_not_found());
        assert_eq!(err.reason(), Some("NotFound"));
        assert!(
            err.to_string()
                .ends_with("404 NotFound: 404 page not found"),
            "{err}"
        );
        let long = "x".repeat(1000);
        let err = api_error("GET", "u", 500, long.as_bytes());
        assert!(
            err.to_string()
                .ends_with(&format!("{}...", "x".repeat(EXCERPT)))
        );
        let err = api_error("GET", "u", 503, b"");
        assert!(
            err.to_string()
                .ends_with("503 ServiceUnavailable: (empty body)")
        );
    }
}
