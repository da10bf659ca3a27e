//! The Prometheus metrics: their names, labels and help text in one place, and the recorder.
//!
//! Labels are bounded: tenant names, endpoints, HTTP status codes, run statuses, device outcomes,
//! failure kinds and the version. A device id never becomes a label.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `kbwatch_build_info` | gauge, always 1 | version |
//! | `kbwatch_scans_total` | counter | tenant, status |
//! | `kbwatch_scan_panics_total` | counter | tenant |
//! | `kbwatch_scans_orphaned_total` | counter | tenant |
//! | `kbwatch_scan_duration_seconds` | histogram | tenant |
//! | `kbwatch_devices_scanned_total` | counter | tenant, outcome (`ok`, `not_found`, `failed`, `export`) |
//! | `kbwatch_api_requests_total` | counter | tenant, endpoint, status (HTTP code or `transport`) |
//! | `kbwatch_api_throttled_total` | counter | tenant, endpoint |
//! | `kbwatch_pacer_wait_seconds_total` | counter, whole seconds | tenant, endpoint |
//! | `kbwatch_fleet_devices` | gauge | tenant |
//! | `kbwatch_fleet_missing_kbs` | gauge | tenant |
//! | `kbwatch_fleet_cve_addressed` | gauge | tenant |
//! | `kbwatch_last_success_timestamp_seconds` | gauge | tenant |
//! | `kbwatch_last_progress_timestamp_seconds` | gauge | tenant |
//! | `kbwatch_last_auth_failure_timestamp_seconds` | gauge | tenant, kind (`unauthorized`, `forbidden`) |
//! | `kbwatch_scan_interval_seconds` | gauge | tenant |
//! | `kbwatch_scheduled_since_timestamp_seconds` | gauge | tenant |
//! | `kbwatch_scan_running_since_timestamp_seconds` | gauge, 0 when idle | tenant |
//! | `kbwatch_retention_rows_dropped_total` | counter | table (of the `kbwatch` schema) |
//!
//! The functions take plain values (names, labels, numbers), never another module's types: this
//! module is a leaf that every floor may call.
//!
//! The alert rules in `deploy/prometheus/kbwatch.rules.yml` read these names: a rename breaks
//! them, and `promtool test rules` (scripts/validate-deploy.sh) says so.
//!
//! `metrics` counters hold integers, so the pacer's waits are counted in whole seconds, each
//! series carrying its fraction of a second over to the next wait: the counter lags the true sum
//! by less than a second, and it is a real counter (`promtool check metrics` accepts the name).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use anyhow::Context as _;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

const BUILD_INFO: &str = "kbwatch_build_info";
const SCANS: &str = "kbwatch_scans_total";
const SCAN_PANICS: &str = "kbwatch_scan_panics_total";
const SCANS_ORPHANED: &str = "kbwatch_scans_orphaned_total";
const SCAN_DURATION: &str = "kbwatch_scan_duration_seconds";
const DEVICES_SCANNED: &str = "kbwatch_devices_scanned_total";
const API_REQUESTS: &str = "kbwatch_api_requests_total";
const API_THROTTLED: &str = "kbwatch_api_throttled_total";
const PACER_WAIT: &str = "kbwatch_pacer_wait_seconds_total";
const FLEET_DEVICES: &str = "kbwatch_fleet_devices";
const FLEET_MISSING_KBS: &str = "kbwatch_fleet_missing_kbs";
const FLEET_CVE_ADDRESSED: &str = "kbwatch_fleet_cve_addressed";
const LAST_SUCCESS: &str = "kbwatch_last_success_timestamp_seconds";
const LAST_PROGRESS: &str = "kbwatch_last_progress_timestamp_seconds";
const LAST_AUTH_FAILURE: &str = "kbwatch_last_auth_failure_timestamp_seconds";
const SCAN_INTERVAL: &str = "kbwatch_scan_interval_seconds";
const SCHEDULED_SINCE: &str = "kbwatch_scheduled_since_timestamp_seconds";
const RUNNING_SINCE: &str = "kbwatch_scan_running_since_timestamp_seconds";
const RETENTION_DROPPED: &str = "kbwatch_retention_rows_dropped_total";

/// Upper bounds of the scan duration buckets: a small tenant takes seconds, 100k devices hours.
const SCAN_DURATION_BUCKETS: &[f64] =
    &[1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0];

/// How often [`upkeep`] runs.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The exporter's configuration: scan durations as a real histogram (not a summary).
pub fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(SCAN_DURATION.into()), SCAN_DURATION_BUCKETS)
        .expect("the bucket list is not empty")
}

/// Installs the process-wide recorder and describes the metrics.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = builder().install_recorder().context("installing the metrics recorder")?;
    describe();
    Ok(handle)
}

