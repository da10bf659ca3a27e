//! What the full vulnerability export says each device misses: per device the KBs named by its
//! rows, each with its distinct CVE ids counted, as `getmissingkbs` would list them.
//!
//! The export has a row per device × vulnerable software × CVE, and only those: a device with no
//! vulnerable software has no row at all, like a device the export does not cover (not onboarded,
//! not yet assessed, or cut off by a snapshot), and the public record does not tell the two apart
//! (`/work/shared/reference/export-api.md` §1: "One row per device × software (vendor, name,
//! version) × CVE"; it is silent on devices without rows). So a device absent from the export is
//! [`ExportState::Unknown`], never "missing nothing"; a device with rows but none naming a KB
//! (third-party software, `TVM-` ids) is known to miss no KB. The reader is
//! `Client::export_states` in `defender`; [`ExportTally`](super::ExportTally) builds this.

use std::collections::HashMap;

use super::{MachineId, MissingKb};

/// A KB a device misses by the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExportKb {
    /// The KB number, as getmissingkbs writes it without `KB`.
    pub id: u32,
    /// Distinct CVE ids of the device's rows that name this KB (getmissingkbs' `cveAddressed`).
    pub cve_addressed: u32,
}

/// What the export says of one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportState<'a> {
    /// No row names the device: it has no vulnerable software, or the export does not cover it,
    /// and the two look alike (see the module docs). Not "missing no KB": its state is unknown.
    Unknown,
    /// Rows name the device: it misses these KBs (sorted by id), possibly none (its rows are of
    /// other software or `TVM-` ids; a device of another OS has only such rows).
    Missing(&'a [ExportKb]),
}

/// The name and URL a KB's rows gave (the first given), kept once per KB.
#[derive(Debug, Clone, Default)]
pub(super) struct KbText {
    pub name: Option<Box<str>>,
    pub url: Option<Box<str>>,
    /// Devices that miss it, by the export (getmissingkbs' `machineMissedOn`).
    pub devices: i64,
}

/// What reading the export met.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportCounts {
    /// Rows read.
    pub rows: u64,
    /// Rows that name a KB.
    pub kb_rows: u64,
    /// Rows whose device id is not 40 hex digits: data, never used.
    pub rejected: u64,
    /// Rows that are not JSON objects, or repeat a field: left out.
    pub malformed: u64,
    /// Pages read.
    pub pages: u32,
}

/// Every device the export names, with the KBs it misses, and what reading it met.
#[derive(Debug, Default)]
pub struct ExportStates {
    /// Per device (its id's 20 bytes) its KBs.
    pub(super) devices: HashMap<[u8; 20], Box<[ExportKb]>>,
    pub(super) kbs: HashMap<u32, KbText>,
    pub counts: ExportCounts,
}

impl ExportStates {
    /// What the export says of `device`.
    pub fn state(&self, device: &MachineId) -> ExportState<'_> {
        match self.devices.get(&device.to_bytes()) {
            Some(kbs) => ExportState::Missing(kbs),
            None => ExportState::Unknown,
        }
    }

    /// The KBs `device` misses as getmissingkbs' items (with the KB's name, URL and the devices
    /// that miss it, as the export gave them; no product names), or `None` when it is unknown.
    pub fn missing_kbs(&self, device: &MachineId) -> Option<Vec<MissingKb>> {
        let kbs = self.devices.get(&device.to_bytes())?;
        let item = |kb: &ExportKb| {
            let text = self.kbs.get(&kb.id).cloned().unwrap_or_default();
            MissingKb {
                id: kb.id.to_string(),
                name: text.name.map(String::from),
                products_names: None,
                url: text.url.map(String::from),
                machine_missed_on: Some(text.devices),
                cve_addressed: Some(i32::try_from(kb.cve_addressed).unwrap_or(i32::MAX)),
            }
        };
        Some(kbs.iter().map(item).collect())
    }

    /// Every device the export names, with its KBs: none of them is [`ExportState::Unknown`].
    pub fn devices(&self) -> impl Iterator<Item = (MachineId, &[ExportKb])> {
        self.devices.iter().map(|(id, kbs)| (MachineId::from_bytes(*id), &**kbs))
    }

    /// How many devices the export names.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}
