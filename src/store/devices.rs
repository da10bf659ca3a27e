//! The device table: the latest listed state of each device, and the scan plan drawn from it.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use futures::TryStreamExt as _;

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
        let text = |f: fn(&Machine) -> &Option<String>| -> Vec<Option<String>> {
            devices.iter().map(|d| f(d.machine).as_deref().map(pg_text)).collect()
        };
        sqlx::query_as::<_, (i64, String, Option<DateTime<Utc>>)>(
            "WITH stored AS (
             INSERT INTO kbwatch.device AS d (
                 tenant_id, machine_id, id_valid, computer_dns_name, os_platform, os_version, os_build,
                 health_status, onboarding_status, rbac_group_id, rbac_group_name, machine_tags,
                 first_seen, last_seen, is_potential_duplication, merged_into_machine_id, raw,
                 first_listed_at, last_listed_at, last_listed_run_id)
             SELECT $1, u.machine_id, u.id_valid, u.dns, u.platform, u.version, u.build, u.health,
                    u.onboarding, u.rbac_id, u.rbac_name,
                    ARRAY(SELECT jsonb_array_elements_text(u.tags::jsonb)),
                    u.first_seen, u.last_seen, u.dup, u.merged, u.raw::json, $2, $2, $3
             FROM UNNEST($4::text[], $5::bool[], $6::text[], $7::text[], $8::text[], $9::int8[],
                         $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],
                         $15::timestamptz[], $16::timestamptz[], $17::bool[], $18::text[], $19::text[])
                  AS u(machine_id, id_valid, dns, platform, version, build, health, onboarding,
                       rbac_id, rbac_name, tags, first_seen, last_seen, dup, merged, raw)
             ON CONFLICT (tenant_id, machine_id) DO UPDATE SET
                 computer_dns_name = EXCLUDED.computer_dns_name, os_platform = EXCLUDED.os_platform,
                 os_version = EXCLUDED.os_version, os_build = EXCLUDED.os_build,
                 health_status = EXCLUDED.health_status, onboarding_status = EXCLUDED.onboarding_status,
                 rbac_group_id = EXCLUDED.rbac_group_id, rbac_group_name = EXCLUDED.rbac_group_name,
                 machine_tags = EXCLUDED.machine_tags, first_seen = EXCLUDED.first_seen,
                 last_seen = EXCLUDED.last_seen,
                 is_potential_duplication = EXCLUDED.is_potential_duplication,
                 merged_into_machine_id = EXCLUDED.merged_into_machine_id, raw = EXCLUDED.raw,
                 last_listed_at = EXCLUDED.last_listed_at,
                 last_listed_run_id = EXCLUDED.last_listed_run_id, gone_at = NULL
             RETURNING device_id, machine_id, last_seen, id_valid, merged_into_machine_id,
                       first_listed_at)
             SELECT device_id, machine_id, last_seen FROM stored
             WHERE first_listed_at = $2 AND id_valid AND merged_into_machine_id IS NULL
             ORDER BY device_id",
        )
        .bind(tenant_id)
        .bind(listed_at)
        .bind(run_id)
        .bind(devices.iter().map(|d| pg_text(&d.machine_id)).collect::<Vec<_>>())
        .bind(devices.iter().map(|d| d.id_valid).collect::<Vec<_>>())
        .bind(text(|m| &m.computer_dns_name))
        .bind(text(|m| &m.os_platform))
        .bind(text(|m| &m.os_version))
        .bind(devices.iter().map(|d| d.machine.os_build).collect::<Vec<_>>())
        .bind(text(|m| &m.health_status))
        .bind(text(|m| &m.onboarding_status))
        .bind(text(|m| &m.rbac_group_id))
        .bind(text(|m| &m.rbac_group_name))
        .bind(devices.iter().map(|d| pg_json(&serde_json::json!(d.machine.machine_tags))).collect::<Vec<_>>())
        .bind(devices.iter().map(|d| d.machine.first_seen).collect::<Vec<_>>())
        .bind(devices.iter().map(|d| d.machine.last_seen).collect::<Vec<_>>())
        .bind(devices.iter().map(|d| d.machine.is_potential_duplication).collect::<Vec<_>>())
        .bind(text(|m| &m.merged_into_machine_id))
        .bind(devices.iter().map(|d| d.machine.raw.get()).collect::<Vec<_>>())
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
    /// never scanned, then those whose `lastSeen` moved since their last good scan, then the
    /// stalest. Devices with a good scan newer than `rescan_after`, invalid ids and devices merged
    /// into another are left out.
    pub async fn plan_devices(
        &self,
        tenant_id: i32,
        run_id: i64,
        handed_over: HandedOver,
        now: DateTime<Utc>,
        rescan_after: Duration,
    ) -> anyhow::Result<Vec<PlannedDevice>> {
        let cutoff =
            now - chrono::Duration::from_std(rescan_after).unwrap_or(chrono::Duration::MAX);
        // Streamed into the plan, so that a large fleet's rows are not held twice.
        sqlx::query_as::<_, (i64, String, Option<DateTime<Utc>>)>(
            "SELECT d.device_id, d.machine_id, d.last_seen FROM kbwatch.device d
             LEFT JOIN LATERAL (
                 SELECT s.scanned_at, s.last_seen FROM kbwatch.device_scan s
                 WHERE s.device_id = d.device_id AND s.outcome = 'ok'
                 ORDER BY s.scan_run_id DESC LIMIT 1) good ON true
             WHERE d.tenant_id = $1 AND d.last_listed_run_id = $2
               AND (d.first_listed_at < $4 OR d.device_id > $5)
               AND d.id_valid AND d.merged_into_machine_id IS NULL
               AND (good.scanned_at IS NULL OR good.scanned_at <= $3)
             ORDER BY good.scanned_at IS NULL DESC,
                      d.last_seen IS DISTINCT FROM good.last_seen DESC,
                      good.scanned_at ASC, d.device_id",
        )
        .bind(tenant_id)
        .bind(run_id)
        .bind(cutoff)
        .bind(handed_over.listed_at)
        .bind(handed_over.through)
        .fetch(&self.pool)
        .try_filter_map(|row| async move { Ok(planned(row, false)) })
        .try_collect()
        .await
        .context("planning the scan")
    }
}

/// A stored device as planned. Only valid ids are planned; the check stays so that a URL never
/// depends on that.
fn planned(
    (device_id, text, last_seen): (i64, String, Option<DateTime<Utc>>),
    first_scan: bool,
) -> Option<PlannedDevice> {
    let id = validate_machine_id(&text);
    if id.is_none() {
        tracing::warn!(device_id, machine_id = ?text, "Not planning a stored id that is not 40 hex digits");
    }
    id.map(|machine_id| PlannedDevice { device_id, machine_id, last_seen, first_scan })
}
