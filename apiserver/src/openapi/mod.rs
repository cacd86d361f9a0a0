//! Kubernetes type schemas and the OpenAPI documents kubectl downloads.
//!
//! # Data
//!
//! The upstream type definitions of Kubernetes v1.33, with every
//! `x-kubernetes-*` extension, are vendored in `apiserver/schemas/` (from
//! the PyPI package `kubernetes-validate`, see the README there) as a
//! gzipped JSON Schema document `{"$defs": {NAME: schema}}` and embedded
//! with `include_bytes!`. [`Definitions::embedded`] decompresses and parses
//! it once per process.
//!
//! # Lookup
//!
//! [`Definitions`] finds a type by name (`io.k8s.api.apps.v1.Deployment`)
//! or by GroupVersionKind (from `x-kubernetes-group-version-kind`).
//! [`Schema`] is a view of one node: it follows `$ref`, gives the field's
//! shape ([`FieldType`]), its properties, list item and map value schemas,
//! and the patch metadata ([`PatchMeta`]): `x-kubernetes-patch-strategy`
//! (`merge`, `replace`, `retainKeys` and combinations such as
//! `merge,retainKeys`), `x-kubernetes-patch-merge-key`,
//! `x-kubernetes-list-type` and `x-kubernetes-list-map-keys`. The patch
//! extensions sit on the property (next to its `$ref`), so a [`Schema`]
//! consults the raw node before the referenced definition.
//!
//! # Documents
//!
//! [`OpenApiDocuments`] renders, for a list of [`ResourceDescriptor`]s:
//!
//! - `/openapi/v3`: `{"paths": {"apis/apps/v1": {"serverRelativeURL":
//!   "/openapi/v3/apis/apps/v1?hash=H"}}}`, `H` being the sha256 of the
//!   group-version document, so it changes with the content (kubectl
//!   caches by URL);
//! - `/openapi/v3/<gv>`: an OpenAPI 3.0 document whose
//!   `components.schemas` hold the transitive `$ref` closure of the kinds
//!   served in that group-version (converted: references rewritten to
//!   `#/components/schemas/`, `["T", "null"]` reduced to `T`), and whose
//!   `paths` carry every operation with `x-kubernetes-action` and
//!   `x-kubernetes-group-version-kind`. PATCH operations list the four
//!   patch media types and the `fieldValidation`, `fieldManager`, `dryRun`
//!   and `force` parameters: kubectl 1.29+ takes strategic-merge metadata
//!   from the PATCH operation whose GVK matches, and skips client-side
//!   validation when the server advertises `fieldValidation`;
//! - `/openapi/v2`: a Swagger 2.0 JSON document of all definitions plus
//!   the same paths. kubectl 1.27/1.28 ask for the gnostic *protobuf* form
//!   (`Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`)
//!   and need a 200: they are answered an empty protobuf message (a valid
//!   empty Document) with the content type
//!   `application/com.github.proto-openapi.spec.v2.v1.0+protobuf`; then
//!   they use their compiled-in patch metadata. Other clients get the JSON.
//!
//! Documents are rendered once and kept; [`OpenApiDocuments::serve`] maps
//! a request path, query and Accept header to an answer.

mod convert;
mod definitions;
mod documents;

pub use definitions::{
    Definitions, EMBEDDED_KUBERNETES_VERSION, FieldType, GroupVersionKind, ListType, PatchMeta,
    PatchStrategy, Schema,
};
pub use documents::{
    OpenApiDocuments, OpenApiResponse, RenderedDocument, ResourceDescriptor, SubresourceDescriptor,
    V2_JSON_CONTENT_TYPE, V2_PROTOBUF_ACCEPT, V2_PROTOBUF_CONTENT_TYPE, V3_CONTENT_TYPE,
    group_version_path,
};

/// Errors loading definitions or rendering documents.
#[derive(Clone, Debug, thiserror::Error)]
pub enum OpenApiError {
    /// The embedded definitions could not be loaded.
    #[error("embedded Kubernetes definitions: {message}")]
    Embedded {
        /// What went wrong.
        message: String,
    },
    /// A definitions document is not valid JSON or has no definitions.
    #[error("parsing definitions: {message}")]
    Parse {
        /// What went wrong.
        message: String,
    },
    /// A served resource's kind has no definition.
    #[error("no definition declares x-kubernetes-group-version-kind {gvk}")]
    UnknownKind {
        /// The kind looked up.
        gvk: GroupVersionKind,
    },
    /// Serialising a document failed.
    #[error("rendering an OpenAPI document: {message}")]
    Render {
        /// What went wrong.
        message: String,
    },
}
