//! What `[tenant.export] fill` reads and keeps: the devices a run may fill from the full export,
//! and when the tenant's export was last read through. The states themselves are written by
//! [`Store::write_export_states`].

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use futures::TryStreamExt as _;

use super::Store;
use super::devices::planned;
use crate::model::PlannedDevice;

impl Store {
    /// The devices run `run_id` listed and does not request (`requested`: every device its plan
    /// handed over), whose last good state, of either source, is older than `stale_before` or
    /// that have none, by `device_id`. Invalid ids and devices merged into another are left out,
    /// as the plan leaves them out. `first_scan` is set for a device without a good state: it has
    /// no intervals to compare with.
    pub async fn fill_candidates(
        &self,
        tenant_id: i32,
        run_id: i64,
        requested: &[i64],
        stale_before: DateTime<Utc>,
    ) -> anyhow::Result<Vec<PlannedDevice>> {
        sqlx::query_as::<_, (i64, String, Option<DateTime<Utc>>, bool)>(
            "SELECT d.device_id, d.machine_id, d.last_seen, st.good_scanned_at IS NULL
             FROM kbwatch.device d
             LEFT JOIN kbwatch.device_state st ON st.device_id = d.device_id
             WHERE d.tenant_id = $1 AND d.last_listed_run_id = $2
               AND d.id_valid AND d.merged_into_machine_id IS NULL
               AND (st.good_scanned_at IS NULL OR st.good_scanned_at <= $3)
               AND NOT EXISTS (SELECT 1 FROM unnest($4::int8[]) AS r(device_id)
                               WHERE r.device_id = d.device_id)
             ORDER BY d.device_id",
        )
        .bind(tenant_id)
        .bind(run_id)
        .bind(stale_before)
        .bind(requested)
        .fetch(&self.pool)
        .try_filter_map(|(id, text, last_seen, first)| async move {
            Ok(planned((id, text, last_seen), first))
        })
        .try_collect()
        .await
        .context("finding the devices the export may fill")
    }

    /// When the tenant's full export was last read through, if ever.
    pub async fn export_read_at(&self, tenant_id: i32) -> anyhow::Result<Option<DateTime<Utc>>> {
        sqlx::query_scalar("SELECT export_read_at FROM kbwatch.tenant WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_one(&self.pool)
            .await
            .context("reading when the export was last read")
    }

    /// Records that the tenant's full export was read through, from `at`.
    pub async fn set_export_read_at(
        &self,
        tenant_id: i32,
        at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        sqlx::query("UPDATE kbwatch.tenant SET export_read_at = $2 WHERE tenant_id = $1")
            .bind(tenant_id)
            .bind(at)
            .execute(&self.pool)
            .await
            .context("recording the export's read")?;
        Ok(())
    }
}
