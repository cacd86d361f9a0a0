//! One module per verb group.

pub mod certs;
pub mod image;
pub mod init;
pub mod join;
pub mod qemu;
pub mod reset;
pub mod token;
