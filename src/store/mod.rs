//! The only code that speaks SQL.
//!
//! One statement per function; functions that are part of a larger write take the caller's
//! connection (`&mut PgConnection`), so the caller owns the transaction.

mod catalog;
mod changes;
mod columns;
mod devices;
mod export_fill;
mod lock;
mod packs;
mod report;
mod result_rows;
mod results;
mod retention;
mod runs;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use secrecy::{ExposeSecret as _, SecretString};
use sqlx::PgPool;
use sqlx::migrate::MigrateError;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Kept for `cli/demo.rs`, which names it here; everything else uses [`crate::model::RunStatus`].
pub use crate::model::RunStatus;
pub use devices::{HandedOver, ListedDevice};
pub use lock::TenantLock;
pub use report::{DeviceRow, FleetSummary, KbRow, RunSummary, TrendRow};
pub use results::kbs_to_store;
pub use retention::{Dropped, Retention};
pub use runs::RunEnd;

/// The migrations embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A pool on kbwatch's database.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    /// This process's tenant locks, on a connection beside the pool.
    locks: Arc<lock::TenantLocks>,
}

impl Store {
    /// Connects; the URL is a secret (it may hold a password) and never logged.
    pub async fn connect(url: &SecretString, max_connections: u32) -> anyhow::Result<Store> {
        let options: PgConnectOptions =
            url.expose_secret().parse().context("database.url is not a valid PostgreSQL URL")?;
        let options = connect_options(options);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(15))
            .connect_with(options.clone())
            .await
            .context("connecting to PostgreSQL")?;
        Ok(Store { pool, locks: Arc::new(lock::TenantLocks::new(options)) })
    }

    /// A pool that connects on first use (nothing is checked here): for tests and probes.
    pub fn connect_lazy(url: &SecretString, max_connections: u32) -> anyhow::Result<Store> {
        let options: PgConnectOptions =
            url.expose_secret().parse().context("database.url is not a valid PostgreSQL URL")?;
        let options = connect_options(options);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(15))
            .connect_lazy_with(options.clone());
        Ok(Store { pool, locks: Arc::new(lock::TenantLocks::new(options)) })
    }

    /// Applies the migrations that are not applied yet. A database that holds a migration other
    /// than the binary's is refused with what the operator can do about it.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match MIGRATOR.run(&self.pool).await {
            Ok(()) => Ok(()),
            Err(MigrateError::VersionMismatch(version)) => Err(anyhow::anyhow!(
                "migration {version} ({}) applied to this database differs from the one built into \
                 this kbwatch: the file was edited after it was released. Nothing was changed. Run \
                 the kbwatch release that applied it; the build is at fault (a landed migration is \
                 never edited: restore the file and put the change in a new migration)",
                migration_file(version)
            )),
            Err(MigrateError::VersionMissing(version)) => Err(anyhow::anyhow!(
                "this database has migration {version}, which this kbwatch does not carry: a newer \
                 kbwatch migrated it. Nothing was changed. Run that release or a later one"
            )),
            Err(e) => Err(e).context("applying database migrations"),
        }
    }

    /// How many embedded migrations the database has not applied (an error if it cannot be asked).
    pub async fn pending_migrations(&self) -> anyhow::Result<usize> {
        let applied: Vec<i64> =
            match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await
            {
                Ok(applied) => applied,
                // undefined_table: a database that was never migrated.
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Vec::new(),
                Err(e) => return Err(e).context("reading applied migrations"),
            };
        Ok(MIGRATOR.iter().filter(|m| !applied.contains(&m.version)).count())
    }

    /// Takes the tenant's lock if no other session holds it (nor a scan of this process).
    pub async fn try_lock_tenant(&self, tenant_id: i32) -> anyhow::Result<Option<TenantLock>> {
        self.locks.lock(tenant_id).await
    }

    /// [`Store::pending_migrations`], or `None` for a role that may not read the migrations table
    /// (a `kbwatch_reader` login, which reads the views as they are and could not migrate).
    pub async fn pending_migrations_if_readable(&self) -> anyhow::Result<Option<usize>> {
        match self.pending_migrations().await {
            Ok(pending) => Ok(Some(pending)),
            Err(e) if permission_denied(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// kbwatch's connection settings: its application name, and sqlx's slow-statement lines (which
/// carry the whole statement, a migration's file included) at INFO, below the default filter's
/// `sqlx=warn`, rather than WARN: a long migration or report is not a fault.
fn connect_options(options: PgConnectOptions) -> PgConnectOptions {
    use sqlx::ConnectOptions as _;
    options
        .application_name("kbwatch")
        .log_slow_statements(log::LevelFilter::Info, Duration::from_secs(1))
}

/// Whether `e` is PostgreSQL's insufficient_privilege (42501).
fn permission_denied(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<sqlx::Error>()
            .and_then(sqlx::Error::as_database_error)
            .is_some_and(|db| db.code().as_deref() == Some("42501"))
    })
}

/// `migrations/NNNN_description.sql` of an embedded migration.
fn migration_file(version: i64) -> String {
    match MIGRATOR.iter().find(|m| m.version == version) {
        Some(m) => format!("migrations/{version:04}_{}.sql", m.description.replace(' ', "_")),
        None => format!("version {version}"),
    }
}

/// PostgreSQL text cannot hold NUL: such characters become U+FFFD (the rest is kept as received).
fn pg_text(s: &str) -> String {
    if s.contains('\0') { s.replace('\0', "\u{fffd}") } else { s.to_owned() }
}

/// The same for a JSON document, whose `\u0000` escapes jsonb refuses.
fn pg_json(v: &serde_json::Value) -> String {
    pg_json_text(&v.to_string())
}

/// [`pg_json`] for a document already in JSON text.
fn pg_json_text(text: &str) -> String {
    if text.contains("\\u0000") { text.replace("\\u0000", "\\ufffd") } else { text.to_owned() }
}
