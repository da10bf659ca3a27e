//! `KBWATCH_<SECTION>__<KEY>[__<KEY>...]` overrides, applied to the parsed TOML table before it is
//! deserialized, so that overridden values go through the same checks as the file's. A value is set
//! as a string; `typed.rs` reads it as an integer (or another TOML value) when its key wants one.
//!
//! A double underscore separates levels and names are lower-cased: `KBWATCH_DATABASE__URL` sets
//! `database.url`. Tenants are selected by index or by name: `KBWATCH_TENANT__0__AUTH__CLIENT_SECRET`,
//! `KBWATCH_TENANT__CONTOSO__QUOTA__PER_MINUTE` (an all-digit selector is an index; a name matches
//! ignoring case, with `_` matching `-` or `_`). `[tenant_defaults]` is a section like any other:
//! `KBWATCH_TENANT_DEFAULTS__AUTH__CLIENT_SECRET` sets what the tenants inherit (`defaults.rs`).

use std::collections::BTreeMap;

use toml::{Table, Value};

use super::typed::sections;
use crate::config::Problem;

const PREFIX: &str = "KBWATCH_";

/// Variables with the prefix that are not overrides: the config path and the log filter.
const NOT_OVERRIDES: [&str; 2] = ["KBWATCH_CONFIG", "KBWATCH_LOG"];

/// What the overrides did.
#[derive(Debug, Default)]
pub(super) struct Applied {
    /// Key path (`tenant[0].auth.client_secret`) → name of the variable that set it.
    pub set: BTreeMap<String, String>,
    /// Overrides that could not be applied.
    pub problems: Vec<Problem>,
}

/// Applies every `KBWATCH_*` override of `env` to `table`, in name order so the result does not
/// depend on the order of the environment.
pub(super) fn apply(table: &mut Table, env: impl IntoIterator<Item = (String, String)>) -> Applied {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(PREFIX) && !NOT_OVERRIDES.contains(&name.as_str()))
        .collect();
    vars.sort();
    let mut applied = Applied::default();
    for (name, value) in vars {
        match apply_one(table, &name, &value) {
            Ok(Some(path)) => {
                applied.set.insert(path, name);
            }
            Ok(None) => {}
            Err(problem) => applied.problems.push(problem),
        }
    }
    applied
}

/// Applies one variable; `Ok(None)` when the name is not an override at all.
fn apply_one(table: &mut Table, name: &str, value: &str) -> Result<Option<String>, Problem> {
    let rest = &name[PREFIX.len()..];
    if !rest.contains("__") {
        // A section name followed by a single `_` is most likely a mistyped override.
        let section = |s: &&str| rest.starts_with(&format!("{}_", s.to_ascii_uppercase()));
        if sections().iter().any(section) {
            return Err(env_problem(
                "",
                format!(
                    "{name} is not applied: levels of an override are separated by a double \
                     underscore, e.g. KBWATCH_DATABASE__URL"
                ),
            ));
        }
        return Ok(None);
    }
    let segments: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    if segments.iter().any(String::is_empty) {
        return Err(env_problem(
            "",
            format!("{name} is not applied: an override is KBWATCH_<SECTION>__<KEY>[__<KEY>...]"),
        ));
    }
    if segments[0] != "tenant" {
        return set_path(table, "", &segments, value, name).map(Some);
    }
    if segments.len() < 3 {
        return Err(env_problem(
            "tenant",
            format!(
                "{name} is not applied: a tenant override is KBWATCH_TENANT__<index or name>__<KEY>"
            ),
        ));
    }
    let index = select_tenant(table, &segments[1], name)?;
    let tenant = table
        .get_mut("tenant")
        .and_then(Value::as_array_mut)
        .and_then(|tenants| tenants.get_mut(index))
        .and_then(Value::as_table_mut)
        .ok_or_else(|| {
            env_problem(
                format!("tenant[{index}]"),
                format!("{name} is not applied: the tenant is not a table"),
            )
        })?;
    set_path(tenant, &format!("tenant[{index}]"), &segments[2..], value, name).map(Some)
}

/// Finds the `[[tenant]]` that `selector` names: an index, or a name compared ignoring case and `-`/`_`.
fn select_tenant(table: &Table, selector: &str, name: &str) -> Result<usize, Problem> {
    let tenants =
        table.get("tenant").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    if selector.bytes().all(|b| b.is_ascii_digit()) {
        return match selector.parse::<usize>() {
            Ok(index) if index < tenants.len() => Ok(index),
            _ => Err(env_problem(
                "tenant",
                format!(
                    "{name} names tenant index {selector}, but {} tenant(s) are configured",
                    tenants.len()
                ),
            )),
        };
    }
    let wanted = tenant_name_key(selector);
    let matches: Vec<usize> = tenants
        .iter()
        .enumerate()
        .filter(|(_, t)| {
            t.get("name").and_then(Value::as_str).is_some_and(|n| tenant_name_key(n) == wanted)
        })
        .map(|(i, _)| i)
        .collect();
    match matches.as_slice() {
        [index] => Ok(*index),
        [] => Err(env_problem(
            "tenant",
            format!("{name} names tenant {selector:?}, which is not configured"),
        )),
        _ => Err(env_problem(
            "tenant",
            format!(
                "{name} names tenant {selector:?}, which matches several tenants; use its index"
            ),
        )),
    }
}

