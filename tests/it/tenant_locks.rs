//! The tenant locks of one process: all on one connection beside the pool, one scan of a tenant at
//! a time, taken back when that connection breaks, and a scan stopped when another process took
//! its tenant meanwhile. About PostgreSQL's lock table itself, so it reads `pg_locks`.

use std::time::Duration;

use kbwatch::model::RunStatus;
use kbwatch::store::Store;
use secrecy::SecretString;

use crate::kit::{Auth, Tenant, fresh_database, slow_fleet, spawn_app, wait_for};

/// kbwatch's advisory lock class ("kbwd").
const LOCK_CLASS: i64 = 0x6b62_7764;

async fn store(url: &str) -> Store {
    Store::connect(&SecretString::from(url.to_owned()), 4).await.expect("connects")
}

/// (backend pid, tenant id) of every kbwatch tenant lock held in the database.
async fn held(store: &Store) -> Vec<(i32, i64)> {
    sqlx::query_as(
        "SELECT pid, objid::int8 FROM pg_locks
         WHERE locktype = 'advisory' AND granted AND classid::int8 = $1
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
         ORDER BY objid",
    )
    .bind(LOCK_CLASS)
    .fetch_all(store.pool())
    .await
    .expect("pg_locks is readable")
}

#[tokio::test]
async fn every_tenant_lock_of_a_process_is_held_on_one_connection() {
    let url = fresh_database().await;
    let store = store(&url).await;
    let mut locks = Vec::new();
    for tenant in 1..=40 {
        locks.push(store.try_lock_tenant(tenant).await.unwrap().expect("free"));
    }
    let held = held(&store).await;
    assert_eq!(held.len(), 40);
    let pids: std::collections::BTreeSet<i32> = held.iter().map(|(pid, _)| *pid).collect();
    assert_eq!(pids.len(), 1, "one lock connection for forty running scans: {pids:?}");
    for lock in locks {
        lock.release().await.unwrap();
    }
    assert!(self::held(&store).await.is_empty(), "released");
}

#[tokio::test]
async fn a_tenant_is_locked_by_one_scan_at_a_time_within_a_process_and_across() {
    let url = fresh_database().await;
    let (mine, other) = (store(&url).await, store(&url).await);
    let lock = mine.try_lock_tenant(7).await.unwrap().expect("free");
    assert!(mine.try_lock_tenant(7).await.unwrap().is_none(), "a second scan in this process");
    assert!(other.try_lock_tenant(7).await.unwrap().is_none(), "another process");
    lock.release().await.unwrap();
    let theirs = other.try_lock_tenant(7).await.unwrap().expect("free again");
    drop(theirs);
    // A dropped lock is released in the background.
    let mut again = None;
    for _ in 0..50 {
        again = mine.try_lock_tenant(7).await.unwrap();
        if again.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "a dropped lock is freed");
}

#[tokio::test]
async fn a_broken_lock_connection_takes_its_locks_back_on_a_new_one() {
    let url = fresh_database().await;
    let (mine, other) = (store(&url).await, store(&url).await);
    let first = mine.try_lock_tenant(1).await.unwrap().expect("free");
    let (pid, _) = held(&mine).await[0];
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(mine.pool())
        .await
        .unwrap();
    assert!(killed);
    // The next lock operation finds the connection broken, opens another and takes tenant 1 back.
    let second = mine.try_lock_tenant(2).await.unwrap().expect("free");
    let held = held(&mine).await;
    assert_eq!(held.iter().map(|(_, t)| *t).collect::<Vec<_>>(), [1, 2]);
    assert!(held.iter().all(|(p, _)| *p != pid), "on a new connection: {held:?}");
    assert!(other.try_lock_tenant(1).await.unwrap().is_none(), "tenant 1 is still ours");
    first.release().await.unwrap();
    second.release().await.unwrap();
    assert!(other.try_lock_tenant(1).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_whose_lock_another_process_took_stops_interrupted() {
    // About 10 s of requests: long enough for the lock check (every 5 s) to run mid-scan.
    let sim = slow_fleet(400, Duration::from_millis(50));
    let app = spawn_app(sim, Auth::TokenFile, Tenant::default().unpaced().concurrency(2)).await;
    let scanning = {
        let app = &app;
        async move { app.scan().await }
    };
    let replica = store(&app.db_url).await;
    let take_over = async {
        wait_for("the scan's tenant lock", Duration::from_secs(10), || async {
            !held(&replica).await.is_empty()
        })
        .await;
        let (pid, tenant) = held(&replica).await[0];
        // The lock connection breaks; before the scan's process notices, another takes the tenant.
        let _: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(replica.pool())
            .await
            .unwrap();
        let mut taken = None;
        for _ in 0..50 {
            taken = replica.try_lock_tenant(tenant as i32).await.unwrap();
            if taken.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        taken.expect("the other process takes the tenant")
    };
    let (summary, theirs) = tokio::join!(scanning, take_over);
    assert_eq!(summary.status, RunStatus::Interrupted, "{summary:?}");
    let error = summary.error.as_deref().unwrap_or_default();
    assert!(error.contains("lock was lost"), "{error}");
    assert!(summary.devices.ok < 400, "stopped early: {summary:?}");
    theirs.release().await.unwrap();
}
