//! The read-only role (its SQL, and `kbwatch report` logged in as it), and `kbwatch validate` on a
//! broken configuration.
//!
//! The role's test names kbwatch's internal tables on purpose: it checks that `kbwatch_reader`
//! cannot read or write them.

use kbwatch::sim::SimConfig;

use crate::kit::db::create_reader;
use crate::kit::{Auth, Kbwatch, Tenant, spawn_app};

const VIEWS: [&str; 7] = [
    "scan_runs",
    "devices",
    "device_history",
    "missing_kb_snapshots",
    "current_missing_kbs",
    "fleet_daily",
    "kb_remediation",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kbwatch_reader_reads_every_view_and_writes_nothing() {
    let sim = SimConfig { devices: 30, ..SimConfig::default() };
    let app = spawn_app(sim, Auth::TokenFile, Tenant::default()).await;
    let summary = app.scan().await;
    assert_eq!(summary.devices.ok, 30, "{summary:?}");
    let mut reader = app.reader().await;

    for view in VIEWS {
        let sql = format!("SELECT count(*) FROM reporting.{view}");
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut reader)
            .await
            .unwrap_or_else(|e| panic!("{view}: {e}"));
        if view != "kb_remediation" {
            assert!(n > 0, "{view} has rows");
        }
    }
    for forbidden in [
        "SELECT * FROM kbwatch.device",
        "INSERT INTO kbwatch.tenant (name) VALUES ('x')",
        "DELETE FROM kbwatch.missing_kb",
        "CREATE TABLE reporting.x (a int)",
        "DELETE FROM reporting.devices",
    ] {
        let err = sqlx::query(forbidden).execute(&mut reader).await.expect_err(forbidden);
        let code = err.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
        // 42501: permission denied; 55000: the view cannot be written at all.
        assert!(matches!(code.as_deref(), Some("42501" | "55000")), "{forbidden}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kbwatch_report_logged_in_as_a_reader_prints_what_the_owner_sees() {
    let sim = SimConfig { devices: 20, ..SimConfig::default() };
    let app = spawn_app(sim, Auth::TokenFile, Tenant::default()).await;
    app.scan().await;
    let role = create_reader(app.pool()).await;
    let mut url = url::Url::parse(&app.db_url).expect("a database URL");
    url.set_username(&role).expect("a user name fits the URL");
    url.set_password(Some("reader-pw")).expect("a password fits the URL");
    let as_reader =
        app.write_config("kbwatch-reader.toml", &app.settings.clone().database_url(url.as_str()));
    let as_owner = app.config_file();
    for kind in ["summary", "devices", "kbs", "trend", "runs"] {
        let report = |config| Kbwatch::new(["report", kind, "--format", "json"]).config(config);
        let owner = report(&as_owner).output().await;
        let reader = report(&as_reader).output().await;
        assert!(owner.success() && reader.success(), "{kind}: {}{}", owner.stderr, reader.stderr);
        assert_eq!(reader.stdout, owner.stdout, "{kind}");
        assert!(owner.stdout.len() > 2, "{kind} prints rows: {}", owner.stdout);
    }
}

#[tokio::test]
async fn validate_lists_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    // Text on purpose: the kit's typed builder cannot write the unknown key and bad values.
    std::fs::write(
        &config,
        "[schedule]\ncron = \"0 * * * *\"\n\n[[tenant]]\nname = \"a\"\napi_base = \"http://api.example.com\"\n\
         bogus = 1\n\n[tenant.auth]\nkind = \"token_file\"\ntoken_file = \"/nonexistent/token\"\n",
    )
    .unwrap();
    let out = Kbwatch::new(["validate"]).config(&config).output().await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = out.stderr;
    for expected in
        ["schedule.cron", "tenant[0].api_base", "tenant[0].bogus", "tenant[0].auth.token_file"]
    {
        assert!(stderr.contains(expected), "{expected} missing from:\n{stderr}");
    }
}
