//! The simulated Defender for Endpoint API: a real HTTP(S) server, deterministic from a seed, driven by tests
//! through a typed [`Sim`] handle and by operators through `kbwatch sim` and its `/admin` routes.
//!
//! # Layout
//! `fleet` holds the devices and evolves them, `catalog` the KB releases, `machine` renders the machine
//! entity, `odata` parses `$filter`. `routes` answers the API behind `auth` (the token endpoints and the
//! bearer check; `identity` checks client assertions, `tokens` keeps what was issued), `quota` and
//! `faults` decide what goes wrong, `envelope` is the API's error body; `guard` is what every API request
//! passes first. `export` serves the full vulnerability export (rows from `export_rows`), `export_delta`
//! the delta export from the events `changelog` logs at each evolution step; both page over the
//! 6-hour snapshot `snapshot` keeps. `admin` is the operator's surface, behind its own token. `state`
//! is what the handle and the handlers share behind an `Arc`; `handle` starts the server, `tls` makes
//! the test CA. Imports go one way: `handle` → `routes` → `export_delta` → `export` → `guard`,
//! `admin` → `auth` → `state` → `changelog` → `snapshot` → `faults`, `fleet`, `identity`, `quota`,
//! `stats`, `tokens` → `export_rows`, `machine`, `envelope`, `catalog` and the model types and
//! helpers of this file; nothing imports back up (`scripts/import-graph.py` checks it).
//!
//! The server stops when the [`Sim`] is dropped (or [`Sim::shutdown`] is called): open connections are closed
//! at once, without a drain.

mod admin;
mod auth;
mod catalog;
mod changelog;
mod envelope;
mod export;
mod export_delta;
mod export_rows;
mod faults;
mod fleet;
mod guard;
mod handle;
mod identity;
mod machine;
mod odata;
mod quota;
mod routes;
mod snapshot;
mod state;
mod stats;
#[cfg(test)]
mod tests;
mod tls;
mod tokens;

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};

pub use auth::IDENTITY_HEADER;
pub use faults::{DeviceFault, Faults, Throttle};
pub use handle::Sim;
pub use quota::Endpoint as Route;
pub use stats::SimStats;
/// A throw-away CA and `localhost` certificate, for other test servers beside the simulator.
pub use tls::{TestTls, generate as generate_test_tls};

/// How the simulator is set up. Every field has a default (see [`SimConfig::default`]).
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seeds the fleet, the catalog and the fault rolls. Default 1.
    pub seed: u64,
    /// Initial fleet size. Default 200.
    pub devices: usize,
    /// The only client id the token endpoint accepts. Default `kbwatch-sim-client`.
    pub client_id: String,
    /// The secret that goes with it. Default `kbwatch-sim-secret`.
    pub client_secret: String,
    /// `expires_in` of issued tokens, and how long they are accepted. Default 3599 s.
    pub token_lifetime: Duration,
    /// A bearer token that is always valid (for `token_file` auth). Default none.
    pub static_token: Option<String>,
    /// Per-endpoint quota; `None` (the default) is unlimited.
    pub quota: Option<SimQuota>,
    /// Quota of each vulnerability export endpoint. Default [`EXPORT_QUOTA`], the documented limits.
    pub export_quota: Option<SimQuota>,
    /// Serve HTTPS with a freshly generated test CA ([`Sim::ca_pem`]). Default false.
    pub tls: bool,
    /// Where to listen. Default `127.0.0.1:0` (a free port). An address that is not loopback is
    /// refused unless `allow_remote` is set.
    pub listen: SocketAddr,
    /// Allow a `listen` address other machines can reach. The client secret is published and the
    /// fleet is fake: only for a lab network. Default false.
    pub allow_remote: bool,
    /// Faults from the start. Default none.
    pub faults: Faults,
    /// The simulated present (the newest KB month, `lastSeen` values). Default: the wall clock at start,
    /// rounded down to the hour. KB ids and CVE counts do not depend on it.
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    /// The most CVEs one KB addresses: every KB's `cveAddressed` (getmissingkbs, [`Sim::truth`],
    /// and the export's rows, one per CVE of the KB) is capped at it, for the KBs of the start and
    /// those [`Evolution::new_monthly_kb`] releases later. For tests of large fleets that read the
    /// whole export: 60,000 devices of seed 1 export 8.2 M rows uncapped, 0.48 M capped at 2
    /// (rows without a KB are not capped). At least 1 ([`Sim::start`] refuses less: a KB without
    /// a CVE would have no row in the export). Default `None`, no cap: the catalog the seed
    /// gives. The cap changes no other value: the same devices miss the same KBs.
    pub max_cve_addressed: Option<i64>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            devices: 200,
            client_id: "kbwatch-sim-client".into(),
            client_secret: "kbwatch-sim-secret".into(),
            token_lifetime: Duration::from_secs(3599),
            static_token: None,
            quota: None,
            export_quota: Some(EXPORT_QUOTA),
            tls: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            allow_remote: false,
            faults: Faults::default(),
            now: None,
            max_cve_addressed: None,
        }
    }
}

