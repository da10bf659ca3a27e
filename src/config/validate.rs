//! Semantic checks of a deserialized [`Config`], collecting every problem. No message carries a
//! secret value.

use std::collections::HashMap;

use croner::Cron;
use croner::parser::{CronParser, Seconds};
use secrecy::ExposeSecret;
use toml::{Table, Value};

use self::value_checks::{
    check_readable, check_url, is_domain, is_guid, is_url, problem, url_has_password,
};
use super::{env, path};
use crate::config::presets::WORKLOAD_IDENTITY_ENV;
use crate::config::{AuthConfig, AuthKind, Config, DatabaseConfig, Problem, TenantConfig};

#[path = "value_checks.rs"]
mod value_checks;

/// What validation knows beyond the config itself.
#[derive(Debug, Default)]
pub(super) struct Context {
    /// Permission bits of the config file; `None` when the text did not come from a file.
    pub file_mode: Option<u32>,
    /// Key paths of secrets written in the file itself (before env overrides): [`inline_secrets`].
    pub inline_secrets: Vec<String>,
    /// Whether at least one `[[tenant]]` is required (not for database-only commands).
    pub tenant_required: bool,
}

/// Every problem of `cfg`, in no particular order.
pub(super) fn validate(cfg: &Config, ctx: &Context) -> Vec<Problem> {
    let mut out = Vec::new();
    check_permissions(ctx, &mut out);
    check_database(&cfg.database, &mut out);
    if cfg.schedule.max_concurrent_scans == 0 {
        out.push(problem("schedule.max_concurrent_scans", "must be at least 1"));
    }
    if let Err(message) = parse_cron(&cfg.schedule.cron) {
        out.push(problem("schedule.cron", message));
    }
    if let Some(ca) = &cfg.tls.ca_file {
        check_readable("tls.ca_file", ca, &mut out);
    }
    check_keep_days(cfg.retention.keep_days, &mut out);
    if ctx.tenant_required && cfg.tenants.is_empty() {
        out.push(problem("tenant", "at least one [[tenant]] is required"));
    }
    check_tenants(&cfg.tenants, &mut out);
    out
}

/// Parses a cron expression exactly as tokio-cron-scheduler 0.15 does (`Job::new_async`: croner,
/// seconds required, day-of-month AND day-of-week), after requiring exactly 6 fields.
pub fn parse_cron(expr: &str) -> Result<Cron, String> {
    match expr.split_whitespace().count() {
        6 => {}
        5 => {
            return Err("has 5 fields, but kbwatch cron has 6 with seconds first \
                        (sec min hour day-of-month month day-of-week), e.g. \"0 0 * * * *\" for hourly"
                .into());
        }
        n => {
            return Err(format!(
                "must have exactly 6 fields (sec min hour day-of-month month day-of-week), found {n}"
            ));
        }
    }
    let cron = CronParser::builder()
        .seconds(Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map_err(|e| format!("does not parse: {e}"))?;
    cron.find_next_occurrence(&chrono::Utc::now(), false)
        .map_err(|_| "never fires (no date matches it)".to_owned())?;
    Ok(cron)
}

/// Key paths of the secrets of `cfg` (`Config::secrets`) and of `defaults` (the secrets set in
/// `[tenant_defaults]`) that the file's own table holds, before env overrides. A secret a tenant
/// inherited is at its `tenant_defaults` path in the file, and counts there, once. A URL counts
/// only when it carries a password.
pub(super) fn inline_secrets(cfg: &Config, defaults: &[String], file: &Table) -> Vec<String> {
    let written = |key: &String| {
        let text = path::get(file, &path::parse(key)).and_then(Value::as_str);
        text.is_some_and(|text| !is_url(text) || url_has_password(text))
    };
    let keys = cfg.secrets().into_iter().map(|(key, _)| key);
    keys.chain(defaults.iter().cloned()).filter(written).collect()
}

fn check_permissions(ctx: &Context, out: &mut Vec<Problem>) {
    let Some(mode) = ctx.file_mode.filter(|mode| mode & 0o077 != 0) else { return };
    for key in &ctx.inline_secrets {
        out.push(problem(
            key,
            format!(
                "a secret written in the config file is refused because the file is readable by group \
                 or others (mode {:04o}): chmod 600 the file, or set {} in the environment",
                mode & 0o777,
                env::variable_for(key)
            ),
        ));
    }
}

fn check_database(db: &DatabaseConfig, out: &mut Vec<Problem>) {
    if let Some(url) = &db.url {
        let url = url.expose_secret().to_ascii_lowercase();
        if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            out.push(problem("database.url", "must start with postgres:// or postgresql://"));
        }
    }
    if db.max_connections == 0 {
        out.push(problem("database.max_connections", "must be at least 1"));
    }
}

