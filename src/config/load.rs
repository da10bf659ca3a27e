//! Reading the file, applying `KBWATCH_<SECTION>__<KEY>` overrides, and validating.
//!
//! The pipeline: parse the TOML into a table; apply the env overrides (`env.rs`), then
//! `[tenant_defaults]` (`defaults.rs`), then the cloud presets (`presets.rs`); deserialize, with
//! every unknown key and type error and its key path (`typed.rs`); then the semantic checks
//! (`validate.rs`). Every problem found is returned at once, sorted by key path; a problem of a
//! tenant names it, and says where an inherited or overridden value came from. No message carries
//! a secret value.

use std::collections::BTreeMap;
use std::path::Path;

use toml::Table;

use super::{Config, Problem};

#[path = "defaults.rs"]
mod defaults;
#[path = "env.rs"]
mod env;
#[path = "path.rs"]
mod path;
#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
#[path = "typed.rs"]
mod typed;
#[path = "validate.rs"]
mod validate;

pub use validate::parse_cron;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// What a command needs of the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Scanning (`run`, `scan`, `validate`): at least one `[[tenant]]`.
    Scan,
    /// The database only (`migrate`, `report`): no tenant is required, so that a host that only
    /// reads reports (a read replica's, say) holds no tenant's credentials. Tenants that are
    /// configured are still checked.
    Database,
}

/// Loads `path` for scanning, applies overrides from the process environment and validates.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_for(path, Purpose::Scan)
}

/// Loads `path` for `purpose`, applies overrides from the process environment and validates.
pub fn load_for(path: &Path, purpose: Purpose) -> Result<Config, ConfigError> {
    // `std::env::vars` panics on a non-UTF-8 variable; such a variable cannot be an override anyway.
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    load_file(path, env, purpose)
}

/// Loads `path`, applies the `KBWATCH_*` pairs of `env` (not the process environment) and validates,
/// including the check that a file holding an inline secret is not readable by group or others.
pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    load_file(path, env, Purpose::Scan)
}

fn load_file(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
    purpose: Purpose,
) -> Result<Config, ConfigError> {
    let read_error = |source| ConfigError::Read { path: path.display().to_string(), source };
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    let mode = file_mode(path).map_err(read_error)?;
    load_source(&text, env, Some(mode), purpose)
}

/// Parses `text`, applies the `KBWATCH_*` pairs of `env` and validates.
pub fn load_str(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    load_str_for(text, env, Purpose::Scan)
}

/// [`load_str`] for `purpose`.
pub fn load_str_for(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
    purpose: Purpose,
) -> Result<Config, ConfigError> {
    load_source(text, env, None, purpose)
}

#[cfg(unix)]
fn file_mode(path: &Path) -> std::io::Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode())
}

#[cfg(not(unix))]
fn file_mode(_path: &Path) -> std::io::Result<u32> {
    Ok(0o600)
}

fn load_source(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
    file_mode: Option<u32>,
    purpose: Purpose,
) -> Result<Config, ConfigError> {
    let file = parse(text).map_err(|p| ConfigError::Invalid(vec![p]))?;
    let env: Vec<(String, String)> = env.into_iter().collect();
    let mut table = file.clone();
    let applied = env::apply(&mut table, env.iter().cloned());
    let mut defaults = defaults::take(&mut table, &applied.set);
    let inherited = defaults::inherit(&mut table, &defaults);
    super::presets::apply(&mut table, &env);
    let mut problems = applied.problems;
    problems.append(&mut defaults.problems);
    let typed = typed::deserialize(table, &applied.set);
    problems.extend(typed.problems);
    if let Some(config) = &typed.config {
        let inline_secrets = validate::inline_secrets(config, &defaults.secrets, &file);
        let semantic = validate::validate(
            config,
            &validate::Context {
                file_mode,
                inline_secrets,
                tenant_required: purpose == Purpose::Scan,
            },
        );
        let set_aside =
            |p: &Problem| typed.set_aside.iter().any(|key| path::is_under(&p.path, key));
        problems.extend(semantic.into_iter().filter(|p| !set_aside(p)));
    }
    for p in &mut problems {
        annotate(p, &inherited, &applied.set);
    }
    problems.sort_by_cached_key(|p| path::parse(&p.path));
    match typed.config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => Err(ConfigError::Invalid(problems)),
    }
}

/// Adds to the message of `p` the name of its tenant, where an inherited value came from, and the
/// variable that set the value, unless the message already says so:
/// `must be at least 1 (tenant "contoso", inherited from tenant_defaults.quota.per_minute)`.
fn annotate(p: &mut Problem, inherited: &defaults::Inherited, set: &BTreeMap<String, String>) {
    let mut notes = Vec::new();
    let said = |text: &str| p.message.contains(text);
    if let Some(name) = inherited.name(&p.path).map(|name| format!("{name:?}")).filter(|n| !said(n))
    {
        notes.push(format!("tenant {name}"));
    }
    let origin = inherited.origin(&p.path);
    if let Some(origin) = &origin {
        notes.push(format!("inherited from {origin}"));
    }
    let var = set.get(&p.path).or_else(|| origin.as_ref().and_then(|origin| set.get(origin)));
    if let Some(var) = var.filter(|var| !said(var)) {
        notes.push(format!("set by {var}"));
    }
    if !notes.is_empty() {
        p.message = format!("{} ({})", p.message, notes.join(", "));
    }
}

/// Parses the TOML text; a syntax error becomes one problem with its line and column.
fn parse(text: &str) -> Result<Table, Problem> {
    text.parse::<Table>().map_err(|e| {
        let message = match e.span() {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                format!("TOML syntax error at line {line}, column {column}: {}", e.message().trim())
            }
            None => format!("TOML syntax error: {}", e.message().trim()),
        };
        Problem { path: String::new(), message }
    })
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..text.floor_char_boundary(offset.min(text.len()))];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
    (line, column)
}
