//! `kbwatch validate` on a service provider's file: one `[tenant_defaults]` and one line per
//! tenant. No database is needed.

use std::path::Path;

use crate::kit::Kbwatch;
use crate::kit::binary::Output;

/// A service provider's file: the app's id and secret file in the defaults, tenants one per line.
fn provider_file(secret_file: &Path, extra_defaults: &str, tenants: &str) -> String {
    format!(
        "tenant = [\n{tenants}]\n\n[tenant_defaults]\nrescan_after = \"12h\"\n{extra_defaults}\n\
         [tenant_defaults.auth]\nkind = \"client_secret\"\n\
         client_id = \"11111111-1111-1111-1111-111111111111\"\nclient_secret_file = {:?}\n",
        secret_file.display().to_string()
    )
}

async fn validate(config: &Path) -> Output {
    let mut command = Kbwatch::new(["validate"]).config(config);
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("KBWATCH_")) {
        command = command.env_remove(&name);
    }
    command.output().await
}

#[tokio::test]
async fn validate_accepts_tenants_that_inherit_their_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("msp-secret");
    std::fs::write(&secret, "s3cr3t").unwrap();
    let tenants = "  { name = \"contoso\", auth.tenant_id = \"contoso.onmicrosoft.com\" },\n\
                   { name = \"fabrikam\", auth.tenant_id = \"22222222-2222-2222-2222-222222222222\" },\n\
                   { name = \"northwind\", auth.tenant_id = \"northwind.onmicrosoft.com\", \
                   quota.per_minute = 30 },\n";
    let config = dir.path().join("kbwatch.toml");
    std::fs::write(&config, provider_file(&secret, "", tenants)).unwrap();
    let out = validate(&config).await;
    let stdout = out.stdout.clone();
    assert!(out.status.success(), "{stdout}\n{}", out.stderr);
    assert!(stdout.contains("configuration is valid (3 tenant(s))"), "{stdout}");
}

#[tokio::test]
async fn validate_names_the_tenant_of_an_inherited_problem_and_the_defaults_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-secret");
    let tenants = "  { name = \"contoso\", auth.tenant_id = \"contoso.onmicrosoft.com\" },\n\
                   { name = \"fabrikam\", auth.tenant_id = \"not a tenant id\" },\n";
    let config = dir.path().join("kbwatch.toml");
    let text = provider_file(&missing, "[tenant_defaults.quota]\nper_minit = 5\n", tenants);
    std::fs::write(&config, text).unwrap();
    let out = validate(&config).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = out.stderr.clone();
    let inherited = "inherited from tenant_defaults.auth.client_secret_file)";
    let lines: Vec<&str> = stderr.lines().skip(1).map(str::trim).collect();
    assert_eq!(lines.len(), 4, "{stderr}");
    assert!(stderr.contains(": 4 problem(s)"), "{stderr}");
    assert!(lines[0].starts_with("tenant[0].auth.client_secret_file: cannot read"), "{stderr}");
    assert!(lines[0].ends_with(&format!("(tenant \"contoso\", {inherited}")), "{stderr}");
    assert!(lines[1].ends_with(&format!("(tenant \"fabrikam\", {inherited}")), "{stderr}");
    assert!(lines[2].starts_with("tenant[1].auth.tenant_id: must be a GUID"), "{stderr}");
    assert!(lines[2].ends_with("(tenant \"fabrikam\")"), "{stderr}");
    assert_eq!(lines[3], "tenant_defaults.quota.per_minit: unknown key", "{stderr}");
}
