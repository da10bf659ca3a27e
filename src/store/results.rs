//! Writing scan results: counts per device and scan, and the missing-KB intervals.
//!
//! The KBs the batch refers to that are not stored yet are upserted first; then the batch is
//! written in one transaction: intervals of
//! KBs no longer missing closed, intervals of newly missing KBs opened, one `device_scan` row per
//! device (a device's scan state is read from these rows) and run counters added. Writing the same
//! batch twice changes nothing the second time, provided the second write does not claim first
//! scans (the writer clears them before a retry).
//!
//! A device's first scan (first listed by this run) has nothing stored to compare with: its
//! intervals are opened without a probe for open ones and none is closed. On a first scan of
//! 10,000 devices those probes were about a tenth of PostgreSQL's CPU.

use std::collections::{HashMap, HashSet};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::{Connection as _, PgConnection};

use super::{Store, pg_json, pg_text};
use crate::model::{DeviceOutcome, DeviceResult, MissingKb, RunCounters};

/// The current missing set of the batch's good devices, as columns.
#[derive(Default)]
struct Current {
    devices: Vec<i64>,
    kb_ids: Vec<String>,
    cves: Vec<Option<i32>>,
    /// Whether the triple's device is on its first scan.
    first: Vec<bool>,
}

impl Store {
    /// Stores `kbs` (each id once), then writes a batch of results in one transaction. Every KB
    /// the results report must be in `kbs` or stored already.
    pub async fn write_results(
        &self,
        run_id: i64,
        results: &[DeviceResult],
        kbs: &[MissingKb],
        api_calls: i64,
        throttled: i64,
    ) -> anyhow::Result<RunCounters> {
        let (current, rescanned) = columns(results);
        let mut counters = RunCounters::default();
        for r in results {
            match r.outcome {
                DeviceOutcome::Ok(_) => counters.ok += 1,
                DeviceOutcome::NotFound => counters.not_found += 1,
                DeviceOutcome::Failed(_) => counters.failed += 1,
            }
        }
        let mut conn = self.pool.acquire().await.context("connecting to store results")?;
        // KBs first, committed on their own: a KB's row is shared by every batch, and holding its
        // lock for a whole batch transaction would make concurrent batches wait for each other.
        upsert_kbs(&mut conn, kbs, Utc::now()).await?;
        let mut tx = conn.begin().await.context("starting the results transaction")?;
        close_missing_kbs(&mut tx, run_id, &rescanned, &current).await?;
        open_missing_kbs(&mut tx, run_id, &current).await?;
        insert_device_scans(&mut tx, run_id, results).await?;
        Store::add_run_counters(&mut tx, run_id, counters, api_calls, throttled).await?;
        tx.commit().await.context("committing results")?;
        Ok(counters)
    }
}

/// Splits results into the current (device, KB, cve) triples and the good devices scanned
/// before, whose open intervals may close. A KB listed twice for one device counts once.
fn columns(results: &[DeviceResult]) -> (Current, Vec<i64>) {
    let mut current = Current::default();
    let mut rescanned = Vec::new();
    for r in results {
        let DeviceOutcome::Ok(items) = &r.outcome else { continue };
        if !r.first_scan {
            rescanned.push(r.device_id);
        }
        let mut seen = std::collections::HashSet::new();
        for kb in items.iter().filter(|kb| seen.insert(kb.id.as_str())) {
            current.devices.push(r.device_id);
            current.kb_ids.push(pg_text(&kb.id));
            current.cves.push(kb.cve_addressed);
            current.first.push(r.first_scan);
        }
    }
    (current, rescanned)
}

/// The KBs `results` report, one per id (the last reported), leaving out those in `stored`.
pub fn kbs_to_store(results: &[DeviceResult], stored: &HashSet<MissingKb>) -> Vec<MissingKb> {
    let mut kbs: HashMap<&str, &MissingKb> = HashMap::new();
    for r in results {
        if let DeviceOutcome::Ok(items) = &r.outcome {
            kbs.extend(items.iter().map(|kb| (kb.id.as_str(), kb)));
        }
    }
    let mut kbs: Vec<MissingKb> =
        kbs.into_values().filter(|kb| !stored.contains(*kb)).cloned().collect();
    kbs.sort_by(|a, b| a.id.cmp(&b.id));
    kbs
}

async fn upsert_kbs(
    conn: &mut PgConnection,
    kbs: &[MissingKb],
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    if kbs.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO kbwatch.kb AS k (kb_id, name, url, products_names, cve_addressed,
                                      machine_missed_on, first_seen_at, last_seen_at)
         SELECT u.id, u.name, u.url, ARRAY(SELECT jsonb_array_elements_text(u.products::jsonb)),
                u.cve, u.missed, $7, $7
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::int8[])
              AS u(id, name, url, products, cve, missed)
         ON CONFLICT (kb_id) DO UPDATE SET
             name = EXCLUDED.name, url = EXCLUDED.url, products_names = EXCLUDED.products_names,
             cve_addressed = EXCLUDED.cve_addressed, machine_missed_on = EXCLUDED.machine_missed_on,
             last_seen_at = EXCLUDED.last_seen_at",
    )
    .bind(kbs.iter().map(|k| pg_text(&k.id)).collect::<Vec<_>>())
    .bind(kbs.iter().map(|k| k.name.as_deref().map(pg_text)).collect::<Vec<_>>())
    .bind(kbs.iter().map(|k| k.url.as_deref().map(pg_text)).collect::<Vec<_>>())
    .bind(
        kbs.iter()
            .map(|k| pg_json(&serde_json::json!(k.products_names.clone().unwrap_or_default())))
            .collect::<Vec<_>>(),
    )
    .bind(kbs.iter().map(|k| k.cve_addressed).collect::<Vec<_>>())
    .bind(kbs.iter().map(|k| k.machine_missed_on).collect::<Vec<_>>())
    .bind(now)
    .execute(conn)
    .await
    .context("storing KBs")?;
    Ok(())
}

