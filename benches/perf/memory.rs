//! Row 3: peak memory of `kbwatch scan` as a process of its own, for 10,000 and 100,000 devices.
//!
//! The simulator and PostgreSQL stay outside the measured process: the simulator runs in the
//! benchmark, the database in the private PostgreSQL. The peak is the child's maximum resident set
//! size as the kernel reports it to `wait4`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::setup::{Bench, Setup, drop_database};
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
                "peak memory (max RSS) of `kbwatch scan`, {} vs {} devices",
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
        Bench::start(Setup { devices, server_quota: None, client_quota: None, concurrency: 8 })
            .await;
    let config = bench.config_file();
    let started = Instant::now();
    #[expect(
        clippy::zombie_processes,
        reason = "reaped by wait4 below, which also reports its peak"
    )]
    let child = Command::new(env!("CARGO_BIN_EXE_kbwatch"))
        .args(["scan", "--config"])
        .arg(&config)
        .env("KBWATCH_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("kbwatch starts");
    let pid = child.id() as libc::pid_t;
    // wait4 blocks: off the runtime, so that the simulator keeps serving.
    let (status, max_rss_kib) =
        tokio::task::spawn_blocking(move || wait_with_rusage(pid)).await.expect("wait4 returns");
    let elapsed = started.elapsed();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "kbwatch scan of {devices} devices failed (wait status {status})"
    );
    drop_database(bench).await;
    Peak { bytes: max_rss_kib * 1024, elapsed }
}

/// Reaps `pid`; its wait status and its maximum resident set size in KiB.
fn wait_with_rusage(pid: libc::pid_t) -> (i32, u64) {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet reaped; both pointers are to live locals.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    (status, usage.ru_maxrss as u64)
}
