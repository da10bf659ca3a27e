//! The snapshots the vulnerability exports page over. Defender builds the exports' data every 6
//! hours ("The underlying snapshot is regenerated every 6 hours; calling does not trigger a new
//! one", `export-api.md` §3), and a client follows `@odata.nextLink` through one of them. The
//! simulator's data change only at an evolution step, which moves the simulated clock a day on:
//! the fleet after a step is the snapshot of its present rounded down to 6 hours
//! ([`snapshot_time`]), and a first page (no `$skiptoken`) reads the current one.
//!
//! A next link names its snapshot in its `$skiptoken`. The fleet is shared as an `Arc`: a snapshot
//! that handed out a next link is kept here, so the next step copies the fleet instead of changing
//! it in place (copy on write), and the link's later pages render the rows its first page came
//! from, whatever evolved since. A link outlives one evolution step, not two: the record is silent
//! on how long a real one lasts, and a kept snapshot costs a copy of the whole fleet. A link to a
//! snapshot no longer kept is answered 400.

use std::sync::Arc;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use super::fleet::Fleet;

/// The snapshot that carries the fleet as of `t`: `t` rounded down to 6 hours.
pub(crate) fn snapshot_time(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::hours(6)).unwrap_or(t)
}

/// The snapshots with next links out: at most the current one and the one before it.
#[derive(Default)]
pub(crate) struct Snapshots {
    kept: Vec<Arc<Fleet>>,
}

impl Snapshots {
    /// Keeps `fleet`, which handed out a next link (once per snapshot: a copy made for a raw
    /// device pushed since renders the same export rows).
    pub(crate) fn keep(&mut self, fleet: &Arc<Fleet>) {
        if !self.kept.iter().any(|k| k.now == fleet.now) {
            self.kept.push(fleet.clone());
        }
    }

    /// The fleet of the snapshot at `at`: `current` if it is that one, else a kept one.
    pub(crate) fn find(&self, at: DateTime<Utc>, current: Arc<Fleet>) -> Option<Arc<Fleet>> {
        if snapshot_time(current.now) == at {
            return Some(current);
        }
        self.kept.iter().find(|k| snapshot_time(k.now) == at).cloned()
    }

    /// Before an evolution step of `current`: forgets every snapshot but the current one, whose
    /// links the step does not outlive, so that the step copies the fleet only for links that
    /// stay valid.
    pub(crate) fn before_step(&mut self, current: &Fleet) {
        self.kept.retain(|k| k.now == current.now);
    }
}
