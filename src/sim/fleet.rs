//! The deterministic fleet model: devices, what each one is missing, and how the fleet evolves between scans.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use rand::rngs::SmallRng;

use super::catalog::{Catalog, OsFamily};
use super::{ChangeSummary, Evolution, TruthKb, seeded_rng};

/// One simulated device. Fields that never change are derived from `profile` when the entity is rendered
/// (see `machine.rs`), which keeps a device at about a hundred bytes.
#[derive(Clone, Debug)]
pub(crate) struct Device {
    pub id: String,
    /// Seeds the static part of the entity; a duplicate (reinstall) shares it with the original, so it keeps
    /// the same `computerDnsName`.
    pub profile: u32,
    pub os: OsFamily,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// `healthStatus` forced to `Inactive` (the old entity of a reinstalled device).
    pub inactive: bool,
    pub potential_duplicate: bool,
    pub offboarded: bool,
    /// How many times the device moved to the next RBAC group (see `machine.rs`).
    pub rbac_moves: u8,
    /// How many patch-level upgrades its software had (`Evolution::upgrade_software_devices`):
    /// each moves the last number of every software version its export rows name (see
    /// `export_rows.rs`).
    pub upgrades: u32,
    /// Indices into the catalog of the updates missing now, ascending.
    pub missing: Vec<u32>,
}

/// The whole simulated tenant. A clone is a snapshot the exports page over (`snapshot`).
#[derive(Clone)]
pub(crate) struct Fleet {
    pub seed: u64,
    pub devices: Vec<Device>,
    by_id: HashMap<String, usize>,
    /// Arbitrary entities appended by `Sim::push_raw_device`, listed after the simulated devices.
    pub raw: Vec<serde_json::Value>,
    pub catalog: Catalog,
    /// Per catalog index: how many listed devices miss it (`machineMissedOn`).
    pub missed_on: Vec<u32>,
    /// The simulated present; each evolution step moves it one day on.
    pub now: DateTime<Utc>,
    next_profile: u32,
    rng: SmallRng,
}

impl Fleet {
    /// `devices` devices of `seed` at `now`, over a catalog whose updates address at most
    /// `max_cve_addressed` CVEs each.
    pub(crate) fn new(
        seed: u64,
        devices: usize,
        now: DateTime<Utc>,
        max_cve_addressed: Option<i64>,
    ) -> Self {
        let mut fleet = Fleet {
            seed,
            devices: Vec::with_capacity(devices),
            by_id: HashMap::with_capacity(devices),
            raw: Vec::new(),
            catalog: Catalog::new(seed, now, max_cve_addressed),
            missed_on: Vec::new(),
            now,
            next_profile: 0,
            rng: seeded_rng(seed, 0xE7017, 0),
        };
        for _ in 0..devices {
            fleet.add_device();
        }
        fleet.recount();
        fleet
    }

    /// Creates a device from its own seeded generator, so device `n` of a seed is the same whatever
    /// happened before it was created.
    fn add_device(&mut self) -> String {
        let profile = self.next_profile;
        self.next_profile += 1;
        let mut rng = seeded_rng(self.seed, 0xDE71CE, u64::from(profile));
        let os = OsFamily::pick(&mut rng);
        let id = self.fresh_id(&mut rng);
        let first_seen = self.now - Duration::minutes(rng.random_range(30 * 1440..700 * 1440));
        let last_seen = self.now - Duration::seconds(rng.random_range(0..20 * 3600));
        let missing = self.catalog.initial_missing(os, &mut rng);
        self.insert(Device {
            id: id.clone(),
            profile,
            os,
            first_seen,
            last_seen,
            inactive: false,
            potential_duplicate: false,
            offboarded: false,
            rbac_moves: 0,
            upgrades: 0,
            missing,
        });
        id
    }

    fn fresh_id(&self, rng: &mut SmallRng) -> String {
        loop {
            let bytes: [u8; 20] = rng.random();
            let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            if !self.by_id.contains_key(&id) {
                return id;
            }
        }
    }

