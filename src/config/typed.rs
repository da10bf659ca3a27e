//! Deserializing the merged table into [`Config`], reporting every unknown key and every type error
//! with its key path.
//!
//! Unknown keys come from `serde_ignored`, all of them in one pass, as `unknown key` at their exact
//! path. (`#[serde(deny_unknown_fields)]` would stop at the first one, with serde's own wording and
//! without the key in the path.) Type errors come from `serde_path_to_error`; serde stops at the
//! first, so the key is set aside and deserialization tried again, until the table deserializes:
//! every type error is then reported, and the semantic checks still run on the default of each key
//! set aside.
//!
//! An env override enters the table as a string, since nothing but the target type says what it is:
//! when its key wants something else (an integer), the string is read as a TOML value and tried
//! again. No list says which keys are integers.

use std::collections::BTreeMap;

use serde::Deserialize as _;
use toml::{Table, Value};

use super::path::{self, Segment};
use crate::config::{Config, Problem};

/// The outcome of deserializing the merged table.
pub(super) struct Typed {
    pub config: Option<Config>,
    pub problems: Vec<Problem>,
    /// Keys set aside after a type error; the semantic checks of what is below them are moot.
    pub set_aside: Vec<String>,
    /// The table as last deserialized: overrides read as their key's type, keys set aside removed.
    pub table: Table,
}

/// At most this many attempts: each sets one key aside or retypes one override.
const MAX_ATTEMPTS: usize = 64;

/// Deserializes `table`. `overrides` maps the key path of each env override to its variable.
pub(super) fn deserialize(mut table: Table, overrides: &BTreeMap<String, String>) -> Typed {
    let mut unknown: Vec<String> = Vec::new();
    let mut problems = Vec::new();
    let mut set_aside: Vec<String> = Vec::new();
    let mut retyped: Vec<String> = Vec::new();
    for _ in 0..MAX_ATTEMPTS {
        let (result, ignored) = attempt(&table);
        for path in ignored {
            if !unknown.contains(&path) {
                unknown.push(path);
            }
        }
        let err = match result {
            Ok(config) => {
                problems.extend(unknown_problems(unknown));
                return Typed { config: Some(config), problems, set_aside, table };
            }
            Err(err) => err,
        };
        let segments = error_segments(err.path());
        let key = path::to_string(&segments);
        let message = err.inner().message().to_owned();
        if missing_field_of(&message).is_some_and(|f| set_aside.contains(&path::join(&key, f))) {
            break; // the key was there with the wrong type, already reported
        }
        let message = match overrides.get(&key) {
            Some(var) if !retyped.contains(&key) => {
                if let Some(value) = path::get(&table, &segments).and_then(as_toml_value) {
                    path::replace(&mut table, &segments, value);
                    retyped.push(key);
                    continue;
                }
                override_message(var, message)
            }
            _ => type_message(message),
        };
        problems.push(Problem { message, path: key.clone() });
        if !path::remove(&mut table, &segments) {
            break;
        }
        set_aside.push(key);
    }
    problems.extend(unknown_problems(unknown));
    Typed { config: None, problems, set_aside, table }
}

/// The top-level keys of the file (`database`, ..., `tenant`), read from `Config`'s own
/// `Deserialize` so that no list repeats them.
pub(super) fn sections() -> &'static [&'static str] {
    let mut fields = StructFields(&[]);
    // Fails by design once the names are read; nothing else is wanted.
    let _ = Config::deserialize(&mut fields);
    fields.0
}

/// A deserializer that records the field names of the struct asked of it, and gives no value.
struct StructFields(&'static [&'static str]);

impl<'de> serde::Deserializer<'de> for &mut StructFields {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("only the field names are read"))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0 = fields;
        self.deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

type Attempt = (Result<Config, serde_path_to_error::Error<toml::de::Error>>, Vec<String>);

/// One deserialization of `table`: the config or its first type error, and the unknown keys seen.
fn attempt(table: &Table) -> Attempt {
    let mut ignored = Vec::new();
    let mut on_ignored = |path: serde_ignored::Path<'_>| ignored.push(ignored_path(&path));
    let de = serde_ignored::Deserializer::new(Value::Table(table.clone()), &mut on_ignored);
    let result = serde_path_to_error::deserialize(de);
    (result, ignored)
}

