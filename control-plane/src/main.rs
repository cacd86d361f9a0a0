//! `control-plane`: Cairn's multi-call control-plane binary
//! (apiserver | scheduler | controller-manager | vip).
//!
//! None of the components is implemented yet: the binary only reports its
//! version.

fn main() {
    println!("cairn control-plane {}", env!("CARGO_PKG_VERSION"));
}
