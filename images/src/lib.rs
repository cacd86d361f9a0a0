//! Cairn image builder library.
//!
//! Turns a TOML profile into bootable node images. The pipeline is
//! profile → fetch → verify → extract into a rootfs tree → squashfs →
//! initramfs → UKI / GPT disk / qcow2 → manifest and SBOM. Every stage is a
//! module with a typed input and output so it can be tested on its own, and
//! nothing here mounts a filesystem: all on-disk formats are written in user
//! space so the builder runs unprivileged.
//!
//! Implemented so far:
//!
//! - [`profile`]: the profile model, `extends` merging, validation, rendering
//!   and digest;
//! - [`deb`]: reading and safely extracting Debian packages in pure Rust.

pub mod atomic;
pub mod build;
pub mod cpio;
pub mod deb;
pub mod fat;
pub mod fetch;
pub mod gpt;
pub mod gpt_grow;
pub mod kmod;
pub mod oci;
pub mod profile;
pub mod qcow2;
pub mod uki;
