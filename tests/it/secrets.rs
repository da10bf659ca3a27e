//! The client secret never reaches the logs, even at trace level.

use std::process::Command;

use kbwatch::sim::SimConfig;

use crate::helpers::{Auth, spawn_app, write_private};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_secret_never_appears_in_trace_logs() {
    let secret = "s3cr3t-Vx9!q_kbwatch-never-log-me";
    let sim = SimConfig { devices: 10, client_secret: secret.into(), ..SimConfig::default() };
    let app = spawn_app(sim, Auth::ClientSecret, "").await;
    let config = app.dir.path().join("kbwatch.toml");
    write_private(&config, &app.config_toml);
    let app_ref = &app;
    let output = tokio::task::spawn_blocking({
        let config = config.clone();
        move || {
            Command::new(env!("CARGO_BIN_EXE_kbwatch"))
                .args(["scan", "--config"])
                .arg(&config)
                .env("KBWATCH_LOG", "trace")
                .env_remove("RUST_LOG")
                .output()
                .expect("kbwatch runs")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "scan failed:\n{stdout}\n{stderr}");
    assert!(stderr.lines().count() > 50, "trace logging was on");
    assert!(stdout.contains("ok 10"), "{stdout}");
    assert!(!stdout.contains(secret) && !stderr.contains(secret), "the secret was logged");
    let _ = app_ref;
}