/// Help text and units, and `kbwatch_build_info`, for the recorder in force (the global one, or
/// a test's local one).
pub fn describe() {
    describe_gauge!(BUILD_INFO, "The running kbwatch's version, as a label; the value is 1");
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    describe_counter!(SCANS, "Scans finished, by run status");
    describe_counter!(SCAN_PANICS, "Scans that panicked (a bug: the run is closed failed)");
    describe_counter!(
        SCANS_ORPHANED,
        "Runs left running by a process that died mid-scan, found and closed interrupted by the next scan"
    );
    describe_histogram!(SCAN_DURATION, Unit::Seconds, "Duration of finished scans");
    describe_counter!(DEVICES_SCANNED, "Devices scanned, by outcome (ok, not_found, failed)");
    describe_counter!(
        API_REQUESTS,
        "Defender API requests, by endpoint and HTTP status (`transport` when no response arrived)"
    );
    describe_counter!(API_THROTTLED, "Defender API responses 429 Too Many Requests");
    describe_counter!(
        PACER_WAIT,
        Unit::Seconds,
        "Time requests waited for admission by the pacer, in whole seconds"
    );
    describe_gauge!(FLEET_DEVICES, "Devices in the last complete listing");
    describe_gauge!(
        FLEET_MISSING_KBS,
        "Missing KBs summed over the devices, at the last completed scan"
    );
    describe_gauge!(
        FLEET_CVE_ADDRESSED,
        "CVEs addressed by the missing KBs, summed over the devices, at the last completed scan"
    );
    describe_gauge!(LAST_SUCCESS, Unit::Seconds, "Unix time of the last completed scan");
    describe_gauge!(
        LAST_PROGRESS,
        Unit::Seconds,
        "Unix time of the last scan that stored results: completed, or partial with devices stored"
    );
    describe_gauge!(
        LAST_AUTH_FAILURE,
        Unit::Seconds,
        "Unix time a scan last stopped on a failed authentication (unauthorized) or a missing permission (forbidden)"
    );
    describe_gauge!(SCAN_INTERVAL, Unit::Seconds, "Longest time between two scheduled scans");
    describe_gauge!(
        SCHEDULED_SINCE,
        Unit::Seconds,
        "Unix time this process began scheduling the tenant's scans"
    );
    describe_gauge!(
        RUNNING_SINCE,
        Unit::Seconds,
        "Unix time the tenant's running scan started; 0 while none runs"
    );
    describe_counter!(
        RETENTION_DROPPED,
        "Rows dropped by retention passes (retention.keep_days) of this process, by table"
    );
}

/// Runs the recorder's upkeep (histogram draining) every [`UPKEEP_EVERY`] until `cancel`.
pub async fn upkeep(handle: PrometheusHandle, cancel: CancellationToken) {
    let mut every = tokio::time::interval(UPKEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = every.tick() => handle.run_upkeep(),
        }
    }
}

/// One HTTP request to the Defender API; `status` is `None` when no complete response arrived.
/// `endpoint` is the endpoint's label (`machines`, `missing_kbs`).
pub(crate) fn api_request(tenant: &Arc<str>, endpoint: &'static str, status: Option<u16>) {
    let status = status.map_or_else(|| "transport".to_owned(), |s| s.to_string());
    counter!(API_REQUESTS, "tenant" => tenant.clone(), "endpoint" => endpoint, "status" => status)
        .increment(1);
}

/// One 429 from the Defender API.
pub(crate) fn api_throttled(tenant: &Arc<str>, endpoint: &'static str) {
    counter!(API_THROTTLED, "tenant" => tenant.clone(), "endpoint" => endpoint).increment(1);
}

