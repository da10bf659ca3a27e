//! The Prometheus metrics: their names, labels and help text in one place, and the recorder.
//!
//! Labels are bounded: tenant names, endpoints, HTTP status codes, run statuses and device outcomes.
//! A device id never becomes a label.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `kbwatch_scans_total` | counter | tenant, status |
//! | `kbwatch_scan_panics_total` | counter | tenant |
//! | `kbwatch_scan_duration_seconds` | histogram | tenant |
//! | `kbwatch_devices_scanned_total` | counter | tenant, outcome (`ok`, `not_found`, `failed`) |
//! | `kbwatch_api_requests_total` | counter | tenant, endpoint, status (HTTP code or `transport`) |
//! | `kbwatch_api_throttled_total` | counter | tenant, endpoint |
//! | `kbwatch_pacer_wait_seconds_total` | gauge, only ever increased | tenant, endpoint |
//! | `kbwatch_fleet_missing_kbs` | gauge | tenant |
//! | `kbwatch_fleet_cve_addressed` | gauge | tenant |
//! | `kbwatch_last_success_timestamp_seconds` | gauge | tenant |
//!
//! The functions take plain values (names, labels, numbers), never another module's types: this
//! module is a leaf that every floor may call.
//!
//! `metrics` counters hold integers, so the pacer's seconds are summed in a gauge (exposed with
//! `# TYPE gauge`); it only grows, and `rate()` works on it as on a counter.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use anyhow::Context as _;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

const SCANS: &str = "kbwatch_scans_total";
const SCAN_PANICS: &str = "kbwatch_scan_panics_total";
const SCAN_DURATION: &str = "kbwatch_scan_duration_seconds";
const DEVICES_SCANNED: &str = "kbwatch_devices_scanned_total";
const API_REQUESTS: &str = "kbwatch_api_requests_total";
const API_THROTTLED: &str = "kbwatch_api_throttled_total";
const PACER_WAIT: &str = "kbwatch_pacer_wait_seconds_total";
const FLEET_MISSING_KBS: &str = "kbwatch_fleet_missing_kbs";
const FLEET_CVE_ADDRESSED: &str = "kbwatch_fleet_cve_addressed";
const LAST_SUCCESS: &str = "kbwatch_last_success_timestamp_seconds";

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

/// Help text and units, for the recorder in force (the global one, or a test's local one).
pub fn describe() {
    describe_counter!(SCANS, "Scans finished, by run status");
    describe_counter!(SCAN_PANICS, "Scans that panicked (a bug: the run is closed failed)");
    describe_histogram!(SCAN_DURATION, Unit::Seconds, "Duration of finished scans");
    describe_counter!(DEVICES_SCANNED, "Devices scanned, by outcome (ok, not_found, failed)");
    describe_counter!(
        API_REQUESTS,
        "Defender API requests, by endpoint and HTTP status (`transport` when no response arrived)"
    );
    describe_counter!(API_THROTTLED, "Defender API responses 429 Too Many Requests");
    describe_gauge!(
        PACER_WAIT,
        Unit::Seconds,
        "Time requests waited for admission by the pacer (only ever grows)"
    );
    describe_gauge!(
        FLEET_MISSING_KBS,
        "Missing KBs summed over the devices, at the last completed scan"
    );
    describe_gauge!(
        FLEET_CVE_ADDRESSED,
        "CVEs addressed by the missing KBs, summed over the devices, at the last completed scan"
    );
    describe_gauge!(LAST_SUCCESS, Unit::Seconds, "Unix time of the last completed scan");
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

/// Time one request waited for the pacer's admission.
pub(crate) fn pacer_waited(tenant: &Arc<str>, endpoint: &'static str, waited: Duration) {
    gauge!(PACER_WAIT, "tenant" => tenant.clone(), "endpoint" => endpoint)
        .increment(waited.as_secs_f64());
}

/// The end of one scan: its run status (`completed`, `partial`, ...), duration and device outcomes.
pub(crate) fn scan_finished(
    tenant: &str,
    status: &'static str,
    elapsed: Duration,
    ok: i32,
    not_found: i32,
    failed: i32,
) {
    let tenant = tenant.to_owned();
    counter!(SCANS, "tenant" => tenant.clone(), "status" => status).increment(1);
    histogram!(SCAN_DURATION, "tenant" => tenant.clone()).record(elapsed.as_secs_f64());
    for (outcome, n) in [("ok", ok), ("not_found", not_found), ("failed", failed)] {
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
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    gauge!(LAST_SUCCESS, "tenant" => tenant.to_owned()).set(now.as_secs_f64());
}

/// The fleet totals after a completed scan.
pub(crate) fn fleet_totals(tenant: &str, missing_kbs: i64, cve_addressed: i64) {
    gauge!(FLEET_MISSING_KBS, "tenant" => tenant.to_owned()).set(missing_kbs as f64);
    gauge!(FLEET_CVE_ADDRESSED, "tenant" => tenant.to_owned()).set(cve_addressed as f64);
}
