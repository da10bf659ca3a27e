//! `kbwatch validate [--online]`: every configuration problem at once; online, also the database,
//! a token and one device per tenant.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use super::database::open_store;
use super::escape;
use crate::config::{self, ConfigError};
use crate::defender::{ApiError, client_for};

pub async fn run(path: Option<&Path>, online: bool) -> anyhow::Result<ExitCode> {
    let path = path.context("no configuration: pass --config PATH or set KBWATCH_CONFIG")?;
    let config = match config::load(path) {
        Ok(config) => config,
        Err(ConfigError::Invalid(problems)) => {
            eprintln!("{}: {} problem(s)", path.display(), problems.len());
            for p in problems {
                eprintln!("  {p}");
            }
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    println!("{}: configuration is valid ({} tenant(s))", path.display(), config.tenants.len());
    if !online {
        return Ok(ExitCode::SUCCESS);
    }
    let db = open_store(&config).await?;
    sqlx::query("SELECT 1").execute(db.store.pool()).await.context("querying the database")?;
    println!(
        "database: reachable, {} migration(s) pending",
        db.store.pending_migrations().await.unwrap_or(0)
    );
    db.close().await;
    let mut ok = true;
    for tenant in &config.tenants {
        let probe = crate::config::TenantConfig { page_size: 1, ..tenant.clone() };
        let client = client_for(&probe, &config.tls)?;
        let mut pager = client.machines(tenant.device_filter.as_deref());
        match pager.next_page().await {
            Ok(page) => println!(
                "{}: token ok, device list answers ({} device(s) on a one-row page)",
                tenant.name,
                page.map_or(0, |p| p.len())
            ),
            Err(e) => {
                ok = false;
                println!("{}", probe_failed(&tenant.name, &e));
            }
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The line printed when a tenant's probe fails: the API's message with controls escaped.
fn probe_failed(tenant: &str, e: &ApiError) -> String {
    format!("{tenant}: {}", escape::terminal(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_probe_shows_the_api_message_escaped() {
        let e = ApiError::Status { status: 400, body: "machines: bad\x1b[2J\x1b]0;x\x07\n".into() };
        assert_eq!(
            probe_failed("t1", &e),
            "t1: unexpected status 400: machines: bad\\x1b[2J\\x1b]0;x\\x07\\x0a"
        );
    }
}