/// Closes the open intervals of good devices whose (KB, cveAddressed) is no longer reported.
async fn close_missing_kbs(
    conn: &mut PgConnection,
    run_id: i64,
    rescanned: &[i64],
    current: &Current,
) -> anyhow::Result<()> {
    if rescanned.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE kbwatch.missing_kb m SET closed_scan_run_id = $1
         WHERE m.device_id = ANY($2::int8[]) AND m.closed_scan_run_id IS NULL
           AND m.opened_scan_run_id <> $1
           AND NOT EXISTS (
               SELECT 1 FROM UNNEST($3::int8[], $4::text[], $5::int4[]) AS c(device_id, kb_id, cve)
               WHERE c.device_id = m.device_id AND c.kb_id = m.kb_id
                 AND c.cve IS NOT DISTINCT FROM m.cve_addressed)",
    )
    .bind(run_id)
    .bind(rescanned)
    .bind(&current.devices)
    .bind(&current.kb_ids)
    .bind(&current.cves)
    .execute(conn)
    .await
    .context("closing remediated KB intervals")?;
    Ok(())
}

/// Opens an interval for each reported (device, KB) that has no open one (a first scan has none).
async fn open_missing_kbs(
    conn: &mut PgConnection,
    run_id: i64,
    current: &Current,
) -> anyhow::Result<()> {
    if current.devices.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO kbwatch.missing_kb (device_id, kb_id, opened_scan_run_id, cve_addressed)
         SELECT c.device_id, c.kb_id, $1, c.cve
         FROM UNNEST($2::int8[], $3::text[], $4::int4[], $5::bool[]) AS c(device_id, kb_id, cve, first)
         WHERE c.first OR NOT EXISTS (
             SELECT 1 FROM kbwatch.missing_kb m
             WHERE m.device_id = c.device_id AND m.kb_id = c.kb_id AND m.closed_scan_run_id IS NULL)",
    )
    .bind(run_id)
    .bind(&current.devices)
    .bind(&current.kb_ids)
    .bind(&current.cves)
    .bind(&current.first)
    .execute(conn)
    .await
    .context("opening missing-KB intervals")?;
    Ok(())
}

async fn insert_device_scans(
    conn: &mut PgConnection,
    run_id: i64,
    results: &[DeviceResult],
) -> anyhow::Result<()> {
    let counts = |r: &DeviceResult| match &r.outcome {
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
    let (missing, cves): (Vec<Option<i32>>, Vec<Option<i64>>) = results.iter().map(counts).unzip();
    sqlx::query(
        "INSERT INTO kbwatch.device_scan (device_id, scan_run_id, scanned_at, outcome, missing_kbs,
                                          cve_addressed_total, error, last_seen)
         SELECT u.device_id, $1, u.at, u.outcome, u.missing, u.cves, u.error, u.last_seen
         FROM UNNEST($2::int8[], $3::timestamptz[], $4::text[], $5::int4[], $6::int8[], $7::text[],
                     $8::timestamptz[])
              AS u(device_id, at, outcome, missing, cves, error, last_seen)
         ON CONFLICT (device_id, scan_run_id) DO NOTHING",
    )
    .bind(run_id)
    .bind(results.iter().map(|r| r.device_id).collect::<Vec<_>>())
    .bind(results.iter().map(|r| r.scanned_at).collect::<Vec<_>>())
    .bind(results.iter().map(|r| r.outcome.as_str()).collect::<Vec<_>>())
    .bind(missing)
    .bind(cves)
    .bind(
        results
            .iter()
            .map(|r| match &r.outcome {
                DeviceOutcome::Failed(e) => Some(pg_text(e)),
                _ => None,
            })
            .collect::<Vec<_>>(),
    )
    .bind(results.iter().map(|r| r.last_seen).collect::<Vec<_>>())
    .execute(conn)
    .await
    .context("storing device scans")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kb(id: &str, missed: i64) -> MissingKb {
        MissingKb {
            id: id.into(),
            name: Some(format!("Update {id}")),
            products_names: Some(vec!["windows_11".into()]),
            url: None,
            machine_missed_on: Some(missed),
            cve_addressed: Some(3),
        }
    }

    fn ok(device_id: i64, kbs: Vec<MissingKb>) -> DeviceResult {
        DeviceResult {
            device_id,
            scanned_at: Utc::now(),
            last_seen: None,
            first_scan: false,
            outcome: DeviceOutcome::Ok(kbs),
        }
    }

    #[test]
    fn a_kb_is_stored_once_and_again_only_when_it_changed() {
        let batch = [
            ok(1, vec![kb("5001", 10), kb("5002", 10)]),
            ok(2, vec![kb("5002", 10), kb("5003", 10)]),
            DeviceResult { outcome: DeviceOutcome::NotFound, ..ok(3, vec![]) },
        ];
        let ids = |kbs: Vec<MissingKb>| kbs.into_iter().map(|k| k.id).collect::<Vec<_>>();
        assert_eq!(ids(kbs_to_store(&batch, &HashSet::new())), ["5001", "5002", "5003"]);

        let stored: HashSet<MissingKb> = [kb("5001", 10), kb("5002", 10), kb("5003", 9)].into();
        let again = kbs_to_store(&batch, &stored);
        assert_eq!(again, [kb("5003", 10)], "only what the API now says differently");
    }
}
