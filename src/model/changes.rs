//! What the vulnerability export's delta says changed: per device, the `New` and `Fixed` events of
//! the rows that name a KB, each once.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::MachineId;

/// The most distinct events kept from one delta: about 16 MB, and far more than the KB changes of
/// two weeks of a 100,000-device fleet.
pub const MAX_KB_CHANGES: usize = 1_000_000;

/// Whether a KB became missing on a device (`New`) or stopped being missing (`Fixed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KbChangeKind {
    New,
    Fixed,
}

/// One KB of one device that became missing, or stopped being missing, by an export snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KbChange {
    pub at: DateTime<Utc>,
    /// The KB number, as getmissingkbs writes it without `KB`.
    pub kb: u32,
    pub kind: KbChangeKind,
}

/// The KB changes of a delta export per device, each once (the export has a row per CVE), with
/// counts of the rows read and left out.
#[derive(Debug, Default)]
pub struct KbChanges {
    pub devices: HashMap<MachineId, Vec<KbChange>>,
    /// Distinct changes kept, over every device.
    pub events: usize,
    /// Rows read.
    pub rows: u64,
    /// Rows that name no KB (other software, `TVM-` ids), are `Updated`, or have no time.
    pub ignored: u64,
    /// Rows whose device id is not 40 hex digits: data, never used.
    pub rejected: u64,
}

impl KbChanges {
    /// Adds a change of `device`, unless it repeats its previous one (another CVE of the same KB:
    /// the rows of one event come together). `false` once more than [`MAX_KB_CHANGES`] are kept.
    pub fn add(&mut self, device: MachineId, change: KbChange) -> bool {
        let changes = self.devices.entry(device).or_default();
        if changes.last() != Some(&change) {
            changes.push(change);
            self.events += 1;
        }
        self.events <= MAX_KB_CHANGES
    }

    /// Sorts each device's changes by time and keeps each once.
    pub fn dedup(&mut self) {
        self.events = 0;
        for changes in self.devices.values_mut() {
            changes.sort_unstable();
            changes.dedup();
            self.events += changes.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_kept_once_per_device() {
        let id = |c: char| crate::model::validate_machine_id(&c.to_string().repeat(40)).unwrap();
        let at = DateTime::<Utc>::UNIX_EPOCH;
        let new = KbChange { at, kb: 5020123, kind: KbChangeKind::New };
        let fixed = KbChange { kind: KbChangeKind::Fixed, ..new };
        let mut changes = KbChanges::default();
        for (device, change) in [('a', new), ('a', new), ('a', fixed), ('a', new), ('b', new)] {
            assert!(changes.add(id(device), change));
        }
        assert_eq!(changes.events, 4, "a repeat of the previous change is left out at once");
        changes.dedup();
        assert_eq!(changes.events, 3);
        assert_eq!(changes.devices[&id('a')], [new, fixed]);
    }
}
