//! The `bootstrap` command-line tool, as a library.
//!
//! [`cli`] declares the command line (clap derive) and [`commands`] holds
//! one module per verb group. Every command writes its user-facing output to
//! a `Write` handed in by the caller, so tests drive commands exactly as the
//! binary does without spawning a process; `main.rs` only parses arguments,
//! sets up logging and maps errors to an exit status.

pub mod cli;
pub mod commands;
pub use cairn_config as config;
pub mod error;

pub use cli::Cli;
pub use error::BootstrapError;

use std::io::Write;

/// Runs a parsed command line.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<(), BootstrapError> {
    match cli.command {
        cli::Command::Certs(certs) => commands::certs::run(certs, out),
        cli::Command::Token(token) => commands::token::run(token, out),
        cli::Command::Image(image) => commands::image::run(image, out),
        cli::Command::Qemu(qemu) => commands::qemu::run(qemu, out),
        cli::Command::Init(init) => commands::init::run(init, out),
        cli::Command::Join(join) => commands::join::run(join, out),
        cli::Command::Reset(reset) => commands::reset::run(reset, out),
    }
}
