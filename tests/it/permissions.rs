//! `kbwatch validate --online` names the application permission each refused call needs, per
//! tenant, and probes the vulnerability export only where `[tenant.export]` enables it.

use kbwatch::sim::{Faults, Route};

use crate::kit::binary::Output;
use crate::kit::{Auth, Kbwatch, Tenant, TestApp, fleet, spawn_app};

/// The simulator refuses `route` as Defender does when the app lacks its role.
fn forbid(app: &TestApp, route: Route, role: &str) {
    let message = format!("Missing application roles. API required roles: {role}");
    app.sim.set_faults(Faults { forbidden_on: vec![(route, message)], ..Faults::default() });
}

async fn validate_online(app: &TestApp) -> Output {
    Kbwatch::new(["validate", "--online"]).config(&app.config_file()).output().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_export_names_vulnerability_read_all_and_the_tenant() {
    let app = spawn_app(fleet(5), Auth::TokenFile, Tenant::named("contoso").export(true)).await;
    let out = validate_online(&app).await;
    assert!(out.success(), "everything allowed passes\n{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("contoso: the export answers (1 row(s)"), "{}", out.stdout);
    assert_eq!(app.sim.stats().export_requests, 1, "one export call per run");

    forbid(&app, Route::Export, "Vulnerability.Read.All");
    let out = validate_online(&app).await;
    assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);
    let expected =
        r#"tenant "contoso": the app lacks Vulnerability.Read.All (the export answered 403)"#;
    assert!(out.stdout.contains(expected), "{}", out.stdout);
    assert!(
        out.stdout.contains("contoso: getmissingkbs answers"),
        "the others pass: {}",
        out.stdout
    );
    assert!(!out.stdout.contains("Software.Read.All") && !out.stdout.contains("Machine.Read.All"));

    forbid(&app, Route::Machines, "Machine.Read.All");
    let kbs_before = app.sim.stats().kbs_requests;
    let out = validate_online(&app).await;
    assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);
    let expected =
        r#"tenant "contoso": the app lacks Machine.Read.All (the device list answered 403)"#;
    assert!(out.stdout.contains(expected), "{}", out.stdout);
    assert_eq!(app.sim.stats().kbs_requests, kbs_before, "no device listed, none probed");
    assert_eq!(app.sim.stats().export_requests, 3, "the export is still probed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_getmissingkbs_names_software_read_all_and_a_disabled_export_is_not_called() {
    let app = spawn_app(fleet(5), Auth::TokenFile, Tenant::named("fabrikam")).await;
    forbid(&app, Route::Export, "Vulnerability.Read.All");
    let out = validate_online(&app).await;
    assert!(
        out.success(),
        "the export is off: its 403 does not matter\n{}{}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("fabrikam: getmissingkbs answers"), "{}", out.stdout);
    assert_eq!(app.sim.stats().export_requests, 0, "a disabled export is never called");
    assert_eq!(app.sim.stats().kbs_requests, 1, "one getmissingkbs call");

    forbid(&app, Route::MissingKbs, "Software.Read.All");
    let out = validate_online(&app).await;
    assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);
    let expected =
        r#"tenant "fabrikam": the app lacks Software.Read.All (the getmissingkbs answered 403)"#;
    assert!(out.stdout.contains(expected), "{}", out.stdout);
    assert!(out.stdout.contains("fabrikam: token ok, device list answers"), "{}", out.stdout);
    assert!(out.stdout.contains("forbidden: Missing application roles."), "the API's own words");
    assert_eq!(app.sim.stats().export_requests, 0);
}
