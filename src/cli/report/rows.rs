//! How each report row looks in a terminal: its columns and its cells.

use std::fmt::Display;

use chrono::{DateTime, Utc};

use super::format::Tabular;
use crate::store::{DeviceRow, FleetSummary, KbRow, RunSummary, TrendRow};

/// A cell of an optional value: `-` for null.
fn opt<T: Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

/// A timestamp to the second, UTC.
fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

impl Tabular for FleetSummary {
    const COLUMNS: &'static [&'static str] = &[
        "tenant",
        "devices",
        "devices_scanned",
        "devices_missing_any",
        "missing_kbs",
        "distinct_kbs",
        "cve_addressed_total",
    ];
    fn cells(&self) -> Vec<String> {
        let counts = [
            self.devices,
            self.devices_scanned,
            self.devices_missing_any,
            self.missing_kbs,
            self.distinct_kbs,
            self.cve_addressed_total,
        ];
        std::iter::once(self.tenant.clone()).chain(counts.iter().map(i64::to_string)).collect()
    }
}

impl Tabular for RunSummary {
    const COLUMNS: &'static [&'static str] = &[
        "scan_run_id",
        "tenant",
        "trigger",
        "started_at",
        "finished_at",
        "status",
        "devices_listed",
        "devices_scanned",
        "devices_failed",
        "api_calls",
        "throttled",
        "devices_from_export",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.scan_run_id.to_string(),
            self.tenant.clone(),
            self.trigger.clone(),
            time(self.started_at),
            opt(self.finished_at.map(time)),
            self.status.clone(),
            self.devices_listed.to_string(),
            self.devices_scanned.to_string(),
            self.devices_failed.to_string(),
            self.api_calls.to_string(),
            self.throttled.to_string(),
            self.devices_from_export.to_string(),
        ]
    }
}

impl Tabular for DeviceRow {
    const COLUMNS: &'static [&'static str] = &[
        "tenant",
        "machine_id",
        "computer_dns_name",
        "os_platform",
        "os_build",
        "health_status",
        "rbac_group_name",
        "last_seen",
        "last_scanned_at",
        "last_scan_outcome",
        "missing_kbs",
        "cve_addressed_total",
        "missing_kbs_source",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.tenant.clone(),
            self.machine_id.clone(),
            opt(self.computer_dns_name.as_deref()),
            opt(self.os_platform.as_deref()),
            opt(self.os_build),
            opt(self.health_status.as_deref()),
            opt(self.rbac_group_name.as_deref()),
            opt(self.last_seen.map(time)),
            opt(self.last_scanned_at.map(time)),
            opt(self.last_scan_outcome.as_deref()),
            opt(self.missing_kbs),
            opt(self.cve_addressed_total),
            opt(self.missing_kbs_source.as_deref()),
        ]
    }
}

impl Tabular for KbRow {
    const COLUMNS: &'static [&'static str] = &[
        "tenant",
        "kb_id",
        "kb_name",
        "devices_missing_now",
        "cve_addressed",
        "devices_remediated",
        "median_days_to_remediate",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.tenant.clone(),
            self.kb_id.clone(),
            opt(self.kb_name.as_deref()),
            self.devices_missing_now.to_string(),
            opt(self.cve_addressed),
            self.devices_remediated.to_string(),
            opt(self.median_days_to_remediate.map(|d| format!("{d:.2}"))),
        ]
    }
}

impl Tabular for TrendRow {
    const COLUMNS: &'static [&'static str] = &[
        "tenant",
        "day",
        "devices_reporting",
        "devices_missing_any",
        "missing_kbs_total",
        "cve_addressed_total",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.tenant.clone(),
            self.day.to_string(),
            self.devices_reporting.to_string(),
            self.devices_missing_any.to_string(),
            self.missing_kbs_total.to_string(),
            self.cve_addressed_total.to_string(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CSV header serde writes from the struct's field names.
    fn serde_header<T: Tabular>(row: &T) -> String {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.serialize(row).unwrap();
        let text = String::from_utf8(writer.into_inner().unwrap()).unwrap();
        text.lines().next().unwrap().to_owned()
    }

    fn check<T: Tabular>(row: T) {
        assert_eq!(serde_header(&row), T::COLUMNS.join(","), "field order is the column order");
        assert_eq!(row.cells().len(), T::COLUMNS.len(), "one cell per column");
    }

    #[test]
    fn columns_match_the_fields_and_the_cells() {
        let now = Utc::now();
        let t = || "t1".to_owned();
        check(FleetSummary {
            tenant: t(),
            devices: 1,
            devices_scanned: 1,
            devices_missing_any: 1,
            missing_kbs: 1,
            distinct_kbs: 1,
            cve_addressed_total: 1,
        });
        check(RunSummary {
            scan_run_id: 1,
            tenant: t(),
            trigger: "manual".into(),
            started_at: now,
            finished_at: None,
            status: "completed".into(),
            devices_listed: 1,
            devices_scanned: 1,
            devices_failed: 0,
            api_calls: 2,
            throttled: 0,
            devices_from_export: 0,
        });
        check(DeviceRow {
            tenant: t(),
            machine_id: "ab".into(),
            computer_dns_name: None,
            os_platform: None,
            os_build: Some(1),
            health_status: None,
            rbac_group_name: None,
            last_seen: Some(now),
            last_scanned_at: None,
            last_scan_outcome: None,
            missing_kbs: Some(1),
            cve_addressed_total: None,
            missing_kbs_source: Some("export".into()),
        });
        check(KbRow {
            tenant: t(),
            kb_id: "5001".into(),
            kb_name: None,
            devices_missing_now: 1,
            cve_addressed: Some(3),
            devices_remediated: 0,
            median_days_to_remediate: Some(1.5),
        });
        check(TrendRow {
            tenant: t(),
            day: now.date_naive(),
            devices_reporting: 1,
            devices_missing_any: 1,
            missing_kbs_total: 1,
            cve_addressed_total: 1,
        });
    }
}
