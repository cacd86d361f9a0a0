//! The create-only review resources: `SelfSubjectAccessReview` and
//! `SubjectAccessReview` (answered by the RBAC authorizer, what `kubectl
//! auth can-i` posts), `SelfSubjectReview` (`kubectl auth whoami`) and
//! `TokenReview`. Nothing is stored.

use k8s_openapi::api::authorization::v1::{SelfSubjectAccessReview, SubjectAccessReview};
use serde_json::{Value, json};

use super::Registry;
use crate::auth::{UserInfo, review};
use crate::http::{ApiError, ApiResponse, RequestContext, ResourceDescriptor, Verb};

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding the request body: {e}")))
}

fn user_json(user: &UserInfo) -> Value {
    let mut info = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    info
}

fn created(value: Value) -> ApiResponse {
    ApiResponse::Object {
        status: 201,
        object: value,
    }
}

pub(crate) async fn handle(
    registry: &Registry,
    user: &UserInfo,
    desc: &ResourceDescriptor,
    ctx: &RequestContext,
    body: &[u8],
) -> Result<ApiResponse, ApiError> {
    if ctx.attributes.verb != Verb::Create {
        return Err(ApiError::method_not_allowed(ctx.method.as_str()));
    }
    let invalid = |e: review::ReviewError| {
        ApiError::invalid(&desc.group, &desc.kind, "", Vec::new()).with_cause(
            "FieldValueRequired",
            &e.to_string(),
            "spec",
        )
    };
    match desc.plural.as_str() {
        "selfsubjectaccessreviews" => {
            let request: SelfSubjectAccessReview = decode(body)?;
            let answer = review::review_self(&registry.authorizer, user, request)
                .await
                .map_err(invalid)?;
            Ok(created(
                serde_json::to_value(answer).map_err(|e| ApiError::internal(e.to_string()))?,
            ))
        }
        "subjectaccessreviews" => {
            let request: SubjectAccessReview = decode(body)?;
            let answer = review::review_subject(&registry.authorizer, request)
                .await
                .map_err(invalid)?;
            Ok(created(
                serde_json::to_value(answer).map_err(|e| ApiError::internal(e.to_string()))?,
            ))
        }
        "selfsubjectreviews" => Ok(created(json!({
            "kind": "SelfSubjectReview",
            "apiVersion": desc.group_version(),
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": user_json(user)},
        }))),
        "tokenreviews" => {
            let request: Value = decode(body)?;
            let token = request
                .pointer("/spec/token")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let status = match registry
                .authenticator
                .authenticate_token(token, crate::auth::authn::unix_now())
                .await
            {
                Ok(reviewed) => json!({"authenticated": true, "user": user_json(&reviewed)}),
                Err(e) => json!({"authenticated": false, "error": e.to_string()}),
            };
            let mut answer = request;
            answer["status"] = status;
            answer["kind"] = json!("TokenReview");
            answer["apiVersion"] = json!(desc.group_version());
            Ok(created(answer))
        }
        _ => Err(ApiError::path_not_found()),
    }
}