/// The fraction of a second of pacer wait that each (tenant, endpoint) has not counted yet.
static PACER_WAIT_CARRY: Mutex<BTreeMap<(Arc<str>, &'static str), Duration>> =
    Mutex::new(BTreeMap::new());

/// Time one request waited for the pacer's admission: the whole seconds are counted now, the
/// fraction carried over to the next wait of the same series.
pub(crate) fn pacer_waited(tenant: &Arc<str>, endpoint: &'static str, waited: Duration) {
    let seconds = {
        let mut carry = PACER_WAIT_CARRY.lock().unwrap_or_else(PoisonError::into_inner);
        let pending = carry.entry((tenant.clone(), endpoint)).or_default();
        *pending = pending.saturating_add(waited);
        let seconds = pending.as_secs();
        *pending -= Duration::from_secs(seconds);
        seconds
    };
    counter!(PACER_WAIT, "tenant" => tenant.clone(), "endpoint" => endpoint).increment(seconds);
}

/// The end of one scan: its run status (`completed`, `partial`, ...), duration and device outcomes.
pub(crate) fn scan_finished(
    tenant: &str,
    status: &'static str,
    elapsed: Duration,
    (ok, not_found, failed, from_export): (i32, i32, i32, i32),
) {
    let tenant = tenant.to_owned();
    counter!(SCANS, "tenant" => tenant.clone(), "status" => status).increment(1);
    histogram!(SCAN_DURATION, "tenant" => tenant.clone()).record(elapsed.as_secs_f64());
    let outcomes =
        [("ok", ok), ("not_found", not_found), ("failed", failed), ("export", from_export)];
    for (outcome, n) in outcomes {
        counter!(DEVICES_SCANNED, "tenant" => tenant.clone(), "outcome" => outcome)
            .increment(u64::try_from(n).unwrap_or(0));
    }
}

/// A scan that panicked; it is also counted as a failed scan.
pub(crate) fn scan_panicked(tenant: &str) {
    counter!(SCAN_PANICS, "tenant" => tenant.to_owned()).increment(1);
    counter!(SCANS, "tenant" => tenant.to_owned(), "status" => "failed").increment(1);
}

/// The end of a completed scan.
pub(crate) fn last_success(tenant: &str) {
    last_success_at(tenant, SystemTime::now());
}

/// A completed scan that ended at `at` (at start-up: the latest one in the database).
pub(crate) fn last_success_at(tenant: &str, at: SystemTime) {
    gauge!(LAST_SUCCESS, "tenant" => tenant.to_owned()).set(unix_seconds(at));
}

/// A scan that stored results ended at `at`: a completed one, or a partial one that stored
/// devices (a fleet beyond one run's quota is scanned in rotation, every run partial).
pub(crate) fn progress_at(tenant: &str, at: SystemTime) {
    gauge!(LAST_PROGRESS, "tenant" => tenant.to_owned()).set(unix_seconds(at));
}

/// A scan stopped by an authentication (`kind` = `unauthorized`: no token, or 401 after a
/// refresh) or permission (`forbidden`: 403) failure.
pub(crate) fn auth_failed(tenant: &str, kind: &'static str) {
    gauge!(LAST_AUTH_FAILURE, "tenant" => tenant.to_owned(), "kind" => kind)
        .set(unix_seconds(SystemTime::now()));
}

/// Runs left `running` by a process that stopped mid-scan, closed `interrupted` by this scan.
pub(crate) fn scans_orphaned(tenant: &str, runs: u64) {
    counter!(SCANS_ORPHANED, "tenant" => tenant.to_owned()).increment(runs);
}

/// The devices of a complete listing.
pub(crate) fn fleet_devices(tenant: &str, devices: u64) {
    gauge!(FLEET_DEVICES, "tenant" => tenant.to_owned()).set(devices as f64);
}

/// A tenant the daemon schedules, every `interval` at most. Its counters of rare events start at
/// 0, so that `increase()` sees their first event.
pub(crate) fn tenant_scheduled(tenant: &str, interval: Duration) {
    let tenant = tenant.to_owned();
    gauge!(SCAN_INTERVAL, "tenant" => tenant.clone()).set(interval.as_secs_f64());
    gauge!(SCHEDULED_SINCE, "tenant" => tenant.clone()).set(unix_seconds(SystemTime::now()));
    gauge!(RUNNING_SINCE, "tenant" => tenant.clone()).set(0.0);
    counter!(SCAN_PANICS, "tenant" => tenant.clone()).increment(0);
    counter!(SCANS_ORPHANED, "tenant" => tenant).increment(0);
}

/// A scheduled scan of `tenant` starts (`running`) or ends, however it ends.
pub(crate) fn scan_running(tenant: &str, running: bool) {
    let since = if running { unix_seconds(SystemTime::now()) } else { 0.0 };
    gauge!(RUNNING_SINCE, "tenant" => tenant.to_owned()).set(since);
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

/// Rows of `table` (`device_scan`, `missing_kb`, ...) a retention pass dropped.
pub(crate) fn retention_dropped(table: &'static str, rows: u64) {
    counter!(RETENTION_DROPPED, "table" => table).increment(rows);
}

/// The fleet totals after a completed scan.
pub(crate) fn fleet_totals(tenant: &str, missing_kbs: i64, cve_addressed: i64) {
    gauge!(FLEET_MISSING_KBS, "tenant" => tenant.to_owned()).set(missing_kbs as f64);
    gauge!(FLEET_CVE_ADDRESSED, "tenant" => tenant.to_owned()).set(cve_addressed as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_waits_count_whole_seconds_and_carry_the_fraction() {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        let tenant: Arc<str> = Arc::from("pacer-carry");
        let wait = |millis: &[u64]| {
            ::metrics::with_local_recorder(&recorder, || {
                for &ms in millis {
                    pacer_waited(&tenant, "machines", Duration::from_millis(ms));
                }
            });
            let text = handle.render();
            assert!(text.contains(&format!("# TYPE {PACER_WAIT} counter")), "{text}");
            let line = text.lines().find(|l| l.contains("pacer-carry")).expect("the series");
            line.rsplit_once(' ').and_then(|(_, v)| v.parse::<u64>().ok()).expect("a count")
        };
        assert_eq!(wait(&[400, 400, 400]), 1, "1.2 s counts 1, carries 0.2");
        assert_eq!(wait(&[300]), 1, "1.5 s");
        assert_eq!(wait(&[500]), 2, "2.0 s: the carried fractions add up");
        assert_eq!(wait(&[0]), 2, "a request that did not wait");
        assert_eq!(wait(&[3_250]), 5, "5.25 s");
    }
}
