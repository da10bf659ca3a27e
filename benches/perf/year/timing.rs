//! The reads a dashboard makes over the year, timed as it runs them: every `reporting` view in
//! full, the narrow reads of one scan (the last, and one a quarter into the history), one device
//! and the last 30 days, and every SQL query of the Grafana dashboard (its macros expanded over
//! the last 30 days, its default range, for the bench tenant).
//!
//! Each read runs wrapped as `SELECT count(*), sum(hashtext(q::text)) FROM (read) q`: every
//! column of every row is computed and turned to text, as for a client, without shipping the rows
//! to this process (so the figure is PostgreSQL's, whatever the benchmark's build). One warm-up,
//! then the median of three; a read whose warm-up takes over [`SLOW`] is run once more and that
//! run reported, and one that outlasts the statement timeout is reported as such.

use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

use crate::kit::dashboard;
use crate::table::{Row, thousands};

/// Beyond this a read is far from its target: it is not repeated three times.
const SLOW: Duration = Duration::from_secs(10);
/// The target of every read.
const TARGET: Duration = Duration::from_secs(1);

/// A read and its one parameter, if any.
pub struct Read {
    pub what: String,
    pub sql: String,
    pub param: Option<Param>,
}

pub enum Param {
    Int(i64),
    Text(String),
}

/// How a read went.
pub enum Timed {
    /// Median of three warm runs (or one run after a slow warm-up), and the rows it returned.
    Measured { time: Duration, runs: usize, rows: i64 },
    /// Stopped by the statement timeout, at its first run.
    TimedOut(Duration),
}

/// Every read of the module docs; `machine_id` picks the device, `last_run` and `early_run` the
/// scans (the last, and one a quarter into the history: its intervals are mostly closed since).
pub async fn reads(
    pool: &PgPool,
    tenant: &str,
    machine_id: &str,
    last_run: i64,
    early_run: i64,
) -> Vec<Read> {
    let views: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.views
         WHERE table_schema = 'reporting' ORDER BY table_name",
    )
    .fetch_all(pool)
    .await
    .expect("the views are listed");
    let read = |what: String, sql: String, param| Read { what, sql, param };
    let mut reads: Vec<Read> = views
        .into_iter()
        .map(|v| {
            read(format!("reporting.{v}, in full"), format!("SELECT * FROM reporting.{v}"), None)
        })
        .collect();
    reads.push(read(
        "reporting.fleet_daily, last 30 days".into(),
        "SELECT * FROM reporting.fleet_daily WHERE day >= current_date - 30".into(),
        None,
    ));
    for (which, run) in [("the last", last_run), ("a quarter into the history", early_run)] {
        reads.push(read(
            format!("reporting.missing_kb_snapshots, one scan ({which})"),
            "SELECT * FROM reporting.missing_kb_snapshots WHERE scan_run_id = $1".into(),
            Some(Param::Int(run)),
        ));
    }
    for view in ["device_history", "missing_kb_snapshots"] {
        reads.push(read(
            format!("reporting.{view}, one device"),
            format!("SELECT * FROM reporting.{view} WHERE machine_id = $1"),
            Some(Param::Text(machine_id.into())),
        ));
    }
    let to = Utc::now();
    let from = to - chrono::Duration::days(30);
    for (title, sql) in dashboard::queries(&dashboard::dashboard()) {
        let sql = dashboard::expand(&sql, tenant, from, to);
        reads.push(read(format!("dashboard: {title}"), sql, None));
    }
    reads
}

/// Times `read` on a connection of its own whose statements stop after `timeout`.
pub async fn time(pool: &PgPool, read: &Read, timeout: Duration) -> Timed {
    let mut conn = pool.acquire().await.expect("a connection");
    sqlx::query("SELECT set_config('statement_timeout', $1, false)")
        .bind(format!("{}ms", timeout.as_millis()))
        .execute(&mut *conn)
        .await
        .expect("the timeout is set");
    let Some((warm_up, rows)) = run(&mut conn, read).await else {
        return Timed::TimedOut(timeout);
    };
    let runs = if warm_up > SLOW { 1 } else { 3 };
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        match run(&mut conn, read).await {
            Some((time, _)) => times.push(time),
            None => return Timed::TimedOut(timeout),
        }
    }
    times.sort();
    Timed::Measured { time: times[times.len() / 2], runs, rows }
}

/// One run: its wall time and row count; `None` when the statement timeout stopped it.
async fn run(conn: &mut PoolConnection<Postgres>, read: &Read) -> Option<(Duration, i64)> {
    let sql = format!(
        "SELECT count(*)::int8, coalesce(sum(hashtext(q::text)::int8), 0)::int8 FROM ({}) q",
        read.sql
    );
    let query = sqlx::query_as::<_, (i64, i64)>(sqlx::AssertSqlSafe(sql));
    let query = match &read.param {
        Some(Param::Int(v)) => query.bind(*v),
        Some(Param::Text(v)) => query.bind(v.clone()),
        None => query,
    };
    let started = Instant::now();
    match query.fetch_one(&mut **conn).await {
        Ok((rows, _)) => Some((started.elapsed(), rows)),
        // query_canceled: the statement timeout.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("57014") => None,
        Err(e) => panic!("{}: {e}\n{}", read.what, read.sql),
    }
}

/// The table row of a timed read.
pub fn row(read: &Read, timed: &Timed) -> Row {
    let (measured, pass) = match timed {
        Timed::Measured { time, runs, rows } => {
            let how = if *runs == 1 { "1 run after a slow warm-up" } else { "median of 3" };
            let ms = time.as_secs_f64() * 1000.0;
            (format!("{ms:.0} ms ({} rows; {how})", thousands(*rows as u64)), *time <= TARGET)
        }
        Timed::TimedOut(after) => (format!("> {} s (stopped)", after.as_secs()), false),
    };
    Row::judged(&format!("  {}", read.what), measured, "≤ 1 s", pass)
}
