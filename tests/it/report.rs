//! `kbwatch report`: every report in every format agrees with the reporting views after two scans.

use std::collections::BTreeMap;

use kbwatch::cli::{ReportArgs, ReportFormat, ReportKind, render_report};
use serde_json::{Map, Value};

use crate::helpers::{TestApp, app_with_two_scans, write_private};

const DEVICE_COLUMNS: &[&str] = &[
    "tenant",
    "machine_id",
    "computer_dns_name",
    "os_platform",
    "os_build",
    "health_status",
    "rbac_group_name",
    "last_seen",
    "last_scanned_at",
    "last_scan_outcome",
    "missing_kbs",
    "cve_addressed_total",
];
const KB_COLUMNS: &[&str] = &[
    "tenant",
    "kb_id",
    "kb_name",
    "devices_missing_now",
    "cve_addressed",
    "devices_remediated",
    "median_days_to_remediate",
];
const TREND_COLUMNS: &[&str] = &[
    "tenant",
    "day",
    "devices_reporting",
    "devices_missing_any",
    "missing_kbs_total",
    "cve_addressed_total",
];

/// The report in all three formats: (table, CSV records after the header, JSON objects).
struct Rendered {
    table: String,
    csv: Vec<csv::StringRecord>,
    json: Vec<Map<String, Value>>,
}

async fn render_all(app: &TestApp, kind: ReportKind, columns: &[&str]) -> Rendered {
    let render = |format| {
        let args = ReportArgs { kind, format, limit: 10_000, ..ReportArgs::default() };
        async move { render_report(&app.store, &args).await.expect("report renders") }
    };
    let csv_text = render(ReportFormat::Csv).await;
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, columns, "CSV header of {kind:?}");
    let csv: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("CSV parses")).collect();
    let json: Vec<Map<String, Value>> =
        serde_json::from_str(&render(ReportFormat::Json).await).expect("JSON parses");
    for object in &json {
        assert_eq!(object.keys().collect::<Vec<_>>().len(), columns.len());
        assert!(columns.iter().all(|c| object.contains_key(*c)), "JSON keys of {kind:?}");
    }
    let table = render(ReportFormat::Table).await;
    for column in columns {
        assert!(table.contains(column), "{column} missing from the {kind:?} table\n{table}");
    }
    assert_eq!(csv.len(), json.len(), "CSV and JSON of {kind:?} have the same rows");
    Rendered { table, csv, json }
}

