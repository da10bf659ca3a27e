//! Tenants and run bookkeeping.

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use super::Store;
use crate::model::{RunCounters, RunStatus};

/// How a run ended, as stored in its row.
#[derive(Debug, Clone, Copy)]
pub struct RunEnd<'a> {
    pub status: RunStatus,
    pub api_calls: i64,
    pub throttled: i64,
    pub effective_per_minute: i32,
    pub error: Option<&'a str>,
}

impl Store {
    /// The id of the tenant named `name`, created on first use (with nothing to roll up before
    /// today: it has no scans yet).
    pub async fn ensure_tenant(&self, name: &str) -> anyhow::Result<i32> {
        sqlx::query_scalar(
            "INSERT INTO kbwatch.tenant (name, fleet_days_through)
             VALUES ($1, (now() AT TIME ZONE 'UTC')::date - 1)
             ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
             RETURNING tenant_id",
        )
        .bind(name)
        .fetch_one(&self.pool)
        .await
        .context("registering the tenant")
    }

    /// Marks runs of the tenant left `running` by a process that stopped; call with the tenant lock held.
    pub async fn mark_interrupted(&self, tenant_id: i32) -> anyhow::Result<u64> {
        let done = sqlx::query(
            "UPDATE kbwatch.scan_run
             SET status = 'interrupted', finished_at = now(),
                 error = coalesce(error, 'the process running this scan stopped before it finished')
             WHERE tenant_id = $1 AND status = 'running'",
        )
        .bind(tenant_id)
        .execute(&self.pool)
        .await
        .context("marking orphaned runs interrupted")?;
        Ok(done.rows_affected())
    }

    /// Opens a run in state `running`; `None` when a run for the same cron tick exists already
    /// (another replica took it). Call with the tenant lock held.
    pub async fn start_run(
        &self,
        tenant_id: i32,
        trigger: &str,
        scheduled_for: Option<DateTime<Utc>>,
        runner: &str,
    ) -> anyhow::Result<Option<i64>> {
        sqlx::query_scalar(
            "INSERT INTO kbwatch.scan_run (tenant_id, trigger, scheduled_for, runner)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id, scheduled_for) DO NOTHING
             RETURNING scan_run_id",
        )
        .bind(tenant_id)
        .bind(trigger)
        .bind(scheduled_for)
        .bind(runner)
        .fetch_optional(&self.pool)
        .await
        .context("opening the scan run")
    }

    /// Records the size of the listing and of the plan.
    pub async fn set_run_plan(
        &self,
        run_id: i64,
        listed: i32,
        planned: i32,
        rejected: i32,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE kbwatch.scan_run
             SET devices_listed = $2, devices_planned = $3, devices_rejected = $4
             WHERE scan_run_id = $1",
        )
        .bind(run_id)
        .bind(listed)
        .bind(planned)
        .bind(rejected)
        .execute(&self.pool)
        .await
        .context("recording the scan plan")?;
        Ok(())
    }

    /// Adds a batch's device counts and raises the call counters to what the batch saw, in the
    /// batch's transaction (batches commit concurrently, so a later one may carry older counts).
    pub async fn add_run_counters(
        conn: &mut sqlx::PgConnection,
        run_id: i64,
        counters: RunCounters,
        api_calls: i64,
        throttled: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE kbwatch.scan_run
             SET devices_ok = devices_ok + $2, devices_not_found = devices_not_found + $3,
                 devices_failed = devices_failed + $4,
                 devices_from_export = devices_from_export + $7,
                 api_calls = GREATEST(api_calls, $5), throttled = GREATEST(throttled, $6)
             WHERE scan_run_id = $1",
        )
        .bind(run_id)
        .bind(counters.ok)
        .bind(counters.not_found)
        .bind(counters.failed)
        .bind(api_calls)
        .bind(throttled)
        .bind(counters.from_export)
        .execute(conn)
        .await
        .context("updating the run counters")?;
        Ok(())
    }

    /// Closes a run with its final status, call counters, effective rate and error text. A run
    /// another process has closed meanwhile (marked `interrupted` when this one's tenant lock was
    /// lost with its connection) keeps what it says: `false`.
    pub async fn finish_run(&self, run_id: i64, end: &RunEnd<'_>) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE kbwatch.scan_run
             SET status = $2, finished_at = now(), api_calls = $3, throttled = $4,
                 effective_per_minute = $5, error = $6
             WHERE scan_run_id = $1 AND status = 'running'",
        )
        .bind(run_id)
        .bind(end.status.as_str())
        .bind(end.api_calls)
        .bind(end.throttled)
        .bind(end.effective_per_minute)
        .bind(end.error.map(super::pg_text))
        .execute(&self.pool)
        .await
        .context("closing the scan run")?;
        Ok(done.rows_affected() == 1)
    }

    /// Rolls up the days no running run can still write into (`reporting.fleet_daily` reads them
    /// from the roll-up, and computes only the later days); the number of tenant-days rolled up.
    pub async fn roll_up_fleet_days(&self) -> anyhow::Result<i64> {
        sqlx::query_scalar("SELECT kbwatch.roll_up_fleet_days()")
            .fetch_one(&self.pool)
            .await
            .context("rolling up the fleet's days")
    }

    /// Rolls up each tenant's final days of `reporting.fleet_state_daily` (migration 0015), one
    /// day at a time; the number of days rolled up.
    pub async fn roll_up_fleet_states(&self) -> anyhow::Result<i64> {
        sqlx::query_scalar("SELECT kbwatch.roll_up_fleet_states()")
            .fetch_one(&self.pool)
            .await
            .context("rolling up the fleet's states")
    }

    /// Moves the fixes written since the last call into their tenant and KB's roll-up
    /// (`reporting.kb_remediation` adds those not moved yet); the number of fixes moved.
    pub async fn roll_up_kb_fixes(&self) -> anyhow::Result<i64> {
        sqlx::query_scalar("SELECT kbwatch.roll_up_kb_fixes()")
            .fetch_one(&self.pool)
            .await
            .context("rolling up the fixes")
    }

    /// When the tenant's last completed run finished, and its last run that stored results (a
    /// completed one, or a partial one with devices stored), however many runs came after them.
    pub async fn last_completed(
        &self,
        tenant: &str,
    ) -> anyhow::Result<(Option<DateTime<Utc>>, Option<DateTime<Utc>>)> {
        sqlx::query_as(
            "SELECT (SELECT max(r.finished_at) FROM kbwatch.scan_run r
                     WHERE r.tenant_id = t.tenant_id AND r.status = 'completed'),
                    (SELECT max(r.finished_at) FROM kbwatch.scan_run r
                     WHERE r.tenant_id = t.tenant_id
                       AND (r.status = 'completed' OR (r.status = 'partial' AND r.devices_ok > 0)))
             FROM kbwatch.tenant t WHERE t.name = $1",
        )
        .bind(tenant)
        .fetch_optional(&self.pool)
        .await
        .map(Option::unwrap_or_default)
        .context("reading the last completed run")
    }
}
