//! Cairn's QEMU lab.
//!
//! - [`accel`]: picks the accelerator. KVM is used only when a short probe
//!   boot proves it works (on some hosts `/dev/kvm` exists but guests never
//!   boot); otherwise TCG.
//! - [`vm`]: starts one VM (direct kernel + initramfs, or a disk through
//!   OVMF/UEFI) with its serial console written to a log file, and stops it
//!   when dropped, so a failing test never leaks a QEMU process.
//! - [`console`]: waits for a line on a serial log with a deadline and
//!   reports the log's tail when it does not come.
//!
//! The network-namespace lab and multi-node scenarios build on these.

pub mod accel;
pub mod console;
pub mod vm;

pub use accel::Accel;
pub use console::{ConsoleError, wait_for_line};
pub use vm::{Boot, Vm, VmConfig, VmError};
