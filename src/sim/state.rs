//! The state the [`super::Sim`] handle and the HTTP handlers share behind an `Arc`.

use std::sync::{Mutex, RwLock};
use std::time::Duration;

use super::changelog::ChangeLog;
use super::faults::FaultState;
use super::fleet::Fleet;
use super::identity::Assertions;
use super::quota::Quotas;
use super::stats::Counters;
use super::tokens::Tokens;

pub(crate) struct Shared {
    pub(super) client_id: String,
    pub(super) client_secret: String,
    pub(super) token_lifetime: Duration,
    pub(super) static_token: Option<String>,
    /// The bearer token the `/admin` routes require, made at start.
    pub(super) admin_token: String,
    pub(super) base_url: url::Url,
    pub(super) fleet: RwLock<Fleet>,
    /// The events of the delta export, appended by every evolution step.
    pub(super) changes: Mutex<ChangeLog>,
    pub(super) tokens: Mutex<Tokens>,
    pub(super) assertions: Mutex<Assertions>,
    pub(super) quotas: Mutex<Quotas>,
    pub(super) faults: Mutex<FaultState>,
    pub(super) stats: Counters,
}
