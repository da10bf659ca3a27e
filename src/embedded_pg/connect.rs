//! How kbwatch connects to the private server.

use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// Connection options for the private server: TCP loopback, user `postgres`, no TLS.
pub(super) fn connect_options(
    port: u16,
    database: &str,
    password: Option<&str>,
) -> PgConnectOptions {
    let options = PgConnectOptions::new_without_pgpass();
    let options = match password {
        Some(password) => options.password(password),
        None => options,
    };
    options
        .host("127.0.0.1")
        .port(port)
        .username("postgres")
        .database(database)
        .ssl_mode(PgSslMode::Disable)
        .application_name("kbwatch")
}
