//! `kbwatch sim` as an operator runs it: what its start-up lines say is where it listens and how
//! to reach its admin routes, and an address other machines can reach needs `--allow-remote`.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

fn sim(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kbwatch"))
        .args(["sim", "--devices", "3"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kbwatch sim starts")
}

/// The start-up lines, up to and including the admin line.
async fn start_up_lines(child: &mut Child) -> Vec<String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.expect("stdout reads") {
            let admin = line.starts_with("admin:");
            seen.push(line);
            if admin {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read).await.expect("start-up lines printed");
    seen
}

/// The word after `marker` in `lines`.
fn word_after<'a>(lines: &'a [String], marker: &str) -> &'a str {
    let line = lines.iter().find(|l| l.contains(marker)).unwrap_or_else(|| panic!("{lines:?}"));
    let rest = &line[line.find(marker).expect("found") + marker.len()..];
    rest.split_whitespace().next().expect("a word follows")
}

#[tokio::test]
async fn the_start_up_lines_name_the_bound_address_and_the_admin_token() {
    let mut child = sim(&["--listen", "127.0.0.1:0"]);
    let lines = start_up_lines(&mut child).await;
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
    let out = sim(&["--listen", "0.0.0.0:0"]).wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("0.0.0.0:0") && stderr.contains("--allow-remote"), "{stderr}");

    let mut child = sim(&["--listen", "0.0.0.0:0", "--allow-remote"]);
    let lines = start_up_lines(&mut child).await;
    let addr: std::net::SocketAddr = word_after(&lines, "listening on ").parse().unwrap();
    assert!(addr.ip().is_unspecified() && addr.port() != 0, "{lines:?}");
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("reachable from other machines"), "{stderr}");
}
