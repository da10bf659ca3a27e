//! Domain types the client returns, and their lenient mapping from the wire.
//!
//! The machine list is parsed field by field from a JSON object so that an unexpected type in one
//! field (a number where the docs say string) never loses the device; the whole entity is kept raw.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::model::{Machine, as_json_string, storable};

impl Machine {
    /// Maps one element of a machines page. An element that is not an object with a string `id`
    /// gets an empty id, which validation rejects: it is recorded, never requested.
    ///
    /// The page keeps each entity as text; the typed fields come from the few values read out of
    /// it, so a 10,000-device page never holds 10,000 parsed trees (several times the size of
    /// their text), and building one tree per entity, to read fourteen fields of it, is not paid.
    pub(crate) fn from_raw(raw: Box<RawValue>) -> Machine {
        // Only the fields read are looked at, each in its own small parse; the rest is skipped
        // unchecked, hence the scan for what the database would refuse. An entity this cannot
        // read (not an object, a key twice) goes the slow way below.
        if !storable(raw.get()) {
            return Machine::from_tree(raw);
        }
        Machine::from_fields(raw).unwrap_or_else(Machine::from_tree)
    }

    /// [`Machine::from_raw`] through a parse of the whole entity.
    fn from_tree(raw: Box<RawValue>) -> Machine {
        let (parsed, raw) = match serde_json::from_str::<Value>(raw.get()) {
            Ok(parsed) => (parsed, raw),
            // Text the page's scan let through but no JSON document can hold (a lone surrogate
            // escape, too deep a nesting): kept as one JSON string, which the database accepts.
            Err(_) => (Value::Null, as_json_string(raw.get())),
        };
        let empty = Map::new();
        Machine::from_object(parsed.as_object().unwrap_or(&empty), raw)
    }
}

/// Declares, once, the fields of [`Machine`] read from an entity: each field, its name on the
/// wire, and the function that makes it of the JSON value (absent: `None`). It generates `Fields`,
/// the fields as the JSON text they were sent as, and the two mappings: from `Fields` (the fast
/// way) and from a parsed object (the slow way), which cannot drift apart.
macro_rules! machine_fields {
    ($( $field:ident: $wire:literal => $read:ident ),+ $(,)?) => {
        /// The fields of a machine that kbwatch reads, each as the JSON text it was sent as.
        #[derive(Deserialize)]
        struct Fields<'a> {
            $( #[serde(borrow, rename = $wire)] $field: Option<&'a RawValue>, )+
        }

        impl Machine {
            /// The machine of the fields read out of its text; the text back if they cannot be.
            fn from_fields(raw: Box<RawValue>) -> Result<Machine, Box<RawValue>> {
                let Ok(fields) = serde_json::from_str::<Fields<'_>>(raw.get()) else {
                    return Err(raw);
                };
                let value = |field: Option<&RawValue>| {
                    field.and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
                };
                Ok(Machine { $( $field: $read(value(fields.$field).as_ref()), )+ raw })
            }

            fn from_object(object: &Map<String, Value>, raw: Box<RawValue>) -> Machine {
                Machine { $( $field: $read(object.get($wire)), )+ raw }
            }
        }
    };
}

machine_fields! {
    id: "id" => id,
    computer_dns_name: "computerDnsName" => text,
    os_platform: "osPlatform" => text,
    os_version: "osVersion" => text,
    os_build: "osBuild" => integer,
    health_status: "healthStatus" => text,
    onboarding_status: "onboardingStatus" => text,
    rbac_group_id: "rbacGroupId" => text,
    rbac_group_name: "rbacGroupName" => text,
    machine_tags: "machineTags" => tags,
    first_seen: "firstSeen" => time,
    last_seen: "lastSeen" => time,
    is_potential_duplication: "isPotentialDuplication" => boolean,
    merged_into_machine_id: "mergedIntoMachineId" => text,
}

/// A string id; empty for anything else, which validation rejects.
fn id(value: Option<&Value>) -> String {
    value.and_then(Value::as_str).map(str::to_owned).unwrap_or_default()
}

fn integer(value: Option<&Value>) -> Option<i64> {
    value?.as_i64()
}

