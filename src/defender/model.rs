//! Domain types the client returns, and their lenient mapping from the wire.
//!
//! The machine list is parsed field by field from a JSON object so that an unexpected type in one
//! field (a number where the docs say string) never loses the device; the whole entity is kept raw.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

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

impl Machine {
    /// Maps one element of a machines page. An element that is not an object with a string `id`
    /// gets an empty id, which validation rejects: it is recorded, never requested.
    ///
    /// The page keeps each entity as text; the typed fields come from a parse of this one entity
    /// that is dropped at once, so a 10,000-device page never holds 10,000 parsed trees (several
    /// times the size of their text).
    pub(crate) fn from_raw(raw: Box<RawValue>) -> Machine {
        let (parsed, raw) = match serde_json::from_str::<Value>(raw.get()) {
            Ok(parsed) => (parsed, raw),
            // Text the page's scan let through but no JSON document can hold (a lone surrogate
            // escape, too deep a nesting): kept as one JSON string, which the database accepts.
            Err(_) => (Value::Null, as_json_string(raw.get())),
        };
        let empty = Map::new();
        let obj = parsed.as_object().unwrap_or(&empty);
        let id = obj.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
        Machine {
            id,
            computer_dns_name: text(obj, "computerDnsName"),
            os_platform: text(obj, "osPlatform"),
            os_version: text(obj, "osVersion"),
            os_build: obj.get("osBuild").and_then(Value::as_i64),
            health_status: text(obj, "healthStatus"),
            onboarding_status: text(obj, "onboardingStatus"),
            rbac_group_id: text(obj, "rbacGroupId"),
            rbac_group_name: text(obj, "rbacGroupName"),
            machine_tags: obj
                .get("machineTags")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            first_seen: time(obj, "firstSeen"),
            last_seen: time(obj, "lastSeen"),
            is_potential_duplication: obj.get("isPotentialDuplication").and_then(Value::as_bool),
            merged_into_machine_id: text(obj, "mergedIntoMachineId"),
            raw,
        }
    }
}

fn as_json_string(text: &str) -> Box<RawValue> {
    let quoted = Value::String(text.to_owned()).to_string();
    RawValue::from_string(quoted).expect("a serialised string is valid JSON")
}

/// A string field, or a number rendered as text; `None` for null, absent or other types.
fn text(obj: &Map<String, Value>, key: &str) -> Option<String> {
    match obj.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn time(obj: &Map<String, Value>, key: &str) -> Option<DateTime<Utc>> {
    obj.get(key)?.as_str()?.parse::<DateTime<Utc>>().ok()
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

/// A page of an OData collection.
#[derive(Debug, Deserialize)]
pub(crate) struct Page<T> {
    pub value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    pub next_link: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mapping of `value` as a page element.
    pub(super) fn machine(value: &Value) -> Machine {
        Machine::from_raw(RawValue::from_string(value.to_string()).expect("JSON text"))
    }

    #[test]
    fn machine_keeps_unknown_fields_and_numeric_rbac_group() {
        let raw = serde_json::json!({
            "id": "556b3952acb0bff29816d267822305781cc183ec", "rbacGroupId": 140,
            "osBuild": 19044, "machineTags": ["a", 3], "lastSeen": "2023-05-04T17:40:05.684607Z",
            "vmMetadata": {"vmId": "x"}, "isPotentialDuplication": false
        });
        let m = machine(&raw);
        assert_eq!(m.rbac_group_id.as_deref(), Some("140"));
        assert_eq!(m.os_build, Some(19044));
        assert_eq!(m.machine_tags, vec!["a"]);
        assert!(m.last_seen.is_some());
        let kept: Value = serde_json::from_str(m.raw.get()).unwrap();
        assert_eq!(kept["vmMetadata"]["vmId"], "x");
    }

    #[test]
    fn machine_without_string_id_gets_an_empty_id() {
        assert_eq!(machine(&serde_json::json!({"id": 5})).id, "");
        assert_eq!(machine(&serde_json::json!([1])).id, "");
    }
}

/// Hostile input: no JSON makes the mapping panic, and what it keeps is what it was given.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::tests::machine;
    use super::{MissingKb, Page, RawValue};

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,40}".prop_map(Value::String),
            "[0-9a-fA-F]{38,42}".prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("id".to_owned()),
                        Just("lastSeen".to_owned()),
                        Just("rbacGroupId".to_owned()),
                        Just("machineTags".to_owned()),
                        Just("cveAddressed".to_owned()),
                        ".{0,12}"
                    ],
                    inner,
                    0..8
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_machine_json_maps_without_panicking(raw in json()) {
            let machine = machine(&raw);
            match raw.get("id").and_then(Value::as_str) {
                Some(id) => prop_assert_eq!(&machine.id, id),
                None => prop_assert!(machine.id.is_empty()),
            }
            prop_assert_eq!(machine.raw.get(), raw.to_string());
        }

        #[test]
        fn any_kb_page_json_decodes_or_errs(raw in json()) {
            let _ = serde_json::from_value::<Page<MissingKb>>(raw);
        }

        #[test]
        fn any_bytes_decode_or_err(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = serde_json::from_slice::<Page<MissingKb>>(&bytes);
            let _ = serde_json::from_slice::<Page<Box<RawValue>>>(&bytes);
        }

        #[test]
        fn only_forty_hex_digits_are_valid_ids(id in ".{0,60}") {
            if let Some(valid) = crate::defender::validate_machine_id(&id) {
                prop_assert_eq!(valid.as_str().len(), 40);
                prop_assert!(valid.as_str().bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            }
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(serde_json::from_str::<Page<MissingKb>>(&deep).is_err());
        let deep_value = format!(
            r#"{{"value":[{{"id":"1","x":{}1{}}}]}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert!(serde_json::from_str::<Page<Value>>(&deep_value).is_err());
        // A page keeps the entity as text; its own parse fails: an empty id, the text as a string.
        let page: Page<Box<RawValue>> = serde_json::from_str(&deep_value).unwrap();
        let machine = super::Machine::from_raw(page.value.into_iter().next().unwrap());
        assert!(machine.id.is_empty());
        assert!(machine.raw.get().starts_with('"'), "kept as a JSON string");
    }
}
