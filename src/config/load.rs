//! Reading the file, applying `KBWATCH_<SECTION>__<KEY>` overrides, and validating.
//!
//! The pipeline: parse the TOML into a table; apply the env overrides (`env.rs`); deserialize with
//! `serde_ignored` (every unknown key is a problem) and `serde_path_to_error` (type errors with their
//! key path); then the semantic checks (`validate.rs`). Every problem found is returned at once, sorted
//! by key path. No message carries a secret value.

use std::path::Path;

use toml::{Table, Value};

use super::{Config, Problem};

#[path = "env.rs"]
mod env;
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

/// Loads `path`, applies overrides from the process environment and validates.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    // `std::env::vars` panics on a non-UTF-8 variable; such a variable cannot be an override anyway.
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    load_with_env(path, env)
}

/// Loads `path`, applies the `KBWATCH_*` pairs of `env` (not the process environment) and validates,
/// including the check that a file holding an inline secret is not readable by group or others.
pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let read_error = |source| ConfigError::Read { path: path.display().to_string(), source };
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    let mode = file_mode(path).map_err(read_error)?;
    load_source(&text, env, Some(mode))
}

/// Parses `text`, applies the `KBWATCH_*` pairs of `env` and validates.
pub fn load_str(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    load_source(text, env, None)
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
) -> Result<Config, ConfigError> {
    let mut table = parse(text).map_err(|p| ConfigError::Invalid(vec![p]))?;
    let ctx = validate::Context { file_mode, inline_secrets: validate::inline_secrets(&table) };
    let env: Vec<(String, String)> = env.into_iter().collect();
    let applied = env::apply(&mut table, env.iter().cloned());
    super::presets::apply(&mut table, &env);
    let mut problems = applied.problems;
    let typed = deserialize(table);
    problems.extend(typed.problems);
    if let Some(config) = &typed.config {
        let semantic = validate::validate(config, &ctx);
        problems.extend(
            semantic.into_iter().filter(|p| !typed.removed.iter().any(|r| is_under(&p.path, r))),
        );
    }
    for p in &mut problems {
        if let Some(var) = applied.set.get(&p.path) {
            p.message = format!("{} (set by {var})", p.message);
        }
    }
    problems.sort_by_cached_key(|p| sort_key(&p.path));
    match typed.config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => Err(ConfigError::Invalid(problems)),
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

/// The outcome of deserializing the merged table.
struct Typed {
    config: Option<Config>,
    problems: Vec<Problem>,
    /// Keys removed after a type error, so that the next attempt finds the errors after them.
    removed: Vec<String>,
}

/// At most this many type errors are reported; serde stops at the first, so each is removed in turn.
const MAX_TYPE_ERRORS: usize = 32;

/// Deserializes `table`, reporting every unknown key and the type errors with their key paths.
///
/// serde stops at the first type error; the offending key is then removed and deserialization tried
/// again, so that later type errors and the semantic checks still run (on the default for that key).
fn deserialize(mut table: Table) -> Typed {
    let mut unknown: Vec<String> = Vec::new();
    let mut problems = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..MAX_TYPE_ERRORS {
        let mut ignored = Vec::new();
        let mut on_ignored = |path: serde_ignored::Path<'_>| ignored.push(ignored_path(&path));
        let de = serde_ignored::Deserializer::new(Value::Table(table.clone()), &mut on_ignored);
        let result: Result<Config, _> = serde_path_to_error::deserialize(de);
        for path in ignored {
            if !unknown.contains(&path) {
                unknown.push(path);
            }
        }
        let err = match result {
            Ok(config) => {
                problems.extend(unknown_problems(unknown));
                return Typed { config: Some(config), problems, removed };
            }
            Err(err) => err,
        };
        let segments = error_segments(err.path());
        let path = path_string(&segments);
        let message = err.inner().message().to_owned();
        if missing_field_of(&message).is_some_and(|f| removed.contains(&join(&path, f))) {
            break; // the key was there with the wrong type, already reported
        }
        problems.push(Problem { message: type_message(&path, message), path: path.clone() });
        if !remove(&mut table, &segments) {
            break;
        }
        removed.push(path);
    }
    problems.extend(unknown_problems(unknown));
    Typed { config: None, problems, removed }
}

fn unknown_problems(paths: Vec<String>) -> impl Iterator<Item = Problem> {
    paths.into_iter().map(|path| Problem { path, message: "unknown key".into() })
}

/// A serde message, with any quoted value dropped when the key holds a secret.
fn type_message(path: &str, message: String) -> String {
    let secret = path == "database.url" || path.ends_with(".client_secret");
    if !secret {
        return message;
    }
    match message.split_once(':') {
        Some((kind, _)) if message.starts_with("invalid") => {
            format!("{kind}: expected a string (value not shown)")
        }
        _ => message,
    }
}

/// `field` of serde's "missing field `field`".
fn missing_field_of(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.strip_suffix('`')
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Segment {
    Key(String),
    Index(usize),
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
    path_string(&segments)
}

/// `tenant[0].quota.per_minute`
fn path_string(segments: &[Segment]) -> String {
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

/// The inverse of [`path_string`], for sorting: indices compare as numbers.
fn sort_key(path: &str) -> Vec<Segment> {
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

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// True when `path` is `parent` or a key below it.
fn is_under(path: &str, parent: &str) -> bool {
    path.strip_prefix(parent).is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// Removes the key at `segments`; false when there is nothing removable there (an array element
/// is not removed: that would renumber the tenants after it).
fn remove(table: &mut Table, segments: &[Segment]) -> bool {
    let Some((Segment::Key(last), parents)) = segments.split_last() else { return false };
    let mut current = table;
    let mut rest = parents;
    while let Some((Segment::Key(key), after)) = rest.split_first() {
        let Some(mut value) = current.get_mut(key) else { return false };
        rest = after;
        while let Some((Segment::Index(index), after)) = rest.split_first() {
            let Some(item) = value.as_array_mut().and_then(|a| a.get_mut(*index)) else {
                return false;
            };
            value = item;
            rest = after;
        }
        let Some(next) = value.as_table_mut() else { return false };
        current = next;
    }
    rest.is_empty() && current.remove(last).is_some()
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    use secrecy::ExposeSecret;

    use super::*;
    use crate::config::{AuthKind, LogFormat};

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn problems(result: Result<Config, ConfigError>) -> Vec<Problem> {
        match result {
            Err(ConfigError::Invalid(problems)) => problems,
            Err(e) => panic!("expected problems, got {e}"),
            Ok(_) => panic!("expected problems, the config loaded"),
        }
    }

    /// A token file in a temporary directory, for configs that must validate.
    fn token_file(dir: &tempfile::TempDir) -> PathBuf {
        let path = dir.path().join("token");
        fs::write(&path, "eyJ0eXAiOiJKV1QifQ").expect("write token file");
        path
    }

    fn minimal(token: &Path) -> String {
        format!(
            "[[tenant]]\nname = \"lab\"\napi_base = \"http://127.0.0.1:8080\"\n\
             [tenant.auth]\nkind = \"token_file\"\ntoken_file = {:?}\n\
             authority = \"http://localhost:8081\"\n",
            token.display().to_string()
        )
    }

    #[test]
    fn cloud_presets_and_workload_identity_environment() {
        let text = "[[tenant]]\nname = \"gov\"\ncloud = \"usgov-dod\"\n\
                    [tenant.auth]\nkind = \"managed_identity\"\n\
                    [[tenant]]\nname = \"aks\"\n[tenant.auth]\nkind = \"workload_identity\"\n";
        let missing = problems(load_str(text, vars(&[])));
        let paths: Vec<&str> = missing.iter().map(|p| p.path.as_str()).collect();
        assert!(missing[0].message.contains("AZURE_CLIENT_ID"), "{}", missing[0]);
        assert_eq!(
            paths,
            [
                "tenant[1].auth.client_id",
                "tenant[1].auth.federated_token_file",
                "tenant[1].auth.tenant_id"
            ]
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let federated = token_file(&dir);
        let env = vars(&[
            ("AZURE_TENANT_ID", "contoso.onmicrosoft.com"),
            ("AZURE_CLIENT_ID", "22222222-2222-2222-2222-222222222222"),
            ("AZURE_FEDERATED_TOKEN_FILE", federated.to_str().expect("utf-8 path")),
        ]);
        let config = load_str(text, env).unwrap_or_else(|e| panic!("{e}"));
        let gov = &config.tenants[0];
        assert_eq!(gov.api_base.as_str(), "https://api-gov.securitycenter.microsoft.us/");
        assert_eq!(gov.auth.authority.as_str(), "https://login.microsoftonline.us/");
        assert_eq!(gov.auth.scope, "https://api-gov.securitycenter.microsoft.us/.default");
        let aks = &config.tenants[1];
        assert_eq!(aks.auth.tenant_id.as_deref(), Some("contoso.onmicrosoft.com"));
        assert_eq!(aks.auth.federated_token_file.as_deref(), Some(federated.as_path()));
        assert_eq!(aks.api_base.as_str(), "https://api.security.microsoft.com/");

        let bad = problems(load_str(&text.replace("usgov-dod", "mars"), vars(&[])));
        assert!(bad.iter().any(|p| p.path == "tenant[0].cloud"), "{bad:?}");
    }

    #[test]
    fn example_file_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("contoso-secret");
        fs::write(&secret, "s3cr3t").expect("write secret file");
        let token = token_file(&dir);
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/kbwatch.example.toml");
        let env = vars(&[
            (
                "KBWATCH_TENANT__CONTOSO__AUTH__CLIENT_SECRET_FILE",
                secret.to_str().expect("utf-8 path"),
            ),
            ("KBWATCH_TENANT__FABRIKAM_EU__AUTH__TOKEN_FILE", token.to_str().expect("utf-8 path")),
        ]);
        let config = load_with_env(&example, env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.tenants.len(), 2);
        assert_eq!(config.tenants[0].name, "contoso");
        assert_eq!(config.tenants[0].auth.client_secret_file.as_deref(), Some(secret.as_path()));
        assert_eq!(config.tenants[1].auth.kind, AuthKind::TokenFile);
        assert_eq!(config.tenants[1].quota.per_minute, 50);
        assert_eq!(
            config.tenants[1].http.max_attempts, 4,
            "defaults fill what the tenant leaves out"
        );
        assert_eq!(config.schedule.cron, "0 0 * * * *");
        assert!(validate::parse_cron(&config.schedule.cron).is_ok());
    }

    #[test]
    fn env_overrides_sections_and_tenants() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = token_file(&dir);
        let text = format!(
            "{}[[tenant]]\nname = \"Contoso-EU\"\n[tenant.auth]\nkind = \"client_secret\"\n\
                            tenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"app\"\n",
            minimal(&token)
        );
        let env = vars(&[
            ("KBWATCH_DATABASE__URL", "postgres://kb:pw@db/kbwatch"),
            ("KBWATCH_SCHEDULE__CRON", "0 15 * * * *"),
            ("KBWATCH_SERVE__LISTEN", "0.0.0.0:9000"),
            ("KBWATCH_LOG__FORMAT", "json"),
            ("KBWATCH_LOG", "debug"),
            ("KBWATCH_CONFIG", "/nowhere.toml"),
            ("KBWATCH_TENANT__0__QUOTA__PER_MINUTE", "30"),
            ("KBWATCH_TENANT__0__HTTP__MAX_PAGE_BYTES", "1_000_000"),
            ("KBWATCH_TENANT__CONTOSO_EU__AUTH__CLIENT_SECRET", "123456"),
        ]);
        let config = load_str(&text, env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.database.url.as_ref().map(|u| u.expose_secret().to_owned()).as_deref(),
            Some("postgres://kb:pw@db/kbwatch")
        );
        assert_eq!(config.schedule.cron, "0 15 * * * *");
        assert_eq!(config.serve.listen.port(), 9000);
        assert_eq!(config.log.format, Some(LogFormat::Json));
        assert_eq!(config.tenants[0].quota.per_minute, 30);
        assert_eq!(config.tenants[0].http.max_page_bytes, 1_000_000);
        let secret = config.tenants[1].auth.client_secret.as_ref().expect("secret set by env");
        assert_eq!(secret.expose_secret(), "123456", "a numeric-looking secret stays a string");
    }

    #[test]
    fn bad_env_number_and_unknown_tenant_are_problems() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = vars(&[
            ("KBWATCH_TENANT__0__QUOTA__CONCURRENCY", "many"),
            ("KBWATCH_TENANT__NOSUCH__PAGE_SIZE", "10"),
            ("KBWATCH_SERVE__LISTN", "0.0.0.0:1"),
        ]);
        let found = problems(load_str(&minimal(&token_file(&dir)), env));
        let text: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(
            text.iter()
                .any(|p| p.contains("KBWATCH_TENANT__0__QUOTA__CONCURRENCY must be an integer"))
        );
        assert!(text.iter().any(|p| p.contains("\"nosuch\", which is not configured")));
        assert!(
            text.contains(&"serve.listn: unknown key (set by KBWATCH_SERVE__LISTN)".to_owned()),
            "{text:?}"
        );
    }

    #[test]
    fn reports_every_problem_at_once_with_paths() {
        let text = r#"
            colour = "blue"
            [schedule]
            cron = "0 0 61 * * *"
            [[tenant]]
            name = "acme"
            api_base = "http://api.example.com/?x=1"
            page_size = 0
            [tenant.auth]
            kind = "client_secret"
            client_id = "app"
            client_secret_file = "/nonexistent/kbwatch-secret"
            [tenant.quota]
            per_minit = 5
            per_minute = "lots"
            concurrency = 1000
            [[tenant]]
            name = "ACME"
            [tenant.auth]
            kind = "token_file"
            tenant_id = 42
        "#;
        let found = problems(load_str(text, Vec::new()));
        let paths: Vec<&str> = found.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "colour",
                "schedule.cron",
                "tenant[0].api_base",
                "tenant[0].api_base",
                "tenant[0].auth.client_secret_file",
                "tenant[0].auth.tenant_id",
                "tenant[0].page_size",
                "tenant[0].quota.concurrency",
                "tenant[0].quota.per_minit",
                "tenant[0].quota.per_minute",
                "tenant[1].auth.tenant_id",
                "tenant[1].auth.token_file",
                "tenant[1].name",
            ],
            "{found:#?}"
        );
        let text = ConfigError::Invalid(found).to_string();
        assert!(text.contains("tenant[0].quota.per_minit: unknown key"), "{text}");
        assert!(
            text.contains("tenant[0].quota.per_minute: invalid type: string \"lots\""),
            "{text}"
        );
        assert!(text.contains("duplicate tenant name \"ACME\""), "{text}");
        assert!(text.contains("http is accepted only for a loopback host"), "{text}");
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let found = problems(load_str("[schedule]\ncron = \"0 0 * * * *\n", Vec::new()));
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains("line 2, column"), "{}", found[0]);
    }

    #[test]
    fn five_field_cron_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!("[schedule]\ncron = \"0 * * * *\"\n{}", minimal(&token_file(&dir)));
        let found = problems(load_str(&text, Vec::new()));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, "schedule.cron");
        assert!(found[0].message.contains("seconds first"), "{}", found[0]);
    }

    #[test]
    fn loopback_http_is_accepted_and_remote_http_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = token_file(&dir);
        let config = load_str(&minimal(&token), Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.tenants[0].api_base.as_str(), "http://127.0.0.1:8080/");
        let env = vars(&[("KBWATCH_TENANT__LAB__AUTH__AUTHORITY", "http://login.example.com")]);
        let found = problems(load_str(&minimal(&token), env));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, "tenant[0].auth.authority");
        assert!(
            found[0].message.ends_with("(set by KBWATCH_TENANT__LAB__AUTH__AUTHORITY)"),
            "{}",
            found[0]
        );
    }

    #[test]
    fn inline_secret_needs_a_private_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = r#"
            [database]
            url = "postgres://kbwatch:dbpass99@db/kbwatch"
            [[tenant]]
            name = "contoso"
            [tenant.auth]
            kind = "client_secret"
            tenant_id = "00000000-0000-0000-0000-000000000000"
            client_id = "11111111-1111-1111-1111-111111111111"
            client_secret = "inline-s3cr3t"
        "#;
        let path = dir.path().join("kbwatch.toml");
        fs::write(&path, text).expect("write config");

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod 644");
        let found = problems(load_with_env(&path, Vec::new()));
        let paths: Vec<&str> = found.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["database.url", "tenant[0].auth.client_secret"], "{found:?}");
        assert!(
            found.iter().all(|p| p.message.contains("chmod 600") && p.message.contains("0644"))
        );
        let shown = ConfigError::Invalid(found).to_string();
        assert!(!shown.contains("inline-s3cr3t") && !shown.contains("dbpass99"), "{shown}");

        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod 600");
        let config = load_with_env(&path, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        assert!(config.tenants[0].auth.client_secret.is_some());

        // The same text from a string, or with the secret moved to the environment, is fine.
        assert!(load_str(text, Vec::new()).is_ok());
    }

    #[test]
    fn env_secret_with_readable_file_is_accepted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kbwatch.toml");
        fs::write(
            &path,
            "[[tenant]]\nname = \"contoso\"\n[tenant.auth]\nkind = \"client_secret\"\n\
             tenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"app\"\n",
        )
        .expect("write config");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod 644");
        let env = vars(&[
            ("KBWATCH_TENANT__CONTOSO__AUTH__CLIENT_SECRET", "from-env"),
            ("KBWATCH_DATABASE__URL", "postgres://kb:pw@db/kbwatch"),
        ]);
        load_with_env(&path, env).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn secret_type_errors_do_not_show_the_value() {
        let text = "[[tenant]]\nname = \"c\"\n[tenant.auth]\nkind = \"client_secret\"\n\
                    tenant_id = \"contoso.onmicrosoft.com\"\nclient_id = \"app\"\nclient_secret = 987654\n";
        let found = problems(load_str(text, Vec::new()));
        let shown = ConfigError::Invalid(found).to_string();
        assert!(shown.contains("tenant[0].auth.client_secret: invalid type"), "{shown}");
        assert!(!shown.contains("987654"), "{shown}");
    }

    #[test]
    fn no_tenant_is_a_problem() {
        let found = problems(load_str("", Vec::new()));
        assert_eq!(
            found,
            [Problem {
                path: "tenant".into(),
                message: "at least one [[tenant]] is required".into()
            }]
        );
    }

    #[test]
    fn sort_key_orders_indices_numerically() {
        let mut paths = ["tenant[10].name", "tenant[2].name", "", "database.url", "tenant"];
        paths.sort_by_key(|p| sort_key(p));
        assert_eq!(paths, ["", "database.url", "tenant", "tenant[2].name", "tenant[10].name"]);
    }
}
