//! How a run ended: the one place its status and error are decided, from how the listing and the
//! fan-out ended.

use super::fanout::Fanned;
use super::list::Listed;
use crate::model::{RunCounters, RunStatus};

/// How the work of a run ended, before the run row is closed.
pub(super) struct Ending {
    pub status: RunStatus,
    pub error: Option<String>,
    pub listed: u64,
    pub planned: u64,
    pub rejected: u64,
    pub devices: RunCounters,
}

/// The first cause wins: the tenant's lock lost to another process, then the listing's (it
/// failed, or shutdown or the next tick came before it ended), then an API error that stopped
/// the tenant, storing failing, shutdown, the next tick.
pub(super) fn ending(listing: anyhow::Result<Listed>, fanned: Fanned, lock_lost: bool) -> Ending {
    let mut ending = Ending {
        status: RunStatus::Completed,
        error: None,
        listed: 0,
        planned: 0,
        rejected: 0,
        devices: fanned.devices,
    };
    let (status, error) = match listing {
        Ok(Listed::Complete(listing)) => {
            ending.listed = listing.listed;
            ending.rejected = listing.rejected;
            ending.planned = listing.planned;
            ending.devices.from_export = listing.from_export as i32;
            if let Some(e) = fanned.fatal {
                (RunStatus::Failed, Some(e.to_string()))
            } else if let Some(e) = fanned.write_error {
                (RunStatus::Partial, Some(format!("storing results failed: {e}")))
            } else if fanned.cancelled {
                (RunStatus::Interrupted, Some("shutdown during the scan".into()))
            } else if fanned.deadline_hit {
                (RunStatus::Partial, Some("the next scheduled run was due".into()))
            } else {
                (RunStatus::Completed, None)
            }
        }
        Ok(Listed::Shutdown) => {
            (RunStatus::Interrupted, Some("shutdown during the device listing".into()))
        }
        Ok(Listed::Deadline) => (
            RunStatus::Partial,
            Some("the next scheduled run was due during the device listing".into()),
        ),
        Err(e) => (RunStatus::Failed, Some(format!("{e:#}"))),
    };
    (ending.status, ending.error) = if lock_lost {
        let lost = "the tenant's lock was lost (its connection broke) and another process took it";
        (RunStatus::Interrupted, Some(lost.to_owned()))
    } else {
        (status, error)
    };
    ending
}
