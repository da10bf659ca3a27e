//! Tests of the loader: the whole pipeline, from TOML text and env pairs to a `Config` or its problems.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;
use crate::config::{AuthKind, LogFormat};

#[path = "load_env_tests.rs"]
mod overrides;
#[path = "load_defaults_tests.rs"]
mod tenant_defaults;

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

/// The example file, and the overrides that point its secret and token files into `dir`.
fn example(dir: &tempfile::TempDir) -> (PathBuf, Vec<(String, String)>) {
    let secret = dir.path().join("contoso-secret");
    fs::write(&secret, "s3cr3t").expect("write secret file");
    let token = token_file(dir);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/kbwatch.example.toml");
    let env = vars(&[
        ("KBWATCH_TENANT__CONTOSO__AUTH__CLIENT_SECRET_FILE", secret.to_str().expect("utf-8 path")),
        ("KBWATCH_TENANT__FABRIKAM_EU__AUTH__TOKEN_FILE", token.to_str().expect("utf-8 path")),
    ]);
    (example, env)
}

#[test]
fn example_file_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (example, env) = example(&dir);
    let secret = dir.path().join("contoso-secret");
    let config = load_with_env(&example, env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.tenants.len(), 2);
    assert_eq!(config.tenants[0].name, "contoso");
    assert_eq!(config.tenants[0].auth.client_secret_file.as_deref(), Some(secret.as_path()));
    assert_eq!(config.tenants[1].auth.kind, AuthKind::TokenFile);
    assert_eq!(config.tenants[1].quota.per_minute, 50);
    assert_eq!(config.tenants[1].http.max_attempts, 4, "defaults fill what the tenant leaves out");
    assert_eq!(config.schedule.cron, "0 0 * * * *");
    assert!(validate::parse_cron(&config.schedule.cron).is_ok());
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
    assert!(text.contains("tenant[0].quota.per_minute: invalid type: string \"lots\""), "{text}");
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
        found[0].message.ends_with("(tenant \"lab\", set by KBWATCH_TENANT__LAB__AUTH__AUTHORITY)"),
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
    assert!(found.iter().all(|p| p.message.contains("chmod 600") && p.message.contains("0644")));
    assert!(found[1].message.contains("KBWATCH_TENANT__0__AUTH__CLIENT_SECRET"), "{}", found[1]);
    let shown = ConfigError::Invalid(found).to_string();
    assert!(!shown.contains("inline-s3cr3t") && !shown.contains("dbpass99"), "{shown}");
    let env = vars(&[("KBWATCH_TENANT__0__AUTH__CLIENT_SECRET", "from-env")]);
    let found = problems(load_with_env(&path, env));
    assert_eq!(
        found.len(),
        2,
        "an override does not make the file's own secret private: {found:?}"
    );

    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod 600");
    let config = load_with_env(&path, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.tenants[0].auth.client_secret.is_some());

    // The same text from a string, or with the secret moved to the environment, is fine.
    assert!(load_str(text, Vec::new()).is_ok());
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
        [Problem { path: "tenant".into(), message: "at least one [[tenant]] is required".into() }]
    );
}

#[test]
fn database_only_commands_need_no_tenant_but_check_those_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("reports.toml");
    let write = |text: &str| {
        fs::write(&path, text).expect("write config");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
    };
    write("[database]\nurl = \"postgres://reader:pw@db.example:5432/kbwatch\"\n");
    let config = load_for(&path, Purpose::Database).expect("a database-only config loads");
    assert!(config.tenants.is_empty());
    assert_eq!(
        problems(load_for(&path, Purpose::Scan)),
        [Problem { path: "tenant".into(), message: "at least one [[tenant]] is required".into() }]
    );

    write("[database]\nurl = \"postgres://db.example/kbwatch\"\n[[tenant]]\nname = \"lab\"\n");
    let found = problems(load_for(&path, Purpose::Database));
    assert!(found.iter().all(|p| p.path.starts_with("tenant[0]")), "{found:?}");
    assert!(!found.is_empty());
}
