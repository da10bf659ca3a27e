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
//!
//! States taken from the vulnerability export (`[tenant.export] fill`) are written the same way,
//! marked `export`; they never overwrite what getmissingkbs said of a KB.
//!
//! The statements, and the descriptions of the columns they send, are in `result_rows`.

use std::collections::{HashMap, HashSet};

use anyhow::Context as _;
use chrono::Utc;
use sqlx::Connection as _;

use super::Store;
use super::result_rows::{
    KbWrite, close_missing_kbs, current_set, insert_device_scans, open_missing_kbs, upsert_kbs,
};
use crate::model::{DeviceOutcome, DeviceResult, MissingKb, RunCounters, ScanSource};

impl Store {
    /// Stores `kbs` (each id once), then writes a batch of getmissingkbs results in one
    /// transaction. Every KB the results report must be in `kbs` or stored already.
    pub async fn write_results(
        &self,
        run_id: i64,
        results: &[DeviceResult],
        kbs: &[MissingKb],
        api_calls: i64,
        throttled: i64,
    ) -> anyhow::Result<RunCounters> {
        let mut counters = RunCounters::default();
        for r in results {
            match r.outcome {
                DeviceOutcome::Ok(_) => counters.ok += 1,
                DeviceOutcome::NotFound => counters.not_found += 1,
                DeviceOutcome::Failed(_) => counters.failed += 1,
            }
        }
        let batch = Batch { run_id, source: ScanSource::GetMissingKbs, results, counters };
        self.write_batch(batch, KbWrite::Refresh(kbs), (api_calls, throttled)).await
    }

    /// Writes a batch of states taken from the export (`[tenant.export] fill`; every outcome
    /// `ok`) as [`Store::write_results`] writes getmissingkbs', marked `export`. `kbs` (each id
    /// once; every KB the results name must be in it or stored already) are stored only if they
    /// are not yet: the export has no product names, and what getmissingkbs said of a KB is kept.
    pub async fn write_export_states(
        &self,
        run_id: i64,
        results: &[DeviceResult],
        kbs: &[MissingKb],
        api_calls: i64,
        throttled: i64,
    ) -> anyhow::Result<RunCounters> {
        let counters = RunCounters { from_export: results.len() as i32, ..RunCounters::default() };
        let batch = Batch { run_id, source: ScanSource::Export, results, counters };
        self.write_batch(batch, KbWrite::Missing(kbs), (api_calls, throttled)).await
    }

    async fn write_batch(
        &self,
        batch: Batch<'_>,
        kbs: KbWrite<'_>,
        (api_calls, throttled): (i64, i64),
    ) -> anyhow::Result<RunCounters> {
        let Batch { run_id, source, results, counters } = batch;
        let (current, rescanned) = current_set(results);
        let mut conn = self.pool.acquire().await.context("connecting to store results")?;
        // KBs first, committed on their own: a KB's row is shared by every batch, and holding its
        // lock for a whole batch transaction would make concurrent batches wait for each other.
        upsert_kbs(&mut conn, kbs, Utc::now()).await?;
        let mut tx = conn.begin().await.context("starting the results transaction")?;
        close_missing_kbs(&mut tx, run_id, &rescanned, &current).await?;
        open_missing_kbs(&mut tx, run_id, &current).await?;
        insert_device_scans(&mut tx, run_id, source, results).await?;
        Store::add_run_counters(&mut tx, run_id, counters, api_calls, throttled).await?;
        tx.commit().await.context("committing results")?;
        Ok(counters)
    }
}

/// One batch of results, from one source.
struct Batch<'a> {
    run_id: i64,
    source: ScanSource,
    results: &'a [DeviceResult],
    counters: RunCounters,
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
