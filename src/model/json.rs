//! JSON text that a document store can take as it is: no half of a surrogate pair escaped alone, no
//! nesting deeper than serde_json (and so kbwatch) reads.
//!
//! `defender` reads a machine entity field by field and keeps the rest as text, unchecked; this is
//! the check of that text, so that what is kept can also be stored (and read back) as a document.
//! It is a property of the text, not of one database: PostgreSQL's `json` input refuses the same
//! things (its one other refusal, a `\u0000` escape, `store` rewrites where it writes).

use serde_json::Value;
use serde_json::value::RawValue;

/// Containers nested deeper than this are refused, as serde_json refuses them.
pub const MAX_DEPTH: usize = 128;

/// Whether `text`, a JSON document, can be stored as one: no half of a surrogate pair escaped
/// alone, no nesting deeper than [`MAX_DEPTH`] (PostgreSQL's json input refuses the first).
pub fn storable(text: &str) -> bool {
    let bytes = text.as_bytes();
    let (mut i, mut depth, mut in_string, mut high_surrogate) = (0, 0usize, false, false);
    while i < bytes.len() {
        match (in_string, bytes[i]) {
            (true, b'\\') if bytes.get(i + 1) == Some(&b'u') => {
                let Some(unit) =
                    text.get(i + 2..i + 6).and_then(|h| u16::from_str_radix(h, 16).ok())
                else {
                    return false;
                };
                // A low half must follow a high half at once, and only then.
                if (0xDC00..0xE000).contains(&unit) != high_surrogate {
                    return false;
                }
                high_surrogate = (0xD800..0xDC00).contains(&unit);
                i += 6;
                continue;
            }
            _ if high_surrogate => return false,
            (true, b'\\') => i += 1,
            (true, b'"') => in_string = false,
            (false, b'"') => in_string = true,
            (false, b'[' | b'{') => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return false;
                }
            }
            (false, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    !high_surrogate
}

/// `text` as one JSON string: what is kept of an entity that cannot be stored as a document.
pub fn as_json_string(text: &str) -> Box<RawValue> {
    let quoted = Value::String(text.to_owned()).to_string();
    RawValue::from_string(quoted).expect("a serialised string is valid JSON")
}
