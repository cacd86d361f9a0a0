//! `bootstrap token ...`

use std::io::Write;

use cairn_pki::BootstrapToken;

use crate::cli::TokenCommand;
use crate::error::BootstrapError;

pub fn run(command: TokenCommand, out: &mut dyn Write) -> Result<(), BootstrapError> {
    match command {
        TokenCommand::Generate => writeln!(out, "{}", BootstrapToken::generate())?,
    }
    Ok(())
}
