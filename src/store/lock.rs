//! Tenant locks: a session-level advisory lock held on a connection of its own, so that one
//! tenant is scanned by one process at a time, and a crashed holder releases it with its socket.

use anyhow::Context as _;
use sqlx::{Connection as _, PgConnection};

use super::Store;

/// First half of the advisory lock key: "kbwd", so other applications' locks never collide.
const LOCK_CLASS: i32 = 0x6b62_7764;

/// Held while a tenant is being scanned; [`TenantLock::release`] or dropping it frees the lock.
pub struct TenantLock {
    conn: PgConnection,
    tenant_id: i32,
}

impl Store {
    /// Takes the tenant's lock if no other session holds it.
    pub async fn try_lock_tenant(&self, tenant_id: i32) -> anyhow::Result<Option<TenantLock>> {
        let mut conn = PgConnection::connect_with(&self.options)
            .await
            .context("opening the tenant-lock connection")?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(tenant_id)
            .fetch_one(&mut conn)
            .await
            .context("taking the tenant lock")?;
        Ok(locked.then_some(TenantLock { conn, tenant_id }))
    }
}

impl TenantLock {
    /// Releases the lock and closes its connection.
    pub async fn release(mut self) -> anyhow::Result<()> {
        sqlx::query("SELECT pg_advisory_unlock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(self.tenant_id)
            .execute(&mut self.conn)
            .await
            .context("releasing the tenant lock")?;
        self.conn.close().await.context("closing the tenant-lock connection")
    }
}
