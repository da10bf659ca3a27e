//! `[tenant_defaults]`: what tenants inherit and override, and how problems of the defaults and of
//! inherited values are reported.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

use secrecy::ExposeSecret;

use super::*;
use crate::config::{Cloud, TenantConfig};

#[path = "load_defaults_choice_tests.rs"]
mod choices;

/// A service provider's defaults: one multi-tenant app, its secret in a file under `dir`.
fn defaults(dir: &tempfile::TempDir) -> String {
    let secret = dir.path().join("msp-secret");
    fs::write(&secret, "s3cr3t").expect("write secret file");
    format!(
        r#"
        [tenant_defaults]
        api_base = "https://eu.api.security.microsoft.com"
        rescan_after = "12h"
        page_size = 5000
        device_filter = "onboardingStatus eq 'Onboarded'"
        [tenant_defaults.auth]
        kind = "client_secret"
        client_id = "11111111-1111-1111-1111-111111111111"
        client_secret_file = {:?}
        [tenant_defaults.quota]
        per_minute = 50
        concurrency = 4
        [tenant_defaults.http]
        max_attempts = 6
        "#,
        secret.to_str().expect("utf-8 path")
    )
}

#[test]
fn tenants_inherit_key_by_key_and_override() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        r#"{}
        [[tenant]]
        name = "contoso"
        auth.tenant_id = "contoso.onmicrosoft.com"
        [[tenant]]
        name = "fabrikam"
        page_size = 100
        [tenant.auth]
        tenant_id = "fabrikam.onmicrosoft.com"
        client_id = "22222222-2222-2222-2222-222222222222"
        [tenant.quota]
        per_minute = 20
        "#,
        defaults(&dir)
    );
    let config = load_str(&text, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    let [contoso, fabrikam] = &config.tenants[..] else { panic!("two tenants") };
    assert_eq!(contoso.api_base.as_str(), "https://eu.api.security.microsoft.com/");
    assert_eq!(contoso.rescan_after.as_secs(), 12 * 3600);
    assert_eq!(contoso.page_size, 5000);
    assert_eq!(contoso.device_filter.as_deref(), Some("onboardingStatus eq 'Onboarded'"));
    assert_eq!(contoso.auth.kind, AuthKind::ClientSecret);
    assert_eq!(contoso.auth.client_id.as_deref(), Some("11111111-1111-1111-1111-111111111111"));
    assert_eq!(contoso.auth.tenant_id.as_deref(), Some("contoso.onmicrosoft.com"));
    assert!(contoso.auth.client_secret_file.is_some());
    assert_eq!((contoso.quota.per_minute, contoso.quota.concurrency), (50, 4));
    assert_eq!(contoso.quota.per_hour, 1500, "what neither sets keeps its default");
    assert_eq!(contoso.http.max_attempts, 6);
    assert_eq!(contoso.auth.scope, Cloud::Public.scope(), "presets fill in after inheriting");

    assert_eq!(fabrikam.page_size, 100);
    assert_eq!(fabrikam.auth.client_id.as_deref(), Some("22222222-2222-2222-2222-222222222222"));
    assert_eq!(fabrikam.auth.client_secret_file, contoso.auth.client_secret_file);
    assert_eq!((fabrikam.quota.per_minute, fabrikam.quota.concurrency), (20, 4), "deep merge");
    assert_eq!(fabrikam.http.max_attempts, 6);
}

