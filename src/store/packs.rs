//! Packing: once a run has ended, its good scans move from `device_scan` rows into `scan_pack`
//! rows of up to 1,000 devices each (migration 0014), a dozen bytes a scan instead of about 120.
//! The views read both, so what is packed and what is not yet reads the same. The intervals the
//! run closed move from `missing_kb` rows into `interval_pack` rows the same way (migration 0021).

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::{Connection as _, PgConnection};
use tokio_util::sync::CancellationToken;

use super::Store;

impl Store {
    /// Packs the good scans of the tenant's ended runs that are still rows (this run's, and those
    /// of a run an earlier packing missed), each run in a transaction of its own; the number of
    /// scans packed. Call with the tenant lock held.
    pub async fn pack_scans(&self, tenant_id: i32) -> anyhow::Result<i64> {
        let runs: Vec<i64> = sqlx::query_scalar(
            "SELECT r.scan_run_id FROM kbwatch.scan_run r
             WHERE r.tenant_id = $1 AND r.status <> 'running'
               AND EXISTS (SELECT 1 FROM kbwatch.device_scan s
                           WHERE s.scan_run_id = r.scan_run_id AND s.outcome = 'ok')
             ORDER BY r.scan_run_id",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await
        .context("finding the runs to pack")?;
        let mut packed = 0;
        for run in runs {
            let n: i64 = sqlx::query_scalar("SELECT kbwatch.pack_scans($1)")
                .bind(run)
                .fetch_one(&self.pool)
                .await
                .with_context(|| format!("packing the scans of run {run}"))?;
            packed += n;
        }
        Ok(packed)
    }

    /// Packs the missing-KB intervals closed by the tenant's ended runs that are still rows (this
    /// run's, and those of a run an earlier packing missed), in one transaction; the number of
    /// intervals packed (migration 0021). Call with the tenant lock held.
    pub async fn pack_intervals(&self, tenant_id: i32) -> anyhow::Result<i64> {
        sqlx::query_scalar(
            "SELECT kbwatch.pack_intervals(coalesce(array_agg(DISTINCT m.closed_scan_run_id), '{}'))
             FROM kbwatch.missing_kb m
             JOIN kbwatch.scan_run r ON r.scan_run_id = m.closed_scan_run_id
             WHERE m.closed_scan_run_id IS NOT NULL AND r.tenant_id = $1 AND r.status <> 'running'",
        )
        .bind(tenant_id)
        .fetch_one(&self.pool)
        .await
        .context("packing the closed intervals")
    }
}

/// Packs per statement of retention's first step: one run of 100,000 devices.
const PACKS_PER_BATCH: i64 = 100;

/// Retention's first step for packed scans: the packs wholly before `cutoff` go, a batch at a
/// time; a pack with scans on both sides of it (a run across midnight) is rewritten with those
/// from the cutoff on. The number of scans dropped; `None` if `cancel` stopped it.
pub(super) async fn drop_old_packs(
    conn: &mut PgConnection,
    cutoff: DateTime<Utc>,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<u64>> {
    let gone = "WITH gone AS (
                    DELETE FROM kbwatch.scan_pack WHERE ctid = ANY(ARRAY(
                        SELECT ctid FROM kbwatch.scan_pack WHERE scanned_to < $1 LIMIT $2))
                    RETURNING cardinality(device_id_deltas) AS n)
                SELECT count(*), coalesce(sum(n), 0)::int8 FROM gone";
    let Some(scans) = drop_in_batches(conn, gone, cutoff, cancel, "scan").await? else {
        return Ok(None);
    };
    let cut: Option<i64> = sqlx::query_scalar(
        "WITH kept AS (
             SELECT x.scan_run_id, x.device_lo,
                    count(*) FILTER (WHERE x.scanned_at < $1) AS dropped,
                    min(x.device_id) FILTER (WHERE x.scanned_at >= $1) AS lo,
                    max(x.device_id) FILTER (WHERE x.scanned_at >= $1) AS hi,
                    min(x.scanned_at) FILTER (WHERE x.scanned_at >= $1) AS scanned_from,
                    max(x.scanned_at) AS scanned_to,
                    kbwatch.delta_encode(array_agg(x.device_id ORDER BY x.device_id)
                                             FILTER (WHERE x.scanned_at >= $1)) AS deltas,
                    array_agg((extract(epoch FROM x.scanned_at - x.base) * 1000000)::int8
                              ORDER BY x.device_id) FILTER (WHERE x.scanned_at >= $1) AS offsets,
                    array_agg(x.missing_kbs ORDER BY x.device_id)
                        FILTER (WHERE x.scanned_at >= $1) AS missing_kbs,
                    array_agg(x.cve_addressed_total ORDER BY x.device_id)
                        FILTER (WHERE x.scanned_at >= $1) AS cves
             FROM (
                 SELECT s.*, min(s.scanned_at) FILTER (WHERE s.scanned_at >= $1)
                                 OVER (PARTITION BY s.scan_run_id, s.device_lo) AS base
                 FROM kbwatch.packed_scan s
                 WHERE s.scanned_from < $1 AND s.scanned_to >= $1) x
             GROUP BY x.scan_run_id, x.device_lo
         ), rewritten AS (
             UPDATE kbwatch.scan_pack p
             SET device_lo = k.lo, device_hi = k.hi, scanned_from = k.scanned_from,
                 scanned_to = k.scanned_to, device_id_deltas = k.deltas, offsets_us = k.offsets,
                 missing_kbs = k.missing_kbs, cve_addressed_totals = k.cves
             FROM kept k
             WHERE p.scan_run_id = k.scan_run_id AND p.device_lo = k.device_lo
             RETURNING k.dropped)
         SELECT sum(dropped)::int8 FROM rewritten",
    )
    .bind(cutoff)
    .fetch_one(&mut *conn)
    .await
    .context("cutting the scan packs across the retention cutoff")?;
    Ok(Some(scans + cut.unwrap_or(0) as u64))
}

