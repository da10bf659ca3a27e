//! The OData `$filter` subset the machines list accepts, parsed once and evaluated against entity JSON.
//!
//! Grammar (keywords and field names case-insensitive):
//! `expr := and ("or" and)*`, `and := term ("and" term)*`,
//! `term := "(" expr ")" | "not" term | "startswith(" field "," 'text' ")" | field op literal`,
//! `op := eq | ne | gt | ge | lt | le`, literal: `'text'` (`''` escapes a quote), a number, `true`, `false`,
//! `null`, or a bare date-time such as `2024-01-01Z` or `2024-01-01T10:00:00.5+02:00`.
//! String comparisons ignore ASCII case; `eq` on an array field (`machineTags`) matches any element.
//!
//! Layout: `parse` turns the text into a [`Filter`]; `evaluate` matches one against an [`Entity`].

mod evaluate;
mod parse;

pub(crate) use evaluate::{Entity, Field};
pub(crate) use parse::Filter;
