//! Retention: history older than `retention.keep_days` days is dropped, once a day per database.
//!
//! A pass drops what lies wholly before its cutoff, UTC midnight `keep_days` days before today,
//! step by step in an order that never deletes a row another row still refers to (the reference
//! triggers of migration 0004), each step in short transactions of a few hundred devices or runs:
//! 1. scans before the cutoff: `device_scan` rows, and packed scans (a pack across the cutoff is
//!    rewritten with the scans it keeps). Each device's last scan and last good scan, which
//!    `reporting.devices` and the planner read, stay in `device_state`;
//! 2. `missing_kb` intervals closed before the cutoff, in rows and packs (a pack across the cutoff
//!    is packed again with the intervals it keeps). Those still open, or closed since, are part
//!    of the snapshots of the days kept (and an open one keeps its `missing_since`);
//! 3. devices gone before the cutoff and not scanned since, with their scans and intervals;
//! 4. `fleet_day` and `fleet_state_day` rows of the days before the cutoff's (and the fixes
//!    rolled up for `kb_remediation` are rolled up again from the intervals kept);
//! 5. `scan_run` rows started before the cutoff, not running, that no row kept refers to: a scan
//!    row or pack, an interval it opened or closed, a device it last listed.
//!
//! Every `reporting` view is exact for the days kept: the scans from the cutoff on, their
//! snapshots, the days from the cutoff's on, the runs started since and the current state read
//! only rows that stay. `kb_remediation` counts the fixes of the days kept. KBs and tenants stay.
//!
//! A pass is claimed in `kbwatch.retention_pass` (migration 0012) under an advisory lock held on
//! the pass's one pool connection, so replicas run it once a day, one at a time.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::{Connection as _, PgConnection};
use tokio_util::sync::CancellationToken;

use super::Store;
use super::lock::LOCK_CLASS;

/// The retention lock's key in kbwatch's class: the roll-up has 0, the tenant locks their ids.
const LOCK_KEY: i32 = -1;
/// Devices per statement of steps 1 to 3.
const DEVICES_PER_BATCH: i64 = 500;
/// Runs per statement of step 5.
const RUNS_PER_BATCH: usize = 500;

/// What a call of [`Store::drop_old_history`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// This call ran the pass.
    Dropped(Dropped),
    /// A pass with this cutoff or a later one was claimed already (today's, usually).
    AlreadyDone,
    /// Another session (a replica) is running a pass now.
    Busy,
}

/// The rows a pass dropped, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// What was older than this is gone: UTC midnight `keep_days` days before the pass's day.
    pub cutoff: DateTime<Utc>,
    pub device_scans: u64,
    pub missing_kbs: u64,
    pub devices: u64,
    pub fleet_days: u64,
    /// Rows of `fleet_state_day` (migration 0015).
    pub fleet_state_days: u64,
    pub scan_runs: u64,
    /// False when a shutdown stopped it between two batches: the next day's pass drops the rest.
    pub finished: bool,
}

