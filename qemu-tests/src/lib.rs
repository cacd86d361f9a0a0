//! Cairn QEMU lab.
//!
//! Will hold the network-namespace lab (bridge + one tap per VM), the QEMU
//! launcher with KVM/TCG detection and the serial console capture used by the
//! scenario tests. Nothing is implemented yet.
