//! `metav1.Status` errors: the reason, the HTTP code and the JSON shape
//! every Kubernetes client understands.

use serde_json::{Map, Value, json};

/// The `reason` field of a failed `Status`, each with its HTTP code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusReason {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    NotAcceptable,
    AlreadyExists,
    Conflict,
    Gone,
    Expired,
    Invalid,
    RequestEntityTooLarge,
    UnsupportedMediaType,
    TooManyRequests,
    InternalError,
    ServiceUnavailable,
    Timeout,
}

impl StatusReason {
    /// The value written into `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "BadRequest",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden => "Forbidden",
            Self::NotFound => "NotFound",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::NotAcceptable => "NotAcceptable",
            Self::AlreadyExists => "AlreadyExists",
            Self::Conflict => "Conflict",
            Self::Gone => "Gone",
            Self::Expired => "Expired",
            Self::Invalid => "Invalid",
            Self::RequestEntityTooLarge => "RequestEntityTooLarge",
            Self::UnsupportedMediaType => "UnsupportedMediaType",
            Self::TooManyRequests => "TooManyRequests",
            Self::InternalError => "InternalError",
            Self::ServiceUnavailable => "ServiceUnavailable",
            Self::Timeout => "Timeout",
        }
    }

    /// The HTTP status code kube-apiserver answers with for this reason.
    pub fn code(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::NotAcceptable => 406,
            Self::AlreadyExists | Self::Conflict => 409,
            Self::Gone | Self::Expired => 410,
            Self::Invalid => 422,
            Self::RequestEntityTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::TooManyRequests => 429,
            Self::InternalError => 500,
            Self::ServiceUnavailable => 503,
            Self::Timeout => 504,
        }
    }
}

/// One entry of `details.causes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCause {
    /// For example `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`.
    pub reason: String,
    pub message: String,
    /// A JSON path such as `metadata.name` or `spec.replicas`.
    pub field: String,
}

/// A failed request as Kubernetes reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason:?} ({code}): {message}")]
pub struct ApiError {
    pub reason: StatusReason,
    /// Usually `reason.code()`; Timeout and a few others vary.
    pub code: u16,
    pub message: String,
    /// `details` (boxed: errors travel in `Result`s and should stay small).
    pub details: Box<StatusDetails>,
}

/// `details` of a Status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusDetails {
    /// `details.name`, `details.group`, `details.kind`.
    pub name: Option<String>,
    pub group: Option<String>,
    pub kind: Option<String>,
    pub causes: Vec<StatusCause>,
    /// `details.retryAfterSeconds`.
    pub retry_after_seconds: Option<u32>,
}

impl ApiError {
    pub fn new(reason: StatusReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            code: reason.code(),
            message: message.into(),
            details: Box::default(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusReason::BadRequest, message)
    }

