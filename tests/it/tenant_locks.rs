//! The tenant locks of one process: all on one connection beside the pool, one scan of a tenant at
//! a time, and taken back when that connection breaks. About PostgreSQL's lock table itself, so it
//! reads `pg_locks`.

use std::time::Duration;

use kbwatch::store::Store;
use secrecy::SecretString;

use crate::kit::fresh_database;

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
