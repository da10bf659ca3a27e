//! A listed machine and a missing KB: what the API's entities are to the rest of kbwatch.
//!
//! `defender` builds them from the wire (its lenient mapping, one line per field read, is
//! `machine_fields!` in `defender/model.rs`); `store` writes them (one typed description of the
//! device columns, in `store/devices.rs`); `scan` carries them between the two. A new field is
//! added here, to that mapping and to that description, and the compiler names each place.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

/// One device as listed, with the documented fields typed and the whole entity kept in `raw`.
#[derive(Debug, Clone)]
pub struct Machine {
    /// The id exactly as listed (validated separately before any URL is built).
    pub id: String,
    pub computer_dns_name: Option<String>,
    pub os_platform: Option<String>,
    pub os_version: Option<String>,
    pub os_build: Option<i64>,
    pub health_status: Option<String>,
    pub onboarding_status: Option<String>,
    /// A number on the wire although documented as a string: kept as text either way.
    pub rbac_group_id: Option<String>,
    pub rbac_group_name: Option<String>,
    pub machine_tags: Vec<String>,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    pub is_potential_duplication: Option<bool>,
    pub merged_into_machine_id: Option<String>,
    /// The entity exactly as received (its JSON text), unknown fields included.
    pub raw: Box<RawValue>,
}

/// One missing KB of one device: the six fields of a `PublicProductFixDto`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MissingKb {
    /// KB number without the "KB" prefix.
    pub id: String,
    pub name: Option<String>,
    #[serde(default)]
    pub products_names: Option<Vec<String>>,
    pub url: Option<String>,
    pub machine_missed_on: Option<i64>,
    pub cve_addressed: Option<i32>,
}
