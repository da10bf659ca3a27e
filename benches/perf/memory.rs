//! Row 3: peak memory of `kbwatch scan` as a process of its own, for 10,000 and 100,000 devices.
//!
//! The simulator and PostgreSQL stay outside the measured process: the simulator runs in the
//! benchmark, the database in the private PostgreSQL. The peak is the child's high-water resident
//! set size (`VmHWM` in `/proc/PID/status`), read every 10 ms until it exits. Not `wait4`'s
//! `ru_maxrss`: the kernel folds into that the resident size of the process image the child
//! replaced at `exec`, here the benchmark's own (with its simulator of up to 100,000 devices), so
//! both fleets used to report the benchmark's size whenever it was the larger.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::kit::{Daemon, Kbwatch};
use crate::setup::{Setup, finish, start};
use crate::table::{Row, mb, thousands};

/// What one measured process did.
struct Peak {
    bytes: u64,
    elapsed: Duration,
}

pub async fn run(small: usize, large: usize) -> Vec<Row> {
    let low = scan_process(small).await;
    let high = scan_process(large).await;
    let ratio = high.bytes as f64 / low.bytes.max(1) as f64;
    let line = |p: &Peak| format!("{} ({:.1} s scan)", mb(p.bytes), p.elapsed.as_secs_f64());
    vec![
        Row::judged(
            &format!(
                "peak memory (high-water RSS) of `kbwatch scan`, {} vs {} devices",
                thousands(large as u64),
                thousands(small as u64)
            ),
            format!("{ratio:.2}×"),
            "≤ 1.5×",
            ratio <= 1.5,
        ),
        Row::judged(
            &format!("  peak at {} devices", thousands(large as u64)),
            line(&high),
            "< 150 MB",
            high.bytes < 150_000_000,
        ),
        Row::context(&format!("  peak at {} devices", thousands(small as u64)), line(&low)),
    ]
}

/// Runs `kbwatch scan` against a fresh simulator of `devices` and an empty database.
async fn scan_process(devices: usize) -> Peak {
    let bench =
        start(Setup { devices, server_quota: None, client_quota: None, concurrency: 8 }).await;
    let config = bench.config_file();
    let started = Instant::now();
    let scan = Kbwatch::new(["scan"]).config(&config).env("KBWATCH_LOG", "warn").start();
    let (status, high_water) = watch_high_water(&scan).await;
    let elapsed = started.elapsed();
    let stderr = scan.stderr();
    assert!(status.success(), "kbwatch scan of {devices} devices failed ({status}):\n{stderr}");
    eprint!("{stderr}");
    finish(bench).await;
    Peak { bytes: high_water, elapsed }
}

/// Waits for `scan` to exit, reading its `VmHWM` every 10 ms; its exit status and the last
/// high-water mark read, in bytes. Only the final 10 ms of its life go unwatched.
async fn watch_high_water(scan: &Daemon) -> (ExitStatus, u64) {
    high_water_until_exit(scan.pid(), || scan.exited()).await
}

/// The same for any child process: `exited` says whether it has.
pub async fn high_water_until_exit(
    pid: u32,
    mut exited: impl FnMut() -> Option<ExitStatus>,
) -> (ExitStatus, u64) {
    let status_file = format!("/proc/{pid}/status");
    let mut high_water = 0;
    loop {
        if let Some(kib) =
            std::fs::read_to_string(&status_file).ok().as_deref().and_then(vm_hwm_kib)
        {
            high_water = high_water.max(kib * 1024);
        }
        if let Some(status) = exited() {
            assert!(high_water > 0, "VmHWM was never read");
            return (status, high_water);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `VmHWM:   12345 kB` of a `/proc/PID/status` text, in KiB.
fn vm_hwm_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
