//! Getting the builder's inputs onto local disk, verified.
//!
//! Everything fetched lands in a content-addressed [`cache::Cache`] under
//! `~/.cache/cairn` (blobs named by their sha256). An input only enters the
//! cache after its digest has been checked, so a failed or tampered
//! download can never poison later builds.
//!
//! - [`apt`] resolves Debian packages and their dependency closure with
//!   apt itself, in an isolated state directory (the host's own apt state is
//!   never touched), so apt's signature checks of the index apply; or takes
//!   packages from a directory of `.deb` files.
//! - [`url`] downloads pinned URL artifacts with retries and progress bars.

pub mod apt;
pub mod cache;
pub mod url;

pub use cache::{Cache, CacheError};
