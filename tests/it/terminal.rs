//! `kbwatch scan` in a real terminal (tmux): one progress bar that log lines scroll above, shown
//! once the plan is known, with a readable rate, and gone when the scan ends; no library
//! notices at the default level.

use std::process::Command;
use std::time::{Duration, Instant};

use kbwatch::sim::DeviceFault;

use crate::kit::{Auth, Tenant, binary, slow_fleet, spawn_app};

/// A tmux server of the test's own, killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").arg("-L").arg(&self.socket).args(args).output();
        let out = out.expect("tmux runs (scripts/ensure-test-tools.sh installs it)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "scan"])
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").arg("-L").arg(&self.socket).arg("kill-server").output();
    }
}

fn is_bar(line: &str) -> bool {
    line.contains(" devices ") && line.contains(" eta ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_on_a_terminal_keeps_one_bar_below_its_log_lines_and_clears_it() {
    // Slow enough to be watched; a few 429s log warnings while the bar is shown.
    let sim = slow_fleet(300, Duration::from_millis(15));
    let app = spawn_app(sim, Auth::TokenFile, Tenant::default().unpaced().concurrency(2)).await;
    for id in app.sim.device_ids().iter().skip(40).step_by(60) {
        app.sim.set_device_fault(id, Some(DeviceFault::ThrottleOnce { seconds: 1 }));
    }
    let config = app.config_file();

    // The binary runs in tmux's terminal: the one place the kit's `Kbwatch` cannot start it.
    let tmux = Tmux { socket: format!("kbwatch-test-{}", uuid::Uuid::new_v4().simple()) };
    let command = format!(
        "env -u KBWATCH_LOG -u RUST_LOG {} --config {} scan; echo KBWATCH-EXIT-$?; sleep 120",
        binary::PATH,
        config.display()
    );
    tmux.run(&["new-session", "-d", "-s", "scan", "-x", "160", "-y", "50", &command]);

    let started = Instant::now();
    let mut screens = Vec::new();
    let last = loop {
        let screen = tmux.screen();
        if screen.contains("KBWATCH-EXIT-") {
            break screen;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the scan did not end:\n{screen}");
        screens.push(screen);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    assert!(last.contains("KBWATCH-EXIT-0"), "{last}");
    assert!(last.contains("t1: run 1 completed"), "{last}");
    assert!(last.contains("Throttled"), "the warnings were shown:\n{last}");
    assert!(!last.lines().any(is_bar), "a bar was left behind:\n{last}");
    for screen in screens.iter().chain([&last]) {
        assert!(!screen.contains("0/0 devices"), "an empty bar was shown:\n{screen}");
        assert!(!screen.contains("_sqlx_migrations"), "a library notice was shown:\n{screen}");
    }
    let with_bar: Vec<&String> = screens.iter().filter(|s| s.lines().any(is_bar)).collect();
    assert!(!with_bar.is_empty(), "the bar was never seen in {} screens", screens.len());
    let rate = regex::Regex::new(r" (\d+|\d+\.\d)/s ").unwrap();
    for screen in with_bar {
        let lines: Vec<&str> = screen.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.iter().filter(|l| is_bar(l)).count(), 1, "one bar:\n{screen}");
        let bar = lines.last().expect("a non-empty screen");
        assert!(is_bar(bar), "the bar is below every log line:\n{screen}");
        assert!(rate.is_match(bar), "a readable rate: {bar}");
    }
}
