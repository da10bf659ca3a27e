//! `reporting` on a read replica: a hot standby streaming from kbwatch's primary answers every
//! view, every query of the Grafana dashboard and every `kbwatch report` as the primary does, so
//! dashboards and reports can be moved off the primary (README, Operations).
//!
//! The primary and the standby are servers of this test's own ([`Streaming`]): a standby of the
//! shared test cluster would need to restart it.

use sqlx::Connection as _;

use crate::kit::app::app_with_two_scans_on;
use crate::kit::dashboard::{dashboard, expand_last_week as expand, queries};
use crate::kit::db::{connect_as_reader, create_reader};
use crate::kit::streaming::Streaming;
use crate::kit::{ConfigBuilder, Kbwatch, TestApp};

/// The rows of `sql` as JSON texts, sorted: comparable whatever the columns and their order.
async fn rows(conn: &mut sqlx::PgConnection, sql: &str) -> Vec<String> {
    let wrapped = format!("SELECT to_jsonb(q)::text FROM ({sql}) AS q");
    let mut rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(wrapped))
        .fetch_all(conn)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"));
    rows.sort();
    rows
}

/// `kbwatch report ARGS` with the configuration file `config`: what it printed on stdout.
async fn report(config: &std::path::Path, args: &[&str]) -> String {
    let out = Kbwatch::new(["report"].iter().chain(args)).config(config).output().await;
    assert!(out.success(), "kbwatch report {args:?} failed:\n{}", out.stderr);
    out.stdout
}

/// The standby is one: it is in recovery, and refuses a write.
async fn assert_read_only(standby: &mut sqlx::PgConnection) {
    let in_recovery: bool =
        sqlx::query_scalar("SELECT pg_is_in_recovery()").fetch_one(&mut *standby).await.unwrap();
    assert!(in_recovery, "the standby replays the primary's WAL");
    let write = sqlx::query("CREATE TABLE refused (x int)").execute(&mut *standby).await;
    let error = write.expect_err("a standby refuses writes");
    let code = error.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("25006"), "read_only_sql_transaction: {error}");
}

/// Each report kind in each format, on the primary and on the standby. The standby's reports are
/// made with a configuration that names the database only, as on a reporting host that holds no
/// tenant's credentials.
async fn compare_reports(app: &TestApp, standby_url: String) {
    let on_primary = app.config_file();
    let on_standby = app.write_config("standby.toml", &ConfigBuilder::new(standby_url));
    for kind in ["summary", "devices", "kbs", "trend", "runs"] {
        for format in ["table", "json"] {
            let args = [kind, "--format", format];
            let primary = report(&on_primary, &args).await;
            assert!(primary.lines().count() > 1, "{kind} as {format} is empty:\n{primary}");
            assert_eq!(report(&on_standby, &args).await, primary, "kbwatch report {kind} {format}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_standby_answers_every_view_dashboard_query_and_report_as_the_primary() {
    // Declared first, dropped last: both servers stop after every connection to them is gone.
    let pg = tokio::task::spawn_blocking(Streaming::start).await.expect("the servers start");
    pg.create_database("kbwatch").await;
    let app = app_with_two_scans_on(pg.primary_url("kbwatch")).await;
    let reader = create_reader(app.pool()).await;
    pg.wait_for_replay().await;

    let standby_url = pg.standby_url("kbwatch");
    let mut standby = sqlx::PgConnection::connect(&standby_url).await.expect("standby connects");
    assert_read_only(&mut standby).await;
    standby.close().await.expect("the connection closes");
    let mut on_primary = connect_as_reader(&pg.primary_url("kbwatch"), &reader).await;
    let mut on_standby = connect_as_reader(&standby_url, &reader).await;

    let views: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.views
         WHERE table_schema = 'reporting' ORDER BY 1",
    )
    .fetch_all(&mut on_primary)
    .await
    .expect("the views are listed");
    assert!(views.len() >= 7, "{views:?}");
    for view in &views {
        let sql = format!("SELECT * FROM reporting.{view}");
        let primary = rows(&mut on_primary, &sql).await;
        assert!(!primary.is_empty(), "reporting.{view} is empty on the primary");
        assert_eq!(rows(&mut on_standby, &sql).await, primary, "reporting.{view}");
    }

    let found = queries(&dashboard());
    assert!(found.len() >= 9, "{} dashboard queries", found.len());
    for (title, sql) in found {
        let sql = expand(&sql);
        let primary = rows(&mut on_primary, &sql).await;
        assert!(!primary.is_empty(), "{title} returned no rows:\n{sql}");
        assert_eq!(rows(&mut on_standby, &sql).await, primary, "{title}:\n{sql}");
    }

    compare_reports(&app, standby_url).await;
    on_primary.close().await.expect("the connection closes");
    on_standby.close().await.expect("the connection closes");
    drop(app);
}
