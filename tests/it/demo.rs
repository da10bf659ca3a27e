//! `kbwatch demo` as a user runs it: its last line is a command that shows the demo's history
//! after the demo has exited and stopped its PostgreSQL.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use crate::kit::Kbwatch;

#[tokio::test]
async fn the_command_the_demo_prints_last_reports_its_history() {
    let dir = tempfile::tempdir().expect("temp dir");
    // As root PostgreSQL runs as `postgres`, which must traverse to the state directory.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = dir.path().join("state");
    let demo = Kbwatch::new(["demo", "--devices", "40", "--scans", "2"])
        .env("STATE_DIRECTORY", &state)
        .env_remove("KBWATCH_CONFIG")
        .output()
        .await;
    let stdout = &demo.stdout;
    assert!(demo.success(), "demo failed:\n{stdout}\n{}", demo.stderr);
    let command = stdout
        .lines()
        .map(str::trim)
        .find(|line| line.ends_with(" report trend"))
        .unwrap_or_else(|| panic!("no report command in the demo's output:\n{stdout}"));
    let devices = stdout
        .lines()
        .find_map(|line| line.strip_prefix("scan 2: ")?.split(' ').next()?.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no second scan in:\n{stdout}"));

    // A new shell, without the demo's environment: the command needs nothing else.
    let report = Command::new("sh")
        .args(["-c", command])
        .env_remove("STATE_DIRECTORY")
        .env_remove("KBWATCH_CONFIG")
        .current_dir(dir.path())
        .output()
        .expect("sh runs");
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(
        report.status.success(),
        "`{command}` failed:\n{text}\n{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let cells = |line: &str| -> Vec<String> {
        line.split(['│', '┆']).map(|cell| cell.trim().to_owned()).collect()
    };
    let row = text
        .lines()
        .map(cells)
        .find(|row| row.iter().any(|cell| cell == "demo"))
        .unwrap_or_else(|| panic!("no row of the demo tenant in:\n{text}"));
    assert!(
        row.contains(&devices.to_string()),
        "the row does not count the {devices} devices of the last scan: {row:?}"
    );
}
