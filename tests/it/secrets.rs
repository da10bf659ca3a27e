//! The client secret never reaches the logs, even at trace level.

use kbwatch::sim::SimConfig;

use crate::kit::{Auth, Kbwatch, Tenant, fleet, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_secret_never_appears_in_trace_logs() {
    let secret = "s3cr3t-Vx9!q_kbwatch-never-log-me";
    let sim = SimConfig { client_secret: secret.into(), ..fleet(10) };
    let app = spawn_app(sim, Auth::ClientSecret, Tenant::default()).await;
    let output = Kbwatch::new(["scan"])
        .config(&app.config_file())
        .env("KBWATCH_LOG", "trace")
        .env_remove("RUST_LOG")
        .output()
        .await;
    let (stdout, stderr) = (&output.stdout, &output.stderr);
    assert!(output.success(), "scan failed:\n{stdout}\n{stderr}");
    assert!(stderr.lines().count() > 50, "trace logging was on");
    assert!(stdout.contains("ok 10"), "{stdout}");
    assert!(!stdout.contains(secret) && !stderr.contains(secret), "the secret was logged");
}
