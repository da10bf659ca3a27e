//! `kbwatch demo`: the private PostgreSQL, the simulator (over TLS, with a real client-secret
//! token flow), scans of a fleet that changes between them, and the summary report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use super::database::open_store;
use super::report::{ReportArgs, render};
use super::scan::scan_with_progress;
use crate::config::{self, Config};
use crate::embedded_pg::{default_state_dir, prepare_state_dir};
use crate::scan::Trigger;
use crate::sim::{Evolution, Sim, SimConfig};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Devices in the simulated fleet.
    #[arg(long, default_value_t = 2000)]
    devices: usize,
    /// Scans to run; between two scans a simulated month passes (updates installed, a new KB).
    #[arg(long, default_value_t = 2)]
    scans: u32,
    /// State directory (database files); default $STATE_DIRECTORY, $XDG_STATE_HOME/kbwatch or ./.kbwatch.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Leave the private PostgreSQL running afterwards, for psql or a reporting tool.
    #[arg(long)]
    keep_running: bool,
}

pub async fn run(args: DemoArgs, cancel: CancellationToken) -> anyhow::Result<ExitCode> {
    // The state directory holds a superuser's keys: refuse one another user could have prepared.
    let state_dir = prepare_state_dir(&args.state_dir.clone().unwrap_or_else(default_state_dir))
        .context("preparing the demo's state directory")?;
    let sim_config =
        SimConfig { seed: 42, devices: args.devices, tls: true, ..SimConfig::default() };
    let secret = sim_config.client_secret.clone();
    let sim = Sim::start(sim_config).await.context("starting the simulator")?;
    let (config, config_file) = demo_config(&state_dir, &sim, &secret)?;
    println!("kbwatch demo: simulated tenant at {} with {} devices", sim.base_url(), args.devices);
    let db = open_store(&config).await?;
    db.store.migrate().await?;
    let mut ok = true;
    for n in 1..=args.scans {
        if n > 1 {
            let change = sim.evolve(Evolution {
                install_updates: 0.1,
                new_monthly_kb: true,
                add_devices: args.devices / 100,
                offboard_devices: args.devices / 200,
                ..Evolution::default()
            });
            println!(
                "a month passes: {} updates installed, {} new KB gaps, {} devices added, {} offboarded",
                change.kbs_fixed,
                change.kbs_added,
                change.devices_added.len(),
                change.devices_offboarded.len()
            );
        }
        match scan_with_progress(&db.store, &config, &config.tenants[0], Trigger::Demo, &cancel)
            .await?
        {
            Some(s) => {
                println!(
                    "scan {n}: {} devices in {:.1}s ({:.0}/s), {} API calls, status {}",
                    s.devices.ok,
                    s.elapsed.as_secs_f64(),
                    f64::from(s.devices.ok) / s.elapsed.as_secs_f64().max(0.001),
                    s.api_calls,
                    s.status.as_str()
                );
                ok &= s.status == crate::store::RunStatus::Completed;
            }
            None => anyhow::bail!("another kbwatch is scanning the demo tenant"),
        }
    }
    println!("\n{}", render(&db.store, &ReportArgs::default()).await?);
    println!(
        "The history is in the `reporting` views. This prints its daily totals again (starting the \
         demo's PostgreSQL for as long as it runs); `report --help` lists the other reports:\n  {}",
        report_command(&config_file)?
    );
    if args.keep_running {
        let pg = state_dir.join("postgres");
        println!(
            "PostgreSQL keeps running; its data is under {0}. Connect with\n  psql -h {1} -U postgres kbwatch\n\
             or over TCP as postgres with the password in {0}/postgres.password, and try\n  \
             SELECT * FROM reporting.fleet_daily;\n  SELECT * FROM reporting.current_missing_kbs LIMIT 20;",
            pg.display(),
            pg.join("socket").display()
        );
    } else {
        db.close().await;
    }
    drop(sim);
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The demo's configuration, written as an operator would write it (to `demo.toml` in the state
/// directory, for the command printed at the end) and loaded the same way.
fn demo_config(state_dir: &Path, sim: &Sim, secret: &str) -> anyhow::Result<(Config, PathBuf)> {
    let ca = state_dir.join("demo-sim-ca.pem");
    let ca_pem = sim.ca_pem().context("the demo simulator serves TLS")?;
    // Follows no symbolic link placed there.
    config::write_private(&ca, ca_pem.as_bytes())
        .with_context(|| format!("writing {}", ca.display()))?;
    let secret_file = state_dir.join("demo-client-secret");
    config::write_private(&secret_file, secret.as_bytes())
        .with_context(|| format!("writing {}", secret_file.display()))?;
    let toml = format!(
        r#"
[database]
state_dir = {state_dir:?}

[tls]
ca_file = {ca:?}

[[tenant]]
name = "demo"
api_base = "{api}"
rescan_after = "0s"

[tenant.auth]
kind = "client_secret"
tenant_id = "00000000-0000-0000-0000-000000000000"
client_id = "kbwatch-sim-client"
client_secret_file = {secret_file:?}
authority = "{authority}"

[tenant.quota]
per_minute = 1000000
per_hour = 10000000
concurrency = 16
"#,
        api = sim.base_url(),
        authority = sim.authority(),
    );
    let file = state_dir.join("demo.toml");
    config::write_private(&file, toml.as_bytes())
        .with_context(|| format!("writing {}", file.display()))?;
    Ok((config::load_str(&toml, std::iter::empty())?, file))
}

/// `kbwatch --config FILE report trend` for a shell, naming this very binary: it works after the
/// demo has exited, without kbwatch on the PATH. `report` starts (or attaches to) the private
/// PostgreSQL of the `state_dir` the file names, and stops it again if it started it.
fn report_command(config_file: &Path) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("finding the kbwatch binary")?;
    Ok(format!("{} --config {} report trend", shell_word(&exe), shell_word(config_file)))
}

/// `path` as one shell word: as is when it holds only characters no shell treats specially, else
/// in single quotes.
fn shell_word(path: &Path) -> String {
    let text = path.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:=@%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        return text.into_owned();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_word_quotes_only_paths_a_shell_would_split() {
        assert_eq!(
            shell_word(Path::new("/var/lib/kbwatch-demo/demo.toml")),
            "/var/lib/kbwatch-demo/demo.toml"
        );
        assert_eq!(shell_word(Path::new("/home/a b/it's")), r"'/home/a b/it'\''s'");
        assert_eq!(shell_word(Path::new("/x/$HOME")), "'/x/$HOME'");
    }
}
