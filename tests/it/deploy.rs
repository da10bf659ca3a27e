//! The deploy files: the systemd unit verifies, the Kubernetes config loads, the deadlines agree
//! with the drain deadline, and the Dockerfile keeps its shape. (scripts/validate-deploy.sh also
//! validates the Kubernetes manifests against the Kubernetes JSON schemas.)

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kbwatch::config::{ScheduleConfig, load_str};

use crate::kit::binary;

const UNIT: &str = include_str!("../../deploy/kbwatch.service");
const CONFIGMAP: &str = include_str!("../../deploy/kubernetes/20-configmap.yaml");
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

/// The TOML of the ConfigMap's `kbwatch.toml: |` block.
fn configmap_toml() -> String {
    let (_, block) =
        CONFIGMAP.split_once("kbwatch.toml: |\n").expect("the ConfigMap holds kbwatch.toml");
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
    let config = load_str(&configmap_toml(), env).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.database.url.is_some(), "the URL comes from the Secret");
    assert_eq!(config.serve.listen.port(), 9464, "the port the probes and the Service use");
    assert!(config.serve.listen.ip().is_unspecified(), "reachable from the kubelet");

    let grace: u64 = setting(DEPLOYMENT, "terminationGracePeriodSeconds")[0].parse().unwrap();
    assert!(Duration::from_secs(grace) > config.schedule.drain_timeout, "grace above the drain");
    for probe in ["path: /readyz", "path: /healthz", "containerPort: 9464"] {
        assert!(DEPLOYMENT.contains(probe), "{probe} missing from the Deployment");
    }
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