/// A tenant name as tenant names are compared, here and for duplicates (`validate.rs`): ignoring
/// case and `-` versus `_`.
pub(super) fn tenant_name_key(name: &str) -> String {
    name.to_ascii_lowercase().replace('-', "_")
}

/// Sets `keys` under `table`, creating missing tables, and returns the full key path.
fn set_path(
    table: &mut Table,
    prefix: &str,
    keys: &[String],
    raw: &str,
    name: &str,
) -> Result<String, Problem> {
    let full = keys.iter().fold(prefix.to_owned(), |acc, key| {
        if acc.is_empty() { key.clone() } else { format!("{acc}.{key}") }
    });
    let (last, parents) = keys.split_last().expect("an override has at least one key");
    let mut current = table;
    let mut walked = prefix.to_owned();
    for key in parents {
        walked = if walked.is_empty() { key.clone() } else { format!("{walked}.{key}") };
        current = current
            .entry(key.as_str())
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .ok_or_else(|| {
                env_problem(
                    walked.clone(),
                    format!("{name} is not applied: {walked} is not a table"),
                )
            })?;
    }
    // A string: what it is, the key's type decides when the table is deserialized (`typed.rs`).
    current.insert(last.clone(), Value::String(raw.to_owned()));
    Ok(full)
}

/// The variable that overrides the key at `path`: `tenant[0].auth.client_secret` is
/// `KBWATCH_TENANT__0__AUTH__CLIENT_SECRET`.
pub(super) fn variable_for(path: &str) -> String {
    let levels = path.replace('[', ".").replace(']', "").to_ascii_uppercase();
    format!("{PREFIX}{}", levels.split('.').collect::<Vec<_>>().join("__"))
}

fn env_problem(path: impl Into<String>, message: String) -> Problem {
    Problem { path: path.into(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        text.parse().expect("test TOML parses")
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    const TWO_TENANTS: &str = r#"
        [[tenant]]
        name = "Contoso-EU"
        [[tenant]]
        name = "fabrikam"
    "#;

    #[test]
    fn sets_section_keys_and_skips_non_overrides() {
        let mut t = table("[schedule]\ncron = \"0 0 * * * *\"\n");
        let applied = apply(
            &mut t,
            vars(&[
                ("KBWATCH_SCHEDULE__CRON", "0 30 * * * *"),
                ("KBWATCH_DATABASE__MAX_CONNECTIONS", "4"),
                ("KBWATCH_CONFIG", "/etc/kbwatch.toml"),
                ("KBWATCH_LOG", "debug"),
                ("KBWATCHER", "x"),
                ("PATH", "/bin"),
            ]),
        );
        assert!(applied.problems.is_empty(), "{:?}", applied.problems);
        assert_eq!(t["schedule"]["cron"].as_str(), Some("0 30 * * * *"));
        assert_eq!(t["database"]["max_connections"].as_str(), Some("4"), "typed when deserialized");
        assert_eq!(t.len(), 2, "KBWATCH_CONFIG and KBWATCH_LOG are not keys");
        assert_eq!(
            applied.set.get("schedule.cron").map(String::as_str),
            Some("KBWATCH_SCHEDULE__CRON")
        );
    }

    #[test]
    fn selects_tenants_by_index_and_by_name() {
        let mut t = table(TWO_TENANTS);
        let applied = apply(
            &mut t,
            vars(&[
                ("KBWATCH_TENANT__CONTOSO_EU__QUOTA__PER_MINUTE", "30"),
                ("KBWATCH_TENANT__1__AUTH__CLIENT_SECRET", "123456"),
            ]),
        );
        assert!(applied.problems.is_empty(), "{:?}", applied.problems);
        assert_eq!(t["tenant"][0]["quota"]["per_minute"].as_str(), Some("30"));
        assert_eq!(t["tenant"][1]["auth"]["client_secret"].as_str(), Some("123456"));
        assert!(applied.set.contains_key("tenant[0].quota.per_minute"));
        assert!(applied.set.contains_key("tenant[1].auth.client_secret"));
    }

    #[test]
    fn reports_bad_overrides_without_values() {
        let mut t = table(TWO_TENANTS);
        let applied = apply(
            &mut t,
            vars(&[
                ("KBWATCH_TENANT__NOPE__QUOTA__PER_MINUTE", "30"),
                ("KBWATCH_TENANT__7__PAGE_SIZE", "30"),
                ("KBWATCH_DATABASE_URL", "postgres://u:s3cr3t@h/db"),
            ]),
        );
        let text: Vec<String> = applied.problems.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(text.iter().all(|p| !p.contains("s3cr3t")), "{text:?}");
        assert!(text.iter().any(|p| p.contains("\"nope\", which is not configured")));
        assert!(text.iter().any(|p| p.contains("double underscore")));
    }

    #[test]
    fn variable_for_inverts_the_override_names() {
        assert_eq!(variable_for("database.url"), "KBWATCH_DATABASE__URL");
        assert_eq!(
            variable_for("tenant[0].auth.client_secret"),
            "KBWATCH_TENANT__0__AUTH__CLIENT_SECRET"
        );
    }
}