/// The most days `retention.keep_days` may keep: a hundred years, far inside PostgreSQL's dates.
const MAX_KEEP_DAYS: u32 = 36_500;

fn check_keep_days(keep_days: Option<u32>, out: &mut Vec<Problem>) {
    let message = match keep_days {
        Some(0) => "must be at least 1 (days); leave it out to keep all history",
        Some(days) if days > MAX_KEEP_DAYS => {
            "must be at most 36500 (days, a hundred years); leave it out to keep all history"
        }
        _ => return,
    };
    out.push(problem("retention.keep_days", message));
}

fn check_tenants(tenants: &[TenantConfig], out: &mut Vec<Problem>) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, t) in tenants.iter().enumerate() {
        let p = format!("tenant[{i}]");
        check_name(&p, &t.name, out);
        if let Some(first) = seen.insert(env::tenant_name_key(&t.name), i) {
            out.push(problem(
                format!("{p}.name"),
                format!(
                    "duplicate tenant name {:?}: tenant[{first}] has the same name (compared ignoring case \
                     and - versus _)",
                    t.name
                ),
            ));
        }
        check_url(&format!("{p}.api_base"), &t.api_base, out);
        if t.api_base.query().is_some() || t.api_base.fragment().is_some() {
            out.push(problem(format!("{p}.api_base"), "must have no query or fragment"));
        }
        if !(1..=10_000).contains(&t.page_size) {
            out.push(problem(format!("{p}.page_size"), "must be between 1 and 10000"));
        }
        if t.export.fill_after < std::time::Duration::from_secs(3600) {
            out.push(problem(format!("{p}.export.fill_after"), "must be at least 1h"));
        }
        check_limits(&p, t, out);
        check_auth(&format!("{p}.auth"), &t.auth, out);
    }
}

/// 1 to 63 letters, digits, `_` or `-`, starting with a letter or digit.
pub(super) fn is_tenant_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name.len() <= 63
}

fn check_name(p: &str, name: &str, out: &mut Vec<Problem>) {
    if name.is_empty() {
        out.push(problem(format!("{p}.name"), "must not be empty"));
    } else if !is_tenant_name(name) {
        out.push(problem(
            format!("{p}.name"),
            "must be 1 to 63 letters, digits, _ or -, starting with a letter or digit",
        ));
    }
}

fn check_limits(p: &str, t: &TenantConfig, out: &mut Vec<Problem>) {
    let q = &t.quota;
    if q.per_minute < 1 {
        out.push(problem(format!("{p}.quota.per_minute"), "must be at least 1"));
    }
    if q.per_hour < q.per_minute {
        out.push(problem(
            format!("{p}.quota.per_hour"),
            format!("must be at least per_minute ({})", q.per_minute),
        ));
    }
    if !(1..=256).contains(&q.concurrency) {
        out.push(problem(format!("{p}.quota.concurrency"), "must be between 1 and 256"));
    }
    if t.http.max_attempts < 1 {
        out.push(problem(format!("{p}.http.max_attempts"), "must be at least 1"));
    }
}

