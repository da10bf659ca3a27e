//! The deploy files: the systemd unit verifies, the Kubernetes config loads, the deadlines agree
//! with the drain deadline, the Dockerfile keeps its shape, and what Prometheus scrapes from a
//! running daemon passes `promtool check metrics` and carries what the alert rules read.
//! (scripts/validate-deploy.sh also validates the Kubernetes manifests against the Kubernetes
//! JSON schemas, and checks and unit-tests the alert rules with promtool; it installs promtool.)

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kbwatch::config::{Purpose, ScheduleConfig, load_str, load_str_for};
use kbwatch::sim::SimConfig;

use crate::kit::{Auth, Daemon, Tenant, TestApp, spawn_app};
use crate::serve::{get, samples, sum};

use crate::kit::binary;

const UNIT: &str = include_str!("../../deploy/kbwatch.service");
const CONFIGMAP: &str = include_str!("../../deploy/kubernetes/20-configmap.yaml");
const MIGRATE_JOB: &str = include_str!("../../deploy/kubernetes/30-migrate-job.yaml");
const DEPLOYMENT: &str = include_str!("../../deploy/kubernetes/40-deployment.yaml");
const DOCKERFILE: &str = include_str!("../../Dockerfile");

/// The value of `key:` or `key=` on its own line, e.g. `TimeoutStopSec=30s`.
fn setting<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(key))
        .filter_map(|rest| rest.strip_prefix('=').or_else(|| rest.strip_prefix(':')))
        .map(str::trim)
        .collect()
}

fn systemd_analyze() -> Option<&'static str> {
    let found = Command::new("systemd-analyze").arg("--version").output();
    found.is_ok_and(|o| o.status.success()).then_some("systemd-analyze")
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    for line in [
        "DynamicUser=yes",
        "StateDirectory=kbwatch",
        "ExecStartPre=/usr/local/bin/kbwatch validate",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter=@system-service",
        "UMask=077",
    ] {
        assert!(UNIT.lines().any(|l| l == line), "{line} missing from the unit");
    }
    assert!(setting(UNIT, "LoadCredential").iter().all(|c| c.contains(":/etc/kbwatch/")));
    let stop = humantime::parse_duration(setting(UNIT, "TimeoutStopSec")[0]).unwrap();
    assert!(stop > ScheduleConfig::default().drain_timeout, "TimeoutStopSec above the drain");

    let Some(tool) = systemd_analyze() else {
        eprintln!("SKIPPED systemd-analyze verify: systemd-analyze is not installed");
        return;
    };
    // verify wants the binaries to exist: point the unit at the one cargo built.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("kbwatch.service");
    std::fs::write(&unit, UNIT.replace("/usr/local/bin/kbwatch", binary::PATH)).unwrap();
    let out = Command::new(tool).args(["verify", "--man=no"]).arg(&unit).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on an unknown key or a bad value; it only warns. Any warning fails here.
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify:\n{stderr}");
    // Exposure 1.4 today ("OK"); more than 2.0 means a hardening line was lost.
    let out = Command::new(tool)
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&unit)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// The TOML of the ConfigMap's `{name}: |` block.
fn configmap_toml(name: &str) -> String {
    let (_, block) = CONFIGMAP
        .split_once(&format!("  {name}: |\n"))
        .unwrap_or_else(|| panic!("the ConfigMap holds {name}"));
    let lines: Vec<&str> =
        block.lines().take_while(|l| l.is_empty() || l.starts_with("    ")).collect();
    lines.iter().map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l))).collect()
}

#[test]
fn the_kubernetes_config_loads_with_the_pod_environment() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("azure-identity-token");
    std::fs::write(&token, "eyJ.federated.token").unwrap();
    // What the Deployment and the workload identity webhook put in the pod's environment.
    let env = [
        ("KBWATCH_DATABASE__URL", "postgres://kbwatch@db.example.net/kbwatch".to_owned()),
        ("AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000001".to_owned()),
        ("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000002".to_owned()),
        ("AZURE_FEDERATED_TOKEN_FILE", token.display().to_string()),
    ];
    let env = env.into_iter().map(|(k, v)| (k.to_owned(), v));
    let config = load_str(&configmap_toml("kbwatch.toml"), env).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.database.url.is_some(), "the URL comes from the Secret");
    assert_eq!(config.serve.listen.port(), 9464, "the port the probes and the Service use");
    assert!(config.serve.listen.ip().is_unspecified(), "reachable from the kubelet");

    let grace: u64 = setting(DEPLOYMENT, "terminationGracePeriodSeconds")[0].parse().unwrap();
    assert!(Duration::from_secs(grace) > config.schedule.drain_timeout, "grace above the drain");
    for probe in ["path: /readyz", "path: /healthz", "containerPort: 9464"] {
        assert!(DEPLOYMENT.contains(probe), "{probe} missing from the Deployment");
    }
}

/// The migration Job reads a config that names no tenant, with the database URL from the Secret
/// its only setting from the environment, and asks for no Azure identity.
#[test]
fn the_migration_job_needs_no_tenant_identity() {
    assert!(MIGRATE_JOB.contains("value: /etc/kbwatch/migrate.toml"), "{MIGRATE_JOB}");
    assert!(!MIGRATE_JOB.contains("azure.workload.identity/use"), "no webhook variables");
    let env = [("KBWATCH_DATABASE__URL".to_owned(), "postgres://kbwatch@db/kbwatch".to_owned())];
    let text = configmap_toml("migrate.toml");
    let config = load_str_for(&text, env, Purpose::Database).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.tenants.is_empty() && config.database.url.is_some(), "{text}");
}

