//! The year's database: a fresh migrated database with the history of `history.sql` installed,
//! and the generator that writes days of that history straight into kbwatch's tables, a month
//! (30 days) per statement after the first day.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use sqlx::PgPool;

use kbwatch::store::Store;

use crate::kit::db::fresh_database;
use crate::storage::schema_bytes;

/// The history's functions and the generator (see the file's first lines).
const HISTORY: &str = include_str!("history.sql");
/// The tenant the history belongs to (`$tenant` of the dashboard).
pub const TENANT: &str = "bench";
/// Days written by one call of the generator after the first day.
const CHUNK_DAYS: i32 = 30;

/// A migrated database holding the tenant and the history's functions.
pub struct YearDb {
    pub store: Store,
    pub url: String,
    pub tenant_id: i32,
}

impl YearDb {
    pub async fn open() -> YearDb {
        let url = fresh_database().await;
        let store = Store::connect(&SecretString::from(url.clone()), 4)
            .await
            .expect("the database connects");
        store.migrate().await.expect("migrations apply");
        let tenant_id = store.ensure_tenant(TENANT).await.expect("the tenant is stored");
        sqlx::raw_sql(HISTORY).execute(store.pool()).await.expect("the history installs");
        YearDb { store, url, tenant_id }
    }

    pub fn pool(&self) -> &PgPool {
        self.store.pool()
    }

    /// Drops the database, or keeps it (and names it) with `KBWATCH_BENCH_KEEP` set.
    pub async fn close(self) {
        self.store.pool().close().await;
        if std::env::var_os("KBWATCH_BENCH_KEEP").is_some() {
            eprintln!("kit: kept {}", self.url);
        } else {
            crate::kit::db::drop_database(&self.url).await;
        }
    }
}

/// Day 0's tick: 00:30 UTC `days` days ago, so that the last day is yesterday and a dashboard's
/// "last 30 days" ends with the history.
pub fn first_tick(days: i32) -> DateTime<Utc> {
    let today = Utc::now().date_naive();
    let day0 = today - chrono::Days::new(days as u64);
    day0.and_hms_opt(0, 30, 0).expect("a valid time").and_utc()
}

/// What generating the history took and left.
pub struct Generated {
    /// The `kbwatch` schema after the first day (after VACUUM), and after the last.
    pub first_day_bytes: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub device_scans: i64,
    pub intervals: i64,
}

/// Writes `days` days of `devices` devices; VACUUM (ANALYZE) after each chunk, as autovacuum
/// would have run between the daily scans, and the indexes of `device_scan` and `missing_kb`
/// rebuilt.
pub async fn generate(db: &YearDb, devices: i32, days: i32, t0: DateTime<Utc>) -> Generated {
    let mut conn = db.pool().acquire().await.expect("a connection");
    // Room for the generator's sorts and hashes, and no wait for each commit's flush: settings of
    // this session only, not of the queries timed later.
    sqlx::raw_sql(
        "SET work_mem = '256MB'; SET maintenance_work_mem = '512MB';
         SET synchronous_commit = off",
    )
    .execute(&mut *conn)
    .await
    .expect("session settings");
    let started = Instant::now();
    let mut first_day_bytes = 0;
    let mut c0 = 0;
    while c0 < days {
        let c1 = if c0 == 0 { 1 } else { (c0 + CHUNK_DAYS).min(days) };
        let chunk = Instant::now();
        sqlx::query("SELECT bench_year.generate_days($1, $2, $3, $4, $5)")
            .bind(db.tenant_id)
            .bind(devices)
            .bind(t0)
            .bind(c0)
            .bind(c1)
            .execute(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("days {c0}..{c1} are generated: {e}"));
        sqlx::query("VACUUM (ANALYZE)").execute(&mut *conn).await.expect("VACUUM runs");
        // The chunk's scans went into `device_scan` before they were packed, and the intervals
        // its runs closed stayed in `missing_kb` until then; kbwatch packs each run as it ends,
        // so the indexes of both hold about one run's rows, not a chunk's worth of emptied pages.
        for table in ["device_scan", "missing_kb"] {
            let reindex = format!("REINDEX TABLE kbwatch.{table}");
            sqlx::query(sqlx::AssertSqlSafe(reindex))
                .execute(&mut *conn)
                .await
                .expect("REINDEX runs");
        }
        eprintln!("bench: year: days {c0}..{c1} in {:.1} s", chunk.elapsed().as_secs_f64());
        if c0 == 0 {
            first_day_bytes = schema_bytes(db.pool(), "kbwatch").await;
        }
        c0 = c1;
    }
    // kbwatch rolls up each day once its runs have ended, and the fixes after each run; the
    // history is written after its days (and after its tenant was registered, as of today), so
    // both are rolled up once it is all written, from scratch.
    crate::kit::internal::redo_fleet_days(db.pool()).await;
    sqlx::query("SELECT kbwatch.rebuild_kb_fixes()")
        .execute(db.pool())
        .await
        .expect("the fixes are rolled up");
    let elapsed = started.elapsed();
    let count = |table: &'static str| async move {
        let sql = format!("SELECT count(*) FROM kbwatch.{table}");
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(db.pool())
            .await
            .expect("the table counts");
        n
    };
    Generated {
        first_day_bytes,
        bytes: schema_bytes(db.pool(), "kbwatch").await,
        elapsed,
        device_scans: count("device_scan").await
            + packed(db.pool(), "scan_pack", "device_id_deltas").await,
        intervals: count("missing_kb").await
            + packed(db.pool(), "interval_pack", "device_ids").await,
    }
}

/// The scans or intervals kept in packs (migrations 0014, 0021): one element of `array` each.
async fn packed(pool: &sqlx::PgPool, table: &'static str, array: &'static str) -> i64 {
    let sql = format!("SELECT coalesce(sum(cardinality({array})), 0)::int8 FROM kbwatch.{table}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(pool)
        .await
        .expect("the packed rows count")
}
