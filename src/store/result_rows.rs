//! The statements a batch of results is written with, and the typed descriptions of the columns
//! they send (see `columns`): KBs upserted, missing-KB intervals closed and opened against the
//! batch's current missing set, and one `device_scan` row per device. `results` runs them in
//! its transaction.

use std::sync::LazyLock;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::columns::{Columns as _, columns};
use super::{pg_json, pg_text};
use crate::model::{DeviceOutcome, DeviceResult, MissingKb, ScanSource};

columns! {
    /// KBs as `kbwatch.kb` stores them.
    pub(super) struct KbColumns of KbValues in "kbwatch.kb" {
        kb_id: String,
        name: Option<String>,
        url: Option<String>,
        /// A JSON array: an array of arrays cannot be unnested into one array per row.
        products_names: String =
            "ARRAY(SELECT jsonb_array_elements_text(u.products_names::jsonb))",
        cve_addressed: Option<i32>,
        machine_missed_on: Option<i64>,
    }
}

columns! {
    /// The current missing set of the batch's good devices: the (device, KB, cveAddressed)
    /// triples that `kbwatch.missing_kb` intervals are opened for and closed against.
    pub(super) struct MissingColumns of MissingValues in "kbwatch.missing_kb" {
        device_id: i64,
        kb_id: String,
        cve_addressed: Option<i32>,
        /// When the device was scanned: an interval opened now opened then.
        opened_at: DateTime<Utc>,
        /// Whether the triple's device is on its first scan (read, not stored).
        first_scan: bool = filter,
    }
}

columns! {
    /// One `kbwatch.device_scan` row per device of the batch.
    pub(super) struct ScanColumns of ScanValues in "kbwatch.device_scan" {
        device_id: i64,
        scanned_at: DateTime<Utc>,
        outcome: &'static str,
        /// Distinct KBs missing, on a good scan.
        missing_kbs: Option<i32>,
        /// Their cveAddressed summed, on a good scan.
        cve_addressed_total: Option<i64>,
        error: Option<String>,
        /// `lastSeen` as the run listed it: the next plans compare with it.
        last_seen: Option<DateTime<Utc>>,
        /// `getmissingkbs` or `export`.
        source: &'static str,
    }
}

/// KBs inserted or refreshed (`$1` now, then the columns).
static UPSERT_KBS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO kbwatch.kb AS k (first_seen_at, last_seen_at, {columns})
         SELECT $1, $1, {values}
         FROM {unnest}
         ON CONFLICT (kb_id) DO UPDATE SET {updates}, last_seen_at = EXCLUDED.last_seen_at",
        columns = KbColumns::insert_columns(),
        values = KbColumns::select_list(),
        unnest = KbColumns::unnest(2),
        updates = KbColumns::set_excluded(&["kb_id"]),
    )
});

/// KBs the export names (`$1` now, then the columns): inserted if they are not stored yet, else
/// only seen again, so that what getmissingkbs said of them (product names) is kept.
static INSERT_MISSING_KBS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO kbwatch.kb AS k (first_seen_at, last_seen_at, {columns})
         SELECT $1, $1, {values}
         FROM {unnest}
         ON CONFLICT (kb_id) DO UPDATE SET last_seen_at = EXCLUDED.last_seen_at",
        columns = KbColumns::insert_columns(),
        values = KbColumns::select_list(),
        unnest = KbColumns::unnest(2),
    )
});

/// Closes (`$1` run) the open intervals of the good devices `$2` scanned before (at `$3`) whose
/// (KB, cveAddressed) is not in the current set (the columns, from `$4`). The closing is a fix
/// unless the KB is still reported (with another cveAddressed: a new interval opens); each fix is
/// staged for `kbwatch.kb_fix` (migration 0013) with the days it took. `= ANY ($2)` lets the
/// open-interval index find only the batch's devices whatever the statistics say: planned from a
/// young table's, the join alone read every open interval of the fleet for each batch.
static CLOSE_MISSING: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH closed AS (
             UPDATE kbwatch.missing_kb m
             SET closed_scan_run_id = $1, closed_at = r.scanned_at,
                 fixed = NOT EXISTS (
                     SELECT 1 FROM {unnest} WHERE u.device_id = m.device_id AND u.kb_id = m.kb_id)
             FROM UNNEST($2::int8[], $3::timestamptz[]) AS r(device_id, scanned_at)
             WHERE m.device_id = r.device_id AND m.device_id = ANY ($2::int8[])
               AND m.closed_scan_run_id IS NULL
               AND m.opened_scan_run_id <> $1
               AND NOT EXISTS (
                   SELECT 1 FROM {unnest}
                   WHERE u.device_id = m.device_id AND u.kb_id = m.kb_id
                     AND u.cve_addressed IS NOT DISTINCT FROM m.cve_addressed)
             RETURNING m.device_id, m.kb_id, m.opened_scan_run_id, m.opened_at, m.closed_at,
                       m.fixed)
         INSERT INTO kbwatch.kb_fix_new (tenant_id, device_id, kb_id, opened_scan_run_id, days)
         SELECT d.tenant_id, c.device_id, c.kb_id, c.opened_scan_run_id,
                (extract(epoch FROM (c.closed_at - c.opened_at)) / 86400.0)::float8
         FROM closed c JOIN kbwatch.device d ON d.device_id = c.device_id
         WHERE c.fixed",
        unnest = MissingColumns::unnest(4),
    )
});

