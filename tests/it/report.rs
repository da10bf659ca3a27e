//! `kbwatch report`: every report in every format agrees with the reporting views after two scans.

use std::collections::BTreeMap;

use kbwatch::cli::{ReportArgs, ReportFormat, ReportKind, render_report};
use serde_json::{Map, Value};

use crate::kit::app::app_with_two_scans;
use crate::kit::{Kbwatch, TestApp, reporting};

/// The columns of `kbwatch report devices`: those of `reporting.devices` but two that do not fit
/// a row of text.
async fn device_columns(app: &TestApp) -> Vec<String> {
    let mut columns = reporting::view_columns(app.pool(), "devices").await;
    columns.retain(|c| c != "onboarding_status" && c != "machine_tags");
    columns
}

/// The report in all three formats: (table, CSV records after the header, JSON objects).
struct Rendered {
    table: String,
    csv: Vec<csv::StringRecord>,
    json: Vec<Map<String, Value>>,
}

async fn render_all(app: &TestApp, kind: ReportKind, columns: &[String]) -> Rendered {
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
        assert!(columns.iter().all(|c| object.contains_key(c)), "JSON keys of {kind:?}");
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

    let devices = render_all(&app, ReportKind::Devices, &device_columns(&app).await).await;
    let db: Vec<(String, Option<i32>, Option<i64>)> = reporting::devices(app.pool())
        .await
        .into_iter()
        .map(|d| (d.machine_id, d.missing_kbs, d.cve_addressed_total))
        .collect();
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
    // The columns of `reporting.kb_remediation`, with the KB's cveAddressed after the count.
    let mut columns = reporting::view_columns(app.pool(), "kb_remediation").await;
    let at = columns.iter().position(|c| c == "devices_missing_now").unwrap() + 1;
    columns.insert(at, "cve_addressed".into());
    let kbs = render_all(&app, ReportKind::Kbs, &columns).await;
    let db: Vec<(String, i64, i64, Option<f64>)> = reporting::kb_remediation(app.pool())
        .await
        .into_iter()
        .map(|k| (k.kb_id, k.devices_missing_now, k.devices_remediated, k.median_days_to_remediate))
        .collect();
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

    let columns = reporting::view_columns(app.pool(), "fleet_daily").await;
    let trend = render_all(&app, ReportKind::Trend, &columns).await;
    let db: Vec<(String, i64, i64, i64)> = reporting::fleet_daily(app.pool())
        .await
        .into_iter()
        .map(|d| {
            (d.day.to_string(), d.devices_reporting, d.missing_kbs_total, d.cve_addressed_total)
        })
        .collect();
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

    let run_columns = reporting::view_columns(app.pool(), "scan_runs").await;
    let runs = render_all(&app, ReportKind::Runs, &run_columns).await;
    let ids: Vec<i64> =
        reporting::scan_runs(app.pool()).await.iter().rev().map(|r| r.scan_run_id).collect();
    let listed: Vec<i64> = runs.json.iter().map(|o| o["scan_run_id"].as_i64().unwrap()).collect();
    assert_eq!(listed, ids, "newest first");
    assert!(runs.json.iter().all(|o| o["status"] == "completed"));
    assert!(runs.table.contains("completed"));

    // No view behind the summary: its columns are pinned here.
    let fleet_columns = "tenant devices devices_scanned devices_missing_any missing_kbs distinct_kbs \
                         cve_addressed_total";
    let fleet_columns: Vec<String> = fleet_columns.split_whitespace().map(String::from).collect();
    let summary = render_all(&app, ReportKind::Summary, &fleet_columns).await;
    let all = reporting::devices(app.pool()).await;
    let devices = all.len() as i64;
    let missing: i64 = all.iter().filter_map(|d| d.missing_kbs).map(i64::from).sum();
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
    let config = app.config_file();
    let run = |args: &'static [&'static str]| {
        let report = Kbwatch::new(["report"].iter().chain(args)).config(&config);
        async move {
            let out = report.output().await;
            assert!(out.success(), "{}", out.stderr);
            out.stdout
        }
    };

    let args =
        ReportArgs { kind: ReportKind::Kbs, format: ReportFormat::Json, ..ReportArgs::default() };
    let kbs = run(&["kbs", "--format", "json"]).await;
    assert_eq!(kbs, render_report(&app.store, &args).await.unwrap());

    let five = run(&["devices", "--format", "csv", "--limit", "5"]).await;
    assert_eq!(csv::Reader::from_reader(five.as_bytes()).records().count(), 5);

    let none = run(&["devices", "--format", "csv", "--tenant", "nobody"]).await;
    assert_eq!(none, format!("{}\n", device_columns(&app).await.join(",")), "header only");
    assert!(run(&["trend", "--tenant", "nobody"]).await.contains("(no rows)"));
}