fn boolean(value: Option<&Value>) -> Option<bool> {
    value?.as_bool()
}

/// A string field, or a number rendered as text; `None` for null, absent or other types.
fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn time(value: Option<&Value>) -> Option<DateTime<Utc>> {
    value?.as_str()?.parse::<DateTime<Utc>>().ok()
}

/// The strings of an array; other elements are left out.
fn tags(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
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
    use super::{Page, RawValue};
    use crate::model::{MAX_DEPTH, MissingKb};

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
        fn reading_only_the_known_fields_maps_as_a_whole_parse_does(raw in json()) {
            let text = || RawValue::from_string(raw.to_string()).unwrap();
            let (fast, whole) = (super::Machine::from_raw(text()), super::Machine::from_tree(text()));
            prop_assert_eq!(format!("{fast:?}"), format!("{whole:?}"));
        }

        #[test]
        fn a_kb_page_decodes_only_with_a_value_array_and_keeps_every_item(raw in json()) {
            let items = raw.get("value").and_then(Value::as_array).map(Vec::len);
            match serde_json::from_value::<Page<MissingKb>>(raw.clone()) {
                Ok(page) => {
                    prop_assert_eq!(Some(page.value.len()), items, "{}", raw);
                    let link = raw.get("@odata.nextLink").and_then(Value::as_str);
                    prop_assert_eq!(page.next_link.as_deref(), link);
                }
                // Refused: no value array, an item that is no KB, or a next link that is no text.
                Err(_) => {
                    let bad_link = raw.get("@odata.nextLink").is_some_and(|l| !l.is_string() && !l.is_null());
                    prop_assert!(items != Some(0) || bad_link, "an empty page is refused: {}", raw);
                }
            }
        }

        #[test]
        fn bytes_decode_as_a_page_only_when_they_are_json(
            bytes in prop::collection::vec(any::<u8>(), 0..512),
        ) {
            let json = serde_json::from_slice::<Value>(&bytes).is_ok();
            if serde_json::from_slice::<Page<MissingKb>>(&bytes).is_ok() {
                prop_assert!(json);
            }
            if let Ok(page) = serde_json::from_slice::<Page<Box<RawValue>>>(&bytes) {
                prop_assert!(json);
                for item in &page.value {
                    prop_assert!(serde_json::from_str::<Value>(item.get()).is_ok());
                }
            }
        }

        #[test]
        fn only_forty_hex_digits_are_valid_ids(id in ".{0,60}") {
            if let Some(valid) = crate::model::validate_machine_id(&id) {
                prop_assert_eq!(valid.as_str().len(), 40);
                prop_assert!(valid.as_str().bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            }
        }
    }

    #[test]
    fn an_entity_the_database_would_refuse_is_kept_as_a_string() {
        let machine =
            |text: &str| super::Machine::from_raw(RawValue::from_string(text.into()).unwrap());
        let id = "ab".repeat(20);
        for refused in [r#""\ud800""#, r#""\udc00x""#, r#""\ud800\u0041""#, r#""x\ud83d""#] {
            let text = format!(r#"{{"id":"{id}","unread":{refused}}}"#);
            let m = machine(&text);
            assert!(m.id.is_empty(), "{text}");
            assert!(m.raw.get().starts_with('"'), "{text}: kept as a JSON string");
        }
        let text = format!(r#"{{"id":"{id}","unread":"\ud83d\ude00 \\u d800 \"\ud800"}}"#);
        let kept = format!(r#"{{"id":"{id}","unread":"\ud83d\ude00"}}"#);
        assert!(machine(&text).raw.get().starts_with('"'), "a lone half after an escaped quote");
        let m = machine(&kept);
        assert_eq!(
            (m.id.as_str(), m.raw.get()),
            (id.as_str(), kept.as_str()),
            "a pair is kept as sent"
        );
        let nested =
            |n: usize| format!(r#"{{"id":"{id}","x":{}1{}}}"#, "[".repeat(n), "]".repeat(n));
        assert_eq!(machine(&nested(MAX_DEPTH - 1)).id, id);
        assert!(machine(&nested(MAX_DEPTH)).id.is_empty());
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
