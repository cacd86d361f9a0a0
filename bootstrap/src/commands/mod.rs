//! One module per verb group.

pub mod certs;
pub mod image;
pub mod qemu;
pub mod token;
