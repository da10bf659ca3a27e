//! Tenant locks: session-level advisory locks, so that one tenant is scanned by one process at a
//! time, and a crashed holder releases them with its socket.
//!
//! Every lock this process holds is held on one connection of its own ([`TenantLocks`]): a daemon
//! of hundreds of tenants uses one connection for its locks, not one per running scan. When that
//! connection breaks, PostgreSQL has released its locks: the next lock operation opens a new one
//! and takes back the locks of the scans still running (one another process took meanwhile is
//! logged; that scan finishes, and its writes are idempotent).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection as _, PgConnection};
use tokio::sync::Mutex;

/// First half of the advisory lock key: "kbwd", so other applications' locks never collide.
const LOCK_CLASS: i32 = 0x6b62_7764;
/// The longest a lock statement or the lock connection's opening may take.
const LOCK_TIMEOUT: Duration = Duration::from_secs(15);

/// The lock connection and the tenants whose locks it holds.
pub(super) struct TenantLocks {
    options: PgConnectOptions,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    conn: Option<PgConnection>,
    tenants: BTreeSet<i32>,
}

/// Held while a tenant is being scanned; [`TenantLock::release`] frees it (dropping it does too,
/// in the background).
pub struct TenantLock {
    locks: Arc<TenantLocks>,
    tenant_id: i32,
    released: bool,
}

impl TenantLock {
    /// Releases the lock.
    pub async fn release(mut self) -> anyhow::Result<()> {
        self.released = true;
        self.locks.unlock(self.tenant_id).await
    }
}

impl Drop for TenantLock {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (locks, tenant_id) = (self.locks.clone(), self.tenant_id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = locks.unlock(tenant_id).await {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "Releasing a dropped tenant lock failed"
                    );
                }
            });
        }
    }
}

impl TenantLocks {
    pub(super) fn new(options: PgConnectOptions) -> Self {
        TenantLocks { options, held: Mutex::default() }
    }

    /// Takes the tenant's lock if no other session holds it (nor a scan of this process).
    pub(super) async fn lock(
        self: &Arc<Self>,
        tenant_id: i32,
    ) -> anyhow::Result<Option<TenantLock>> {
        let locked = self.try_lock(tenant_id).await?;
        Ok(locked.then(|| TenantLock { locks: self.clone(), tenant_id, released: false }))
    }

    async fn try_lock(&self, tenant_id: i32) -> anyhow::Result<bool> {
        let mut held = self.held.lock().await;
        if held.tenants.contains(&tenant_id) {
            // Session locks stack: a second scan of the tenant in this process must not get it.
            return Ok(false);
        }
        let locked = match held.conn.as_mut() {
            Some(conn) => take(conn, tenant_id).await,
            None => Err(anyhow::anyhow!("no lock connection yet")),
        };
        let locked = match locked {
            Ok(locked) => locked,
            // A connection that broke has lost its locks with it: start again on a new one.
            Err(e) => {
                if held.conn.is_some() {
                    tracing::warn!(error = format!("{e:#}"), "The tenant-lock connection failed");
                }
                take(self.reconnect(&mut held).await?, tenant_id).await?
            }
        };
        if locked {
            held.tenants.insert(tenant_id);
        }
        Ok(locked)
    }

    async fn unlock(&self, tenant_id: i32) -> anyhow::Result<()> {
        let mut held = self.held.lock().await;
        if !held.tenants.remove(&tenant_id) {
            return Ok(());
        }
        let Some(conn) = held.conn.as_mut() else { return Ok(()) };
        let unlocked = within(
            "releasing the tenant lock",
            sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1, $2)")
                .bind(LOCK_CLASS)
                .bind(tenant_id)
                .fetch_one(conn),
        )
        .await;
        match unlocked {
            Ok(true) => Ok(()),
            Ok(false) => {
                tracing::warn!(
                    tenant_id,
                    "The tenant lock was not held at release: the lock connection was replaced while it ran"
                );
                Ok(())
            }
            Err(e) => {
                // The connection broke (or hangs): PostgreSQL releases its locks with it.
                held.conn = None;
                Err(e)
            }
        }
    }

    /// Opens a new lock connection and takes back the locks of the scans still running.
    async fn reconnect<'a>(&self, held: &'a mut Held) -> anyhow::Result<&'a mut PgConnection> {
        if let Some(old) = held.conn.take() {
            drop(old); // closing a broken connection would only wait on it
            tracing::warn!(
                running = held.tenants.len(),
                "The tenant-lock connection broke; opening a new one"
            );
        }
        let mut conn =
            within("opening the tenant-lock connection", PgConnection::connect_with(&self.options))
                .await?;
        let mut lost = Vec::new();
        for &tenant_id in &held.tenants {
            if !take(&mut conn, tenant_id).await? {
                lost.push(tenant_id);
            }
        }
        for tenant_id in lost {
            held.tenants.remove(&tenant_id);
            tracing::warn!(
                tenant_id,
                "Another process took the tenant lock while the lock connection was down"
            );
        }
        Ok(held.conn.insert(conn))
    }
}

/// `what`, given at most [`LOCK_TIMEOUT`]: every scan's start and end waits on the lock
/// connection, so one that hangs (a half-open socket) must count as broken, not stall them all.
async fn within<T>(
    what: &'static str,
    work: impl Future<Output = Result<T, sqlx::Error>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(LOCK_TIMEOUT, work).await {
        Ok(done) => done.context(what),
        Err(_) => Err(anyhow::anyhow!("{what}: no answer within {LOCK_TIMEOUT:?}")),
    }
}

async fn take(conn: &mut PgConnection, tenant_id: i32) -> anyhow::Result<bool> {
    within(
        "taking the tenant lock",
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(tenant_id)
            .fetch_one(conn),
    )
    .await
}
