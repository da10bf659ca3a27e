//! `kbwatch scan`: one scan of each tenant now, a progress bar on a terminal, a summary at the end.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use super::database::open_store;
use super::escape;
use crate::config::{Config, TenantConfig};
use crate::defender::client_for;
use crate::model::RunStatus;
use crate::scan::{Progress, ScanOptions, ScanSummary, Trigger, scan_tenant};
use crate::store::Store;

pub async fn run(
    config: Config,
    only: Option<&str>,
    cancel: CancellationToken,
) -> anyhow::Result<ExitCode> {
    let tenants: Vec<&TenantConfig> =
        config.tenants.iter().filter(|t| only.is_none_or(|name| t.name == name)).collect();
    if tenants.is_empty() {
        anyhow::bail!("no tenant named {:?} in the configuration", only.unwrap_or_default());
    }
    let db = open_store(&config).await?;
    db.store.migrate().await?;
    // Side by side, at most `schedule.max_concurrent_scans` at once, with one bar for them all;
    // each tenant's line is printed as its scan ends.
    let progress = Arc::new(Progress::default());
    let reporter = tokio::spawn(report_progress(progress.clone()));
    let at_once = config.schedule.max_concurrent_scans.max(1) as usize;
    let scans = futures::stream::iter(tenants)
        .map(|tenant| {
            let progress = progress.clone();
            let (store, config, cancel) = (&db.store, &config, &cancel);
            async move {
                if cancel.is_cancelled() {
                    // Shutdown came before this tenant's turn: no run is opened for it.
                    return false;
                }
                let summary =
                    scan_one(store, config, tenant, Trigger::Manual, progress, cancel).await;
                match summary {
                    Ok(Some(s)) => {
                        crate::telemetry::suspend_progress(|| {
                            println!("{}", summary_line(&tenant.name, &s));
                        });
                        matches!(s.status, RunStatus::Completed)
                    }
                    Ok(None) => {
                        crate::telemetry::suspend_progress(|| {
                            println!("{}: skipped, another kbwatch is scanning it", tenant.name);
                        });
                        true
                    }
                    Err(e) => {
                        crate::telemetry::suspend_progress(|| {
                            eprintln!("{}", failure_line(&tenant.name, &e));
                        });
                        false
                    }
                }
            }
        })
        .buffer_unordered(at_once);
    let all_ok = scans.fold(true, |all, ok| async move { all && ok }).await;
    reporter.abort();
    crate::telemetry::hide_progress();
    db.close().await;
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// One scan, showing progress on a terminal and logging it every few seconds otherwise.
pub async fn scan_with_progress(
    store: &Store,
    config: &Config,
    tenant: &TenantConfig,
    trigger: Trigger,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<ScanSummary>> {
    let progress = Arc::new(Progress::default());
    let reporter = tokio::spawn(report_progress(progress.clone()));
    let summary = scan_one(store, config, tenant, trigger, progress, cancel).await;
    reporter.abort();
    crate::telemetry::hide_progress();
    summary
}

/// One scan of `tenant`, counting into `progress`.
async fn scan_one(
    store: &Store,
    config: &Config,
    tenant: &TenantConfig,
    trigger: Trigger,
    progress: Arc<Progress>,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<ScanSummary>> {
    let client = Arc::new(
        client_for(tenant, &config.tls).with_context(|| format!("tenant {}", tenant.name))?,
    );
    let keep_days = config.retention.keep_days;
    let options = ScanOptions { trigger, keep_days, ..ScanOptions::default() };
    scan_tenant(store, tenant, client, &options, progress, cancel).await
}

/// On a terminal, one bar below the log lines, shown once the plan is known; elsewhere a log
/// line every 5 s.
async fn report_progress(progress: Arc<Progress>) {
    let terminal = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval(if terminal {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(5)
    });
    let mut bar: Option<indicatif::ProgressBar> = None;
    loop {
        tick.tick().await;
        let (done, planned) =
            (progress.done.load(Ordering::Relaxed), progress.planned.load(Ordering::Relaxed));
        if planned == 0 {
            continue;
        }
        if !terminal {
            tracing::info!(done, planned, "Scan progress");
            continue;
        }
        let bar = bar.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::new(planned).with_style(bar_style());
            crate::telemetry::show_progress(bar.clone());
            bar
        });
        bar.set_length(planned);
        bar.set_position(done);
    }
}

fn bar_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(
        "{spinner} {pos}/{len} devices  {rate}  eta {eta}  {wide_bar}",
    )
    .expect("constant template parses")
    .with_key("rate", |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = w.write_str(&rate(state.per_sec()));
    })
}

/// Devices a second as a reader wants it: whole numbers from 10 up, one decimal below.
fn rate(per_sec: f64) -> String {
    match per_sec {
        r if !r.is_finite() => "-/s".to_owned(),
        r if r >= 10.0 => format!("{r:.0}/s"),
        r => format!("{r:.1}/s"),
    }
}

/// The line printed at the end of a scan; the error text (from the API) shows controls escaped.
fn summary_line(tenant: &str, s: &ScanSummary) -> String {
    format!(
        "{tenant}: run {} {} in {:.1}s: listed {}, planned {}, ok {}, not found {}, failed {}, rejected {}, API calls {}, throttled {}{}{}",
        s.scan_run_id,
        s.status.as_str(),
        s.elapsed.as_secs_f64(),
        s.listed,
        s.planned,
        s.devices.ok,
        s.devices.not_found,
        s.devices.failed,
        s.rejected,
        s.api_calls,
        s.throttled,
        match s.devices.from_export {
            0 => String::new(),
            n => format!(", from the export {n}"),
        },
        s.error.as_deref().map(|e| format!(" ({})", escape::terminal(e))).unwrap_or_default(),
    )
}

/// The line printed when a scan could not run; its error chain may carry API or database text.
fn failure_line(tenant: &str, e: &anyhow::Error) -> String {
    format!("{tenant}: scan failed: {}", escape::terminal(&format!("{e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defender::ApiError;

    const HOSTILE: &str = "Missing role\x1b]0;pwned\x07\x1b[2J\u{202e}";
    const SHOWN: &str = "Missing role\\x1b]0;pwned\\x07\\x1b[2J\\u{202e}";

    #[test]
    fn the_summary_shows_the_api_error_escaped() {
        let summary = ScanSummary {
            scan_run_id: 7,
            status: RunStatus::Failed,
            listed: 0,
            planned: 0,
            rejected: 0,
            devices: Default::default(),
            api_calls: 1,
            throttled: 0,
            effective_per_minute: 100,
            error: Some(ApiError::Forbidden(HOSTILE.into()).to_string()),
            elapsed: Duration::from_millis(5),
        };
        let line = summary_line("t1", &summary);
        assert!(line.ends_with(&format!("(forbidden: {SHOWN})")), "{line}");
        assert!(!line.contains(['\x1b', '\x07', '\u{202e}']), "{line:?}");
    }

    #[test]
    fn the_rate_has_a_sensible_precision() {
        assert_eq!(rate(12.0927), "12/s");
        assert_eq!(rate(1234.56), "1235/s");
        assert_eq!(rate(0.4567), "0.5/s");
        assert_eq!(rate(f64::NAN), "-/s");
    }

    #[test]
    fn a_failed_scan_shows_its_error_chain_escaped() {
        let e = anyhow::Error::new(ApiError::Forbidden(HOSTILE.into())).context("listing devices");
        let line = failure_line("t1", &e);
        assert_eq!(line, format!("t1: scan failed: listing devices: forbidden: {SHOWN}"));
    }
}
