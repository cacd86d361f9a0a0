//! `control-plane vip`.

/// Flags of `control-plane vip`.
#[derive(Debug, clap::Args)]
pub struct VipArgs {}

/// Runs the VIP manager until SIGTERM.
pub fn run(_args: &VipArgs) -> Result<(), std::io::Error> {
    Err(std::io::Error::other("vip is not implemented yet"))
}
