//! `kbwatch sim` as an operator runs it: what its start-up lines say is where it listens and how
//! to reach its admin routes, and an address other machines can reach needs `--allow-remote`.

use std::time::Duration;

use crate::kit::{Daemon, Kbwatch};

/// `kbwatch sim --devices 3 ARGS…`.
fn sim(args: &[&str]) -> Kbwatch {
    Kbwatch::new(["sim", "--devices", "3"].iter().chain(args))
}

/// The start-up lines, up to and including the admin line.
async fn start_up_lines(sim: &Daemon) -> Vec<String> {
    let printed = || sim.stdout().lines().any(|l| l.starts_with("admin:"));
    sim.wait_for("the start-up lines", Duration::from_secs(60), || async { printed() }).await;
    let mut seen = Vec::new();
    for line in sim.stdout().lines() {
        seen.push(line.to_owned());
        if line.starts_with("admin:") {
            return seen;
        }
    }
    unreachable!("the admin line was printed")
}

/// The word after `marker` in `lines`.
fn word_after<'a>(lines: &'a [String], marker: &str) -> &'a str {
    let line = lines.iter().find(|l| l.contains(marker)).unwrap_or_else(|| panic!("{lines:?}"));
    let rest = &line[line.find(marker).expect("found") + marker.len()..];
    rest.split_whitespace().next().expect("a word follows")
}

#[tokio::test]
async fn the_start_up_lines_name_the_bound_address_and_the_admin_token() {
    let child = sim(&["--listen", "127.0.0.1:0"]).start();
    let lines = start_up_lines(&child).await;
    let addr: std::net::SocketAddr =
        word_after(&lines, "listening on ").parse().expect("an address is printed");
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{lines:?}");
    let token = word_after(&lines, "Authorization: Bearer ");

    let stats = format!("http://{addr}/admin/stats");
    let client = reqwest::Client::new();
    let r =
        client.get(&stats).bearer_auth(token).send().await.expect("the printed address answers");
    assert_eq!(r.status(), 200, "{lines:?}");
    let r = client.get(&stats).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_non_loopback_address_is_refused_unless_allowed_and_then_warned_about() {
    let out = sim(&["--listen", "0.0.0.0:0"]).output().await;
    let stderr = &out.stderr;
    assert!(!out.success(), "{stderr}");
    assert!(stderr.contains("0.0.0.0:0") && stderr.contains("--allow-remote"), "{stderr}");

    let child = sim(&["--listen", "0.0.0.0:0", "--allow-remote"]).start();
    let lines = start_up_lines(&child).await;
    let addr: std::net::SocketAddr = word_after(&lines, "listening on ").parse().unwrap();
    assert!(addr.ip().is_unspecified() && addr.port() != 0, "{lines:?}");
    child.kill().await;
    let stderr = child.stderr();
    assert!(stderr.contains("reachable from other machines"), "{stderr}");
}
