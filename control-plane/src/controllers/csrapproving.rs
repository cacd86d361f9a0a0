//! `csrapproving`: auto-approves kubelet client certificates the way
//! Kubernetes' `csrapproving` controller does.
//!
//! Only `kubernetes.io/kube-apiserver-client-kubelet` requests are
//! considered, and only while they have no certificate and neither
//! Approved nor Denied. The PKCS#10 must pass the kubelet-client rules
//! ([`super::csr::validate_kubelet_client`]). The requester recorded by the
//! apiserver (`spec.username`, `uid`, `groups`, `extra`) must then be
//! allowed to `create` `certificatesigningrequests/selfnodeclient` (a
//! renewal: the requester is the node named in the CN) or
//! `certificatesigningrequests/nodeclient` (a new node, e.g. a bootstrap
//! token in `system:bootstrappers:kubeadm:default-node-token`); the
//! question is asked with a `SubjectAccessReview`, so RBAC stays the only
//! place that decides. Approval adds the Approved condition through the
//! `/approval` subresource. Requests that fail are left pending and the
//! reason is logged once per request.

use std::collections::BTreeSet;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

use time::OffsetDateTime;

use super::api::{ApiError, ClusterApi, Watched};
use super::csr::{
    CONDITION_APPROVED, CONDITION_DENIED, CsrParseError, CsrRuleError, SIGNER_KUBELET_CLIENT,
    append_condition, has_condition, is_issued, name_of, parse_csr, validate_kubelet_client,
};
use super::runner::Controller;

pub const APPROVAL_REASON: &str = "AutoApproved";

/// The RBAC permission that lets a requester's CSR be auto-approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeClientPermission {
    /// Renewal: the requester is the node the certificate names.
    SelfNodeClient,
    /// A new node's first client certificate.
    NodeClient,
}

impl NodeClientPermission {
    pub fn subresource(self) -> &'static str {
        match self {
            Self::SelfNodeClient => "selfnodeclient",
            Self::NodeClient => "nodeclient",
        }
    }

    /// Kubernetes' approval messages.
    pub fn message(self) -> &'static str {
        match self {
            Self::SelfNodeClient => {
                "Auto approving self kubelet client certificate after SubjectAccessReview."
            }
            Self::NodeClient => {
                "Auto approving kubelet client certificate after SubjectAccessReview."
            }
        }
    }
}

/// What the approver makes of one CSR before asking RBAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recognition {
    /// Another signer, already decided, or already issued: not touched.
    NotOurs,
    /// Ours, but the request cannot be approved; stays pending.
    Unparsable(CsrParseError),
    Invalid(CsrRuleError),
    /// The permissions to check, in order; the first one RBAC allows wins.
    Candidates(Vec<NodeClientPermission>),
}

/// Decides which permissions a CSR could be approved under (kube's
/// recognizers: self-node-client first, then node-client).
pub fn recognize(csr: &CertificateSigningRequest) -> Recognition {
    if csr.spec.signer_name != SIGNER_KUBELET_CLIENT
        || is_issued(csr)
        || has_condition(csr, CONDITION_APPROVED)
        || has_condition(csr, CONDITION_DENIED)
    {
        return Recognition::NotOurs;
    }
    let parsed = match parse_csr(&csr.spec.request.0) {
        Ok(parsed) => parsed,
        Err(e) => return Recognition::Unparsable(e),
    };
    let usages = csr.spec.usages.clone().unwrap_or_default();
    if let Err(e) = validate_kubelet_client(&parsed, &usages) {
        return Recognition::Invalid(e);
    }
    let mut candidates = Vec::new();
    if csr.spec.username.as_deref() == Some(parsed.common_name.as_str()) {
        candidates.push(NodeClientPermission::SelfNodeClient);
    }
    candidates.push(NodeClientPermission::NodeClient);
    Recognition::Candidates(candidates)
}

/// The SubjectAccessReview asking whether the CSR's requester may
/// `create certificatesigningrequests/<subresource>`.
pub fn access_review(
    csr: &CertificateSigningRequest,
    permission: NodeClientPermission,
) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: csr.spec.username.clone(),
            uid: csr.spec.uid.clone(),
            groups: csr.spec.groups.clone(),
            extra: csr.spec.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                group: Some("certificates.k8s.io".into()),
                resource: Some("certificatesigningrequests".into()),
                verb: Some("create".into()),
                subresource: Some(permission.subresource().into()),
                version: Some("*".into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    }
}