/// Opens (`$1` run) an interval for each triple of the current set (the columns, from `$2`) that
/// has no open one; a first scan has none.
static OPEN_MISSING: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO kbwatch.missing_kb (opened_scan_run_id, {columns})
         SELECT $1, {values}
         FROM {unnest}
         WHERE u.first_scan OR NOT EXISTS (
             SELECT 1 FROM kbwatch.missing_kb m
             WHERE m.device_id = u.device_id AND m.kb_id = u.kb_id AND m.closed_scan_run_id IS NULL)",
        columns = MissingColumns::insert_columns(),
        values = MissingColumns::select_list(),
        unnest = MissingColumns::unnest(2),
    )
});

/// One row per device and scan (`$1` run, then the columns); a row written already is kept, as
/// is a scan packed already (migration 0014: a batch written again after its run ended). Each row
/// written moves its device's `device_state` to it, unless that holds a later run's scan; the
/// good scan and the counts move only with an `ok` one, the last getmissingkbs answer only with
/// one from getmissingkbs (migration 0016).
static INSERT_SCANS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH s AS (
             INSERT INTO kbwatch.device_scan (scan_run_id, {columns})
             SELECT $1, {values}
             FROM {unnest}
             WHERE NOT EXISTS (
                 SELECT 1 FROM kbwatch.scan_pack p
                 WHERE p.scan_run_id = $1 AND u.device_id BETWEEN p.device_lo AND p.device_hi
                   AND kbwatch.delta_contains(p.device_id_deltas, u.device_id))
             ON CONFLICT (device_id, scan_run_id) DO NOTHING
             RETURNING *)
         INSERT INTO kbwatch.device_state AS st (
             device_id, scan_run_id, scanned_at, outcome, good_scan_run_id, good_scanned_at,
             good_last_seen, missing_kbs, cve_addressed_total, good_requested_at)
         SELECT s.device_id, s.scan_run_id, s.scanned_at, s.outcome, g.scan_run_id,
                g.scanned_at, g.last_seen, g.missing_kbs, g.cve_addressed_total,
                CASE WHEN g.source = 'getmissingkbs' THEN g.scanned_at END
         FROM s LEFT JOIN LATERAL (SELECT s.* WHERE s.outcome = 'ok') g ON true
         ON CONFLICT (device_id) DO UPDATE SET
             scan_run_id = EXCLUDED.scan_run_id, scanned_at = EXCLUDED.scanned_at,
             outcome = EXCLUDED.outcome,
             good_scan_run_id = coalesce(EXCLUDED.good_scan_run_id, st.good_scan_run_id),
             good_scanned_at = CASE WHEN EXCLUDED.good_scan_run_id IS NULL
                                    THEN st.good_scanned_at ELSE EXCLUDED.good_scanned_at END,
             good_last_seen = CASE WHEN EXCLUDED.good_scan_run_id IS NULL
                                   THEN st.good_last_seen ELSE EXCLUDED.good_last_seen END,
             missing_kbs = CASE WHEN EXCLUDED.good_scan_run_id IS NULL
                                THEN st.missing_kbs ELSE EXCLUDED.missing_kbs END,
             cve_addressed_total = CASE WHEN EXCLUDED.good_scan_run_id IS NULL
                                        THEN st.cve_addressed_total
                                        ELSE EXCLUDED.cve_addressed_total END,
             good_requested_at = coalesce(EXCLUDED.good_requested_at, st.good_requested_at)
         WHERE st.scan_run_id <= EXCLUDED.scan_run_id",
        columns = ScanColumns::insert_columns(),
        values = ScanColumns::select_list(),
        unnest = ScanColumns::unnest(2),
    )
});

/// The good devices of a batch scanned before, whose open intervals may close, and when.
#[derive(Default)]
pub(super) struct Rescanned {
    devices: Vec<i64>,
    scanned_at: Vec<DateTime<Utc>>,
}

