//! `kbwatch report`: the reporting views as terminal tables, CSV or JSON.
//!
//! Layout: this file parses the arguments and picks the query; `rows` says how each row type
//! looks in a terminal; `format` renders rows as a table, CSV (with the view's column names as
//! the header) or JSON (an array of objects keyed by the view's column names).

mod format;
mod rows;

use std::process::ExitCode;

use super::database::open_store;
use crate::config::Config;
use crate::store::Store;

pub use format::ReportFormat;

/// Which report to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportKind {
    /// Fleet totals per tenant (and, as a table, the latest scans).
    Summary,
    /// One row per current device, the most missing KBs first.
    Devices,
    /// One row per KB: devices missing it now, CVEs it addresses, remediations.
    Kbs,
    /// Fleet totals per tenant and UTC day.
    Trend,
    /// The latest scans, newest first.
    Runs,
}

/// `kbwatch report` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Which report.
    #[arg(value_enum, default_value = "summary")]
    pub kind: ReportKind,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: ReportFormat,
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// At most this many rows (devices, kbs, runs).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..))]
    pub limit: i64,
    /// Days of history, today included (trend).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(i32).range(1..=36600))]
    pub days: i32,
}

impl Default for ReportArgs {
    fn default() -> Self {
        Self {
            kind: ReportKind::Summary,
            format: ReportFormat::Table,
            tenant: None,
            limit: 50,
            days: 30,
        }
    }
}

/// Runs `kbwatch report`: prints the report on stdout.
pub async fn run(config: Config, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let db = open_store(&config).await?;
    let text = match migrate_if_needed(&db.store).await {
        Ok(()) => render(&db.store, &args).await,
        Err(e) => Err(e),
    };
    db.close().await;
    print!("{}", text?);
    Ok(ExitCode::SUCCESS)
}

/// Migrates a database that needs it (a new one, as after `kbwatch demo`), and writes nothing to
/// one that does not: a report may read a read-only replica, or log in as a `kbwatch_reader`
/// role (which may not read the migrations table, and reads the views as they are).
async fn migrate_if_needed(store: &Store) -> anyhow::Result<()> {
    if store.pending_migrations_if_readable().await?.is_some_and(|pending| pending > 0) {
        store.migrate().await?;
    }
    Ok(())
}

/// The report as text, in the format `args` asks for.
pub async fn render(store: &Store, args: &ReportArgs) -> anyhow::Result<String> {
    let tenant = args.tenant.as_deref();
    let f = args.format;
    match args.kind {
        ReportKind::Summary => summary(store, args).await,
        ReportKind::Devices => f.render(&store.device_report(tenant, args.limit).await?),
        ReportKind::Kbs => f.render(&store.kb_report(tenant, args.limit).await?),
        ReportKind::Trend => f.render(&store.fleet_trend(tenant, args.days).await?),
        ReportKind::Runs => f.render(&store.recent_runs(tenant, args.limit).await?),
    }
}

/// Fleet totals; a table also shows the ten latest scans below them.
async fn summary(store: &Store, args: &ReportArgs) -> anyhow::Result<String> {
    let tenant = args.tenant.as_deref();
    let fleet = args.format.render(&store.fleet_summary(tenant).await?)?;
    if args.format != ReportFormat::Table {
        return Ok(fleet);
    }
    let runs = args.format.render(&store.recent_runs(tenant, 10).await?)?;
    Ok(format!("Fleet (latest good scan of each listed device)\n{fleet}\nLatest scans\n{runs}"))
}
