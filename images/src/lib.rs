//! Cairn image builder library.
//!
//! Turns a TOML profile into bootable node images. The pipeline is
//! profile → fetch → verify → extract into a rootfs tree → squashfs →
//! initramfs → UKI / GPT disk / qcow2 → manifest and SBOM. Every stage is a
//! module with a typed input and output so it can be tested on its own, and
//! nothing here mounts a filesystem: all on-disk formats are written in user
//! space so the builder runs unprivileged.
//!
//! The builder itself is not implemented yet; this crate currently only
//! reserves its place in the workspace.
