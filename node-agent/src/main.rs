//! `node-agent`: Cairn's init process and node supervisor.
//!
//! In the initramfs it runs as `/init`; on the booted node it runs as PID 1.
//! The boot flow is not implemented yet: the binary only reports its version.

fn main() {
    println!("cairn node-agent {}", env!("CARGO_PKG_VERSION"));
}