impl Store {
    /// Drops the history older than `keep_days` days, unless a pass already did today (or is
    /// doing it). Stops between two batches once `cancel` fires.
    pub async fn drop_old_history(
        &self,
        keep_days: u32,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Retention> {
        let mut conn = self.pool.acquire().await.context("connecting for retention")?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(LOCK_KEY)
            .fetch_one(&mut *conn)
            .await
            .context("taking the retention lock")?;
        if !locked {
            return Ok(Retention::Busy);
        }
        let pass = run_pass(&mut conn, keep_days, cancel).await;
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(LOCK_KEY)
            .execute(&mut *conn)
            .await;
        if unlocked.is_err() {
            // A session lock must not go back to the pool: closing the connection frees it.
            conn.close_on_drop();
        }
        pass
    }
}

async fn run_pass(
    conn: &mut PgConnection,
    keep_days: u32,
    cancel: &CancellationToken,
) -> anyhow::Result<Retention> {
    let keep_days = i32::try_from(keep_days).context("retention.keep_days is out of range")?;
    let claimed: Option<(i64, DateTime<Utc>)> = sqlx::query_as(
        "WITH c AS (
             SELECT (((now() AT TIME ZONE 'UTC')::date - $1::integer)::timestamp
                     AT TIME ZONE 'UTC') AS cutoff)
         INSERT INTO kbwatch.retention_pass (keep_days, cutoff)
         SELECT $1, c.cutoff FROM c
         WHERE NOT EXISTS (SELECT 1 FROM kbwatch.retention_pass p WHERE p.cutoff >= c.cutoff)
         RETURNING retention_pass_id, cutoff",
    )
    .bind(keep_days)
    .fetch_optional(&mut *conn)
    .await
    .context("claiming the retention pass")?;
    let Some((pass_id, cutoff)) = claimed else { return Ok(Retention::AlreadyDone) };
    let mut dropped = Dropped { cutoff, ..Dropped::default() };
    dropped.finished = drop_steps(conn, &mut dropped, cancel).await?;
    if dropped.missing_kbs > 0 {
        // The fixes rolled up for kb_remediation (migration 0013) counted the dropped ones.
        sqlx::query("SELECT kbwatch.rebuild_kb_fixes()")
            .execute(&mut *conn)
            .await
            .context("rolling the fixes kept up again")?;
    }
    sqlx::query(
        "UPDATE kbwatch.retention_pass
         SET finished_at = CASE WHEN $7 THEN now() END, device_scans = $2, missing_kbs = $3,
             devices = $4, fleet_days = $5, scan_runs = $6
         WHERE retention_pass_id = $1",
    )
    .bind(pass_id)
    .bind(dropped.device_scans as i64)
    .bind(dropped.missing_kbs as i64)
    .bind(dropped.devices as i64)
    .bind(dropped.fleet_days as i64)
    .bind(dropped.scan_runs as i64)
    .bind(dropped.finished)
    .execute(&mut *conn)
    .await
    .context("recording the retention pass")?;
    Ok(Retention::Dropped(dropped))
}

/// The five steps, counted into `dropped`; false if `cancel` stopped them.
async fn drop_steps(
    conn: &mut PgConnection,
    dropped: &mut Dropped,
    cancel: &CancellationToken,
) -> anyhow::Result<bool> {
    let cutoff = dropped.cutoff;
    // Every scan row before the cutoff belongs to a run up to this one (an hour's margin for
    // clocks that differ between kbwatch's hosts, which stamp scanned_at, and the database).
    let last_old_run: i64 = sqlx::query_scalar(
        "SELECT coalesce(max(scan_run_id), 0) FROM kbwatch.scan_run
         WHERE started_at < $1 + interval '1 hour'",
    )
    .bind(cutoff)
    .fetch_one(&mut *conn)
    .await
    .context("finding the runs before the retention cutoff")?;
    let mut after = 0;
    while let Some(through) = next_devices(conn, after).await? {
        if cancel.is_cancelled() {
            return Ok(false);
        }
        dropped.device_scans += drop_scans(conn, (after, through), last_old_run, cutoff).await?;
        after = through;
    }
    let Some(packed) = super::packs::drop_old_packs(conn, cutoff, cancel).await? else {
        return Ok(false);
    };
    dropped.device_scans += packed;
    after = 0;
    while let Some(through) = next_devices(conn, after).await? {
        if cancel.is_cancelled() {
            return Ok(false);
        }
        dropped.missing_kbs += drop_intervals(conn, (after, through), cutoff).await?;
        after = through;
    }
    let Some(packed) = super::packs::drop_old_interval_packs(conn, cutoff, cancel).await? else {
        return Ok(false);
    };
    dropped.missing_kbs += packed;
    loop {
        if cancel.is_cancelled() {
            return Ok(false);
        }
        let devices = drop_gone_devices(conn, cutoff, dropped).await?;
        if devices < DEVICES_PER_BATCH as u64 {
            break;
        }
    }
    let (fleet_days, fleet_state_days): (i64, i64) = sqlx::query_as(
        "WITH days AS (DELETE FROM kbwatch.fleet_day WHERE day < $1 RETURNING 1),
              states AS (DELETE FROM kbwatch.fleet_state_day WHERE day < $1 RETURNING 1)
         SELECT (SELECT count(*) FROM days), (SELECT count(*) FROM states)",
    )
    .bind(cutoff.date_naive())
    .fetch_one(&mut *conn)
    .await
    .context("dropping old rolled-up days")?;
    dropped.fleet_days = fleet_days as u64;
    dropped.fleet_state_days = fleet_state_days as u64;
    for runs in unreferenced_runs(conn, cutoff, last_old_run).await?.chunks(RUNS_PER_BATCH) {
        if cancel.is_cancelled() {
            return Ok(false);
        }
        dropped.scan_runs += sqlx::query(
            "DELETE FROM kbwatch.scan_run WHERE scan_run_id = ANY($1) AND status <> 'running'",
        )
        .bind(runs)
        .execute(&mut *conn)
        .await
        .context("dropping old runs")?
        .rows_affected();
    }
    Ok(true)
}

