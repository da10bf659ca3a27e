//! Renders a simulated device as the full machine entity of a real recording, undocumented fields included.

use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;
use rand::rngs::SmallRng;
use serde::Serialize;

use super::catalog::OsFamily;
use super::fleet::Device;
use super::odata::{Entity, Field};
use super::seeded_rng;

/// The machine entity, fields in the order of the recording in the API reference (§2).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Machine<'a> {
    id: &'a str,
    merged_into_machine_id: Option<&'a str>,
    is_potential_duplication: bool,
    is_excluded: bool,
    exclusion_reason: Option<&'a str>,
    pub(crate) computer_dns_name: String,
    first_seen: String,
    last_seen: String,
    pub(crate) os_platform: &'static str,
    os_version: Option<&'static str>,
    os_processor: &'static str,
    pub(crate) version: &'static str,
    last_ip_address: String,
    last_external_ip_address: String,
    agent_version: String,
    pub(crate) os_build: Option<i64>,
    health_status: &'static str,
    device_value: &'static str,
    rbac_group_id: i64,
    pub(crate) rbac_group_name: Option<&'static str>,
    risk_score: &'static str,
    exposure_level: &'static str,
    is_aad_joined: bool,
    aad_device_id: Option<String>,
    machine_tags: Vec<&'static str>,
    defender_av_status: &'static str,
    onboarding_status: &'static str,
    pub(crate) os_architecture: &'static str,
    managed_by: &'static str,
    managed_by_status: &'static str,
    ip_addresses: Vec<IpAddress>,
    vm_metadata: Option<()>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IpAddress {
    ip_address: String,
    mac_address: Option<String>,
    #[serde(rename = "type")]
    kind: &'static str,
    operational_status: &'static str,
}

