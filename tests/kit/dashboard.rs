//! The Grafana dashboard (`deploy/grafana/kbwatch.json`) as SQL a database can run: its queries
//! (panel targets and query variables) and the expansion of the Grafana macros they use. The
//! integration tests run them for rows; the benchmark times them.

use chrono::{DateTime, SecondsFormat, Utc};
use regex::Regex;
use serde_json::Value;

/// The dashboard, as deployed.
pub const DASHBOARD: &str = include_str!("../../deploy/grafana/kbwatch.json");

/// The dashboard, parsed.
pub fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("the dashboard is JSON")
}

/// Every SQL text of the dashboard with where it comes from: panel targets and query variables.
pub fn queries(dashboard: &Value) -> Vec<(String, String)> {
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
/// `from`..`to`, with `$tenant` as the tenant named `tenant` (an "All" selection is a quoted list).
pub fn expand(sql: &str, tenant: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let (from, to) = (
        from.to_rfc3339_opts(SecondsFormat::Millis, true),
        to.to_rfc3339_opts(SecondsFormat::Millis, true),
    );
    let time_filter = Regex::new(r"\$__timeFilter\(([^()]+)\)").expect("regex");
    let sql = time_filter.replace_all(sql, format!("$1 BETWEEN '{from}' AND '{to}'").as_str());
    let quoted = format!("'{}'", tenant.replace('\'', "''"));
    let sql = sql
        .replace("$__timeFrom()", &format!("'{from}'"))
        .replace("$__timeTo()", &format!("'{to}'"))
        .replace("${tenant}", &quoted)
        .replace("$tenant", &quoted);
    assert!(!sql.contains('$'), "a macro or variable is left unexpanded:\n{sql}");
    sql
}

/// [`expand`] as the tests send a query: the tenant `t1`, over the last seven days.
pub fn expand_last_week(sql: &str) -> String {
    let to = Utc::now();
    expand(sql, "t1", to - chrono::Duration::days(7), to)
}