/// Retention's second step for packed intervals: the packs closed wholly before `cutoff` go, a
/// batch at a time; a pack with intervals closed on both sides of it (a run across midnight) is
/// moved back into rows without those closed before it, and its run packed again. The number of
/// intervals dropped; `None` if `cancel` stopped it.
pub(super) async fn drop_old_interval_packs(
    conn: &mut PgConnection,
    cutoff: DateTime<Utc>,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<u64>> {
    let gone = "WITH gone AS (
                    DELETE FROM kbwatch.interval_pack WHERE ctid = ANY(ARRAY(
                        SELECT ctid FROM kbwatch.interval_pack WHERE closed_to < $1 LIMIT $2))
                    RETURNING cardinality(device_ids) AS n)
                SELECT count(*), coalesce(sum(n), 0)::int8 FROM gone";
    let Some(intervals) = drop_in_batches(conn, gone, cutoff, cancel, "interval").await? else {
        return Ok(None);
    };
    let mut tx = conn.begin().await.context("starting to cut the interval packs")?;
    let (cut, runs): (i64, Vec<i64>) = sqlx::query_as(
        "WITH cut AS (
             DELETE FROM kbwatch.interval_pack q WHERE q.closed_from < $1 AND q.closed_to >= $1
             RETURNING q.*
         ), kept AS (
             INSERT INTO kbwatch.missing_kb (device_id, kb_id, opened_scan_run_id,
                                             closed_scan_run_id, cve_addressed, opened_at,
                                             closed_at, fixed)
             SELECT i.device_id, i.kb_id, i.opened_scan_run_id, i.closed_scan_run_id,
                    i.cve_addressed, i.opened_at, i.closed_at, i.fixed
             FROM kbwatch.packed_interval i
             JOIN cut q USING (closed_scan_run_id, device_lo)
             WHERE i.closed_at >= $1 OR i.closed_at IS NULL
             RETURNING 1)
         SELECT (SELECT coalesce(sum(cardinality(device_ids)), 0) FROM cut)::int8
                    - (SELECT count(*) FROM kept),
                ARRAY(SELECT DISTINCT closed_scan_run_id FROM cut)",
    )
    .bind(cutoff)
    .fetch_one(&mut *tx)
    .await
    .context("cutting the interval packs across the retention cutoff")?;
    sqlx::query("SELECT kbwatch.pack_intervals($1)")
        .bind(&runs)
        .execute(&mut *tx)
        .await
        .context("packing the intervals kept of a cut pack")?;
    tx.commit().await.context("committing the cut interval packs")?;
    Ok(Some(intervals + cut as u64))
}

/// Runs `gone` (`$1` the cutoff, `$2` the batch size; returns the packs it deleted and what they
/// held) until a batch deletes fewer than [`PACKS_PER_BATCH`] packs; what the packs held, or
/// `None` if `cancel` stopped it. `what` names the packs in an error.
async fn drop_in_batches(
    conn: &mut PgConnection,
    gone: &'static str,
    cutoff: DateTime<Utc>,
    cancel: &CancellationToken,
    what: &str,
) -> anyhow::Result<Option<u64>> {
    let mut held = 0;
    loop {
        if cancel.is_cancelled() {
            return Ok(None);
        }
        let (packs, n): (i64, i64) = sqlx::query_as(gone)
            .bind(cutoff)
            .bind(PACKS_PER_BATCH)
            .fetch_one(&mut *conn)
            .await
            .with_context(|| format!("dropping old {what} packs"))?;
        held += n as u64;
        if packs < PACKS_PER_BATCH {
            return Ok(Some(held));
        }
    }
}