/// The controller. `reported` holds (CSR name, uid, reason) already
/// logged, so a pending request is explained once.
#[derive(Debug, Default)]
pub struct CsrApprover {
    reported: BTreeSet<(String, String, String)>,
}

impl CsrApprover {
    pub fn new() -> Self {
        Self::default()
    }

    fn report_once(&mut self, csr: &CertificateSigningRequest, reason: String) {
        let key = (
            name_of(csr).to_owned(),
            csr.metadata.uid.clone().unwrap_or_default(),
            reason.clone(),
        );
        if self.reported.insert(key) {
            tracing::info!(
                controller = "csrapproving",
                csr = name_of(csr),
                requester = csr.spec.username.as_deref().unwrap_or(""),
                "not approving: {reason}"
            );
        }
    }

    /// One pass over all CSRs.
    pub fn sync(&mut self, api: &dyn ClusterApi) -> Result<(), ApiError> {
        let mut first_error = None;
        let csrs = api.list_csrs()?;
        // Forget what was reported about requests that are gone, so the
        // set does not grow with every CSR ever seen.
        let present: BTreeSet<(String, String)> = csrs
            .iter()
            .map(|c| {
                (
                    name_of(c).to_owned(),
                    c.metadata.uid.clone().unwrap_or_default(),
                )
            })
            .collect();
        self.reported
            .retain(|(name, uid, _)| present.contains(&(name.clone(), uid.clone())));
        for csr in csrs {
            if let Err(e) = self.handle(api, csr) {
                tracing::warn!(controller = "csrapproving", "{e}");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn handle(
        &mut self,
        api: &dyn ClusterApi,
        mut csr: CertificateSigningRequest,
    ) -> Result<(), ApiError> {
        let candidates = match recognize(&csr) {
            Recognition::NotOurs => return Ok(()),
            Recognition::Unparsable(e) => {
                self.report_once(&csr, e.to_string());
                return Ok(());
            }
            Recognition::Invalid(e) => {
                self.report_once(&csr, format!("not a valid kubelet client request: {e}"));
                return Ok(());
            }
            Recognition::Candidates(candidates) => candidates,
        };
        for permission in &candidates {
            let answer = api.create_subject_access_review(&access_review(&csr, *permission))?;
            let allowed = answer.status.as_ref().is_some_and(|s| s.allowed);
            if !allowed {
                continue;
            }
            append_condition(
                &mut csr,
                CONDITION_APPROVED,
                APPROVAL_REASON,
                permission.message(),
            );
            match api.replace_csr_approval(&csr) {
                Ok(_) => {
                    tracing::info!(
                        controller = "csrapproving",
                        csr = name_of(&csr),
                        requester = csr.spec.username.as_deref().unwrap_or(""),
                        permission = permission.subresource(),
                        "approved kubelet client certificate request"
                    );
                    return Ok(());
                }
                // Changed meanwhile (e.g. approved or denied by hand): the
                // next pass sees the new state.
                Err(e) if e.is_conflict() || e.is_not_found() => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        let tried: Vec<&str> = candidates.iter().map(|p| p.subresource()).collect();
        self.report_once(
            &csr,
            format!(
                "recognized as {tried:?} but SubjectAccessReview did not allow the requester to create certificatesigningrequests/{}",
                tried.join(" or certificatesigningrequests/")
            ),
        );
        Ok(())
    }
}

impl Controller for CsrApprover {
    fn name(&self) -> &'static str {
        "csrapproving"
    }

    fn watches(&self) -> &'static [Watched] {
        &[Watched::CertificateSigningRequests]
    }

    fn sync(
        &mut self,
        api: &dyn ClusterApi,
        _now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, ApiError> {
        CsrApprover::sync(self, api).map(|()| None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::csr::tests::{make_csr, usages};
    use k8s_openapi::ByteString;
    use k8s_openapi::api::certificates::v1::CertificateSigningRequestSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn csr(
        pem: String,
        signer: &str,
        username: &str,
        usage_list: &[&str],
    ) -> CertificateSigningRequest {
        CertificateSigningRequest {
            metadata: ObjectMeta {
                name: Some("node-csr".into()),
                ..ObjectMeta::default()
            },
            spec: CertificateSigningRequestSpec {
                request: ByteString(pem.into_bytes()),
                signer_name: signer.into(),
                username: Some(username.into()),
                groups: Some(vec!["system:bootstrappers".into()]),
                usages: Some(usages(usage_list)),
                ..CertificateSigningRequestSpec::default()
            },
            status: None,
        }
    }

    const CLIENT: &[&str] = &["digital signature", "key encipherment", "client auth"];

    #[test]
    fn new_node_is_checked_for_nodeclient() {
        let request = csr(
            make_csr("system:node:w1", &["system:nodes"], Vec::new()),
            SIGNER_KUBELET_CLIENT,
            "system:bootstrap:abcdef",
            CLIENT,
        );
        assert_eq!(
            recognize(&request),
            Recognition::Candidates(vec![NodeClientPermission::NodeClient])
        );
        let review = access_review(&request, NodeClientPermission::NodeClient);
        let attributes = review.spec.resource_attributes.expect("attributes");
        assert_eq!(attributes.subresource.as_deref(), Some("nodeclient"));
        assert_eq!(attributes.verb.as_deref(), Some("create"));
        assert_eq!(review.spec.user.as_deref(), Some("system:bootstrap:abcdef"));
    }

    #[test]
    fn renewal_tries_selfnodeclient_first() {
        let request = csr(
            make_csr("system:node:w1", &["system:nodes"], Vec::new()),
            SIGNER_KUBELET_CLIENT,
            "system:node:w1",
            CLIENT,
        );
        assert_eq!(
            recognize(&request),
            Recognition::Candidates(vec![
                NodeClientPermission::SelfNodeClient,
                NodeClientPermission::NodeClient
            ])
        );
    }

    #[test]
    fn invalid_or_foreign_requests_are_not_candidates() {
        let wrong_org = csr(
            make_csr("system:node:w1", &["system:masters"], Vec::new()),
            SIGNER_KUBELET_CLIENT,
            "system:bootstrap:abcdef",
            CLIENT,
        );
        assert!(matches!(
            recognize(&wrong_org),
            Recognition::Invalid(CsrRuleError::Organization(_))
        ));
        let server_usage = csr(
            make_csr("system:node:w1", &["system:nodes"], Vec::new()),
            SIGNER_KUBELET_CLIENT,
            "system:bootstrap:abcdef",
            &["digital signature", "server auth"],
        );
        assert!(matches!(recognize(&server_usage), Recognition::Invalid(_)));
        let other_signer = csr(
            make_csr("system:node:w1", &["system:nodes"], Vec::new()),
            "example.com/signer",
            "system:bootstrap:abcdef",
            CLIENT,
        );
        assert_eq!(recognize(&other_signer), Recognition::NotOurs);
        let mut denied = csr(
            make_csr("system:node:w1", &["system:nodes"], Vec::new()),
            SIGNER_KUBELET_CLIENT,
            "system:bootstrap:abcdef",
            CLIENT,
        );
        append_condition(&mut denied, CONDITION_DENIED, "No", "no");
        assert_eq!(recognize(&denied), Recognition::NotOurs);
        let garbage = csr(
            "not pem".into(),
            SIGNER_KUBELET_CLIENT,
            "system:bootstrap:abcdef",
            CLIENT,
        );
        assert!(matches!(recognize(&garbage), Recognition::Unparsable(_)));
    }

    #[test]
    fn sync_approves_only_what_rbac_allows() {
        use crate::controllers::testing::FakeApi;
        let api = FakeApi::default();
        let mut allowed = csr(
            make_csr("system:node:w1", &["system:nodes"], Vec::new()),
            SIGNER_KUBELET_CLIENT,
            "system:bootstrap:abcdef",
            CLIENT,
        );
        allowed.metadata.name = Some("allowed".into());
        let mut refused = allowed.clone();
        refused.metadata.name = Some("refused".into());
        refused.spec.username = Some("system:bootstrap:zzzzzz".into());
        api.put_csr(allowed);
        api.put_csr(refused);
        api.allow("system:bootstrap:abcdef", "nodeclient");
        let mut approver = CsrApprover::new();
        approver.sync(&api).expect("sync");
        let approved = api.csr("allowed").expect("csr");
        assert!(has_condition(&approved, CONDITION_APPROVED));
        let condition = approved
            .status
            .and_then(|s| s.conditions)
            .and_then(|c| c.into_iter().next())
            .expect("condition");
        assert_eq!(condition.reason.as_deref(), Some(APPROVAL_REASON));
        assert_eq!(
            condition.message.as_deref(),
            Some(NodeClientPermission::NodeClient.message())
        );
        assert!(!has_condition(
            &api.csr("refused").expect("csr"),
            CONDITION_APPROVED
        ));
        // A second pass writes nothing more.
        approver.sync(&api).expect("sync");
        assert_eq!(api.write_counts(), (1, 0));
    }
}
