//! The device table: the latest listed state of each device, and the scan plan drawn from it.

use std::sync::LazyLock;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use futures::TryStreamExt as _;

use super::columns::{Columns as _, columns};
use super::{Store, pg_json, pg_text};
use crate::model::{Machine, PlannedDevice, validate_machine_id};

/// A listed device ready to store: the entity and the id it is known by.
pub struct ListedDevice<'a> {
    /// Lower-case 40-hex id when valid, else the id exactly as listed.
    pub machine_id: String,
    pub id_valid: bool,
    pub machine: &'a Machine,
}

/// The devices a run's listing handed to the fan-out as it stored them: those it saw first (at
/// `listed_at`) with ids up to `through`.
#[derive(Debug, Clone, Copy)]
pub struct HandedOver {
    pub listed_at: DateTime<Utc>,
    pub through: i64,
}

columns! {
    /// Listed devices as `kbwatch.device` stores them.
    pub(super) struct DeviceColumns<'a> of DeviceValues in "kbwatch.device" {
        /// Lower-case 40-hex id when valid, else the id exactly as listed.
        machine_id: String,
        id_valid: bool,
        computer_dns_name: Option<String>,
        os_platform: Option<String>,
        os_version: Option<String>,
        os_build: Option<i64>,
        health_status: Option<String>,
        onboarding_status: Option<String>,
        rbac_group_id: Option<String>,
        rbac_group_name: Option<String>,
        /// A JSON array: an array of arrays cannot be unnested into one array per row.
        machine_tags: String = "ARRAY(SELECT jsonb_array_elements_text(u.machine_tags::jsonb))",
        first_seen: Option<DateTime<Utc>>,
        last_seen: Option<DateTime<Utc>>,
        is_potential_duplication: Option<bool>,
        merged_into_machine_id: Option<String>,
        /// The entity's JSON text as listed.
        raw: &'a str = "u.raw::json",
    }
}

/// Listed devices inserted or refreshed (`$1` tenant, `$2` listed at, `$3` run, then the
/// columns); returns those first listed now that can be requested.
static UPSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH stored AS (
         INSERT INTO kbwatch.device AS d (
             tenant_id, first_listed_at, last_listed_at, last_listed_run_id, {columns})
         SELECT $1, $2, $2, $3, {values}
         FROM {unnest}
         ON CONFLICT (tenant_id, machine_id) DO UPDATE SET {updates},
             last_listed_at = EXCLUDED.last_listed_at,
             last_listed_run_id = EXCLUDED.last_listed_run_id, gone_at = NULL
         RETURNING device_id, machine_id, last_seen, id_valid, merged_into_machine_id,
                   first_listed_at)
         SELECT device_id, machine_id, last_seen FROM stored
         WHERE first_listed_at = $2 AND id_valid AND merged_into_machine_id IS NULL
         ORDER BY device_id",
        columns = DeviceColumns::insert_columns(),
        values = DeviceColumns::select_list(),
        unnest = DeviceColumns::unnest(4),
        // The key, and what the key decides.
        updates = DeviceColumns::set_excluded(&["machine_id", "id_valid"]),
    )
});

/// The row of a listed device. Every field of the machine is named, so that a new one does not
/// compile until it is stored or left out here.
fn values<'a>(d: &ListedDevice<'a>) -> DeviceValues<'a> {
    let Machine {
        id: _, // stored as `machine_id`, lower-cased when valid
        computer_dns_name,
        os_platform,
        os_version,
        os_build,
        health_status,
        onboarding_status,
        rbac_group_id,
        rbac_group_name,
        machine_tags,
        first_seen,
        last_seen,
        is_potential_duplication,
        merged_into_machine_id,
        raw,
    } = d.machine;
    let text = |s: &Option<String>| s.as_deref().map(pg_text);
    DeviceValues {
        machine_id: pg_text(&d.machine_id),
        id_valid: d.id_valid,
        computer_dns_name: text(computer_dns_name),
        os_platform: text(os_platform),
        os_version: text(os_version),
        os_build: *os_build,
        health_status: text(health_status),
        onboarding_status: text(onboarding_status),
        rbac_group_id: text(rbac_group_id),
        rbac_group_name: text(rbac_group_name),
        machine_tags: pg_json(&serde_json::json!(machine_tags)),
        first_seen: *first_seen,
        last_seen: *last_seen,
        is_potential_duplication: *is_potential_duplication,
        merged_into_machine_id: text(merged_into_machine_id),
        raw: raw.get(),
    }
}

