//! The rows of the vulnerability export (one per device × software × CVE), derived from the fleet's truth:
//! for each KB a device misses now, one row per CVE the KB addresses (`cveAddressed` distinct ids), with
//! `recommendedSecurityUpdateId` = the KB number as getmissingkbs writes it (no `KB` prefix). Beside them,
//! rows that carry no KB: third-party software (`recommendedSecurityUpdateId` null, sometimes a
//! `recommendedSecurityUpdate` that looks like a number) and `TVM-` ids on the Windows product.
//! Each software upgrade of the device (`Device::upgrades`) moves the last number of every version
//! (and so every row id, which names it) one on; its CVEs and KBs stay.

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Serialize;

use super::catalog::Kb;
use super::fleet::{Device, Fleet};
use super::machine::Machine;
use super::seeded_rng;

/// One record, camelCase as the JSON export writes it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Row {
    pub id: String,
    pub device_id: String,
    pub rbac_group_name: &'static str,
    pub device_name: String,
    pub os_platform: &'static str,
    pub os_version: String,
    pub os_architecture: &'static str,
    pub software_vendor: &'static str,
    pub software_name: &'static str,
    pub software_version: String,
    pub cve_id: String,
    pub cvss_score: f64,
    pub vulnerability_severity_level: &'static str,
    pub recommended_security_update: Option<String>,
    pub recommended_security_update_id: Option<String>,
    pub recommended_security_update_url: Option<String>,
    pub disk_paths: Vec<String>,
    pub registry_paths: Vec<String>,
    pub last_seen_timestamp: String,
    pub first_seen_timestamp: String,
    pub exploitability_level: &'static str,
    pub recommendation_reference: String,
    pub security_update_available: bool,
}

/// Third-party software: (vendor, name, versions, for Windows (else Linux), `recommendedSecurityUpdate`).
type ThirdParty = (&'static str, &'static str, [&'static str; 3], bool, Option<&'static str>);
const THIRD_PARTY: [ThirdParty; 4] = [
    (
        "google",
        "chrome",
        ["130.0.6723.117", "131.0.6778.86", "131.0.6778.140"],
        true,
        Some("ADV 200002"),
    ),
    ("mozilla", "firefox", ["131.0.3.0", "132.0.1.0", "133.0.0.0"], true, Some("193220")),
    ("7-zip", "7-zip", ["22.01.0.0", "23.01.0.0", "24.07.0.0"], true, None),
    ("openssl", "openssl", ["3.0.2", "3.0.13", "3.2.1"], false, None),
];

/// The first CVE number of the KB rows; KB `i` of the catalog uses `KB_CVE_BASE + i * 160 + j`.
const KB_CVE_BASE: usize = 20_000;

/// How many rows `d` has, without rendering them.
pub(crate) fn row_count(fleet: &Fleet, d: &Device) -> usize {
    some_row_count(fleet, d, &d.missing, true)
}

/// How many rows [`some_rows`] renders for the same arguments, without rendering them.
pub(crate) fn some_row_count(fleet: &Fleet, d: &Device, kbs: &[u32], with_extras: bool) -> usize {
    let of_kbs: i64 = kbs.iter().map(|&i| fleet.catalog.kbs[i as usize].cve_addressed).sum();
    let of_extras = match with_extras {
        true => extras(fleet.seed, d).iter().map(|e| e.cves.len()).sum::<usize>(),
        false => 0,
    };
    of_kbs as usize + of_extras
}

/// The CVE ids KB `index` addresses: `cve_addressed` distinct ids, stable for the seed's catalog.
pub(crate) fn kb_cves(index: usize, kb: &Kb) -> impl Iterator<Item = String> + '_ {
    let year = kb.name.split_whitespace().nth(1).unwrap_or("2026");
    (0..kb.cve_addressed as usize)
        .map(move |j| format!("CVE-{year}-{}", KB_CVE_BASE + index * 160 + j))
}

/// A row without a KB: one software item and its CVEs.
struct Extra {
    vendor: &'static str,
    name: &'static str,
    version: String,
    cves: Vec<String>,
    update: Option<&'static str>,
    available: bool,
}

/// The rows of `d` that carry no KB; they depend only on its profile.
fn extras(seed: u64, d: &Device) -> Vec<Extra> {
    let mut rng = seeded_rng(seed, 0xE8_7A5, u64::from(d.profile));
    let mut out = Vec::new();
    for (n, &(vendor, name, versions, windows, update)) in THIRD_PARTY.iter().enumerate() {
        if windows != d.os.is_windows() || !rng.random_bool(0.35) {
            continue;
        }
        let v = rng.random_range(0..versions.len());
        let cves =
            (0..1 + (n + v) % 3).map(|c| format!("CVE-2026-{}", 40_000 + n * 100 + v * 10 + c));
        out.push(Extra {
            vendor,
            name,
            version: versions[v].to_string(),
            cves: cves.collect(),
            update,
            available: update.is_some(),
        });
    }
    if d.os.is_windows() && rng.random_bool(0.25) {
        let k = rng.random_range(1..4);
        out.push(Extra {
            vendor: "microsoft",
            name: "",
            version: String::new(),
            cves: vec![format!("TVM-{k:04}-00000000")],
            update: None,
            available: false,
        });
    }
    out
}

