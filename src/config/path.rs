//! Key paths (`tenant[0].quota.per_minute`): how problems name a key, and how the loader finds,
//! replaces or sets aside that key in the TOML table.

use toml::{Table, Value};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Segment {
    Key(String),
    Index(usize),
}

/// `tenant[0].quota.per_minute`
pub(super) fn to_string(segments: &[Segment]) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            Segment::Key(k) if out.is_empty() => out.push_str(k),
            Segment::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The inverse of [`to_string`]; also the sort key of problems, as indices compare as numbers.
pub(super) fn parse(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, indices) = part.split_once('[').map_or((part, ""), |(k, rest)| (k, rest));
        if !key.is_empty() {
            out.push(Segment::Key(key.to_owned()));
        }
        for index in indices.split('[') {
            let digits = index.trim_end_matches(']');
            match digits.parse() {
                Ok(i) => out.push(Segment::Index(i)),
                Err(_) if !digits.is_empty() => out.push(Segment::Key(digits.to_owned())),
                Err(_) => {}
            }
        }
    }
    out
}

/// `key` below `path`.
pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// True when `path` is `parent` or a key below it.
pub(super) fn is_under(path: &str, parent: &str) -> bool {
    path.strip_prefix(parent).is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// The value at `segments`, if the table has one there.
pub(super) fn get<'a>(table: &'a Table, segments: &[Segment]) -> Option<&'a Value> {
    let (first, rest) = segments.split_first()?;
    let Segment::Key(key) = first else { return None };
    let mut value = table.get(key)?;
    for segment in rest {
        value = match segment {
            Segment::Key(key) => value.as_table()?.get(key)?,
            Segment::Index(index) => value.as_array()?.get(*index)?,
        };
    }
    Some(value)
}

/// The table that holds the last key of `segments`, and that key; `None` when the path does not
/// end in a key of an existing table (an array element is never removed or replaced: that would
/// renumber the tenants after it).
fn parent_mut<'a>(
    table: &'a mut Table,
    segments: &'a [Segment],
) -> Option<(&'a mut Table, &'a str)> {
    let (Segment::Key(last), parents) = segments.split_last()? else { return None };
    let mut current = table;
    let mut rest = parents;
    while let Some((Segment::Key(key), after)) = rest.split_first() {
        let mut value = current.get_mut(key)?;
        rest = after;
        while let Some((Segment::Index(index), after)) = rest.split_first() {
            value = value.as_array_mut()?.get_mut(*index)?;
            rest = after;
        }
        current = value.as_table_mut()?;
    }
    rest.is_empty().then_some((current, last.as_str()))
}

/// Removes the key at `segments`; false when there is nothing removable there.
pub(super) fn remove(table: &mut Table, segments: &[Segment]) -> bool {
    parent_mut(table, segments).is_some_and(|(parent, key)| parent.remove(key).is_some())
}

/// Replaces the value of the existing key at `segments`; false when there is none.
pub(super) fn replace(table: &mut Table, segments: &[Segment], value: Value) -> bool {
    match parent_mut(table, segments).and_then(|(parent, key)| parent.get_mut(key)) {
        Some(slot) => {
            *slot = value;
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_orders_indices_numerically_and_inverts_to_string() {
        let mut paths = ["tenant[10].name", "tenant[2].name", "", "database.url", "tenant"];
        paths.sort_by_key(|p| parse(p));
        assert_eq!(paths, ["", "database.url", "tenant", "tenant[2].name", "tenant[10].name"]);
        assert_eq!(to_string(&parse("tenant[3].auth.scope")), "tenant[3].auth.scope");
    }

    #[test]
    fn get_replace_and_remove_follow_the_path() {
        let mut t: Table =
            "[[tenant]]\nname = \"a\"\n[[tenant]]\nname = \"b\"\n[tenant.quota]\nx = 1\n"
                .parse()
                .expect("test TOML parses");
        let x = parse("tenant[1].quota.x");
        assert_eq!(get(&t, &x).and_then(Value::as_integer), Some(1));
        assert!(replace(&mut t, &x, Value::Integer(2)));
        assert_eq!(get(&t, &x).and_then(Value::as_integer), Some(2));
        assert!(remove(&mut t, &x));
        assert!(get(&t, &x).is_none());
        assert!(!remove(&mut t, &parse("tenant[1]")), "an array element stays");
        assert!(!replace(&mut t, &parse("tenant[5].name"), Value::Integer(0)));
    }
}
