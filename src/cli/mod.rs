//! Subcommands (DESIGN §6): the edge where config, database, clients and scans are wired together.

mod database;
mod demo;
mod escape;
mod probe;
mod report;
mod run;
mod scan;
mod sim;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};

pub use database::open_store;
pub use report::{ReportArgs, ReportFormat, ReportKind, render as render_report};

/// Tracks missing Windows security updates across a Defender for Endpoint fleet.
#[derive(Debug, Parser)]
#[command(name = "kbwatch", version, about)]
pub struct Cli {
    /// Configuration file (TOML). Env: KBWATCH_CONFIG. Keys are overridden by KBWATCH_<SECTION>__<KEY>.
    #[arg(long, global = true, env = "KBWATCH_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The daemon: migrate, then scan every tenant on its cron schedule; serve metrics and health.
    Run,
    /// One scan now, then exit (non-zero if a scan failed).
    Scan {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Apply database migrations.
    Migrate,
    /// Check the configuration, reporting every problem at once.
    Validate {
        /// Also connect to the database, get a token and list one device per tenant.
        #[arg(long)]
        online: bool,
    },
    /// Reports from the reporting views: a terminal table, CSV or JSON.
    Report(report::ReportArgs),
    /// Serve the simulated Defender API.
    Sim(sim::SimArgs),
    /// Private PostgreSQL + simulator + one scan + report: the first command to run.
    Demo(demo::DemoArgs),
}

impl Cli {
    /// Runs the command; the exit code says whether it succeeded.
    pub async fn run(self, cancel: CancellationToken) -> ExitCode {
        let result = match self.command {
            Command::Sim(args) => {
                crate::telemetry::init(None);
                sim::run(args, cancel).await
            }
            Command::Demo(args) => {
                crate::telemetry::init(None);
                demo::run(args, cancel).await
            }
            Command::Validate { online } => {
                crate::telemetry::init(None);
                validate::run(self.config.as_deref(), online).await
            }
            command => match load_config(self.config.as_deref(), purpose(&command)) {
                Ok(config) => match command {
                    Command::Run => run::run(config, cancel).await,
                    Command::Scan { tenant } => scan::run(config, tenant.as_deref(), cancel).await,
                    Command::Migrate => migrate(config).await,
                    Command::Report(args) => report::run(config, args).await,
                    _ => unreachable!("handled above"),
                },
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(code) => code,
            Err(e) => {
                // Once, on stderr like every log line: one JSON line for a log pipeline, or text
                // whose multi-line problem lists read as written (Display, not Debug). The chain
                // may carry API or database text: its controls are escaped, its lines kept.
                let chain = format!("{e:#}");
                tracing::error!(error = %escape::terminal_lines(&chain), "kbwatch stopped");
                ExitCode::FAILURE
            }
        }
    }
}

/// What `command` needs of the configuration: `migrate` and `report` only the database.
fn purpose(command: &Command) -> config::Purpose {
    match command {
        Command::Migrate | Command::Report(_) => config::Purpose::Database,
        _ => config::Purpose::Scan,
    }
}

/// Loads the file named by `--config` / `KBWATCH_CONFIG` for `purpose`, then starts logging as it
/// says.
pub fn load_config(
    path: Option<&std::path::Path>,
    purpose: config::Purpose,
) -> anyhow::Result<Config> {
    let loaded = path
        .context("no configuration: pass --config PATH or set KBWATCH_CONFIG")
        .and_then(|path| Ok(config::load_for(path, purpose)?));
    crate::telemetry::init(loaded.as_ref().ok().and_then(|c| c.log.format));
    loaded
}

async fn migrate(config: Config) -> anyhow::Result<ExitCode> {
    let db = open_store(&config).await?;
    db.store.migrate().await?;
    tracing::info!("Migrations applied");
    db.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Cancels on SIGTERM or SIGINT; a second signal exits at once.
pub fn cancel_on_signals() -> CancellationToken {
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler at start-up");
        let mut signals = 0;
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            signals += 1;
            if signals > 1 {
                eprintln!("second signal: exiting now");
                std::process::exit(130);
            }
            tracing::info!("Shutting down; send the signal again to exit at once");
            token.cancel();
        }
    });
    cancel
}