    /// `<resource>[.<group>] "<name>" not found`, as kube-apiserver words it.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            StatusReason::NotFound,
            format!("{} \"{name}\" not found", qualified(group, resource)),
        )
        .with_details(name, group, resource)
    }

    /// The answer to a path nothing serves.
    pub fn path_not_found() -> Self {
        Self::new(
            StatusReason::NotFound,
            "the server could not find the requested resource",
        )
    }

    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            StatusReason::AlreadyExists,
            format!("{} \"{name}\" already exists", qualified(group, resource)),
        )
        .with_details(name, group, resource)
    }

    pub fn conflict(group: &str, resource: &str, name: &str, why: &str) -> Self {
        Self::new(
            StatusReason::Conflict,
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                qualified(group, resource)
            ),
        )
        .with_details(name, group, resource)
    }

    /// 422 with one cause per field, the message listing them as kubectl prints it.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<StatusCause>) -> Self {
        let listed: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        let message = match listed.len() {
            0 => format!("{kind} \"{name}\" is invalid"),
            1 => format!("{kind} \"{name}\" is invalid: {}", listed[0]),
            _ => format!("{kind} \"{name}\" is invalid: [{}]", listed.join(", ")),
        };
        let mut err = Self::new(StatusReason::Invalid, message).with_details(name, group, kind);
        err.details.causes = causes;
        err
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusReason::Forbidden, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusReason::Unauthorized, "Unauthorized")
    }

    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            StatusReason::MethodNotAllowed,
            format!("the server does not allow this method on the requested resource ({method})"),
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusReason::RequestEntityTooLarge,
            format!("the request is too large: limit is {limit} bytes"),
        )
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            StatusReason::UnsupportedMediaType,
            format!(
                "the body of the request was in an unknown format ({content_type}) - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf"
            ),
        )
    }

    /// A watch or list from a revision that is gone: reason Expired, code 410.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(StatusReason::Expired, message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(StatusReason::Gone, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusReason::InternalError,
            format!("Internal error occurred: {}", message.into()),
        )
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusReason::ServiceUnavailable, message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(StatusReason::Timeout, message)
    }

    /// Sets `details.name`, `details.group` and `details.kind` (kube-apiserver
    /// puts the resource there for NotFound/AlreadyExists and the kind for Invalid).
    pub fn with_details(mut self, name: &str, group: &str, kind: &str) -> Self {
        self.details.name = Some(name.to_owned());
        self.details.group = Some(group.to_owned());
        self.details.kind = Some(kind.to_owned());
        self
    }

    pub fn with_cause(mut self, reason: &str, message: &str, field: &str) -> Self {
        self.details.causes.push(StatusCause {
            reason: reason.to_owned(),
            message: message.to_owned(),
            field: field.to_owned(),
        });
        self
    }

    /// The `metav1.Status` object.
    pub fn to_status(&self) -> Value {
        let mut details = Map::new();
        let d = &self.details;
        for (key, value) in [("name", &d.name), ("group", &d.group), ("kind", &d.kind)] {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                details.insert(key.to_owned(), json!(value));
            }
        }
        if !d.causes.is_empty() {
            let causes: Vec<Value> = d
                .causes
                .iter()
                .map(|c| {
                    let mut cause = Map::new();
                    cause.insert("reason".into(), json!(c.reason));
                    cause.insert("message".into(), json!(c.message));
                    if !c.field.is_empty() {
                        cause.insert("field".into(), json!(c.field));
                    }
                    Value::Object(cause)
                })
                .collect();
            details.insert("causes".into(), Value::Array(causes));
        }
        if let Some(seconds) = d.retry_after_seconds {
            details.insert("retryAfterSeconds".into(), json!(seconds));
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason.as_str(),
            "code": self.code,
        });
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

/// The `Status` kube-apiserver answers a successful delete of a
/// collection (or of an object whose kind has no body to return) with.
pub fn success_status() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
}

fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_shape() {
        let status = ApiError::not_found("apps", "deployments", "web").to_status();
        assert_eq!(
            status,
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "deployments.apps \"web\" not found", "reason": "NotFound",
                "details": {"name": "web", "group": "apps", "kind": "deployments"}, "code": 404
            })
        );
    }

    #[test]
    fn invalid_lists_causes() {
        let err = ApiError::invalid(
            "",
            "ConfigMap",
            "x",
            vec![StatusCause {
                reason: "FieldValueRequired".into(),
                message: "Required value".into(),
                field: "data".into(),
            }],
        );
        assert_eq!(err.code, 422);
        let status = err.to_status();
        assert_eq!(
            status["message"],
            "ConfigMap \"x\" is invalid: data: Required value"
        );
        assert_eq!(status["details"]["causes"][0]["field"], "data");
        assert_eq!(status["details"]["kind"], "ConfigMap");
        assert!(status["details"].get("group").is_none());
    }

    #[test]
    fn codes() {
        for (reason, code) in [
            (StatusReason::AlreadyExists, 409),
            (StatusReason::Conflict, 409),
            (StatusReason::Expired, 410),
            (StatusReason::RequestEntityTooLarge, 413),
            (StatusReason::UnsupportedMediaType, 415),
            (StatusReason::MethodNotAllowed, 405),
            (StatusReason::Timeout, 504),
            (StatusReason::ServiceUnavailable, 503),
        ] {
            assert_eq!(reason.code(), code);
            assert_eq!(ApiError::new(reason, "m").to_status()["code"], code);
        }
    }
}
