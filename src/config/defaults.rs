//! `[tenant_defaults]`: keys that every `[[tenant]]` inherits unless it sets them itself, so that
//! hundreds of tenants sharing one app registration do not repeat its credentials and settings.
//!
//! The defaults are taken out of the table after the env overrides (so `KBWATCH_TENANT_DEFAULTS__*`
//! works like any override) and checked as a tenant would be: their unknown keys and type errors
//! are reported once, at `tenant_defaults.<key>`, and are not inherited. The rest is merged into
//! each tenant's table before the cloud presets and deserialization, key by key and the sub-tables
//! (`auth`, `quota`, `http`, `export`) deep, so an inherited value goes through the tenant's own
//! checks and its problems name the tenant. Where keys are one choice, a tenant's choice is not
//! mixed with the defaults':
//! - a tenant inherits `auth` only when its kind is the defaults': one that sets an `auth.kind`
//!   other than the defaults', or any `auth.kind` when the defaults set none, inherits nothing of
//!   `auth` (a `client_id` means something else to `managed_identity`);
//! - `auth.client_secret` and `auth.client_secret_file` are one setting, and so are
//!   `auth.certificate_file` and `auth.certificate_password_file`: a tenant that sets either
//!   inherits neither ([`ONE_SETTING`]);
//! - a tenant whose `cloud` is not the defaults' inherits neither `api_base` nor `auth.authority`
//!   nor `auth.scope`: its own cloud presets them.

use std::collections::BTreeMap;

use toml::{Table, Value};

use super::path::{self, Segment};
use super::typed;
use crate::config::Problem;

/// The table's name in the file.
pub(super) const SECTION: &str = "tenant_defaults";

/// The checked `[tenant_defaults]`.
#[derive(Debug, Default)]
pub(super) struct Defaults {
    /// What the tenants inherit: the keys without problems. Empty when the file has no defaults.
    table: Table,
    /// Problems of the defaults themselves, at `tenant_defaults.<key>`.
    pub problems: Vec<Problem>,
    /// Key paths of the secrets the defaults set (`tenant_defaults.auth.client_secret`).
    pub secrets: Vec<String>,
}

/// Removes `[tenant_defaults]` from `table` and checks it as a tenant. `overrides` maps the key
/// path of each env override to its variable.
pub(super) fn take(table: &mut Table, overrides: &BTreeMap<String, String>) -> Defaults {
    let mut out = Defaults::default();
    let mut defaults = match table.remove(SECTION) {
        None => return out,
        Some(Value::Table(defaults)) => defaults,
        Some(_) => {
            out.problems.push(problem(SECTION, "must be a table: [tenant_defaults]"));
            return out;
        }
    };
    if defaults.remove("name").is_some() {
        let message = "is not inherited: every [[tenant]] sets its own name";
        out.problems.push(problem(&path::join(SECTION, "name"), message));
    }
    let placeholders = fill_placeholders(&mut defaults);
    let overrides = overrides
        .iter()
        .filter_map(|(key, var)| Some((rename(key, SECTION, AS_TENANT)?, var.clone())))
        .collect();
    let pseudo = Table::from_iter([("tenant".to_owned(), Value::Array(vec![defaults.into()]))]);
    let mut typed = typed::deserialize(pseudo, &overrides);
    if let Some(config) = &typed.config {
        let secrets = config.tenants[0].secrets().map(|(key, _)| path::join(SECTION, key));
        out.secrets = secrets.collect();
    }
    for mut p in typed.problems {
        if p.message.starts_with("unknown key") {
            path::remove(&mut typed.table, &path::parse(&p.path));
        }
        p.path = rename(&p.path, AS_TENANT, SECTION).unwrap_or(p.path);
        out.problems.push(p);
    }
    out.table = take_tenant(typed.table);
    strip_placeholders(&mut out.table, placeholders);
    out
}

/// The defaults are checked as the one tenant of an otherwise empty file.
const AS_TENANT: &str = "tenant[0]";

/// Fills in what a tenant must have and the defaults need not: `name`, and `auth.kind` unless
/// set. Returns whether `auth.kind` was filled in, and whether the whole `auth` was.
fn fill_placeholders(defaults: &mut Table) -> Option<bool> {
    defaults.insert("name".into(), Value::String(SECTION.into()));
    match defaults.entry("auth").or_insert_with(|| Value::Table(Table::new())) {
        Value::Table(auth) if !auth.contains_key("kind") => {
            auth.insert("kind".into(), Value::String("token_file".into()));
            Some(auth.len() == 1)
        }
        _ => None,
    }
}

/// Removes what [`fill_placeholders`] filled in.
fn strip_placeholders(defaults: &mut Table, auth_kind: Option<bool>) {
    defaults.remove("name");
    if let (Some(whole), Some(Value::Table(auth))) = (auth_kind, defaults.get_mut("auth")) {
        auth.remove("kind");
        if whole {
            defaults.remove("auth");
        }
    }
}

