//! The Grafana dashboard: every query runs as `kbwatch_reader`, after two scans, and returns rows.

use serde_json::Value;

use crate::kit::app::app_with_two_scans;
use crate::kit::dashboard::{DASHBOARD, expand_last_week as expand, queries};

#[test]
fn the_dashboard_covers_each_subject_from_the_reporting_views_only() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let found = queries(&dashboard);
    let all: String = found.iter().map(|(_, sql)| sql.as_str()).collect::<Vec<_>>().join("\n");
    for view in [
        "fleet_daily",
        "fleet_state_daily",
        "current_missing_kbs",
        "devices",
        "kb_remediation",
        "scan_runs",
    ] {
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