    fn insert(&mut self, device: Device) {
        self.by_id.insert(device.id.clone(), self.devices.len());
        self.devices.push(device);
    }

    /// A device that is listed now (not offboarded).
    pub(crate) fn listed(&self, id: &str) -> Option<&Device> {
        self.by_id.get(id).map(|&i| &self.devices[i]).filter(|d| !d.offboarded)
    }

    pub(crate) fn listed_devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.iter().filter(|d| !d.offboarded)
    }

    pub(crate) fn listed_count(&self) -> usize {
        self.listed_devices().count() + self.raw.len()
    }

    pub(crate) fn truth(&self) -> BTreeMap<String, Vec<TruthKb>> {
        let truth_of = |d: &Device| {
            let mut kbs: Vec<TruthKb> = d
                .missing
                .iter()
                .map(|&i| {
                    let kb = &self.catalog.kbs[i as usize];
                    TruthKb { id: kb.id.clone(), cve_addressed: kb.cve_addressed }
                })
                .collect();
            kbs.sort();
            (d.id.clone(), kbs)
        };
        self.listed_devices().map(truth_of).collect()
    }

    fn recount(&mut self) {
        let mut counts = vec![0u32; self.catalog.kbs.len()];
        for d in self.devices.iter().filter(|d| !d.offboarded) {
            for &i in &d.missing {
                counts[i as usize] += 1;
            }
        }
        self.missed_on = counts;
    }

    /// One deterministic step: the same seed and the same sequence of steps give the same fleet.
    /// The simulated clock moves one day on and active devices report again (`lastSeen` moves).
    pub(crate) fn evolve(&mut self, e: &Evolution) -> ChangeSummary {
        let mut summary = ChangeSummary::default();
        self.now += Duration::days(1);
        let now = self.now;
        for d in self.devices.iter_mut().filter(|d| !d.offboarded && !d.inactive) {
            d.last_seen = now - Duration::seconds(self.rng.random_range(0..20 * 3600));
        }
        let p = e.install_updates.clamp(0.0, 1.0);
        if p > 0.0 {
            for d in self.devices.iter_mut().filter(|d| !d.offboarded) {
                let before = d.missing.len();
                d.missing.retain(|_| !self.rng.random_bool(p));
                summary.kbs_fixed += before - d.missing.len();
            }
        }
        if e.new_monthly_kb {
            summary.kbs_added += self.release_month();
        }
        if e.change_devices > 0 {
            self.change_devices(e.change_devices, &mut summary);
        }
        if e.move_rbac_devices > 0 {
            for i in self.pick_listed(e.move_rbac_devices) {
                let d = &mut self.devices[i];
                d.rbac_moves = d.rbac_moves.wrapping_add(1);
                summary.devices_moved.push(d.id.clone());
            }
        }
        if e.upgrade_software_devices > 0 {
            for i in self.pick_listed_where(e.upgrade_software_devices, |d| d.os.is_windows()) {
                let d = &mut self.devices[i];
                d.upgrades = d.upgrades.saturating_add(1);
                summary.devices_upgraded.push(d.id.clone());
            }
        }
        self.offboard(e.offboard_devices, &mut summary);
        self.duplicate(e.duplicate_devices, &mut summary);
        for _ in 0..e.add_devices {
            let id = self.add_device();
            summary.devices_added.push(id);
        }
        self.recount();
        if e.revise_kbs > 0 {
            self.revise(e.revise_kbs, &mut summary);
        }
        summary
    }

    /// Revises `n` KBs that listed devices miss (see [`Evolution::revise_kbs`]).
    fn revise(&mut self, n: usize, summary: &mut ChangeSummary) {
        let missed: Vec<usize> =
            (0..self.missed_on.len()).filter(|&i| self.missed_on[i] > 0).collect();
        let picked = rand::seq::index::sample(&mut self.rng, missed.len(), n.min(missed.len()));
        for i in picked.into_iter().map(|i| missed[i]) {
            let kb = &mut self.catalog.kbs[i];
            kb.revision = kb.revision.wrapping_add(1);
            summary.kbs_revised.push(kb.id.clone());
        }
    }

    /// Releases a month of updates and marks them missing on most Windows devices they apply to; returns the
    /// number of (device, KB) pairs added.
    fn release_month(&mut self) -> usize {
        let new = self.catalog.release_month();
        let mut added = 0;
        for d in self.devices.iter_mut().filter(|d| !d.offboarded && d.os.is_windows()) {
            for i in new.clone() {
                let kb = &self.catalog.kbs[i];
                let share = if kb.cumulative { 0.9 } else { 0.5 };
                if kb.applies_to(d.os) && self.rng.random_bool(share) {
                    d.missing.push(i as u32);
                    added += 1;
                }
            }
        }
        added
    }

    /// `n` listed devices that `keep`, ascending.
    fn pick_listed_where(&mut self, n: usize, keep: impl Fn(&Device) -> bool) -> Vec<usize> {
        let listed: Vec<usize> = (0..self.devices.len())
            .filter(|&i| !self.devices[i].offboarded && keep(&self.devices[i]))
            .collect();
        let n = n.min(listed.len());
        let mut picked: Vec<usize> = rand::seq::index::sample(&mut self.rng, listed.len(), n)
            .into_iter()
            .map(|i| listed[i])
            .collect();
        picked.sort_unstable();
        picked
    }

    fn pick_listed(&mut self, n: usize) -> Vec<usize> {
        self.pick_listed_where(n, |_| true)
    }

    /// `n` listed Windows devices install one KB they miss or get one they lacked (see
    /// [`Evolution::change_devices`]).
    fn change_devices(&mut self, n: usize, summary: &mut ChangeSummary) {
        for i in self.pick_listed_where(n, |d| d.os.is_windows()) {
            let d = &self.devices[i];
            // The recent KBs of its OS that it does not miss: what it may get.
            let lacked: Vec<u32> = (0..self.catalog.kbs.len() as u32)
                .rev()
                .filter(|&k| self.catalog.kbs[k as usize].applies_to(d.os))
                .take(12)
                .filter(|k| !d.missing.contains(k))
                .collect();
            let install = !d.missing.is_empty() && (lacked.is_empty() || self.rng.random_bool(0.5));
            let d = &mut self.devices[i];
            if install {
                d.missing.remove(self.rng.random_range(0..d.missing.len()));
                summary.kbs_fixed += 1;
            } else if !lacked.is_empty() {
                let k = lacked[self.rng.random_range(0..lacked.len())];
                let at = d.missing.partition_point(|&m| m < k);
                d.missing.insert(at, k);
                summary.kbs_added += 1;
            } else {
                continue;
            }
            summary.devices_changed.push(d.id.clone());
        }
    }

    fn offboard(&mut self, n: usize, summary: &mut ChangeSummary) {
        for i in self.pick_listed(n) {
            self.devices[i].offboarded = true;
            summary.devices_offboarded.push(self.devices[i].id.clone());
        }
    }

    /// A reinstall: a new entity with a new id and the same name; the old one stays listed, `Inactive`.
    fn duplicate(&mut self, n: usize, summary: &mut ChangeSummary) {
        for i in self.pick_listed(n) {
            let mut rng = seeded_rng(self.seed, 0xD0B1E, self.rng.random());
            let id = self.fresh_id(&mut rng);
            let old = &mut self.devices[i];
            old.inactive = true;
            old.potential_duplicate = true;
            let new = Device {
                id: id.clone(),
                first_seen: self.now - Duration::hours(2),
                last_seen: self.now - Duration::minutes(rng.random_range(0..120)),
                inactive: false,
                potential_duplicate: true,
                ..old.clone()
            };
            self.insert(new);
            summary.devices_added.push(id);
        }
    }
}
