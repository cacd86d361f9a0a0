//! `control-plane controller-manager`.

/// Flags of `control-plane controller-manager`.
#[derive(Debug, clap::Args)]
pub struct ControllerManagerArgs {}

/// Runs the controllers until `shutdown` resolves.
pub fn run(_args: &ControllerManagerArgs) -> Result<(), std::io::Error> {
    Err(std::io::Error::other("controller-manager is not implemented yet"))
}
