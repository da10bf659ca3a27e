//! Reads of kbwatch's internal tables for what the `reporting` views do not show: the error text
//! stored with a failed device scan or run (`device_scan.error`, `scan_run.error`). Tests that
//! check what an operator would read there use these; everything else reads [`super::reporting`].
//! And [`redo_device_state`] and [`redo_fleet_days`], for tests and benchmarks that write scans
//! themselves or move them into the past, and [`backdate_run`], which moves them.

use sqlx::{PgConnection, PgPool};

/// (outcome, error) of the one stored scan of device `machine_id`.
pub async fn device_outcome(pool: &PgPool, machine_id: &str) -> (String, Option<String>) {
    sqlx::query_as(
        "SELECT s.outcome, s.error FROM kbwatch.device_scan s JOIN kbwatch.device d USING (device_id)
         WHERE d.machine_id = $1",
    )
    .bind(machine_id)
    .fetch_one(pool)
    .await
    .expect("the device has one stored scan")
}

/// The error texts of every failed device scan.
pub async fn device_errors(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT error FROM kbwatch.device_scan WHERE outcome = 'failed'")
        .fetch_all(pool)
        .await
        .expect("device_scan errors read")
}

/// The error text stored with a run.
pub async fn run_error(pool: &PgPool, scan_run_id: i64) -> Option<String> {
    sqlx::query_scalar("SELECT error FROM kbwatch.scan_run WHERE scan_run_id = $1")
        .bind(scan_run_id)
        .fetch_one(pool)
        .await
        .expect("the run exists")
}

/// Derives each device's last scans (`device_state`) from its `device_scan` rows again (before
/// they are packed: packs do not keep `lastSeen`), as the
/// write path keeps them: for a test or benchmark that wrote scans itself or moved them into the
/// past (which no real scan can do).
pub async fn redo_device_state(pool: &PgPool) {
    sqlx::raw_sql(
        "DELETE FROM kbwatch.device_state;
         INSERT INTO kbwatch.device_state (device_id, scan_run_id, scanned_at, outcome,
             good_scan_run_id, good_scanned_at, good_last_seen, missing_kbs, cve_addressed_total,
             good_requested_at)
         SELECT d.device_id, l.scan_run_id, l.scanned_at, l.outcome, g.scan_run_id, g.scanned_at,
                g.last_seen, g.missing_kbs, g.cve_addressed_total, r.scanned_at
         FROM kbwatch.device d
         JOIN LATERAL (
             SELECT s.scan_run_id, s.scanned_at, s.outcome FROM kbwatch.device_scan s
             WHERE s.device_id = d.device_id ORDER BY s.scan_run_id DESC LIMIT 1) l ON true
         LEFT JOIN LATERAL (
             SELECT s.scan_run_id, s.scanned_at, s.last_seen, s.missing_kbs, s.cve_addressed_total
             FROM kbwatch.device_scan s WHERE s.device_id = d.device_id AND s.outcome = 'ok'
             ORDER BY s.scan_run_id DESC LIMIT 1) g ON true
         LEFT JOIN LATERAL (
             SELECT s.scanned_at FROM kbwatch.device_scan s
             WHERE s.device_id = d.device_id AND s.outcome = 'ok' AND s.source = 'getmissingkbs'
             ORDER BY s.scan_run_id DESC LIMIT 1) r ON true;",
    )
    .execute(pool)
    .await
    .expect("the devices' last scans are derived again");
}

/// Forgets the fleet's rolled-up days (`fleet_day`, and `fleet_state_day` from each tenant's
/// first listing) and rolls them up again: for a test or benchmark that moved scans or listings
/// into days kbwatch had already rolled up (which no real scan can write into).
pub async fn redo_fleet_days(pool: &PgPool) {
    sqlx::raw_sql(
        "DELETE FROM kbwatch.fleet_day;
         UPDATE kbwatch.tenant SET fleet_days_through = NULL;
         SELECT kbwatch.roll_up_fleet_days();
         DELETE FROM kbwatch.fleet_state_day;
         DELETE FROM kbwatch.device_state_carry;
         UPDATE kbwatch.tenant t SET fleet_states_through = coalesce(
             (SELECT min(d.first_listed_at AT TIME ZONE 'UTC')::date FROM kbwatch.device d
              WHERE d.tenant_id = t.tenant_id),
             (now() AT TIME ZONE 'UTC')::date) - 1;
         SELECT kbwatch.roll_up_fleet_states();",
    )
    .execute(pool)
    .await
    .expect("the fleet's days are rolled up again");
}

