//! The log behind the delta export: every evolution step diffs the fleet before and after and logs
//! `New`, `Fixed` and `Updated` events per device, stamped with the 6-hour snapshot that first carries
//! them (the new simulated present rounded down to 6 h, `snapshot::snapshot_time`). A device that
//! appears (added, or a reinstall's new entity) gives `New` events for everything, an offboarded one
//! `Fixed` events for everything. A device moved to another RBAC group, or whose software was
//! upgraded (`Evolution::upgrade_software_devices`: every software version of its rows moves), gives
//! the reference's pair: `Fixed` for every row as it was (old group, old versions), `New` for every
//! row as it is. A KB revised in the step (`Evolution::revise_kbs`) gives `Updated` events for its
//! rows on every device that missed it before the step and still does (but one with a pair: its
//! pair announces every row again).

use chrono::{DateTime, TimeDelta, Utc};

use super::fleet::{Device, Fleet};
use super::snapshot::snapshot_time;
use super::{ChangeSummary, Evolution};

/// How far back `sinceTime` may reach.
pub(crate) const MAX_DAYS_BACK: i64 = 14;

/// How long events are kept: `sinceTime`'s reach from the oldest snapshot a next link may still
/// page over (one step, a day, back; `snapshot`), and a day more.
const KEPT_DAYS: i64 = MAX_DAYS_BACK + 2;

/// One logged change of one device: the rows of `kbs` (catalog indices), and of its KB-less software if
/// `extras`, became `status` at the snapshot `at`.
pub(crate) struct Event {
    pub at: DateTime<Utc>,
    pub device: usize,
    pub kbs: Vec<u32>,
    pub extras: bool,
    /// The device's RBAC group and software versions when the event happened: its rows are
    /// rendered with them.
    pub looks: Looks,
    pub status: &'static str,
}

/// What a device's rows show besides its KBs: its RBAC group and its software versions. A step
/// that changes them gives the device's pair.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Looks {
    rbac_moves: u8,
    upgrades: u32,
}

impl Looks {
    fn of(d: &Device) -> Self {
        Looks { rbac_moves: d.rbac_moves, upgrades: d.upgrades }
    }

    /// `d` as it looked then.
    pub(crate) fn put_on(self, d: &mut Device) {
        (d.rbac_moves, d.upgrades) = (self.rbac_moves, self.upgrades);
    }
}

/// The events of every evolution step so far, oldest first.
#[derive(Default)]
pub(crate) struct ChangeLog {
    events: Vec<Event>,
}

impl ChangeLog {
    /// One evolution step of the fleet, with its changes logged.
    pub(crate) fn evolve(&mut self, fleet: &mut Fleet, e: &Evolution) -> ChangeSummary {
        let before: Vec<Option<(Vec<u32>, Looks)>> = fleet
            .devices
            .iter()
            .map(|d| (!d.offboarded).then(|| (d.missing.clone(), Looks::of(d))))
            .collect();
        let revisions: Vec<u8> = fleet.catalog.kbs.iter().map(|k| k.revision).collect();
        let summary = fleet.evolve(e);
        // A KB revised in the step (one released in it has no revision before).
        let revised =
            |k: u32| revisions.get(k as usize) != Some(&fleet.catalog.kbs[k as usize].revision);
        let at = snapshot_time(fleet.now);
        let mut push = |device, kbs: Vec<u32>, extras, looks, status| {
            if !kbs.is_empty() || extras {
                self.events.push(Event { at, device, kbs, extras, looks, status });
            }
        };
        for (i, d) in fleet.devices.iter().enumerate() {
            let was = before.get(i).and_then(Option::as_ref);
            let now = (!d.offboarded).then_some(&d.missing);
            let looks = Looks::of(d);
            match (was, now) {
                (None, None) => {}
                (None, Some(now)) => push(i, now.clone(), true, looks, "New"),
                (Some((was, old)), None) => push(i, was.clone(), true, *old, "Fixed"),
                // Another RBAC group or other versions: every row as it was goes, as it is comes.
                (Some((was, old)), Some(now)) if *old != looks => {
                    push(i, was.clone(), true, *old, "Fixed");
                    push(i, now.clone(), true, looks, "New");
                }
                (Some((was, _)), Some(now)) => {
                    let fixed = was.iter().filter(|k| !now.contains(k)).copied().collect();
                    push(i, fixed, false, looks, "Fixed");
                    let new = now.iter().filter(|k| !was.contains(k)).copied().collect();
                    push(i, new, false, looks, "New");
                    let kept = now.iter().filter(|k| was.contains(k) && revised(**k));
                    push(i, kept.copied().collect(), false, looks, "Updated");
                }
            }
        }
        let horizon = fleet.now - TimeDelta::days(KEPT_DAYS);
        self.events.retain(|ev| ev.at > horizon);
        summary
    }

    /// The events stamped after `since` that the snapshot at `snapshot` carries, oldest first.
    pub(crate) fn between(
        &self,
        since: DateTime<Utc>,
        snapshot: DateTime<Utc>,
    ) -> impl Iterator<Item = &Event> {
        self.events.iter().filter(move |ev| ev.at > since && ev.at <= snapshot)
    }
}
