//! The devices of a run: the plan the listing makes, and what each device's request ended with.

use chrono::{DateTime, Utc};

use super::{MachineId, MissingKb};

/// A device the run will request.
#[derive(Debug, Clone)]
pub struct PlannedDevice {
    pub device_id: i64,
    pub machine_id: MachineId,
    /// `lastSeen` as this run listed it: kept with the device's scan, for the next plans.
    pub last_seen: Option<DateTime<Utc>>,
    /// First listed by this run, so nothing of it is stored yet: its result has no open
    /// intervals to compare with.
    pub first_scan: bool,
}

/// What one device's request ended with.
#[derive(Debug, Clone)]
pub enum DeviceOutcome {
    Ok(Vec<MissingKb>),
    NotFound,
    Failed(String),
}

impl DeviceOutcome {
    /// Its name where it is stored and counted: `ok`, `not_found`, `failed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DeviceOutcome::Ok(_) => "ok",
            DeviceOutcome::NotFound => "not_found",
            DeviceOutcome::Failed(_) => "failed",
        }
    }
}

/// Where a good scan's missing KBs came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanSource {
    /// The device's own `getmissingkbs` request.
    GetMissingKbs,
    /// The vulnerability export, for a device the per-device budget had not reached
    /// (`[tenant.export] fill`): no product names, and the KB's details as the export gave them.
    Export,
}

impl ScanSource {
    /// Its name where it is stored (`source` in `reporting.device_history`).
    pub fn as_str(self) -> &'static str {
        match self {
            ScanSource::GetMissingKbs => "getmissingkbs",
            ScanSource::Export => "export",
        }
    }
}

/// One device's result in a run.
#[derive(Debug, Clone)]
pub struct DeviceResult {
    pub device_id: i64,
    pub scanned_at: DateTime<Utc>,
    /// The device's `lastSeen` as the run listed it.
    pub last_seen: Option<DateTime<Utc>>,
    /// The device's first scan: nothing of it is stored yet (see the module docs).
    pub first_scan: bool,
    pub outcome: DeviceOutcome,
}
