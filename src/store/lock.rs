//! Tenant locks: session-level advisory locks, so that one tenant is scanned by one process at a
//! time, and a crashed holder releases them with its socket.
//!
//! Every lock this process holds is held on one connection of its own ([`TenantLocks`]): a daemon
//! of hundreds of tenants uses one connection for its locks, not one per running scan. When that
//! connection breaks, PostgreSQL has released its locks: a check every few seconds (and the next
//! lock operation) opens a new one and takes back the locks of the scans still running. A lock
//! another process took meanwhile is lost: [`TenantLock::lost`] fires, and its scan stops.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection as _, PgConnection};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// First half of the advisory lock key: "kbwd", so other applications' locks never collide. The
/// second half is the tenant id (from 1); 0 is the fleet-day roll-up's, -1 retention's, -2 the
/// fix roll-up's (migration 0013).
pub(super) const LOCK_CLASS: i32 = 0x6b62_7764;
/// The longest a lock statement or the lock connection's opening may take.
const LOCK_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the lock connection is checked while it holds locks.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// The lock connection and the tenants whose locks it holds.
pub(super) struct TenantLocks {
    options: PgConnectOptions,
    held: Mutex<Held>,
    /// Whether the check task runs.
    checking: AtomicBool,
}

#[derive(Default)]
struct Held {
    conn: Option<PgConnection>,
    /// The tenants whose locks are held, each with what fires if its lock is lost.
    tenants: BTreeMap<i32, CancellationToken>,
}

/// Held while a tenant is being scanned; [`TenantLock::release`] frees it (dropping it does too,
/// in the background).
pub struct TenantLock {
    locks: Arc<TenantLocks>,
    tenant_id: i32,
    released: bool,
    lost: CancellationToken,
}

impl TenantLock {
    /// Fires if the lock is lost: its connection broke and another process took the tenant
    /// before it could be taken back.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

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
        TenantLocks { options, held: Mutex::default(), checking: AtomicBool::new(false) }
    }

    /// Takes the tenant's lock if no other session holds it (nor a scan of this process).
    pub(super) async fn lock(
        self: &Arc<Self>,
        tenant_id: i32,
    ) -> anyhow::Result<Option<TenantLock>> {
        let Some(lost) = self.try_lock(tenant_id).await? else { return Ok(None) };
        if !self.checking.swap(true, Ordering::Relaxed) {
            tokio::spawn(check_while_alive(Arc::downgrade(self)));
        }
        Ok(Some(TenantLock { locks: self.clone(), tenant_id, released: false, lost }))
    }

    async fn try_lock(&self, tenant_id: i32) -> anyhow::Result<Option<CancellationToken>> {
        let mut held = self.held.lock().await;
        if held.tenants.contains_key(&tenant_id) {
            // Session locks stack: a second scan of the tenant in this process must not get it.
            return Ok(None);
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
        if !locked {
            return Ok(None);
        }
        let lost = CancellationToken::new();
        held.tenants.insert(tenant_id, lost.clone());
        Ok(Some(lost))
    }

    /// While locks are held: checks that their connection still answers, and replaces it if not.
    async fn check(&self) {
        let mut held = self.held.lock().await;
        if held.tenants.is_empty() {
            return;
        }
        let alive = match held.conn.as_mut() {
            Some(conn) => {
                within("checking the tenant-lock connection", sqlx::query("SELECT 1").execute(conn))
                    .await
                    .is_ok()
            }
            None => false,
        };
        if !alive && let Err(e) = self.reconnect(&mut held).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "Replacing the tenant-lock connection failed; trying again"
            );
        }
    }

    async fn unlock(&self, tenant_id: i32) -> anyhow::Result<()> {
        let mut held = self.held.lock().await;
        if held.tenants.remove(&tenant_id).is_none() {
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
        for &tenant_id in held.tenants.keys() {
            if !take(&mut conn, tenant_id).await? {
                lost.push(tenant_id);
            }
        }
        for tenant_id in lost {
            if let Some(scan) = held.tenants.remove(&tenant_id) {
                scan.cancel();
            }
            tracing::warn!(
                tenant_id,
                "Another process took the tenant lock while the lock connection was down; stopping this scan of it"
            );
        }
        Ok(held.conn.insert(conn))
    }
}

/// Checks the lock connection every [`CHECK_EVERY`] until the locks are dropped with their store.
async fn check_while_alive(locks: Weak<TenantLocks>) {
    let mut every = tokio::time::interval(CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(locks) = locks.upgrade() else { return };
        locks.check().await;
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