/// `version` after `upgrades` patch-level upgrades: its last number that many on
/// (`4.8.9032.0` → `4.8.9032.2` after two); unchanged after none.
fn upgraded(version: &str, upgrades: u32) -> String {
    let last = version.rsplit_once('.').and_then(|(head, n)| Some((head, n.parse::<u32>().ok()?)));
    match last {
        Some((head, n)) if upgrades > 0 => format!("{head}.{}", n.saturating_add(upgrades)),
        _ => version.to_string(),
    }
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The exported software name of a TVM product name (`microsoft_.net_framework` → `.net_framework`).
fn software_name(product: &'static str) -> &'static str {
    product.strip_prefix("microsoft_").unwrap_or(product)
}

/// Severity, CVSS score and exploitability of CVE number `n` after `revision` revisions of its KB:
/// each revision moves the score 0.7 on (wrapping within 3.0..=9.8), so it always differs from the
/// one before.
fn score(seed: u64, n: u64, revision: u8) -> (&'static str, f64, &'static str) {
    let mut rng = seeded_rng(seed, 0xC7E5, n);
    let tenths = 30 + (rng.random_range(0..69u32) + 7 * u32::from(revision)) % 69;
    let cvss = f64::from(tenths) / 10.0;
    let level = match cvss {
        9.0.. => "Critical",
        7.0.. => "High",
        4.0.. => "Medium",
        _ => "Low",
    };
    let exploit = if rng.random_bool(0.1) { "ExploitIsPublic" } else { "NoExploit" };
    (level, cvss, exploit)
}

/// Appends every row of `d`, KB rows first (KBs ascending, then CVEs), then the rows without a KB.
pub(crate) fn device_rows(fleet: &Fleet, d: &Device, out: &mut Vec<Row>) {
    some_rows(fleet, d, &d.missing, true, out);
}

/// Appends the rows of `d` for the KBs `kbs` (catalog indices) and, if `extras`, its rows without a KB.
pub(crate) fn some_rows(
    fleet: &Fleet,
    d: &Device,
    kbs: &[u32],
    with_extras: bool,
    out: &mut Vec<Row>,
) {
    let m = Machine::of(d, fleet.seed);
    let os_version = match m.os_build {
        Some(build) => {
            let revision =
                seeded_rng(fleet.seed, 0x0B5, u64::from(d.profile)).random_range(1000..6000u32);
            upgraded(&format!("10.0.{build}.{revision}"), d.upgrades)
        }
        None => m.version.to_string(),
    };
    let base = |vendor: &'static str, name: &'static str, version: String, cve: String, rev| {
        let n = cve.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        let (level, cvss, exploit) = score(fleet.seed, n, rev);
        Row {
            id: format!("{}_{name}_{version}_{cve}_", d.id),
            device_id: d.id.clone(),
            rbac_group_name: m.rbac_group_name.unwrap_or("Unassigned"),
            device_name: m.computer_dns_name.clone(),
            os_platform: m.os_platform,
            os_version: os_version.clone(),
            os_architecture: m.os_architecture,
            software_vendor: vendor,
            software_name: name,
            software_version: version,
            cve_id: cve,
            cvss_score: cvss,
            vulnerability_severity_level: level,
            recommended_security_update: None,
            recommended_security_update_id: None,
            recommended_security_update_url: None,
            disk_paths: Vec::new(),
            registry_paths: Vec::new(),
            last_seen_timestamp: stamp(d.last_seen),
            first_seen_timestamp: stamp(d.first_seen),
            exploitability_level: exploit,
            recommendation_reference: format!("va-_-{vendor}-_-{name}"),
            security_update_available: false,
        }
    };
    let version_of = |product: &'static str| match product {
        "edge" => upgraded(&format!("131.0.2903.{}", 50 + d.profile % 40), d.upgrades),
        "internet_explorer" => upgraded("11.0.19041.4355", d.upgrades),
        "microsoft_.net_framework" => upgraded("4.8.9032.0", d.upgrades),
        "office" => upgraded(&format!("16.0.{}.20000", 17000 + d.profile % 900), d.upgrades),
        _ => os_version.clone(),
    };
    for &i in kbs {
        let kb = &fleet.catalog.kbs[i as usize];
        for (j, cve) in kb_cves(i as usize, kb).enumerate() {
            let product = kb.products[j % kb.products.len()];
            let (name, version) = (software_name(product), version_of(product));
            let mut row = base("microsoft", name, version, cve, kb.revision);
            row.recommended_security_update = Some(kb.name.clone());
            row.recommended_security_update_id = Some(kb.id.clone());
            row.recommended_security_update_url = Some(kb.url.clone());
            row.security_update_available = true;
            out.push(row);
        }
    }
    let extras = if with_extras { extras(fleet.seed, d) } else { Vec::new() };
    for e in extras {
        let (name, version) = match e.name {
            "" => (d.os.product(), os_version.clone()),
            _ => (e.name, upgraded(&e.version, d.upgrades)),
        };
        for cve in e.cves {
            let mut row = base(e.vendor, name, version.clone(), cve, 0);
            row.recommended_security_update = e.update.map(str::to_string);
            row.security_update_available = e.available;
            if e.vendor != "microsoft" {
                row.disk_paths = vec![if d.os.is_windows() {
                    format!("C:\\Program Files\\{}\\{}.exe", e.vendor, e.name)
                } else {
                    format!("/usr/bin/{}", e.name)
                }];
            }
            out.push(row);
        }
    }
}

#[cfg(test)]
mod tests {
    /// Each upgrade gives a version of its own, past 255 (the count was a `u8`, which wrapped
    /// to versions already shown).
    #[test]
    fn every_upgrade_moves_the_version_on() {
        assert_eq!(super::upgraded("4.8.9032.0", 0), "4.8.9032.0");
        assert_eq!(super::upgraded("4.8.9032.0", 2), "4.8.9032.2");
        assert_eq!(super::upgraded("4.8.9032.0", 300), "4.8.9032.300");
        assert_eq!(super::upgraded("4.8.9032.0", u32::MAX), format!("4.8.9032.{}", u32::MAX));
    }
}