impl Store {
    /// Inserts or refreshes listed devices; a device that was gone and is listed again comes back.
    /// Returns the devices this listing (`listed_at`) saw first that can be requested: never
    /// scanned, they lead the plan, and a scan requests them while the rest is listed.
    pub async fn upsert_listed_devices(
        &self,
        tenant_id: i32,
        run_id: i64,
        listed_at: DateTime<Utc>,
        devices: &[ListedDevice<'_>],
    ) -> anyhow::Result<Vec<PlannedDevice>> {
        let columns = DeviceColumns::from_rows(devices.iter().map(values));
        let query = sqlx::query_as::<_, (i64, String, Option<DateTime<Utc>>)>(UPSERT.as_str())
            .bind(tenant_id)
            .bind(listed_at)
            .bind(run_id);
        columns
            .bind(query)
            .fetch(&self.pool)
            .try_filter_map(|row| async move { Ok(planned(row, true)) })
            .try_collect()
            .await
            .context("storing listed devices")
    }

    /// After a complete listing: devices this run did not list are marked gone.
    pub async fn mark_unlisted_gone(
        &self,
        tenant_id: i32,
        run_id: i64,
        at: DateTime<Utc>,
    ) -> anyhow::Result<u64> {
        let done = sqlx::query(
            "UPDATE kbwatch.device SET gone_at = $3
             WHERE tenant_id = $1 AND last_listed_run_id <> $2 AND gone_at IS NULL",
        )
        .bind(tenant_id)
        .bind(run_id)
        .bind(at)
        .execute(&self.pool)
        .await
        .context("marking unlisted devices gone")?;
        Ok(done.rows_affected())
    }

    /// The devices this run should request, but for those its listing already handed over, most
    /// in need first:
    /// never scanned, then those `changed` (the export says their missing KBs changed since their
    /// last good scan; empty without the export), then those whose only states came from the
    /// export, then those whose `lastSeen` moved since their last good scan, then the stalest by
    /// getmissingkbs. Devices getmissingkbs answered more recently than `rescan_after` are left
    /// out unless `changed` (a state from the export never is a reason to leave one out); invalid
    /// ids and devices merged into another always are.
    pub async fn plan_devices(
        &self,
        tenant_id: i32,
        run_id: i64,
        handed_over: HandedOver,
        now: DateTime<Utc>,
        rescan_after: Duration,
        changed: &[i64],
    ) -> anyhow::Result<Vec<PlannedDevice>> {
        let cutoff =
            now - chrono::Duration::from_std(rescan_after).unwrap_or(chrono::Duration::MAX);
        // Streamed into the plan, so that a large fleet's rows are not held twice.
        sqlx::query_as::<_, (i64, String, Option<DateTime<Utc>>)>(
            "SELECT d.device_id, d.machine_id, d.last_seen FROM kbwatch.device d
             LEFT JOIN kbwatch.device_state st ON st.device_id = d.device_id
             LEFT JOIN (SELECT DISTINCT unnest($6::int8[]) AS device_id) ch
                    ON ch.device_id = d.device_id
             WHERE d.tenant_id = $1 AND d.last_listed_run_id = $2
               AND (d.first_listed_at < $4 OR d.device_id > $5)
               AND d.id_valid AND d.merged_into_machine_id IS NULL
               AND (st.good_requested_at IS NULL OR st.good_requested_at <= $3
                    OR ch.device_id IS NOT NULL)
             ORDER BY st.good_scanned_at IS NULL DESC,
                      ch.device_id IS NOT NULL DESC,
                      st.good_requested_at IS NULL DESC,
                      d.last_seen IS DISTINCT FROM st.good_last_seen DESC,
                      st.good_requested_at ASC, d.device_id",
        )
        .bind(tenant_id)
        .bind(run_id)
        .bind(cutoff)
        .bind(handed_over.listed_at)
        .bind(handed_over.through)
        .bind(changed)
        .fetch(&self.pool)
        .try_filter_map(|row| async move { Ok(planned(row, false)) })
        .try_collect()
        .await
        .context("planning the scan")
    }
}

/// A stored device as planned. Only valid ids are planned; the check stays so that a URL never
/// depends on that.
pub(super) fn planned(
    (device_id, text, last_seen): (i64, String, Option<DateTime<Utc>>),
    first_scan: bool,
) -> Option<PlannedDevice> {
    let id = validate_machine_id(&text);
    if id.is_none() {
        tracing::warn!(device_id, machine_id = ?text, "Not planning a stored id that is not 40 hex digits");
    }
    id.map(|machine_id| PlannedDevice { device_id, machine_id, last_seen, first_scan })
}
