//! `[tenant_defaults]` where keys are one choice: a tenant's own choice is not mixed with the
//! defaults'.

use std::fs;

use super::*;
use crate::config::Cloud;

#[test]
fn a_tenant_that_chose_otherwise_does_not_inherit_the_other_choice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        r#"{}
        [[tenant]]
        name = "own-identity"
        auth.kind = "managed_identity"
        [[tenant]]
        name = "own-secret"
        auth.tenant_id = "own.onmicrosoft.com"
        auth.client_secret = "its-own"
        [[tenant]]
        name = "gov"
        cloud = "usgov-high"
        auth.tenant_id = "gov.onmicrosoft.us"
        "#,
        defaults(&dir)
    );
    let config = load_str(&text, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    let [identity, secret, gov] = &config.tenants[..] else { panic!("three tenants") };
    assert_eq!(
        identity.auth.client_id, None,
        "a client_id picks a managed identity: not inherited"
    );
    assert_eq!(identity.quota.per_minute, 50, "the rest is still inherited");
    assert_eq!(secret.auth.client_secret_file, None, "the secret is one setting");
    assert_eq!(secret.auth.client_id.as_deref(), Some("11111111-1111-1111-1111-111111111111"));
    assert_eq!(gov.api_base, Cloud::UsgovHigh.api_base(), "its cloud, not the defaults' host");
    assert_eq!(gov.auth.authority, Cloud::UsgovHigh.authority());
}

#[test]
fn a_tenant_that_sets_a_kind_inherits_no_auth_from_defaults_that_set_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("app-secret");
    fs::write(&secret, "s3cr3t").expect("write secret file");
    let text = format!(
        r#"
        [tenant_defaults.auth]
        client_id = "11111111-1111-1111-1111-111111111111"
        client_secret_file = {:?}
        [tenant_defaults.quota]
        per_minute = 50
        [[tenant]]
        name = "identity"
        auth.kind = "managed_identity"
        "#,
        secret.to_str().expect("utf-8 path")
    );
    let config = load_str(&text, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    let identity = &config.tenants[0];
    assert_eq!(identity.auth.kind, AuthKind::ManagedIdentity);
    assert_eq!(identity.auth.client_id, None, "the app's id is not a user-assigned identity's");
    assert_eq!(identity.auth.client_secret_file, None);
    assert_eq!(identity.quota.per_minute, 50, "the rest is still inherited");
}

#[test]
fn a_tenant_with_its_own_certificate_does_not_inherit_the_defaults_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str| {
        let path = dir.path().join(name);
        fs::write(&path, name).expect("write file");
        path.to_str().expect("utf-8 path").to_owned()
    };
    let (shared, password, own) = (file("msp.pfx"), file("msp.pass"), file("own.pfx"));
    let text = format!(
        r#"
        [tenant_defaults.auth]
        kind = "client_certificate"
        client_id = "11111111-1111-1111-1111-111111111111"
        certificate_file = {shared:?}
        certificate_password_file = {password:?}
        [[tenant]]
        name = "shared"
        auth.tenant_id = "shared.onmicrosoft.com"
        [[tenant]]
        name = "own-cert"
        auth.tenant_id = "own.onmicrosoft.com"
        auth.certificate_file = {own:?}
        "#
    );
    let config = load_str(&text, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    let [shared_cert, own_cert] = &config.tenants[..] else { panic!("two tenants") };
    assert_eq!(shared_cert.auth.certificate_file, Some(shared.into()));
    assert_eq!(shared_cert.auth.certificate_password_file, Some(password.into()));
    assert_eq!(own_cert.auth.certificate_file, Some(own.into()));
    assert_eq!(
        own_cert.auth.certificate_password_file, None,
        "the certificate and its password are one setting"
    );
    assert_eq!(own_cert.auth.client_id, shared_cert.auth.client_id, "the rest is inherited");
}
