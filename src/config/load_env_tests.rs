//! The loader's handling of `KBWATCH_*` overrides: typed by the key they set, named in problems.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use secrecy::ExposeSecret;
use toml::Table;

use super::*;

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

/// Every integer key of the example file, found by walking the file rather than from a list, set by
/// its `KBWATCH_*` override gives the same config as the file edited to that value: an override
/// takes its type from the key it sets, so a new integer key needs no edit to the loader.
#[test]
fn every_integer_key_of_the_example_can_be_overridden() {
    fn integers(value: &toml::Value, at: &str, out: &mut Vec<(String, i64)>) {
        match value {
            toml::Value::Integer(n) => out.push((at.to_owned(), *n)),
            toml::Value::Table(t) => {
                t.iter().for_each(|(k, v)| integers(v, &path::join(at, k), out))
            }
            toml::Value::Array(a) => {
                a.iter().enumerate().for_each(|(i, v)| integers(v, &format!("{at}[{i}]"), out))
            }
            _ => {}
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (example, base_env) = example(&dir);
    let text = fs::read_to_string(&example).expect("read the example");
    let file: Table = text.parse().expect("the example parses");
    let mut found = Vec::new();
    integers(&toml::Value::Table(file.clone()), "", &mut found);
    assert!(found.len() >= 8, "{found:?}");
    let loaded = |text: &str, env: Vec<(String, String)>| {
        format!("{:?}", load_str(text, env).unwrap_or_else(|e| panic!("{e}")))
    };
    let unchanged = loaded(&text, base_env.clone());
    for (key, value) in found {
        let mut edited = file.clone();
        assert!(path::replace(&mut edited, &path::parse(&key), toml::Value::Integer(value - 1)));
        let by_file = loaded(&toml::to_string(&edited).expect("TOML"), base_env.clone());
        let mut env = base_env.clone();
        env.push((env::variable_for(&key), (value - 1).to_string()));
        assert_ne!(by_file, unchanged, "{key}: the edit shows in the config");
        assert_eq!(loaded(&text, env), by_file, "{key}: the override equals the edit");
    }
}

#[test]
fn bad_env_number_and_unknown_tenant_are_problems() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = vars(&[
        ("KBWATCH_TENANT__0__QUOTA__CONCURRENCY", "many"),
        ("KBWATCH_TENANT__NOSUCH__PAGE_SIZE", "10"),
        ("KBWATCH_SERVE__LISTN", "0.0.0.0:1"),
        ("KBWATCH_TENANT__0__QUOTA__PER_HOUR", "s3cr3t"),
    ]);
    let found = problems(load_str(&minimal(&token_file(&dir)), env));
    let text: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 4, "{text:?}");
    assert!(text.iter().all(|p| !p.contains("s3cr3t")), "{text:?}");
    assert!(
        text.contains(
            &"tenant[0].quota.per_hour: KBWATCH_TENANT__0__QUOTA__PER_HOUR must be an integer \
              (tenant \"lab\")"
                .to_owned()
        )
    );
    assert!(
        text.iter().any(|p| p.contains("KBWATCH_TENANT__0__QUOTA__CONCURRENCY must be an integer"))
    );
    assert!(text.iter().any(|p| p.contains("\"nosuch\", which is not configured")));
    assert!(
        text.contains(&"serve.listn: unknown key (set by KBWATCH_SERVE__LISTN)".to_owned()),
        "{text:?}"
    );
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
fn retention_keep_days_from_the_file_and_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = minimal(&token_file(&dir));
    let keep_days = |text: &str, env: &[(&str, &str)]| {
        load_str(text, vars(env)).unwrap_or_else(|e| panic!("{e}")).retention.keep_days
    };
    assert_eq!(keep_days(&base, &[]), None, "left out: all history is kept");
    let in_file = format!("[retention]\nkeep_days = 90\n{base}");
    assert_eq!(keep_days(&in_file, &[]), Some(90));
    let env = [("KBWATCH_RETENTION__KEEP_DAYS", "30")];
    assert_eq!(keep_days(&in_file, &env), Some(30), "the override wins over the file");
    assert_eq!(keep_days(&base, &env), Some(30), "and needs no [retention] in the file");

    let zero = problems(load_str(&format!("[retention]\nkeep_days = 0\n{base}"), vars(&[])));
    let text: Vec<String> = zero.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        ["retention.keep_days: must be at least 1 (days); leave it out to keep all history"]
    );
    let found = problems(load_str(&base, vars(&[("KBWATCH_RETENTION__KEEP_DAYS", "0")])));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].message.ends_with("(set by KBWATCH_RETENTION__KEEP_DAYS)"), "{}", found[0]);
    let found = problems(load_str(&base, vars(&[("KBWATCH_RETENTION__KEEP_DAYS", "36501")])));
    assert!(found[0].message.starts_with("must be at most 36500"), "{}", found[0]);
    let found = problems(load_str(&base, vars(&[("KBWATCH_RETENTION__KEEP_DAYS", "a week")])));
    assert_eq!(found[0].path, "retention.keep_days");
    assert!(found[0].message.contains("KBWATCH_RETENTION__KEEP_DAYS must be an integer"));
    let negative = problems(load_str(&format!("[retention]\nkeep_days = -7\n{base}"), vars(&[])));
    assert_eq!(negative[0].path, "retention.keep_days", "{negative:?}");
}