fn check_auth(p: &str, auth: &AuthConfig, out: &mut Vec<Problem>) {
    let kind = auth.kind.as_str();
    match auth.kind {
        AuthKind::ClientSecret => {
            require_tenant_and_client(p, auth, out);
            check_secret_source(p, auth, out);
        }
        AuthKind::ClientCertificate => {
            require_tenant_and_client(p, auth, out);
            require(p, "certificate_file", auth.certificate_file.is_some(), kind, out);
        }
        AuthKind::WorkloadIdentity => {
            check_tenant_id(p, auth.tenant_id.as_deref(), out);
            for (key, present) in [
                ("tenant_id", auth.tenant_id.is_some()),
                ("client_id", auth.client_id.is_some()),
                ("federated_token_file", auth.federated_token_file.is_some()),
            ] {
                if !present {
                    let var = WORKLOAD_IDENTITY_ENV.iter().find(|(k, _)| *k == key);
                    let or_set = var.map(|(_, v)| format!(" (or set {v})")).unwrap_or_default();
                    let message = format!("required for kind workload_identity{or_set}");
                    out.push(problem(format!("{p}.{key}"), message));
                }
            }
        }
        AuthKind::ManagedIdentity => {}
        AuthKind::AzureCli => check_tenant_id(p, auth.tenant_id.as_deref(), out),
        AuthKind::TokenFile => require(p, "token_file", auth.token_file.is_some(), kind, out),
    }
    for (key, file) in [
        ("client_secret_file", &auth.client_secret_file),
        ("certificate_file", &auth.certificate_file),
        ("certificate_password_file", &auth.certificate_password_file),
        ("federated_token_file", &auth.federated_token_file),
        ("token_file", &auth.token_file),
    ] {
        if let Some(file) = file {
            check_readable(&format!("{p}.{key}"), file, out);
        }
    }
    check_url(&format!("{p}.authority"), &auth.authority, out);
}

fn require(p: &str, key: &str, present: bool, kind: &str, out: &mut Vec<Problem>) {
    if !present {
        out.push(problem(format!("{p}.{key}"), format!("required for kind {kind}")));
    }
}

fn require_tenant_and_client(p: &str, auth: &AuthConfig, out: &mut Vec<Problem>) {
    let kind = auth.kind.as_str();
    let tenant = auth.tenant_id.as_deref().filter(|t| !t.is_empty());
    require(p, "tenant_id", tenant.is_some(), kind, out);
    check_tenant_id(p, tenant, out);
    let client = auth.client_id.as_deref().is_some_and(|c| !c.is_empty());
    require(p, "client_id", client, kind, out);
}

fn check_tenant_id(p: &str, tenant_id: Option<&str>, out: &mut Vec<Problem>) {
    if let Some(id) = tenant_id
        && !is_guid(id)
        && !is_domain(id)
    {
        out.push(problem(
            format!("{p}.tenant_id"),
            "must be a GUID or a domain name (e.g. contoso.onmicrosoft.com)",
        ));
    }
}

fn check_secret_source(p: &str, auth: &AuthConfig, out: &mut Vec<Problem>) {
    match (&auth.client_secret, &auth.client_secret_file) {
        (Some(_), Some(_)) => {
            out.push(problem(p, "set only one of client_secret and client_secret_file"));
        }
        (None, None) => out.push(problem(
            p,
            "kind client_secret requires one of client_secret_file (preferred) or client_secret",
        )),
        (Some(secret), None) if secret.expose_secret().is_empty() => {
            out.push(problem(format!("{p}.client_secret"), "must not be empty"));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_needs_six_fields_seconds_first() {
        assert!(parse_cron("0 0 * * * *").is_ok());
        assert!(parse_cron("0 30 2 * * Mon-Fri").is_ok());
        let five = parse_cron("0 * * * *").expect_err("5 fields are refused");
        assert!(five.contains("seconds first"), "{five}");
        assert!(parse_cron("0 0 * * * * 2030").is_err(), "a year field is refused");
        assert!(parse_cron("@hourly").is_err());
        assert!(parse_cron("0 0 25 * * *").is_err(), "hour 25");
        assert!(parse_cron("0 0 0 31 2 *").unwrap_err().contains("never fires"));
    }
}
