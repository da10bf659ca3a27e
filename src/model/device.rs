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
