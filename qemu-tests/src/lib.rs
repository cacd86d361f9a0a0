//! Cairn's QEMU lab.
//!
//! - [`accel`]: picks the accelerator. KVM is used only when a short probe
//!   boot proves it works (on some hosts `/dev/kvm` exists but guests never
//!   boot); otherwise TCG.
//! - [`vm`]: starts one VM (direct kernel + initramfs, a disk through
//!   OVMF/UEFI, or iPXE from the network) with its serial console written to
//!   a log file, and stops it when dropped, so a failing test never leaks a
//!   QEMU process.
//! - [`console`]: waits for a line on a serial log with a deadline and
//!   reports the log's tail when it does not come; reads the node API
//!   fingerprint and maintenance key a node prints.
//! - [`lab`]: the network-namespace lab: bridge, taps, dnsmasq, an HTTP
//!   server for machine configs and PXE, loopback port forwards, admin
//!   credentials, several nodes, readiness through the node API, and the
//!   daemon behind `bootstrap qemu up`.

pub mod accel;
pub mod console;
pub mod lab;
pub mod vm;

pub use accel::Accel;
pub use console::{ConsoleError, wait_for_line};
pub use lab::{BootMode, Lab, LabError, LabNode, LabSpec, LabState, NodeSpec};
pub use vm::{Boot, Drive, Nic, Vm, VmConfig, VmError};