/// Splits results into the current (device, KB, cve) triples and the good devices scanned
/// before, whose open intervals may close. A KB listed twice for one device counts once.
pub(super) fn current_set(results: &[DeviceResult]) -> (MissingColumns, Rescanned) {
    let mut current = MissingColumns::default();
    let mut rescanned = Rescanned::default();
    for r in results {
        let DeviceOutcome::Ok(items) = &r.outcome else { continue };
        if !r.first_scan {
            rescanned.devices.push(r.device_id);
            rescanned.scanned_at.push(r.scanned_at);
        }
        let mut seen = std::collections::HashSet::new();
        for kb in items.iter().filter(|kb| seen.insert(kb.id.as_str())) {
            current.push(MissingValues {
                device_id: r.device_id,
                kb_id: pg_text(&kb.id),
                cve_addressed: kb.cve_addressed,
                opened_at: r.scanned_at,
                first_scan: r.first_scan,
            });
        }
    }
    (current, rescanned)
}

/// How a batch's KBs are written.
#[derive(Clone, Copy)]
pub(super) enum KbWrite<'a> {
    /// As getmissingkbs reports them: inserted, or updated to what it says now.
    Refresh(&'a [MissingKb]),
    /// As the export names them: inserted if they are not stored yet.
    Missing(&'a [MissingKb]),
}

pub(super) async fn upsert_kbs(
    conn: &mut PgConnection,
    kbs: KbWrite<'_>,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let (statement, kbs) = match kbs {
        KbWrite::Refresh(kbs) => (UPSERT_KBS.as_str(), kbs),
        KbWrite::Missing(kbs) => (INSERT_MISSING_KBS.as_str(), kbs),
    };
    if kbs.is_empty() {
        return Ok(());
    }
    let values = |k: &MissingKb| KbValues {
        kb_id: pg_text(&k.id),
        name: k.name.as_deref().map(pg_text),
        url: k.url.as_deref().map(pg_text),
        products_names: pg_json(&serde_json::json!(k.products_names.clone().unwrap_or_default())),
        cve_addressed: k.cve_addressed,
        machine_missed_on: k.machine_missed_on,
    };
    let columns = KbColumns::from_rows(kbs.iter().map(values));
    columns.bind(sqlx::query(statement).bind(now)).execute(conn).await.context("storing KBs")?;
    Ok(())
}

/// Closes the open intervals of good devices whose (KB, cveAddressed) is no longer reported.
pub(super) async fn close_missing_kbs(
    conn: &mut PgConnection,
    run_id: i64,
    rescanned: &Rescanned,
    current: &MissingColumns,
) -> anyhow::Result<()> {
    if rescanned.devices.is_empty() {
        return Ok(());
    }
    let close = sqlx::query(CLOSE_MISSING.as_str())
        .bind(run_id)
        .bind(&rescanned.devices)
        .bind(&rescanned.scanned_at);
    current.bind(close).execute(conn).await.context("closing remediated KB intervals")?;
    Ok(())
}

/// Opens an interval for each reported (device, KB) that has no open one (a first scan has none).
pub(super) async fn open_missing_kbs(
    conn: &mut PgConnection,
    run_id: i64,
    current: &MissingColumns,
) -> anyhow::Result<()> {
    if current.device_id.is_empty() {
        return Ok(());
    }
    current
        .bind(sqlx::query(OPEN_MISSING.as_str()).bind(run_id))
        .execute(conn)
        .await
        .context("opening missing-KB intervals")?;
    Ok(())
}

pub(super) async fn insert_device_scans(
    conn: &mut PgConnection,
    run_id: i64,
    source: ScanSource,
    results: &[DeviceResult],
) -> anyhow::Result<()> {
    let columns = ScanColumns::from_rows(results.iter().map(|r| scan_values(r, source)));
    columns
        .bind(sqlx::query(INSERT_SCANS.as_str()).bind(run_id))
        .execute(conn)
        .await
        .context("storing device scans")?;
    Ok(())
}

/// The `device_scan` row of a result.
fn scan_values(r: &DeviceResult, source: ScanSource) -> ScanValues {
    let (missing_kbs, cve_addressed_total) = match &r.outcome {
        DeviceOutcome::Ok(items) => {
            let mut seen = std::collections::HashSet::new();
            let distinct: Vec<&MissingKb> =
                items.iter().filter(|k| seen.insert(k.id.as_str())).collect();
            let cves =
                distinct.iter().map(|k| i64::from(k.cve_addressed.unwrap_or(0))).sum::<i64>();
            (Some(distinct.len() as i32), Some(cves))
        }
        _ => (None, None),
    };
    ScanValues {
        device_id: r.device_id,
        scanned_at: r.scanned_at,
        outcome: r.outcome.as_str(),
        missing_kbs,
        cve_addressed_total,
        error: match &r.outcome {
            DeviceOutcome::Failed(e) => Some(pg_text(e)),
            _ => None,
        },
        last_seen: r.last_seen,
        source: source.as_str(),
    }
}
