//! `kbwatch report`: tables from the reporting views, for a terminal.

use std::process::ExitCode;

use super::database::open_store;
use crate::config::Config;
use crate::store::Store;

/// Which report to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportKind {
    /// Fleet totals per tenant and the latest scans.
    Summary,
}

pub async fn run(config: Config, kind: ReportKind) -> anyhow::Result<ExitCode> {
    let db = open_store(&config).await?;
    db.store.migrate().await?;
    let text = render(&db.store, kind).await;
    db.close().await;
    print!("{}", text?);
    Ok(ExitCode::SUCCESS)
}

/// The report as text.
pub async fn render(store: &Store, kind: ReportKind) -> anyhow::Result<String> {
    match kind {
        ReportKind::Summary => summary(store).await,
    }
}

async fn summary(store: &Store) -> anyhow::Result<String> {
    let mut out = String::from("Fleet (latest good scan of each listed device)\n");
    out += &format!(
        "{:<16} {:>8} {:>8} {:>12} {:>12} {:>10} {:>14}\n",
        "tenant", "devices", "scanned", "missing_any", "missing_kbs", "kbs", "cve_addressed"
    );
    for f in store.fleet_summary().await? {
        out += &format!(
            "{:<16} {:>8} {:>8} {:>12} {:>12} {:>10} {:>14}\n",
            f.tenant,
            f.devices,
            f.devices_scanned,
            f.devices_missing_any,
            f.missing_kbs,
            f.distinct_kbs,
            f.cve_addressed_total
        );
    }
    out += "\nLatest scans\n";
    out += &format!(
        "{:>6} {:<16} {:<9} {:<20} {:>8} {:<12} {:>7} {:>7} {:>6} {:>9} {:>9}\n",
        "run",
        "tenant",
        "trigger",
        "started (UTC)",
        "secs",
        "status",
        "listed",
        "scanned",
        "failed",
        "api_calls",
        "throttled"
    );
    for r in store.recent_runs(10).await? {
        let secs = r.finished_at.map(|f| (f - r.started_at).num_milliseconds() as f64 / 1000.0);
        out += &format!(
            "{:>6} {:<16} {:<9} {:<20} {:>8} {:<12} {:>7} {:>7} {:>6} {:>9} {:>9}\n",
            r.scan_run_id,
            r.tenant,
            r.trigger,
            r.started_at.format("%Y-%m-%d %H:%M:%S"),
            secs.map(|s| format!("{s:.1}")).unwrap_or_else(|| "-".into()),
            r.status,
            r.devices_listed,
            r.devices_scanned,
            r.devices_failed,
            r.api_calls,
            r.throttled
        );
    }
    Ok(out)
}
