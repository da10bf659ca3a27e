//! The database a command uses: `database.url`, or the private PostgreSQL (DESIGN §7).

use anyhow::Context as _;
use secrecy::SecretString;

use crate::config::Config;
use crate::embedded_pg::{EmbeddedPg, default_state_dir};
use crate::store::Store;

/// Name of kbwatch's database in the private PostgreSQL.
const DATABASE: &str = "kbwatch";

/// An open store, and the private PostgreSQL behind it when this process started one.
pub struct Database {
    pub store: Store,
    embedded: Option<EmbeddedPg>,
}

impl Database {
    /// Closes the pool; stops the private PostgreSQL if this process started it.
    pub async fn close(self) {
        self.store.pool().close().await;
        if let Some(pg) = self.embedded
            && let Err(e) = pg.stop().await
        {
            tracing::warn!(error = %e, "Stopping the private PostgreSQL failed");
        }
    }
}

/// Connects to `database.url`, or starts (or attaches to) the private PostgreSQL.
pub async fn open_store(config: &Config) -> anyhow::Result<Database> {
    if let Some(url) = &config.database.url {
        let store = Store::connect(url, config.database.max_connections).await?;
        return Ok(Database { store, embedded: None });
    }
    let dir = config.database.state_dir.clone().unwrap_or_else(default_state_dir).join("postgres");
    let pg = EmbeddedPg::start(&dir).await.context("starting the private PostgreSQL")?;
    pg.ensure_database(DATABASE).await.context("creating kbwatch's database")?;
    tracing::info!(dir = %dir.display(), url = %pg.display_url(DATABASE), "Using the private PostgreSQL");
    let store =
        Store::connect(&SecretString::from(pg.url(DATABASE)), config.database.max_connections)
            .await?;
    Ok(Database { store, embedded: Some(pg) })
}
