//! Property tests of the wire model: any JSON maps or is refused, never panics, and keeps what it
//! decoded.

use proptest::prelude::*;
use serde_json::Value;

use super::tests::machine;
use super::{Object, Page, RawValue};
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
        match serde_json::from_value::<Page<Object<MissingKb>>>(raw.clone()) {
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
        if serde_json::from_slice::<Page<Object<MissingKb>>>(&bytes).is_ok() {
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
    let nested = |n: usize| format!(r#"{{"id":"{id}","x":{}1{}}}"#, "[".repeat(n), "]".repeat(n));
    assert_eq!(machine(&nested(MAX_DEPTH - 1)).id, id);
    assert!(machine(&nested(MAX_DEPTH)).id.is_empty());
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(serde_json::from_str::<Page<Object<MissingKb>>>(&deep).is_err());
    let deep_value =
        format!(r#"{{"value":[{{"id":"1","x":{}1{}}}]}}"#, "[".repeat(10_000), "]".repeat(10_000));
    assert!(serde_json::from_str::<Page<Value>>(&deep_value).is_err());
    // A page keeps the entity as text; its own parse fails: an empty id, the text as a string.
    let page: Page<Box<RawValue>> = serde_json::from_str(&deep_value).unwrap();
    let machine = super::Machine::from_raw(page.value.into_iter().next().unwrap());
    assert!(machine.id.is_empty());
    assert!(machine.raw.get().starts_with('"'), "kept as a JSON string");
}