/// An override's string read as a TOML value of another type (`30`, `1_000_000`, `true`).
fn as_toml_value(value: &Value) -> Option<Value> {
    let text = value.as_str()?;
    let mut parsed = format!("v = {text}").parse::<Table>().ok()?;
    match parsed.remove("v") {
        Some(Value::String(_)) | None => None,
        Some(_) if !parsed.is_empty() => None,
        Some(value) => Some(value),
    }
}

/// The problem of an override whose text is not of its key's type; it names the variable, never
/// the value.
fn override_message(var: &str, message: String) -> String {
    let expected = message.rsplit_once(", expected ").map(|(_, expected)| expected);
    let integer = ["u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64"];
    match expected {
        Some(t) if integer.contains(&t) => format!("{var} must be an integer"),
        _ => type_message(message),
    }
}

/// serde's message, without the value when a plain string was expected: that key may hold a
/// secret (`SecretString` reads a `String`), so no such value is ever echoed.
fn type_message(message: String) -> String {
    if !message.ends_with(", expected a string") {
        return message;
    }
    match (message.find(" `"), message.rfind('`')) {
        (Some(start), Some(end)) if start < end => {
            format!("{}{} (value not shown)", &message[..start], &message[end + 1..])
        }
        _ => message,
    }
}

fn unknown_problems(paths: Vec<String>) -> impl Iterator<Item = Problem> {
    paths.into_iter().map(|path| {
        // `tenant = [...]` written below a `[table]` header is a key of that table.
        let message = if path.ends_with(".tenant") {
            "unknown key (a `tenant = [...]` array belongs above the first [table] header)"
        } else {
            "unknown key"
        };
        Problem { path, message: message.into() }
    })
}

/// `field` of serde's "missing field `field`".
fn missing_field_of(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.strip_suffix('`')
}

fn error_segments(path: &serde_path_to_error::Path) -> Vec<Segment> {
    use serde_path_to_error::Segment as S;
    path.iter()
        .filter_map(|s| match s {
            S::Seq { index } => Some(Segment::Index(*index)),
            S::Map { key } => Some(Segment::Key(key.clone())),
            S::Enum { .. } | S::Unknown => None,
        })
        .collect()
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    fn walk(path: &serde_ignored::Path<'_>, out: &mut Vec<Segment>) {
        use serde_ignored::Path as P;
        match path {
            P::Root => {}
            P::Seq { parent, index } => {
                walk(parent, out);
                out.push(Segment::Index(*index));
            }
            P::Map { parent, key } => {
                walk(parent, out);
                out.push(Segment::Key(key.clone()));
            }
            P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
                walk(parent, out)
            }
        }
    }
    let mut segments = Vec::new();
    walk(path, &mut segments);
    path::to_string(&segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_the_top_level_keys() {
        assert_eq!(sections().first(), Some(&"database"));
        assert!(sections().contains(&"tenant"), "the serde name, not the field name");
    }

    #[test]
    fn a_value_meant_as_a_string_is_not_echoed() {
        let shown = type_message("invalid type: integer `987654`, expected a string".into());
        assert_eq!(shown, "invalid type: integer, expected a string (value not shown)");
        let kept = type_message("invalid type: string \"lots\", expected u32".into());
        assert_eq!(kept, "invalid type: string \"lots\", expected u32");
    }

    #[test]
    fn a_tenant_array_below_a_table_header_gets_a_hint() {
        let found: Vec<Problem> =
            unknown_problems(vec!["log.tenant".into(), "log.colour".into()]).collect();
        assert!(found[0].message.contains("above the first [table] header"), "{found:?}");
        assert_eq!(found[1].message, "unknown key");
    }

    #[test]
    fn overrides_are_read_as_toml_only_when_not_a_string() {
        let read = |s: &str| as_toml_value(&Value::String(s.into()));
        assert_eq!(read("1_000_000"), Some(Value::Integer(1_000_000)));
        assert_eq!(read(" 30 "), Some(Value::Integer(30)));
        assert_eq!(read("many"), None);
        assert_eq!(read("\"quoted\""), None);
        assert_eq!(read("1\nw = 2"), None);
    }
}
