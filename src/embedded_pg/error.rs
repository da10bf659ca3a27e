//! Why the private PostgreSQL could not be used.

use std::path::PathBuf;

/// Why the private PostgreSQL could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedPgError {
    /// No PostgreSQL server binaries on this machine.
    #[error(
        "PostgreSQL server binaries not found on PATH or under /usr/lib/postgresql/*/bin; install them, e.g. `apt-get install postgresql`"
    )]
    NotInstalled,
    /// Running as root, where PostgreSQL must run as the `postgres` user, and that user does not exist.
    #[error(
        "running as root, and PostgreSQL refuses to run as root, but there is no `postgres` system user to run it as; run kbwatch as a non-root user, create a `postgres` system user (installing the `postgresql` package does), or configure database.url"
    )]
    NoPostgresUser,
    /// As root: the `postgres` user cannot reach the directories of the cluster.
    #[error(
        "the `postgres` system user cannot write to {path}: the state directory and all its parents must be traversable by that user (e.g. chmod 0755), or run kbwatch as a non-root user"
    )]
    NotReachable {
        /// The directory or file `postgres` cannot reach.
        path: PathBuf,
    },
    /// The state directory, a directory it would be created in, or an entry in it, could have been
    /// prepared or replaced by another local user (DESIGN §7).
    #[error(
        "refusing {path}: {problem}; {fix} (the private PostgreSQL trusts its state directory with a superuser)"
    )]
    Unsafe {
        /// The directory or entry refused.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
        /// What the operator can do.
        fix: String,
    },
    /// A file-system or process error.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A PostgreSQL program (initdb, pg_ctl, ...) failed.
    #[error("{what} failed ({status}): {stderr}")]
    Command {
        /// The command, e.g. `initdb -D /var/lib/kbwatch/data`.
        what: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its standard error (and output), trimmed.
        stderr: String,
    },
    /// The server did not start or did not accept connections in time.
    #[error("PostgreSQL in {data} did not start: {reason}\n--- last lines of {log} ---\n{tail}")]
    Start {
        /// The data directory.
        data: PathBuf,
        /// What went wrong.
        reason: String,
        /// The server log.
        log: PathBuf,
        /// The last lines of the server log written by this attempt.
        tail: String,
    },
    /// A database name PostgreSQL would not accept.
    #[error("invalid database name {0:?}: it must be 1 to 63 bytes without NUL")]
    InvalidDatabaseName(String),
    /// An error talking to the server.
    #[error("PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
}

impl EmbeddedPgError {
    pub(super) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        EmbeddedPgError::Io { what: what.into(), source }
    }
}
