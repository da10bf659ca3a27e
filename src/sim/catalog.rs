//! The simulated KB catalog: one cumulative update per Windows family per month plus some product updates.

use chrono::{DateTime, Datelike, Utc};
use rand::Rng;
use rand::rngs::SmallRng;

use super::seeded_rng;

/// Months of history the catalog starts with (the newest one is the month of the simulated present).
pub(crate) const INITIAL_MONTHS: u32 = 24;

/// The operating system family of a simulated device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OsFamily {
    Win10,
    Win11,
    Server2019,
    Server2022,
    Linux,
    MacOs,
}

impl OsFamily {
    pub(crate) const WINDOWS: [OsFamily; 4] =
        [Self::Win10, Self::Win11, Self::Server2019, Self::Server2022];

    /// Picks a family with a realistic mix: mostly Windows clients and servers, some Linux and macOS.
    pub(crate) fn pick(rng: &mut SmallRng) -> Self {
        match rng.random_range(0..100) {
            0..35 => Self::Win10,
            35..70 => Self::Win11,
            70..78 => Self::Server2019,
            78..88 => Self::Server2022,
            88..96 => Self::Linux,
            _ => Self::MacOs,
        }
    }

    pub(crate) fn is_windows(self) -> bool {
        !matches!(self, Self::Linux | Self::MacOs)
    }

    /// The `osPlatform` value of the machine entity.
    pub(crate) fn platform(self) -> &'static str {
        match self {
            Self::Win10 => "Windows10",
            Self::Win11 => "Windows11",
            Self::Server2019 => "WindowsServer2019",
            Self::Server2022 => "WindowsServer2022",
            Self::Linux => "Linux",
            Self::MacOs => "macOS",
        }
    }

    /// The TVM product name of the OS itself, as in `productsNames`.
    pub(crate) fn product(self) -> &'static str {
        match self {
            Self::Win10 => "windows_10",
            Self::Win11 => "windows_11",
            Self::Server2019 => "windows_server_2019",
            Self::Server2022 => "windows_server_2022",
            Self::Linux => "linux",
            Self::MacOs => "mac_os",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// One update of the catalog, as getmissingkbs reports it.
#[derive(Clone, Debug)]
pub(crate) struct Kb {
    pub id: String,
    pub name: String,
    pub products: Vec<&'static str>,
    pub url: String,
    pub cve_addressed: i64,
    /// Bit set of the [`OsFamily`] values the update applies to.
    applies: u8,
    /// Whether it is the monthly cumulative update (missing on most devices when new).
    pub cumulative: bool,
    /// How many times its advisory was revised (`Evolution::revise_kbs`): each revision rescores
    /// the CVEs it addresses, and changes nothing of who misses it.
    pub revision: u8,
}

impl Kb {
    pub(crate) fn applies_to(&self, os: OsFamily) -> bool {
        self.applies & os.bit() != 0
    }
}

/// Every update released so far, oldest first; a device refers to an update by its index here.
#[derive(Clone)]
pub(crate) struct Catalog {
    pub kbs: Vec<Kb>,
    /// The calendar month of the newest release, as `year * 12 + month0`.
    newest_month: i32,
    next_id: u32,
    /// The most CVEs one update addresses (`SimConfig::max_cve_addressed`); `None`: no cap.
    max_cve_addressed: Option<i64>,
    rng: SmallRng,
}

impl Catalog {
    /// Builds [`INITIAL_MONTHS`] months of releases ending with the month of `now`; no update,
    /// then or later, addresses more than `max_cve_addressed` CVEs.
    pub(crate) fn new(seed: u64, now: DateTime<Utc>, max_cve_addressed: Option<i64>) -> Self {
        let mut rng = seeded_rng(seed, 0xCA7A, 0);
        let next_id = 5_020_000 + rng.random_range(0..20_000);
        let now_month = now.year() * 12 + now.month0() as i32;
        let mut catalog = Catalog {
            kbs: Vec::new(),
            newest_month: now_month - INITIAL_MONTHS as i32,
            next_id,
            max_cve_addressed,
            rng,
        };
        for _ in 0..INITIAL_MONTHS {
            catalog.release_month();
        }
        catalog
    }

    /// Releases the updates of the next month; returns the range of their indices.
    pub(crate) fn release_month(&mut self) -> std::ops::Range<usize> {
        self.newest_month += 1;
        let start = self.kbs.len();
        let month = month_name(self.newest_month);
        for os in OsFamily::WINDOWS {
            let mut products = vec![os.product()];
            if matches!(os, OsFamily::Win10 | OsFamily::Win11) {
                products.push("edge");
            }
            if os == OsFamily::Win10 && self.rng.random_bool(0.5) {
                products.push("internet_explorer");
            }
            let cve = self.rng.random_range(20..=150);
            self.push(&month, products, cve, os.bit(), true);
        }
        let all_windows = OsFamily::WINDOWS.iter().fold(0, |m, os| m | os.bit());
        if self.rng.random_bool(0.6) {
            let cve = self.rng.random_range(1..=12);
            self.push(&month, vec!["microsoft_.net_framework"], cve, all_windows, false);
        }
        if self.rng.random_bool(0.4) {
            let cve = self.rng.random_range(1..=30);
            let clients = OsFamily::Win10.bit() | OsFamily::Win11.bit();
            self.push(&month, vec!["office"], cve, clients, false);
        }
        start..self.kbs.len()
    }

    fn push(
        &mut self,
        month: &str,
        products: Vec<&'static str>,
        cve: i64,
        applies: u8,
        cumulative: bool,
    ) {
        let id = self.next_id.to_string();
        self.next_id += self.rng.random_range(3..60);
        // Capped after the draw, so the generator, and every other value, is the same either way.
        let cve = self.max_cve_addressed.map_or(cve, |max| cve.min(max));
        self.kbs.push(Kb {
            url: format!("https://catalog.update.microsoft.com/v7/site/Search.aspx?q=KB{id}"),
            id,
            name: format!("{month} Security Updates"),
            products,
            cve_addressed: cve,
            applies,
            cumulative,
            revision: 0,
        });
    }

    /// A realistic initial set of missing updates for a new device: none for non-Windows devices, else 0 to 12,
    /// mostly recent ones.
    pub(crate) fn initial_missing(&self, os: OsFamily, rng: &mut SmallRng) -> Vec<u32> {
        if !os.is_windows() || rng.random_bool(0.2) {
            return Vec::new();
        }
        let count = rng.random_range(1..=12usize).min(rng.random_range(1..=12usize));
        let applicable: Vec<u32> = (0..self.kbs.len() as u32)
            .rev()
            .filter(|&i| self.kbs[i as usize].applies_to(os))
            .collect();
        let window = &applicable[..applicable.len().min(count * 3 + 4)];
        let mut picked: Vec<u32> =
            rand::seq::index::sample(rng, window.len(), count.min(window.len()))
                .into_iter()
                .map(|i| window[i])
                .collect();
        picked.sort_unstable();
        picked
    }
}

/// "November 2026" for a month number `year * 12 + month0`.
fn month_name(month: i32) -> String {
    const NAMES: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    format!("{} {}", NAMES[month.rem_euclid(12) as usize], month.div_euclid(12))
}