/// The last device id of the batch after `after`; `None` past the last device.
async fn next_devices(conn: &mut PgConnection, after: i64) -> anyhow::Result<Option<i64>> {
    sqlx::query_scalar(
        "SELECT max(device_id) FROM (
             SELECT device_id FROM kbwatch.device WHERE device_id > $1
             ORDER BY device_id LIMIT $2) batch",
    )
    .bind(after)
    .bind(DEVICES_PER_BATCH)
    .fetch_one(conn)
    .await
    .context("reading the next devices for retention")
}

/// Step 1 for the devices in `(after, through]`. Each device's rows up to `last_old_run` are read
/// through its key (`OFFSET 0` keeps the planner from reading every old row of the table through
/// the block-range index on `scanned_at` instead, in every batch: 4 ms against 180 ms for 500
/// devices of a 20,000-device fleet), and deleted by their row address.
async fn drop_scans(
    conn: &mut PgConnection,
    (after, through): (i64, i64),
    last_old_run: i64,
    cutoff: DateTime<Utc>,
) -> anyhow::Result<u64> {
    let done = sqlx::query(
        "DELETE FROM kbwatch.device_scan WHERE ctid = ANY(ARRAY(
             SELECT o.ctid FROM kbwatch.device d
             CROSS JOIN LATERAL (
                 SELECT x.ctid, x.scanned_at FROM kbwatch.device_scan x
                 WHERE x.device_id = d.device_id AND x.scan_run_id <= $3
                 OFFSET 0) o
             WHERE d.device_id > $1 AND d.device_id <= $2 AND o.scanned_at < $4))",
    )
    .bind(after)
    .bind(through)
    .bind(last_old_run)
    .bind(cutoff)
    .execute(conn)
    .await
    .context("dropping old device scans")?;
    Ok(done.rows_affected())
}

/// Step 2 for the devices in `(after, through]`.
async fn drop_intervals(
    conn: &mut PgConnection,
    (after, through): (i64, i64),
    cutoff: DateTime<Utc>,
) -> anyhow::Result<u64> {
    let done = sqlx::query(
        "DELETE FROM kbwatch.missing_kb
         WHERE device_id > $1 AND device_id <= $2 AND closed_at < $3",
    )
    .bind(after)
    .bind(through)
    .bind(cutoff)
    .execute(conn)
    .await
    .context("dropping old missing-KB intervals")?;
    Ok(done.rows_affected())
}