#[test]
fn the_dockerfile_builds_offline_and_runs_unprivileged() {
    let stages = DOCKERFILE.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(stages >= 2, "multi-stage");
    assert!(DOCKERFILE.contains("SQLX_OFFLINE=true"));
    let user = DOCKERFILE.lines().rev().find_map(|l| l.strip_prefix("USER ")).expect("USER");
    assert!(!user.starts_with('0') && !user.starts_with("root"), "non-root: {user}");
    let entry = DOCKERFILE.lines().find_map(|l| l.strip_prefix("ENTRYPOINT ")).expect("ENTRYPOINT");
    assert!(entry.starts_with("[\""), "exec form: {entry}");
    assert!(DOCKERFILE.contains(r#"RUN ["/usr/local/bin/kbwatch", "--version"]"#));
    runtime_libraries_are_installed();
}

/// Every shared library the binary links is in the runtime stage (glibc is in the base image).
fn runtime_libraries_are_installed() {
    let Ok(out) = Command::new("ldd").arg(Path::new(binary::PATH)).output() else {
        eprintln!("SKIPPED the library check: ldd is not installed");
        return;
    };
    let runtime = DOCKERFILE.rsplit_once("AS runtime").expect("a runtime stage").1;
    let base = [
        "linux-vdso",
        "ld-linux",
        "libc.so",
        "libm.so",
        "libgcc_s",
        "libpthread",
        "libdl",
        "librt",
    ];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let lib = line.split_whitespace().next().unwrap_or_default();
        let lib = lib.rsplit('/').next().unwrap_or(lib);
        let package = match lib {
            l if base.iter().any(|b| l.starts_with(b)) => continue,
            "libssl.so.3" | "libcrypto.so.3" => "libssl3",
            other => panic!("{other}: add its Debian package to the Dockerfile's runtime stage"),
        };
        assert!(runtime.contains(package), "{package} missing from the runtime stage");
    }
}

/// Starts `kbwatch run` on a free port, with a cron that ticks a few seconds from now and then a
/// minute later; returns the process and the address it serves on (read from its log).
async fn run_daemon(app: &TestApp) -> (Daemon, SocketAddr) {
    use chrono::Timelike as _;
    let second = (chrono::Utc::now() + chrono::Duration::seconds(4)).second();
    let daemon = app.start_daemon(&format!("{second} * * * * *"));
    let listen = regex::Regex::new(r"127\.0\.0\.1:\d+").unwrap();
    let serving = || {
        let log = daemon.stderr();
        log.lines()
            .find(|line| line.contains("Serving /metrics"))
            .and_then(|line| listen.find(line))
            .map(|addr| addr.as_str().parse::<SocketAddr>().expect("an address"))
    };
    daemon
        .wait_for("serving /metrics", Duration::from_secs(30), || async { serving().is_some() })
        .await;
    let addr = serving().expect("found above");
    (daemon, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_metrics_pass_promtool_and_carry_what_the_alerts_read() {
    let devices = 40;
    let app = spawn_app(
        SimConfig { devices, ..SimConfig::default() },
        Auth::TokenFile,
        Tenant::default().unpaced(),
    )
    .await;
    let (daemon, addr) = run_daemon(&app).await;
    let t1 = ("tenant", "t1");
    // The first tick's scan, or the next one's a minute later if the daemon started too late.
    let mut text = String::new();
    for _ in 0..360 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        text = get(addr, "/metrics").await.1;
        let s = samples(&text);
        if sum(&s, "kbwatch_scans_total", &[t1]) >= 1.0
            && sum(&s, "kbwatch_scan_running_since_timestamp_seconds", &[t1]) == 0.0
        {
            break;
        }
    }
    daemon.terminate();
    daemon.wait(Duration::from_secs(20)).await;

    let s = samples(&text);
    assert_eq!(sum(&s, "kbwatch_scans_total", &[t1, ("status", "completed")]), 1.0, "{text}");
    let version = ("version", env!("CARGO_PKG_VERSION"));
    assert_eq!(sum(&s, "kbwatch_build_info", &[version]), 1.0, "{text}");
    assert_eq!(sum(&s, "kbwatch_fleet_devices", &[t1]), devices as f64, "{text}");
    assert_eq!(sum(&s, "kbwatch_scan_interval_seconds", &[t1]), 60.0, "a tick a minute");
    assert_eq!(sum(&s, "kbwatch_scan_running_since_timestamp_seconds", &[t1]), 0.0);
    assert_eq!(sum(&s, "kbwatch_scans_orphaned_total", &[t1]), 0.0);
    assert_eq!(sum(&s, "kbwatch_scan_panics_total", &[t1]), 0.0);
    let since = sum(&s, "kbwatch_scheduled_since_timestamp_seconds", &[t1]);
    let success = sum(&s, "kbwatch_last_success_timestamp_seconds", &[t1]);
    let progress = sum(&s, "kbwatch_last_progress_timestamp_seconds", &[t1]);
    assert!((progress - success).abs() < 5.0, "a completed scan stored results: {text}");
    assert!(since > 0.0 && success > since, "scheduled since {since}, last success {success}");
    assert!(text.contains("# TYPE kbwatch_pacer_wait_seconds_total counter"), "{text}");
    assert!(!text.contains("kbwatch_last_auth_failure"), "no failure yet: {text}");

    let Ok(mut promtool) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("SKIPPED promtool check metrics: promtool is not installed");
        return;
    };
    use std::io::Write as _;
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    let report =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "promtool check metrics:\n{report}");
}