/// A quota enforced separately on the machines list and on getmissingkbs, over sliding windows of 60 s and
/// 3,600 s (the exact rule is documented on the private `quota::Quotas`: a request is admitted if fewer than
/// `per_minute` admitted requests arrived in the last 60 s and fewer than `per_hour` in the last 3,600 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimQuota {
    pub per_minute: u32,
    pub per_hour: u32,
}

/// The documented limits of the JSON vulnerability exports, full and delta: 30 calls a minute, 1,000 an hour.
pub const EXPORT_QUOTA: SimQuota = SimQuota { per_minute: 30, per_hour: 1000 };

/// One KB a device is missing, as the admin surface reports it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TruthKb {
    pub id: String,
    pub cve_addressed: i64,
}

/// One step of fleet evolution; fields left out of the admin JSON default to "no change".
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Evolution {
    /// Share (0..=1) of (device, KB) pairs that get fixed.
    pub install_updates: f64,
    /// A new month of updates is released, missing on most Windows devices.
    pub new_monthly_kb: bool,
    pub add_devices: usize,
    pub offboard_devices: usize,
    /// Reinstalls: a new id with the same `computerDnsName`; the old entity stays listed, `Inactive`.
    pub duplicate_devices: usize,
    /// Devices that move to another RBAC group (the delta export gives Fixed + New pairs for them).
    pub move_rbac_devices: usize,
    /// Listed Windows devices whose missing KBs change: each installs one of the KBs it misses, or
    /// (even odds, and always when it misses none) gets one of the recent KBs of its OS it lacked.
    pub change_devices: usize,
    /// KBs that listed devices miss whose advisory is revised: the CVEs each addresses get a new
    /// CVSS score (and severity), so every device that still misses one has an `Updated` row in
    /// the delta export per CVE of it (the reference's `Updated`: "score, severity, paths, or
    /// `RecommendedSecurityUpdate` changed"). Nobody's missing KBs change.
    pub revise_kbs: usize,
    /// Listed Windows devices whose software has a patch-level upgrade: the last number of every
    /// software version of their export rows moves on (the OS revision, and with it `osVersion`;
    /// Edge, Office, .NET, IE; third-party software), and so every row id, which names the
    /// version. The delta export gives the reference's Fixed + New pair for every row: `Fixed` at
    /// the old versions, `New` at the new ones. Nobody's missing KBs or CVEs change.
    pub upgrade_software_devices: usize,
}

/// What one evolution step changed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChangeSummary {
    /// (device, KB) pairs removed by installed updates.
    pub kbs_fixed: usize,
    /// (device, KB) pairs added by the new month's releases.
    pub kbs_added: usize,
    /// New ids, including the new entities of duplicated devices.
    pub devices_added: Vec<String>,
    pub devices_offboarded: Vec<String>,
    /// Devices moved to another RBAC group.
    pub devices_moved: Vec<String>,
    /// Devices whose missing KBs `change_devices` changed (their `kbs_fixed` and `kbs_added` are
    /// counted above).
    pub devices_changed: Vec<String>,
    /// Ids of the KBs `revise_kbs` revised.
    #[serde(default)]
    pub kbs_revised: Vec<String>,
    /// Devices whose software `upgrade_software_devices` upgraded.
    #[serde(default)]
    pub devices_upgraded: Vec<String>,
}

/// Locks a mutex; a panic in another holder leaves data that is still usable for a simulator.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// A generator for item `index` of stream `stream` of a seed, independent of every other item.
pub(crate) fn seeded_rng(seed: u64, stream: u64, index: u64) -> SmallRng {
    let mut x = seed
        ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03);
    // splitmix64 finaliser, so neighbouring indices give unrelated seeds.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    SmallRng::seed_from_u64(x ^ (x >> 31))
}