/// Step 3, one batch in one transaction: devices gone before the cutoff with no scan since (in
/// a row or a pack: step 1 left no packed scan before the cutoff, so none is deleted here) are
/// locked (a listing that brings one back waits, then stores it anew), and go with their rows.
/// Returns the number of devices dropped.
async fn drop_gone_devices(
    conn: &mut PgConnection,
    cutoff: DateTime<Utc>,
    dropped: &mut Dropped,
) -> anyhow::Result<u64> {
    let mut tx = conn.begin().await.context("starting to drop gone devices")?;
    let gone: Vec<i64> = sqlx::query_scalar(
        "SELECT d.device_id FROM kbwatch.device d
         WHERE d.gone_at < $1
           AND NOT EXISTS (SELECT 1 FROM kbwatch.device_scan s
                           WHERE s.device_id = d.device_id AND s.scanned_at >= $1)
           AND NOT EXISTS (SELECT 1 FROM kbwatch.scan_pack p
                           WHERE int8range(p.device_lo, p.device_hi, '[]') @> d.device_id
                             AND p.scanned_to >= $1
                             AND kbwatch.delta_contains(p.device_id_deltas, d.device_id))
         ORDER BY d.device_id LIMIT $2
         FOR UPDATE SKIP LOCKED",
    )
    .bind(cutoff)
    .bind(DEVICES_PER_BATCH)
    .fetch_all(&mut *tx)
    .await
    .context("finding devices gone before the retention cutoff")?;
    if gone.is_empty() {
        return Ok(0);
    }
    let mut rows = [0; 3];
    for (i, sql) in [
        "DELETE FROM kbwatch.device_scan WHERE device_id = ANY($1)",
        "DELETE FROM kbwatch.missing_kb WHERE device_id = ANY($1)",
        "DELETE FROM kbwatch.device WHERE device_id = ANY($1)",
    ]
    .into_iter()
    .enumerate()
    {
        let done = sqlx::query(sql).bind(&gone).execute(&mut *tx).await;
        rows[i] =
            done.context("dropping devices gone before the retention cutoff")?.rows_affected();
    }
    tx.commit().await.context("committing dropped devices")?;
    dropped.device_scans += rows[0];
    dropped.missing_kbs += rows[1];
    dropped.devices += rows[2];
    Ok(rows[2])
}

/// Step 5's runs: started before the cutoff, not running, and referred to by no device (as its
/// last listing), no interval (opened or closed by it), no scan row and no pack. Every run before the
/// cutoff is at most `last_old_run`, so each device's scan rows up to it are all the scan rows
/// that can refer to one (read by their key, as in step 1: after steps 1 and 3, a few per
/// device).
async fn unreferenced_runs(
    conn: &mut PgConnection,
    cutoff: DateTime<Utc>,
    last_old_run: i64,
) -> anyhow::Result<Vec<i64>> {
    sqlx::query_scalar(
        "SELECT r.scan_run_id FROM kbwatch.scan_run r
         WHERE r.started_at < $1 AND r.status <> 'running'
           AND NOT EXISTS (SELECT 1 FROM kbwatch.device d
                           WHERE d.last_listed_run_id = r.scan_run_id)
           AND NOT EXISTS (SELECT 1 FROM kbwatch.missing_kb m
                           WHERE m.opened_scan_run_id = r.scan_run_id)
           AND NOT EXISTS (SELECT 1 FROM kbwatch.missing_kb m
                           WHERE m.closed_scan_run_id = r.scan_run_id)
           AND NOT EXISTS (SELECT 1 FROM kbwatch.scan_pack p
                           WHERE p.scan_run_id = r.scan_run_id)
           AND NOT EXISTS (SELECT 1 FROM kbwatch.interval_pack q
                           WHERE q.closed_scan_run_id = r.scan_run_id)
           AND NOT EXISTS (SELECT 1 FROM kbwatch.interval_pack q
                           WHERE int8range(q.opened_lo, q.closed_scan_run_id) @> r.scan_run_id
                             AND r.scan_run_id = ANY (q.opened_scan_run_ids))
           AND r.scan_run_id NOT IN (
               SELECT s.scan_run_id FROM kbwatch.device d
               CROSS JOIN LATERAL (
                   SELECT x.scan_run_id FROM kbwatch.device_scan x
                   WHERE x.device_id = d.device_id AND x.scan_run_id <= $2
                   OFFSET 0) s)
         ORDER BY r.scan_run_id",
    )
    .bind(cutoff)
    .bind(last_old_run)
    .fetch_all(conn)
    .await
    .context("finding old runs nothing refers to")
}
