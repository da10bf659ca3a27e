//! The server's TCP port: kept in `postgres.port` across starts, chosen free when that one is taken.

use crate::embedded_pg::error::EmbeddedPgError;
use crate::embedded_pg::state_dir::{self, Layout};

/// The port kept from the last start, if the file holds one.
pub(super) fn stored(layout: &Layout) -> Option<u16> {
    state_dir::read_to_string(&layout.port_file).ok()?.trim().parse().ok().filter(|port| *port != 0)
}

/// Keeps `port` for the next start (mode 0600, following no symbolic link).
pub(super) fn store(layout: &Layout, port: u16) -> Result<(), EmbeddedPgError> {
    crate::config::write_private(&layout.port_file, format!("{port}\n").as_bytes())
        .map_err(|e| EmbeddedPgError::io(format!("writing {}", layout.port_file.display()), e))
}

/// A port free on 127.0.0.1 now, as the kernel chooses it.
pub(super) fn pick_free() -> Result<u16, EmbeddedPgError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| EmbeddedPgError::io("finding a free port on 127.0.0.1", e))
}

/// Whether nothing listens on 127.0.0.1:`port` now.
pub(super) fn is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}