/// `column` of each JSON object, keyed by `key`.
fn by_key(json: &[Map<String, Value>], key: &str, column: &str) -> BTreeMap<String, Value> {
    json.iter().map(|o| (o[key].as_str().unwrap().to_owned(), o[column].clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devices_report_matches_the_view_in_every_format() {
    let app = app_with_two_scans().await;

    let devices = render_all(&app, ReportKind::Devices, DEVICE_COLUMNS).await;
    let db: Vec<(String, Option<i32>, Option<i64>)> = sqlx::query_as(
        "SELECT machine_id, missing_kbs, cve_addressed_total FROM reporting.devices",
    )
    .fetch_all(app.store.pool())
    .await
    .unwrap();
    assert_eq!(devices.csv.len(), db.len(), "one CSV row per device");
    let missing: BTreeMap<String, Value> =
        db.iter().map(|(m, n, _)| (m.clone(), serde_json::json!(n))).collect();
    let cves: BTreeMap<String, Value> =
        db.iter().map(|(m, _, c)| (m.clone(), serde_json::json!(c))).collect();
    assert_eq!(by_key(&devices.json, "machine_id", "missing_kbs"), missing);
    assert_eq!(by_key(&devices.json, "machine_id", "cve_addressed_total"), cves);
    let most = db.iter().filter_map(|(_, n, _)| *n).max().unwrap();
    assert!(most > 0, "some device misses KBs");
    assert_eq!(devices.json[0]["missing_kbs"], most, "most missing first");
    let top = devices.json[0]["machine_id"].as_str().unwrap();
    assert_eq!(&devices.csv[0][1], top, "CSV in the same order");
    assert_eq!(devices.csv[0][10], most.to_string());
    assert!(devices.table.contains(top), "{}", devices.table);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kbs_report_matches_the_views_in_every_format() {
    let app = app_with_two_scans().await;
    let kbs = render_all(&app, ReportKind::Kbs, KB_COLUMNS).await;
    let db: Vec<(String, i64, i64, Option<f64>)> = sqlx::query_as(
        "SELECT kb_id, devices_missing_now, devices_remediated, median_days_to_remediate
         FROM reporting.kb_remediation",
    )
    .fetch_all(app.store.pool())
    .await
    .unwrap();
    assert_eq!(kbs.csv.len(), db.len(), "one CSV row per KB");
    assert!(db.iter().any(|(_, _, fixed, _)| *fixed > 0), "updates were installed");
    for (kb, now, fixed, median) in &db {
        let row = kbs.json.iter().find(|o| o["kb_id"] == kb.as_str()).expect("every KB listed");
        assert_eq!(
            (&row["devices_missing_now"], &row["devices_remediated"]),
            (&(*now).into(), &(*fixed).into())
        );
        // serde_json parses floats to within an ulp, not exactly.
        let close = match (row["median_days_to_remediate"].as_f64(), median) {
            (Some(a), Some(b)) => (a - b).abs() <= b.abs() * 1e-12,
            (a, b) => a == *b,
        };
        assert!(close, "{kb}: {row:?} vs {median:?}");
    }
    let cve: Vec<(String, Option<i32>)> = sqlx::query_as(
        "SELECT kb_id, max(cve_addressed) FROM reporting.current_missing_kbs GROUP BY kb_id",
    )
    .fetch_all(app.store.pool())
    .await
    .unwrap();
    for (kb, c) in cve {
        assert_eq!(by_key(&kbs.json, "kb_id", "cve_addressed")[&kb], serde_json::json!(c));
    }
    let top = kbs.json[0]["kb_id"].as_str().unwrap();
    assert_eq!(kbs.json[0]["devices_missing_now"], db.iter().map(|r| r.1).max().unwrap());
    assert!(kbs.table.contains(top), "{}", kbs.table);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trend_report_matches_the_view_in_every_format() {
    let app = app_with_two_scans().await;

    let trend = render_all(&app, ReportKind::Trend, TREND_COLUMNS).await;
    let db: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT day::text, devices_reporting, missing_kbs_total::int8, cve_addressed_total::int8
         FROM reporting.fleet_daily",
    )
    .fetch_all(app.store.pool())
    .await
    .unwrap();
    assert_eq!(trend.csv.len(), db.len(), "one row per tenant and day");
    for (day, reporting, missing, cves) in &db {
        let row = trend.json.iter().find(|o| o["day"] == day.as_str()).expect("day listed");
        assert_eq!(row["devices_reporting"], *reporting);
        assert_eq!(row["missing_kbs_total"], *missing);
        assert_eq!(row["cve_addressed_total"], *cves);
        assert!(trend.table.contains(day.as_str()), "{}", trend.table);
    }
    assert_eq!(db[0].1, 301, "both scans are today: 300 devices, one added");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runs_and_summary_reports_match_the_views_in_every_format() {
    let app = app_with_two_scans().await;

    let run_columns = [
        "scan_run_id",
        "tenant",
        "trigger",
        "started_at",
        "finished_at",
        "status",
        "devices_listed",
        "devices_scanned",
        "devices_failed",
        "api_calls",
        "throttled",
    ];
    let runs = render_all(&app, ReportKind::Runs, &run_columns).await;
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT scan_run_id FROM reporting.scan_runs ORDER BY scan_run_id DESC")
            .fetch_all(app.store.pool())
            .await
            .unwrap();
    let listed: Vec<i64> = runs.json.iter().map(|o| o["scan_run_id"].as_i64().unwrap()).collect();
    assert_eq!(listed, ids, "newest first");
    assert!(runs.json.iter().all(|o| o["status"] == "completed"));
    assert!(runs.table.contains("completed"));

    let fleet_columns = [
        "tenant",
        "devices",
        "devices_scanned",
        "devices_missing_any",
        "missing_kbs",
        "distinct_kbs",
        "cve_addressed_total",
    ];
    let summary = render_all(&app, ReportKind::Summary, &fleet_columns).await;
    let (devices, missing): (i64, i64) = sqlx::query_as(
        "SELECT count(*), coalesce(sum(missing_kbs), 0)::int8 FROM reporting.devices",
    )
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    assert_eq!(summary.json.len(), 1, "one tenant");
    assert_eq!(
        (&summary.json[0]["devices"], &summary.json[0]["missing_kbs"]),
        (&devices.into(), &missing.into())
    );
    assert_eq!(&summary.csv[0][4], missing.to_string());
    assert!(summary.table.contains("Latest scans") && summary.table.contains(&missing.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_command_prints_the_rendered_report_and_filters() {
    let app = app_with_two_scans().await;
    let config = app.dir.path().join("kbwatch.toml");
    write_private(&config, &app.config_toml);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kbwatch"))
            .arg("report")
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .expect("kbwatch report runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("UTF-8 output")
    };

    let args =
        ReportArgs { kind: ReportKind::Kbs, format: ReportFormat::Json, ..ReportArgs::default() };
    assert_eq!(run(&["kbs", "--format", "json"]), render_report(&app.store, &args).await.unwrap());

    let five = run(&["devices", "--format", "csv", "--limit", "5"]);
    assert_eq!(csv::Reader::from_reader(five.as_bytes()).records().count(), 5);

    let none = run(&["devices", "--format", "csv", "--tenant", "nobody"]);
    assert_eq!(none, format!("{}\n", DEVICE_COLUMNS.join(",")), "header only");
    assert!(run(&["trend", "--tenant", "nobody"]).contains("(no rows)"));
}
