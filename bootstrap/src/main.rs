//! `bootstrap`: parses the command line and hands it to the library.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = cairn_bootstrap::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut stdout = std::io::stdout().lock();
    match cairn_bootstrap::run(cli, &mut stdout) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`bootstrap ... | head`) is the reader's choice, not
        // a failure.
        Err(cairn_bootstrap::BootstrapError::Output(e))
            if e.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            ExitCode::SUCCESS
        }
        Err(error) => {
            // The library's messages already carry their causes, so only
            // the top-level message is printed.
            let error = anyhow::Error::from(error);
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
