//! What the vulnerability export's delta says changed, held against each device's last good scan:
//! the devices the plan puts first when `[tenant.export]` is on.

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use super::Store;
use crate::model::{KbChangeKind, KbChanges};

impl Store {
    /// The oldest last good scan of the tenant's devices that a plan may request (listed, valid
    /// ids, not merged into another): how far back their changes are needed. `None` when none of
    /// them has a good scan.
    pub async fn oldest_good_scan(&self, tenant_id: i32) -> anyhow::Result<Option<DateTime<Utc>>> {
        sqlx::query_scalar(
            "SELECT min(st.good_scanned_at) FROM kbwatch.device d
             JOIN kbwatch.device_state st ON st.device_id = d.device_id
             WHERE d.tenant_id = $1 AND d.gone_at IS NULL AND d.id_valid
               AND d.merged_into_machine_id IS NULL",
        )
        .bind(tenant_id)
        .fetch_one(&self.pool)
        .await
        .context("reading the oldest good scan")
    }

    /// The tenant's devices (`device_id`, ascending) of which `changes` name a KB that changed
    /// after their last good scan: one whose `New` and `Fixed` events since then do not cancel
    /// out. (A device moved to another RBAC group, or whose software version changed, gets a
    /// `Fixed` and a `New` for each KB it misses, and none of them changed.) Devices never scanned
    /// well are not among them.
    pub async fn changed_since_good_scan(
        &self,
        tenant_id: i32,
        changes: &KbChanges,
    ) -> anyhow::Result<Vec<i64>> {
        let events = changes.devices.iter().flat_map(|(id, c)| c.iter().map(move |c| (id, c)));
        let (mut ids, mut kbs, mut steps, mut times) = (vec![], vec![], vec![], vec![]);
        for (id, change) in events {
            ids.push(id.as_str());
            kbs.push(i64::from(change.kb));
            steps.push(match change.kind {
                KbChangeKind::New => 1i32,
                KbChangeKind::Fixed => -1,
            });
            times.push(change.at);
        }
        sqlx::query_scalar(
            "SELECT DISTINCT device_id FROM (
                 SELECT d.device_id
                 FROM unnest($2::text[], $3::int8[], $4::int4[], $5::timestamptz[])
                      AS e(machine_id, kb, step, at)
                 JOIN kbwatch.device d ON d.tenant_id = $1 AND d.machine_id = e.machine_id
                 JOIN kbwatch.device_state st ON st.device_id = d.device_id
                 WHERE e.at > st.good_scanned_at
                 GROUP BY d.device_id, e.kb
                 HAVING sum(e.step) <> 0) AS changed
             ORDER BY device_id",
        )
        .bind(tenant_id)
        .bind(ids)
        .bind(kbs)
        .bind(steps)
        .bind(times)
        .fetch_all(&self.pool)
        .await
        .context("finding the devices the export says changed")
    }
}