#[test]
fn the_export_switch_is_inherited_and_overridden() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    fs::write(&token, "t0ken").expect("write token file");
    let tenants = format!(
        r#"
        [tenant_defaults.auth]
        kind = "token_file"
        token_file = {token:?}
        [[tenant]]
        name = "contoso"
        [[tenant]]
        name = "fabrikam"
        export.enabled = false
        "#
    );
    let on = format!("[tenant_defaults.export]\nenabled = true\n{tenants}");
    let config = load_str(&on, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    let enabled: Vec<bool> = config.tenants.iter().map(|t| t.export.enabled).collect();
    assert_eq!(enabled, [true, false], "contoso inherits, fabrikam overrides");
    let config = load_str(&tenants, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.tenants.iter().all(|t| !t.export.enabled), "off unless enabled");
    let fill = |t: &TenantConfig| (t.export.fill, t.export.fill_after.as_secs());
    assert!(config.tenants.iter().all(|t| fill(t) == (true, 86_400)), "fill after a day");

    let shorter = format!("[tenant_defaults.export]\nfill_after = \"6h\"\n{tenants}")
        .replace("export.enabled = false", "export.fill = false");
    let config = load_str(&shorter, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    let fills: Vec<_> = config.tenants.iter().map(fill).collect();
    assert_eq!(fills, [(true, 6 * 3600), (false, 6 * 3600)]);
    let too_short = shorter.replace("\"6h\"", "\"10m\"");
    let shown: Vec<String> =
        problems(load_str(&too_short, Vec::new())).iter().map(ToString::to_string).collect();
    let from = "inherited from tenant_defaults.export.fill_after";
    assert_eq!(
        shown,
        [
            format!(
                "tenant[0].export.fill_after: must be at least 1h (tenant \"contoso\", {from})"
            ),
            format!(
                "tenant[1].export.fill_after: must be at least 1h (tenant \"fabrikam\", {from})"
            ),
        ]
    );
}

#[test]
fn problems_name_the_tenant_and_the_defaults_once() {
    let text = r#"
        colour = "blue"
        [tenant_defaults]
        name = "everyone"
        bogus = 1
        [tenant_defaults.auth]
        kind = "client_secret"
        client_id = "11111111-1111-1111-1111-111111111111"
        client_secret_file = "/nonexistent/kbwatch-msp-secret"
        [tenant_defaults.quota]
        per_minit = 5
        concurrency = 1000
        [tenant_defaults.http]
        max_attempts = "six"
        [[tenant]]
        name = "contoso"
        auth.tenant_id = "contoso.onmicrosoft.com"
        [[tenant]]
        name = "fabrikam"
        auth.tenant_id = "not a tenant"
        quota.concurrency = 8
    "#;
    let found = problems(load_str(text, Vec::new()));
    let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
    let from = "inherited from tenant_defaults";
    assert_eq!(
        shown,
        [
            "colour: unknown key".to_owned(),
            format!(
                "tenant[0].auth.client_secret_file: cannot read /nonexistent/kbwatch-msp-secret: \
                 No such file or directory (os error 2) (tenant \"contoso\", \
                 {from}.auth.client_secret_file)"
            ),
            format!(
                "tenant[0].quota.concurrency: must be between 1 and 256 (tenant \"contoso\", \
                 {from}.quota.concurrency)"
            ),
            format!(
                "tenant[1].auth.client_secret_file: cannot read /nonexistent/kbwatch-msp-secret: \
                 No such file or directory (os error 2) (tenant \"fabrikam\", \
                 {from}.auth.client_secret_file)"
            ),
            "tenant[1].auth.tenant_id: must be a GUID or a domain name (e.g. \
             contoso.onmicrosoft.com) (tenant \"fabrikam\")"
                .to_owned(),
            "tenant_defaults.bogus: unknown key".to_owned(),
            "tenant_defaults.http.max_attempts: invalid type: string \"six\", expected u32"
                .to_owned(),
            "tenant_defaults.name: is not inherited: every [[tenant]] sets its own name".to_owned(),
            "tenant_defaults.quota.per_minit: unknown key".to_owned(),
        ],
        "{shown:#?}"
    );
}

#[test]
fn env_overrides_set_defaults_and_are_named_in_problems() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "{}\n[[tenant]]\nname = \"contoso\"\nauth.tenant_id = \"contoso.onmicrosoft.com\"\n\
         [[tenant]]\nname = \"fabrikam\"\nauth.tenant_id = \"fabrikam.onmicrosoft.com\"\n\
         quota.per_minute = 20\n",
        defaults(&dir)
    );
    let env = vars(&[
        ("KBWATCH_TENANT_DEFAULTS__QUOTA__PER_MINUTE", "30"),
        ("KBWATCH_TENANT_DEFAULTS__HTTP__MAX_ATTEMPTS", "2"),
    ]);
    let config = load_str(&text, env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.tenants[0].quota.per_minute, 30, "read as the integer its key wants");
    assert_eq!(config.tenants[1].quota.per_minute, 20, "a tenant's own value wins");
    assert_eq!(config.tenants[1].http.max_attempts, 2);

    let env = vars(&[
        ("KBWATCH_TENANT_DEFAULTS__QUOTA__CONCURRENCY", "1000"),
        ("KBWATCH_TENANT_DEFAULTS__HTTP__MAX_ATTEMPTS", "many"),
    ]);
    let shown: Vec<String> =
        problems(load_str(&text, env)).iter().map(ToString::to_string).collect();
    let var = "KBWATCH_TENANT_DEFAULTS__QUOTA__CONCURRENCY";
    assert_eq!(
        shown,
        [
            format!(
                "tenant[0].quota.concurrency: must be between 1 and 256 (tenant \"contoso\", \
                 inherited from tenant_defaults.quota.concurrency, set by {var})"
            ),
            format!(
                "tenant[1].quota.concurrency: must be between 1 and 256 (tenant \"fabrikam\", \
                 inherited from tenant_defaults.quota.concurrency, set by {var})"
            ),
            "tenant_defaults.http.max_attempts: KBWATCH_TENANT_DEFAULTS__HTTP__MAX_ATTEMPTS \
             must be an integer"
                .to_owned(),
        ],
        "{shown:#?}"
    );
}

