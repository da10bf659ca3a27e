//! `kbwatch run`: the daemon.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use super::database::open_store;
use crate::config::Config;
use crate::defender::client_for;
use crate::scan::Health;
use crate::schedule::{self, ScheduledTenant};

pub async fn run(config: Config, cancel: CancellationToken) -> anyhow::Result<ExitCode> {
    let metrics = crate::metrics::install()?;
    tokio::spawn(crate::metrics::upkeep(metrics.clone(), cancel.clone()));
    let db = open_store(&config).await?;
    db.store.migrate().await?;
    let tenants = config
        .tenants
        .iter()
        .map(|t| {
            let client =
                client_for(t, &config.tls).with_context(|| format!("tenant {}", t.name))?;
            Ok(ScheduledTenant { config: t.clone(), client: Arc::new(client) })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let health = Arc::new(Health::default());
    let server = crate::serve::serve(
        config.serve.listen,
        db.store.clone(),
        Some(metrics),
        health.clone(),
        cancel.clone(),
    );
    let scheduler = schedule::run(
        config.schedule.clone(),
        config.retention.clone(),
        tenants,
        db.store.clone(),
        health,
        cancel.clone(),
    );
    // Either one failing stops the process, so that its supervisor restarts it.
    let result = tokio::try_join!(server, async {
        let r = scheduler.await;
        cancel.cancel();
        r
    });
    db.close().await;
    result?;
    tracing::info!("Stopped");
    Ok(ExitCode::SUCCESS)
}