/// Moves a run `days` into the past, so that scans run now look like daily scans, and rolls up
/// the fleet's days again.
pub async fn backdate_run(pool: &PgPool, run_id: i64, days: u32) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "UPDATE kbwatch.device_scan SET scanned_at = scanned_at - interval '{days} days'
             WHERE scan_run_id = {run_id};
         UPDATE kbwatch.scan_pack SET scanned_from = scanned_from - interval '{days} days',
             scanned_to = scanned_to - interval '{days} days' WHERE scan_run_id = {run_id};
         UPDATE kbwatch.device_state SET scanned_at = scanned_at - interval '{days} days'
             WHERE scan_run_id = {run_id};
         UPDATE kbwatch.device_state
             SET good_scanned_at = good_scanned_at - interval '{days} days',
                 good_requested_at = CASE WHEN good_requested_at = good_scanned_at
                     THEN good_requested_at - interval '{days} days' ELSE good_requested_at END
             WHERE good_scan_run_id = {run_id};
         UPDATE kbwatch.scan_run SET started_at = started_at - interval '{days} days',
             finished_at = finished_at - interval '{days} days' WHERE scan_run_id = {run_id};"
    )))
    .execute(pool)
    .await
    .expect("the run is backdated");
    redo_fleet_days(pool).await;
}

/// Moves every packed scan back into a `device_scan` row, as migrations before 0014 kept them
/// (its `lastSeen`, which packs do not keep, NULL), and every packed interval back into a
/// `missing_kb` row ([`unpack_intervals`]): for a test that rewrites scans, then packs them again
/// with [`pack_scans`].
pub async fn unpack_scans(conn: &mut PgConnection) {
    sqlx::raw_sql(UNPACK).execute(&mut *conn).await.expect("the packed scans are unpacked");
    unpack_intervals(conn).await;
}

/// Moves every packed interval back into a `missing_kb` row, as migrations before 0021 kept
/// them: for a test that rewrites intervals, then packs them again with [`pack_scans`].
pub async fn unpack_intervals(conn: &mut PgConnection) {
    sqlx::raw_sql(UNPACK_INTERVALS).execute(conn).await.expect("the packed intervals are unpacked");
}

/// Packs the good scans and the closed intervals of every ended run, as each scan does at its
/// end.
pub async fn pack_scans(pool: &PgPool) {
    sqlx::query(
        "SELECT kbwatch.pack_scans(r.scan_run_id) FROM kbwatch.scan_run r ORDER BY r.scan_run_id",
    )
    .execute(pool)
    .await
    .expect("the scans are packed");
    sqlx::query("SELECT kbwatch.pack_intervals(array_agg(scan_run_id)) FROM kbwatch.scan_run")
        .execute(pool)
        .await
        .expect("the intervals are packed");
}

const UNPACK: &str = "
    INSERT INTO kbwatch.device_scan (device_id, scan_run_id, scanned_at, outcome, missing_kbs,
                                     cve_addressed_total, source)
    SELECT device_id, scan_run_id, scanned_at, 'ok', missing_kbs, cve_addressed_total, source
    FROM kbwatch.packed_scan;
    DELETE FROM kbwatch.scan_pack";

const UNPACK_INTERVALS: &str = "
    INSERT INTO kbwatch.missing_kb (device_id, kb_id, opened_scan_run_id, closed_scan_run_id,
                                    cve_addressed, opened_at, closed_at, fixed)
    SELECT device_id, kb_id, opened_scan_run_id, closed_scan_run_id, cve_addressed, opened_at,
           closed_at, fixed
    FROM kbwatch.packed_interval;
    DELETE FROM kbwatch.interval_pack";

/// Every view, all of it, as text: the same rows packed and unpacked.
pub async fn all_views(conn: &mut sqlx::PgConnection) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT v::text FROM reporting.device_history v
         UNION ALL SELECT v::text FROM reporting.missing_kb_snapshots v
         UNION ALL SELECT v::text FROM reporting.fleet_daily v
         UNION ALL SELECT v::text FROM reporting.devices v
         UNION ALL SELECT v::text FROM reporting.current_missing_kbs v
         UNION ALL SELECT v::text FROM reporting.kb_remediation v
         UNION ALL SELECT v::text FROM reporting.scan_runs v
         ORDER BY 1",
    )
    .fetch_all(conn)
    .await
    .expect("the views read")
}

/// The views as they read now, and as they read with every scan and interval unpacked (rolled
/// back after).
pub async fn packed_and_unpacked(pool: &PgPool) -> (Vec<String>, Vec<String>) {
    let mut tx = pool.begin().await.unwrap();
    let packed = all_views(&mut tx).await;
    unpack_scans(&mut tx).await;
    let unpacked = all_views(&mut tx).await;
    tx.rollback().await.unwrap();
    (packed, unpacked)
}