#[test]
fn an_inline_secret_in_the_defaults_keeps_every_protection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "[tenant_defaults.auth]\nkind = \"client_secret\"\nclient_id = \"app\"\n\
                client_secret = \"inline-s3cr3t\"\n\
                [[tenant]]\nname = \"contoso\"\nauth.tenant_id = \"contoso.onmicrosoft.com\"\n\
                [[tenant]]\nname = \"fabrikam\"\nauth.tenant_id = \"fabrikam.onmicrosoft.com\"\n";
    let path = dir.path().join("kbwatch.toml");
    fs::write(&path, text).expect("write config");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod 644");
    let found = problems(load_with_env(&path, Vec::new()));
    assert_eq!(found.len(), 1, "reported once, where it is written: {found:?}");
    assert_eq!(found[0].path, "tenant_defaults.auth.client_secret");
    assert!(found[0].message.contains("KBWATCH_TENANT_DEFAULTS__AUTH__CLIENT_SECRET"), "{found:?}");

    let moved = text.replace("client_secret = \"inline-s3cr3t\"\n", "");
    fs::write(&path, moved).expect("write config");
    let env = vars(&[("KBWATCH_TENANT_DEFAULTS__AUTH__CLIENT_SECRET", "from-env")]);
    let config = load_with_env(&path, env).unwrap_or_else(|e| panic!("{e}"));
    let secret = config.tenants[1].auth.client_secret.as_ref().expect("inherited from env");
    assert_eq!(secret.expose_secret(), "from-env");

    fs::write(&path, text).expect("write config");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod 600");
    let config = load_with_env(&path, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.tenants.iter().all(|t| t.auth.client_secret.is_some()));
    assert!(!format!("{config:?}").contains("inline-s3cr3t"), "Debug never shows it");

    let typo = text.replace("\"inline-s3cr3t\"", "987654");
    let shown = ConfigError::Invalid(problems(load_str(&typo, Vec::new()))).to_string();
    assert!(shown.contains("tenant_defaults.auth.client_secret: invalid type"), "{shown}");
    assert!(!shown.contains("987654"), "{shown}");
}

/// 500 tenants of one line each, as an array of inline tables. Wall-clock time is printed, not
/// asserted: `cargo test --lib five_hundred -- --nocapture`.
#[test]
fn five_hundred_tenants_in_one_line_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The array comes first: after `[tenant_defaults.http]` it would be a key of that table.
    let mut text = String::from("tenant = [\n");
    for i in 0..500 {
        let id = format!("{i:08x}-0000-4000-8000-000000000000");
        writeln!(text, "  {{ name = \"customer-{i}\", auth.tenant_id = \"{id}\" }},")
            .expect("write");
    }
    text.push_str("]\n");
    text.push_str(&defaults(&dir));
    let env = vars(&[("KBWATCH_TENANT__CUSTOMER_417__QUOTA__PER_MINUTE", "10")]);
    let start = Instant::now();
    let config = load_str(&text, env).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("loaded 500 tenants in {:?}", start.elapsed());
    assert_eq!(config.tenants.len(), 500);
    assert!(config.tenants.iter().all(|t| t.auth.client_secret_file.is_some()));
    assert_eq!(
        config.tenants[417].auth.tenant_id.as_deref(),
        Some("000001a1-0000-4000-8000-000000000000")
    );
    assert_eq!(config.tenants[417].quota.per_minute, 10);
    assert_eq!(config.tenants[416].quota.per_minute, 50);
}

/// The service provider's file that the example shows commented out, uncommented, loads.
#[test]
fn the_example_service_provider_file_loads() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/kbwatch.example.toml");
    let text = fs::read_to_string(example).expect("read the example");
    let start = text.find("# tenant = [").expect("the example shows a provider's file");
    let block: String = text[start..]
        .lines()
        .map_while(|line| line.strip_prefix('#'))
        .map(|line| format!("{}\n", line.strip_prefix(' ').unwrap_or(line)))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    fs::write(&secret, "s3cr3t").expect("write secret file");
    let env = vars(&[(
        "KBWATCH_TENANT_DEFAULTS__AUTH__CLIENT_SECRET_FILE",
        secret.to_str().expect("utf-8"),
    )]);
    let config = load_str(&block, env).unwrap_or_else(|e| panic!("{e}\n{block}"));
    assert!(config.tenants.len() >= 3, "{block}");
    assert!(config.tenants.iter().all(|t| t.auth.client_id == config.tenants[0].auth.client_id));
    let other_cloud = config.tenants.iter().find(|t| t.cloud != Cloud::Public);
    assert!(other_cloud.is_some_and(|t| t.api_base == t.cloud.api_base()), "{config:?}");
}
