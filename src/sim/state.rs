//! The state the [`super::Sim`] handle and the HTTP handlers share behind an `Arc`.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::changelog::ChangeLog;
use super::faults::FaultState;
use super::fleet::Fleet;
use super::identity::Assertions;
use super::quota::Quotas;
use super::snapshot::Snapshots;
use super::stats::Counters;
use super::tokens::Tokens;
use super::{ChangeSummary, Evolution, lock, write};

pub(crate) struct Shared {
    pub(super) client_id: String,
    pub(super) client_secret: String,
    pub(super) token_lifetime: Duration,
    pub(super) static_token: Option<String>,
    /// The bearer token the `/admin` routes require, made at start.
    pub(super) admin_token: String,
    pub(super) base_url: url::Url,
    /// The current snapshot of the fleet; an evolution step changes it in place, or a copy of it
    /// while `snapshots` keeps it for the next links it handed out.
    pub(super) fleet: RwLock<Arc<Fleet>>,
    /// The events of the delta export, appended by every evolution step.
    pub(super) changes: Mutex<ChangeLog>,
    /// The snapshots the exports' next links page over.
    pub(super) snapshots: Mutex<Snapshots>,
    pub(super) tokens: Mutex<Tokens>,
    pub(super) assertions: Mutex<Assertions>,
    pub(super) quotas: Mutex<Quotas>,
    pub(super) faults: Mutex<FaultState>,
    pub(super) stats: Counters,
}

impl Shared {
    /// One evolution step (the handle's and `/admin/evolve`): the fleet moves on and the delta
    /// export logs what changed.
    pub(super) fn evolve(&self, e: &Evolution) -> ChangeSummary {
        let mut fleet = write(&self.fleet);
        lock(&self.snapshots).before_step(&fleet);
        lock(&self.changes).evolve(Arc::make_mut(&mut *fleet), e)
    }
}
