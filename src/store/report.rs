//! Read queries for `kbwatch report`, over the public `reporting` views only.

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use super::Store;

/// One row of `reporting.scan_runs`.
#[derive(Debug, Clone, sqlx::FromRow)]
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
}

/// Fleet totals of one tenant, from `reporting.devices` and `reporting.current_missing_kbs`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FleetSummary {
    pub tenant: String,
    pub devices: i64,
    pub devices_scanned: i64,
    pub devices_missing_any: i64,
    pub missing_kbs: i64,
    pub cve_addressed_total: i64,
    pub distinct_kbs: i64,
}

impl Store {
    /// The latest `limit` runs, newest first.
    pub async fn recent_runs(&self, limit: i64) -> anyhow::Result<Vec<RunSummary>> {
        sqlx::query_as(
            "SELECT scan_run_id, tenant, trigger, started_at, finished_at, status, devices_listed,
                    devices_scanned, devices_failed, api_calls, throttled
             FROM reporting.scan_runs ORDER BY scan_run_id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("reading reporting.scan_runs")
    }

    /// Per-tenant totals of the current state.
    pub async fn fleet_summary(&self) -> anyhow::Result<Vec<FleetSummary>> {
        sqlx::query_as(
            "SELECT d.tenant, count(*) AS devices,
                    count(d.missing_kbs) AS devices_scanned,
                    count(*) FILTER (WHERE d.missing_kbs > 0) AS devices_missing_any,
                    coalesce(sum(d.missing_kbs), 0)::int8 AS missing_kbs,
                    coalesce(sum(d.cve_addressed_total), 0)::int8 AS cve_addressed_total,
                    (SELECT count(DISTINCT c.kb_id) FROM reporting.current_missing_kbs c
                      WHERE c.tenant = d.tenant) AS distinct_kbs
             FROM reporting.devices d GROUP BY d.tenant ORDER BY d.tenant",
        )
        .fetch_all(&self.pool)
        .await
        .context("reading reporting.devices")
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
