//! Access reviews: `SelfSubjectAccessReview` (what `kubectl auth can-i`
//! posts) and `SubjectAccessReview`, answered by the RBAC authorizer.

use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SelfSubjectAccessReview, SubjectAccessReview,
    SubjectAccessReviewStatus,
};

use super::UserInfo;
use super::rbac::{Attributes, Decision, RbacAuthorizer};

/// A review spec the server rejects with 422 Invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("exactly one of nonResourceAttributes or resourceAttributes must be specified")]
    AttributesRequired,
    #[error("at least one of user or group must be specified")]
    SubjectRequired,
}

fn attributes_from(
    user: UserInfo,
    resource: Option<&ResourceAttributes>,
    non_resource: Option<&NonResourceAttributes>,
) -> Result<Attributes, ReviewError> {
    match (resource, non_resource) {
        (Some(r), None) => {
            let text = |v: &Option<String>| v.clone().unwrap_or_default();
            Ok(Attributes::resource(
                user,
                text(&r.verb),
                text(&r.namespace),
                text(&r.group),
                text(&r.resource),
            )
            .with_subresource(text(&r.subresource))
            .with_name(text(&r.name)))
        }
        (None, Some(n)) => Ok(Attributes::non_resource(
            user,
            n.verb.clone().unwrap_or_default(),
            n.path.clone().unwrap_or_default(),
        )),
        _ => Err(ReviewError::AttributesRequired),
    }
}

/// The request attributes a SelfSubjectAccessReview asks about, for the
/// calling user.
pub fn self_review_attributes(
    user: &UserInfo,
    review: &SelfSubjectAccessReview,
) -> Result<Attributes, ReviewError> {
    attributes_from(
        user.clone(),
        review.spec.resource_attributes.as_ref(),
        review.spec.non_resource_attributes.as_ref(),
    )
}

/// The request attributes a SubjectAccessReview asks about, for the user
/// named in its spec.
pub fn review_attributes(review: &SubjectAccessReview) -> Result<Attributes, ReviewError> {
    let spec = &review.spec;
    let user = UserInfo {
        name: spec.user.clone().unwrap_or_default(),
        uid: spec.uid.clone().unwrap_or_default(),
        groups: spec.groups.clone().unwrap_or_default(),
        extra: spec.extra.clone().unwrap_or_default(),
    };
    if user.name.is_empty() && user.groups.is_empty() {
        return Err(ReviewError::SubjectRequired);
    }
    attributes_from(
        user,
        spec.resource_attributes.as_ref(),
        spec.non_resource_attributes.as_ref(),
    )
}

/// The status block for a decision (`denied` only when set, as the API
/// omits it otherwise).
pub fn status_from(decision: &Decision) -> SubjectAccessReviewStatus {
    SubjectAccessReviewStatus {
        allowed: decision.allowed,
        denied: decision.denied.then_some(true),
        reason: (!decision.reason.is_empty()).then(|| decision.reason.clone()),
        evaluation_error: decision.evaluation_error.clone(),
    }
}

/// Answers a SelfSubjectAccessReview: the same object with `status` set.
pub async fn review_self(
    authorizer: &RbacAuthorizer,
    user: &UserInfo,
    mut review: SelfSubjectAccessReview,
) -> Result<SelfSubjectAccessReview, ReviewError> {
    let attrs = self_review_attributes(user, &review)?;
    review.status = Some(status_from(&authorizer.authorize(&attrs).await));
    Ok(review)
}

/// Answers a SubjectAccessReview: the same object with `status` set.
pub async fn review_subject(
    authorizer: &RbacAuthorizer,
    mut review: SubjectAccessReview,
) -> Result<SubjectAccessReview, ReviewError> {
    let attrs = review_attributes(&review)?;
    review.status = Some(status_from(&authorizer.authorize(&attrs).await));
    Ok(review)
}
