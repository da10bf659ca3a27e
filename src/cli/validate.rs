//! `kbwatch validate [--online]`: every configuration problem at once; online, also the database,
//! a token and one call per endpoint and tenant, naming the permission a refusal means (`probe`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use super::database::open_store;
use super::probe;
use crate::config::{self, ConfigError};

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
        ok &= probe::tenant(tenant, &config.tls).await?;
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
