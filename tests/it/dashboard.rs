//! The Grafana dashboard: every query runs as `kbwatch_reader`, after two scans, and returns rows.

use chrono::{Duration, SecondsFormat, Utc};
use regex::Regex;
use serde_json::Value;

use crate::kit::app::app_with_two_scans;

const DASHBOARD: &str = include_str!("../../deploy/grafana/kbwatch.json");

/// Every SQL text of the dashboard with where it comes from: panel targets and query variables.
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().expect("every panel has a title");
            assert_eq!(target["rawQuery"], true, "{title}: raw SQL");
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}: the chosen source");
            let sql = target["rawSql"].as_str().expect("rawSql");
            found.push((title.to_owned(), sql.to_owned()));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().expect("templating") {
        if variable["type"] == "query" {
            let name = variable["name"].as_str().expect("variable name");
            let sql = variable["query"].as_str().expect("a variable's query is SQL text");
            found.push((format!("variable {name}"), sql.to_owned()));
        }
    }
    found
}

/// Expands the Grafana macros the dashboard uses the way Grafana's PostgreSQL source does, over
/// the last seven days, with `$tenant` as the tenant `t1` (an "All" selection is a quoted list).
fn expand(sql: &str) -> String {
    let to = Utc::now();
    let (from, to) = (
        (to - Duration::days(7)).to_rfc3339_opts(SecondsFormat::Millis, true),
        to.to_rfc3339_opts(SecondsFormat::Millis, true),
    );
    let time_filter = Regex::new(r"\$__timeFilter\(([^()]+)\)").expect("regex");
    let sql = time_filter.replace_all(sql, format!("$1 BETWEEN '{from}' AND '{to}'").as_str());
    let sql = sql
        .replace("$__timeFrom()", &format!("'{from}'"))
        .replace("$__timeTo()", &format!("'{to}'"))
        .replace("${tenant}", "'t1'")
        .replace("$tenant", "'t1'");
    assert!(!sql.contains('$'), "a macro or variable is left unexpanded:\n{sql}");
    sql
}

#[test]
fn the_dashboard_covers_each_subject_from_the_reporting_views_only() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let found = queries(&dashboard);
    let all: String = found.iter().map(|(_, sql)| sql.as_str()).collect::<Vec<_>>().join("\n");
    for view in ["fleet_daily", "current_missing_kbs", "devices", "kb_remediation", "scan_runs"] {
        assert!(all.contains(&format!("reporting.{view}")), "no panel reads reporting.{view}");
    }
    assert!(!all.contains("kbwatch."), "the internal tables are not a contract");
    let formats: Vec<&str> = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["format"].as_str())
        .collect();
    assert!(formats.iter().all(|f| ["table", "time_series"].contains(f)), "{formats:?}");
    assert!(formats.contains(&"time_series") && formats.contains(&"table"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_rows_as_kbwatch_reader() {
    let app = app_with_two_scans().await;
    let mut reader = app.reader().await;
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let found = queries(&dashboard);
    assert!(found.len() >= 9, "{} queries", found.len());
    for (title, sql) in found {
        let sql = expand(&sql);
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_all(&mut reader)
            .await
            .unwrap_or_else(|e| panic!("{title}: {e}\n{sql}"));
        assert!(!rows.is_empty(), "{title} returned no rows:\n{sql}");
    }
}
