use std::process::ExitCode;

use clap::Parser as _;
use kbwatch::cli::{Cli, cancel_on_signals};

fn main() -> ExitCode {
    // Both ring and aws-lc may be compiled in through dependencies: choose once, before any TLS use.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("building the tokio runtime at start-up");
    runtime.block_on(async { cli.run(cancel_on_signals()).await })
}
