//! A fresh database per test or benchmark row.
//!
//! Without `DATABASE_URL` each target shares a private PostgreSQL under the target directory,
//! started once and left running for the next run: `kbwatch-test-pg` for the integration tests,
//! `kbwatch-bench-pg` for the benchmark. With `DATABASE_URL` (a role that may `CREATE DATABASE`)
//! the databases are made in that server instead.

use std::path::PathBuf;

use kbwatch::embedded_pg::EmbeddedPg;
use kbwatch::store::Store;
use secrecy::SecretString;
use sqlx::Connection as _;
use tokio::sync::OnceCell;

/// `test` for the integration tests, `bench` for the benchmark: names the private cluster and the
/// databases, so that a look with psql tells them apart.
fn target() -> &'static str {
    if env!("CARGO_CRATE_NAME") == "perf" { "bench" } else { "test" }
}

/// A new, empty database; its URL.
pub async fn fresh_database() -> String {
    let name = format!("kbwatch_{}_{}", target(), uuid::Uuid::new_v4().simple());
    match std::env::var("DATABASE_URL") {
        Ok(admin) => {
            let mut conn =
                sqlx::PgConnection::connect(&admin).await.expect("DATABASE_URL connects");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("the database is created");
            let mut url = url::Url::parse(&admin).expect("DATABASE_URL is a URL");
            url.set_path(&name);
            url.to_string()
        }
        Err(_) => {
            let pg = cluster().await;
            pg.ensure_database(&name).await.expect("the database is created");
            pg.url(&name)
        }
    }
}

async fn cluster() -> &'static EmbeddedPg {
    static CLUSTER: OnceCell<EmbeddedPg> = OnceCell::const_new();
    CLUSTER
        .get_or_init(|| async {
            let dir =
                PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("kbwatch-{}-pg", target()));
            EmbeddedPg::start_scratch(&dir).await.expect("the private PostgreSQL starts")
        })
        .await
}

/// Drops the database at `url` (its connections closed by force), so that repeated runs do not
/// fill the disk. Best effort: a server that went away keeps it.
pub async fn drop_database(url: &str) {
    let mut admin = url::Url::parse(url).expect("a database URL");
    let name = admin.path().trim_start_matches('/').to_owned();
    admin.set_path("postgres");
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin.as_str()).await {
        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await {
            eprintln!("kit: {name} was not dropped: {e}");
        }
    }
}

/// A connection to the database at `url` as a new login role granted `kbwatch_reader`, as the
/// README tells operators to give reporting tools; `pool` creates the role.
pub async fn reader_connection(pool: &sqlx::PgPool, url: &str) -> sqlx::PgConnection {
    let role = create_reader(pool).await;
    connect_as_reader(url, &role).await
}

/// A new login role granted `kbwatch_reader`, created through `pool`; its name.
pub async fn create_reader(pool: &sqlx::PgPool) -> String {
    let role = format!("reader_{}", uuid::Uuid::new_v4().simple());
    for ddl in [
        format!("CREATE ROLE {role} LOGIN PASSWORD 'reader-pw'"),
        format!("GRANT kbwatch_reader TO {role}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(ddl)).execute(pool).await.expect("the role is created");
    }
    role
}

/// A connection to the database at `url` as `role`, made by [`create_reader`] (on this server,
/// or on the primary it replicates).
pub async fn connect_as_reader(url: &str, role: &str) -> sqlx::PgConnection {
    let mut url = url::Url::parse(url).expect("a database URL");
    url.set_username(role).expect("a user name fits the URL");
    url.set_password(Some("reader-pw")).expect("a password fits the URL");
    sqlx::PgConnection::connect(url.as_str()).await.expect("the reader logs in")
}

/// A migrated, empty database holding one tenant named `tenant`, for fixtures of the store.
pub async fn fixture_store(tenant: &str) -> (Store, i32) {
    let store = Store::connect(&SecretString::from(fresh_database().await), 4)
        .await
        .expect("the database connects");
    store.migrate().await.expect("migrations apply");
    let tenant = store.ensure_tenant(tenant).await.expect("the tenant is stored");
    (store, tenant)
}

/// A listed device of `tenant` (first listed by run `run`), whose machine id is `digit` 40
/// times; its `device_id`.
pub async fn fixture_device(store: &Store, tenant: i32, run: i64, digit: char) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO kbwatch.device (tenant_id, machine_id, id_valid, raw, first_listed_at,
                                     last_listed_at, last_listed_run_id)
         VALUES ($1, repeat($3, 40), true, '{}', now(), now(), $2) RETURNING device_id",
    )
    .bind(tenant)
    .bind(run)
    .bind(digit.to_string())
    .fetch_one(store.pool())
    .await
    .expect("the device is stored")
}