/// `path` with its `from` prefix replaced by `to`; `None` when it is not under `from`.
fn rename(key: &str, from: &str, to: &str) -> Option<String> {
    path::is_under(key, from).then(|| format!("{to}{}", &key[from.len()..]))
}

/// The one tenant of the checked pseudo-file.
fn take_tenant(mut table: Table) -> Table {
    match table.remove("tenant") {
        Some(Value::Array(tenants)) => match tenants.into_iter().next() {
            Some(Value::Table(tenant)) => tenant,
            _ => Table::new(),
        },
        _ => Table::new(),
    }
}

/// What each tenant inherited, and its name, for the problems that concern it.
#[derive(Debug, Default)]
pub(super) struct Inherited {
    /// Per tenant, in file order: the key paths below it whose value came from the defaults.
    keys: Vec<Vec<String>>,
    /// Per tenant: its name, when it is one a message can show.
    names: Vec<Option<String>>,
}

/// Merges `defaults` into every `[[tenant]]` of `table`.
pub(super) fn inherit(table: &mut Table, defaults: &Defaults) -> Inherited {
    let mut out = Inherited::default();
    let Some(Value::Array(tenants)) = table.get_mut("tenant") else { return out };
    for tenant in tenants {
        let mut keys = Vec::new();
        if let Value::Table(tenant) = tenant {
            let skip = not_inherited(tenant, &defaults.table);
            merge(tenant, &defaults.table, "", &skip, &mut keys);
        }
        let name = tenant.get("name").and_then(Value::as_str);
        out.names.push(name.filter(|n| super::validate::is_tenant_name(n)).map(str::to_owned));
        out.keys.push(keys);
    }
    out
}

impl Inherited {
    /// `tenant_defaults.<key>` when the value at `path` (`tenant[3].<key>`) was inherited.
    pub(super) fn origin(&self, path: &str) -> Option<String> {
        let (index, below) = tenant_of(path)?;
        let keys = self.keys.get(index)?;
        keys.iter().any(|key| path::is_under(&below, key)).then(|| path::join(SECTION, &below))
    }

    /// The name of the tenant that `path` is in.
    pub(super) fn name(&self, path: &str) -> Option<&str> {
        self.names.get(tenant_of(path)?.0)?.as_deref()
    }
}

/// The tenant index and the key path below it, of `tenant[3].auth.client_id`.
fn tenant_of(path: &str) -> Option<(usize, String)> {
    match path::parse(path).as_slice() {
        [Segment::Key(tenant), Segment::Index(index), below @ ..] if tenant == "tenant" => {
            Some((*index, path::to_string(below)))
        }
        _ => None,
    }
}

/// Keys that together are one setting: a tenant that sets any of them inherits none of them, so
/// that it does not pair its own secret or certificate with the defaults' other half.
const ONE_SETTING: [[&str; 2]; 2] = [
    ["auth.client_secret", "auth.client_secret_file"],
    ["auth.certificate_file", "auth.certificate_password_file"],
];

/// The key paths of `defaults` that `tenant` does not inherit, because it chose otherwise.
fn not_inherited(tenant: &Table, defaults: &Table) -> Vec<&'static str> {
    let get = |table, key| path::get(table, &path::parse(key));
    let mut skip = Vec::new();
    let own_kind = get(tenant, "auth.kind");
    if own_kind.is_some() && own_kind != get(defaults, "auth.kind") {
        skip.push("auth");
    }
    for setting in ONE_SETTING {
        if setting.iter().any(|key| get(tenant, key).is_some()) {
            skip.extend(setting);
        }
    }
    let public = Value::String("public".into());
    if tenant.get("cloud").is_some_and(|own| own != defaults.get("cloud").unwrap_or(&public)) {
        skip.extend(["api_base", "auth.authority", "auth.scope"]);
    }
    skip
}

/// Inserts every key of `defaults` that `own` lacks, tables key by key; records what it inserted.
fn merge(own: &mut Table, defaults: &Table, at: &str, skip: &[&str], got: &mut Vec<String>) {
    for (key, value) in defaults {
        let key_path = path::join(at, key);
        if skip.iter().any(|s| path::is_under(&key_path, s)) {
            continue;
        }
        match (own.get_mut(key), value) {
            (Some(Value::Table(own)), Value::Table(value)) => {
                merge(own, value, &key_path, skip, got);
            }
            (Some(_), _) => {}
            (None, Value::Table(value)) => {
                let mut table = Table::new();
                merge(&mut table, value, &key_path, skip, got);
                if !table.is_empty() {
                    own.insert(key.clone(), Value::Table(table));
                }
            }
            (None, value) => {
                own.insert(key.clone(), value.clone());
                got.push(key_path);
            }
        }
    }
}

fn problem(path: &str, message: &str) -> Problem {
    Problem { path: path.to_owned(), message: message.to_owned() }
}