fn pick<T: Copy>(rng: &mut SmallRng, weighted: &[(u32, T)]) -> T {
    let total: u32 = weighted.iter().map(|(w, _)| w).sum();
    let mut n = rng.random_range(0..total);
    for &(w, v) in weighted {
        if n < w {
            return v;
        }
        n -= w;
    }
    weighted[weighted.len() - 1].1
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// (version, osBuild, agent build) of a family.
fn os_release(os: OsFamily, rng: &mut SmallRng) -> (&'static str, Option<i64>, String) {
    let (version, build) = match os {
        OsFamily::Win10 => pick(rng, &[(7, ("22H2", 19045)), (3, ("21H2", 19044))]),
        OsFamily::Win11 => pick(rng, &[(5, ("23H2", 22631)), (5, ("24H2", 26100))]),
        OsFamily::Server2019 => ("1809", 17763),
        OsFamily::Server2022 => ("21H2", 20348),
        OsFamily::Linux => pick(rng, &[(1, ("Ubuntu 22.04", 0)), (1, ("RHEL 9.4", 0))]),
        OsFamily::MacOs => pick(rng, &[(1, ("14.5", 0)), (1, ("15.1", 0))]),
    };
    if os.is_windows() {
        let agent =
            format!("10.{}.{build}.{}", rng.random_range(8700..8800), rng.random_range(1000..5000));
        (version, Some(build), agent)
    } else {
        (
            version,
            None,
            format!("101.{}.{:04}", rng.random_range(24000..25000), rng.random_range(1..20)),
        )
    }
}

fn mac(rng: &mut SmallRng) -> String {
    let bytes: [u8; 6] = rng.random();
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

impl<'a> Machine<'a> {
    /// The entity of `d`; everything but its mutable state comes from the generator of its profile.
    pub(crate) fn of(d: &'a Device, seed: u64) -> Self {
        let mut rng = seeded_rng(seed, 0x9C0F11E, u64::from(d.profile));
        let prefix = match d.os {
            OsFamily::Win10 | OsFamily::Win11 => "ws",
            OsFamily::Server2019 | OsFamily::Server2022 => "srv",
            OsFamily::Linux => "lnx",
            OsFamily::MacOs => "mac",
        };
        let (version, os_build, agent_version) = os_release(d.os, &mut rng);
        const GROUPS: [(i64, Option<&str>); 3] =
            [(0, None), (140, Some("The-A-Team")), (141, Some("Servers"))];
        let group = pick(&mut rng, &[(5, 0usize), (3, 1), (2, 2)]);
        let (rbac_group_id, rbac_group_name) = GROUPS[(group + usize::from(d.rbac_moves)) % 3];
        let is_aad_joined = d.os.is_windows() && rng.random_bool(0.6);
        let aad_device_id = is_aad_joined
            .then(|| uuid::Builder::from_random_bytes(rng.random()).into_uuid().to_string());
        let lan = format!(
            "10.{}.{}.{}",
            rng.random_range(0..40),
            rng.random::<u8>(),
            rng.random_range(1..255)
        );
        let ip_addresses = vec![
            IpAddress {
                ip_address: lan.clone(),
                mac_address: Some(mac(&mut rng)),
                kind: "Ethernet",
                operational_status: "Up",
            },
            IpAddress {
                ip_address: "127.0.0.1".into(),
                mac_address: None,
                kind: "SoftwareLoopback",
                operational_status: "Up",
            },
        ];
        let health = if d.inactive {
            "Inactive"
        } else {
            pick(&mut rng, &[(92, "Active"), (4, "ImpairedCommunication"), (4, "NoSensorData")])
        };
        Machine {
            id: &d.id,
            merged_into_machine_id: None,
            is_potential_duplication: d.potential_duplicate,
            is_excluded: false,
            exclusion_reason: None,
            computer_dns_name: format!("{prefix}-{:05}.corp.contoso.com", d.profile),
            first_seen: timestamp(d.first_seen),
            last_seen: timestamp(d.last_seen),
            os_platform: d.os.platform(),
            os_version: None,
            os_processor: "x64",
            version,
            last_ip_address: lan,
            last_external_ip_address: format!("203.0.113.{}", rng.random_range(1..255)),
            agent_version,
            os_build,
            health_status: health,
            device_value: pick(&mut rng, &[(90, "Normal"), (6, "High"), (4, "Low")]),
            rbac_group_id,
            rbac_group_name,
            risk_score: pick(
                &mut rng,
                &[(20, "None"), (10, "Informational"), (35, "Low"), (25, "Medium"), (10, "High")],
            ),
            exposure_level: pick(
                &mut rng,
                &[(10, "None"), (30, "Low"), (40, "Medium"), (20, "High")],
            ),
            is_aad_joined,
            aad_device_id,
            machine_tags: pick(
                &mut rng,
                &[(7, &[][..]), (2, &["Finance"][..]), (1, &["VIP", "Finance"][..])],
            )
            .to_vec(),
            defender_av_status: pick(
                &mut rng,
                &[(90, "Updated"), (7, "NotUpdated"), (3, "Unknown")],
            ),
            onboarding_status: pick(&mut rng, &[(96, "Onboarded"), (4, "CanBeOnboarded")]),
            os_architecture: "64-bit",
            managed_by: pick(
                &mut rng,
                &[(6, "Intune"), (3, "MicrosoftDefenderForEndpoint"), (1, "Unknown")],
            ),
            managed_by_status: pick(&mut rng, &[(1, "Success"), (1, "Unknown")]),
            ip_addresses,
            vm_metadata: None,
        }
    }
}

impl Entity for Machine<'_> {
    fn field(&self, name: &'static str) -> Field<'_> {
        fn text(s: Option<&str>) -> Field<'_> {
            s.map_or(Field::Null, Field::Str)
        }
        match name {
            "id" => Field::Str(self.id),
            "mergedIntoMachineId" => text(self.merged_into_machine_id),
            "isPotentialDuplication" => Field::Bool(self.is_potential_duplication),
            "isExcluded" => Field::Bool(self.is_excluded),
            "exclusionReason" => text(self.exclusion_reason),
            "computerDnsName" => Field::Str(&self.computer_dns_name),
            "firstSeen" => Field::Str(&self.first_seen),
            "lastSeen" => Field::Str(&self.last_seen),
            "osPlatform" => Field::Str(self.os_platform),
            "osVersion" => text(self.os_version),
            "osProcessor" => Field::Str(self.os_processor),
            "version" => Field::Str(self.version),
            "lastIpAddress" => Field::Str(&self.last_ip_address),
            "lastExternalIpAddress" => Field::Str(&self.last_external_ip_address),
            "agentVersion" => Field::Str(&self.agent_version),
            "osBuild" => self.os_build.map_or(Field::Null, |b| Field::Num(b as f64)),
            "healthStatus" => Field::Str(self.health_status),
            "deviceValue" => Field::Str(self.device_value),
            "rbacGroupId" => Field::Num(self.rbac_group_id as f64),
            "rbacGroupName" => text(self.rbac_group_name),
            "riskScore" => Field::Str(self.risk_score),
            "exposureLevel" => Field::Str(self.exposure_level),
            "isAadJoined" => Field::Bool(self.is_aad_joined),
            "aadDeviceId" => text(self.aad_device_id.as_deref()),
            "machineTags" => Field::List(self.machine_tags.iter().map(|t| Field::Str(t)).collect()),
            "defenderAvStatus" => Field::Str(self.defender_av_status),
            "onboardingStatus" => Field::Str(self.onboarding_status),
            "osArchitecture" => Field::Str(self.os_architecture),
            "managedBy" => Field::Str(self.managed_by),
            "managedByStatus" => Field::Str(self.managed_by_status),
            _ => Field::Null,
        }
    }
}
