//! Domain types the client returns, and their lenient mapping from the wire.
//!
//! The machine list is parsed field by field from a JSON object so that an unexpected type in one
//! field (a number where the docs say string) never loses the device; the whole entity is kept raw.

use std::fmt;
use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
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
        // (Only an object is an entity: serde reads an array as `Fields`, field by field.)
        if !raw.get().starts_with('{') || !storable(raw.get()) {
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

/// A page of an OData collection: a JSON object only.
#[derive(Debug)]
pub(crate) struct Page<T> {
    pub value: Vec<T>,
    pub next_link: Option<String>,
}

/// A page's fields, read through [`Object`].
#[derive(Deserialize)]
struct PageFields<T> {
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Page<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Object(PageFields { value, next_link }) = Object::deserialize(deserializer)?;
        Ok(Page { value, next_link })
    }
}

/// A `T` read from a JSON object only. serde's derived `Deserialize` also reads a struct from a
/// JSON array, field by field in order, which no Defender API sends: `[[], null]` would be an
/// empty page, `["5005",...]` a KB.
#[derive(Debug)]
pub(crate) struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Fields<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_map(Fields(PhantomData)).map(Object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MissingKb;

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

    /// A derived struct would take `[value, nextLink]` by position.
    #[test]
    fn a_page_is_an_object_never_an_array() {
        let page: Page<Value> = serde_json::from_str(r#"{"value": [1], "@odata.nextLink": "n"}"#)
            .expect("an object is a page");
        assert_eq!((page.value.len(), page.next_link.as_deref()), (1, Some("n")));
        for array in [r#"[[], null]"#, r#"[[1], "https://elsewhere.example/"]"#] {
            let err = serde_json::from_str::<Page<Value>>(array).expect_err(array);
            assert!(err.to_string().contains("expected a JSON object"), "{err}");
        }
    }

    /// Nor is a KB or a machine an array read by position.
    #[test]
    fn an_item_is_an_object_never_an_array() {
        let kb = r#"{"value": [["5005", "n", ["p"], "u", 1, 2]]}"#;
        let err = serde_json::from_str::<Page<Object<MissingKb>>>(kb).expect_err(kb);
        assert!(err.to_string().contains("expected a JSON object"), "{err}");
        let kb = r#"{"value": [{"id": "5005", "cveAddressed": 2}]}"#;
        let page: Page<Object<MissingKb>> = serde_json::from_str(kb).expect("an object is a KB");
        assert_eq!((page.value[0].0.id.as_str(), page.value[0].0.cve_addressed), ("5005", Some(2)));

        let id = "0123456789abcdef0123456789abcdef01234567";
        let mut fields = vec![Value::Null; 14];
        fields[0] = Value::from(id);
        assert_eq!(machine(&Value::Array(fields)).id, "", "read by position");
        assert_eq!(machine(&serde_json::json!({ "id": id })).id, id);
    }
}

/// Hostile input: no JSON makes the mapping panic, and what it keeps is what it was given.
#[cfg(test)]
#[path = "model_props.rs"]
mod properties;
