//! Read queries for `kbwatch report`, over the public `reporting` views only.
//!
//! Each row type serializes with the view's column names, in the view's order, so that the CSV
//! header and the JSON keys of a report are the names a reporting tool sees in the database.
//! `tenant` filters are optional: `None` reads every tenant.

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::Store;

/// One row of `reporting.scan_runs`.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct RunSummary {
    pub scan_run_id: i64,
    pub tenant: String,
    pub trigger: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: String,
    pub devices_listed: i32,
    pub devices_scanned: i32,
    pub devices_failed: i32,
    pub api_calls: i64,
    pub throttled: i64,
    pub devices_from_export: i32,
}

/// Fleet totals of one tenant, from `reporting.devices` and `reporting.current_missing_kbs`.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct FleetSummary {
    pub tenant: String,
    pub devices: i64,
    pub devices_scanned: i64,
    pub devices_missing_any: i64,
    pub missing_kbs: i64,
    pub distinct_kbs: i64,
    pub cve_addressed_total: i64,
}

/// One row of `reporting.devices` (without `machine_tags`, a list that CSV cannot hold).
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct DeviceRow {
    pub tenant: String,
    pub machine_id: String,
    pub computer_dns_name: Option<String>,
    pub os_platform: Option<String>,
    pub os_build: Option<i64>,
    pub health_status: Option<String>,
    pub rbac_group_name: Option<String>,
    pub last_seen: Option<DateTime<Utc>>,
    pub last_scanned_at: Option<DateTime<Utc>>,
    pub last_scan_outcome: Option<String>,
    pub missing_kbs: Option<i32>,
    pub cve_addressed_total: Option<i64>,
    /// Where the two counts came from: `getmissingkbs` or `export`.
    pub missing_kbs_source: Option<String>,
}

/// One row of `reporting.kb_remediation` with the KB's `cve_addressed` from
/// `reporting.current_missing_kbs` (null when no device misses it any more).
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct KbRow {
    pub tenant: String,
    pub kb_id: String,
    pub kb_name: Option<String>,
    pub devices_missing_now: i64,
    pub cve_addressed: Option<i32>,
    pub devices_remediated: i64,
    pub median_days_to_remediate: Option<f64>,
}

/// One row of `reporting.fleet_daily`.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct TrendRow {
    pub tenant: String,
    pub day: NaiveDate,
    pub devices_reporting: i64,
    pub devices_missing_any: i64,
    pub missing_kbs_total: i64,
    pub cve_addressed_total: i64,
}

impl Store {
    /// The latest `limit` runs, newest first.
    pub async fn recent_runs(
        &self,
        tenant: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Vec<RunSummary>> {
        sqlx::query_as(
            "SELECT scan_run_id, tenant, trigger, started_at, finished_at, status, devices_listed,
                    devices_scanned, devices_failed, api_calls, throttled, devices_from_export
             FROM reporting.scan_runs WHERE $1::text IS NULL OR tenant = $1
             ORDER BY scan_run_id DESC LIMIT $2",
        )
        .bind(tenant)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("reading reporting.scan_runs")
    }

    /// Per-tenant totals of the current state.
    pub async fn fleet_summary(&self, tenant: Option<&str>) -> anyhow::Result<Vec<FleetSummary>> {
        sqlx::query_as(
            "SELECT d.tenant, count(*) AS devices,
                    count(d.missing_kbs) AS devices_scanned,
                    count(*) FILTER (WHERE d.missing_kbs > 0) AS devices_missing_any,
                    coalesce(sum(d.missing_kbs), 0)::int8 AS missing_kbs,
                    (SELECT count(DISTINCT c.kb_id) FROM reporting.current_missing_kbs c
                      WHERE c.tenant = d.tenant) AS distinct_kbs,
                    coalesce(sum(d.cve_addressed_total), 0)::int8 AS cve_addressed_total
             FROM reporting.devices d WHERE $1::text IS NULL OR d.tenant = $1
             GROUP BY d.tenant ORDER BY d.tenant",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await
        .context("reading reporting.devices")
    }

    /// Current devices, the most missing KBs first.
    pub async fn device_report(
        &self,
        tenant: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Vec<DeviceRow>> {
        sqlx::query_as(
            "SELECT tenant, machine_id, computer_dns_name, os_platform, os_build, health_status,
                    rbac_group_name, last_seen, last_scanned_at, last_scan_outcome, missing_kbs,
                    cve_addressed_total, missing_kbs_source
             FROM reporting.devices WHERE $1::text IS NULL OR tenant = $1
             ORDER BY missing_kbs DESC NULLS LAST, cve_addressed_total DESC NULLS LAST,
                      tenant, machine_id
             LIMIT $2",
        )
        .bind(tenant)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("reading reporting.devices")
    }

    /// KBs missing now or remediated, the most widely missing first.
    pub async fn kb_report(&self, tenant: Option<&str>, limit: i64) -> anyhow::Result<Vec<KbRow>> {
        sqlx::query_as(
            "SELECT r.tenant, r.kb_id, r.kb_name, r.devices_missing_now, c.cve_addressed,
                    r.devices_remediated, r.median_days_to_remediate
             FROM reporting.kb_remediation r
             LEFT JOIN (SELECT tenant, kb_id, max(cve_addressed) AS cve_addressed
                        FROM reporting.current_missing_kbs GROUP BY tenant, kb_id) c
                    USING (tenant, kb_id)
             WHERE $1::text IS NULL OR r.tenant = $1
             ORDER BY r.devices_missing_now DESC, c.cve_addressed DESC NULLS LAST,
                      r.tenant, r.kb_id
             LIMIT $2",
        )
        .bind(tenant)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("reading reporting.kb_remediation")
    }

    /// Fleet totals per tenant and UTC day, for the last `days` days up to today.
    pub async fn fleet_trend(
        &self,
        tenant: Option<&str>,
        days: i32,
    ) -> anyhow::Result<Vec<TrendRow>> {
        sqlx::query_as(
            "SELECT tenant, day, devices_reporting, devices_missing_any,
                    coalesce(missing_kbs_total, 0)::int8 AS missing_kbs_total,
                    coalesce(cve_addressed_total, 0)::int8 AS cve_addressed_total
             FROM reporting.fleet_daily
             WHERE ($1::text IS NULL OR tenant = $1)
               AND day > (now() AT TIME ZONE 'UTC')::date - $2::int4
             ORDER BY tenant, day",
        )
        .bind(tenant)
        .bind(days)
        .fetch_all(&self.pool)
        .await
        .context("reading reporting.fleet_daily")
    }

    /// Missing KBs and the CVEs they address, summed over the current devices of `tenant`.
    pub async fn fleet_totals(&self, tenant: &str) -> anyhow::Result<(i64, i64)> {
        sqlx::query_as(
            "SELECT coalesce(sum(missing_kbs), 0)::int8, coalesce(sum(cve_addressed_total), 0)::int8
             FROM reporting.devices WHERE tenant = $1",
        )
        .bind(tenant)
        .fetch_one(&self.pool)
        .await
        .context("reading reporting.devices totals")
    }
}
