//! A run's status, device counters and call counters.

use std::sync::atomic::{AtomicU64, Ordering};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    /// Every planned device was scanned (some may have failed or been not found).
    Completed,
    /// The run stopped early (deadline, database trouble) and kept what it finished.
    Partial,
    /// The run could not do its job (auth, 403, listing failed).
    Failed,
    /// Shutdown, or a crash found by the next run.
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// Device counts added by one batch of results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunCounters {
    pub ok: i32,
    pub not_found: i32,
    pub failed: i32,
    /// Good states taken from the export (`ok` counts getmissingkbs' answers only).
    pub from_export: i32,
}

impl RunCounters {
    /// Adds another batch's counts.
    pub fn add(&mut self, other: RunCounters) {
        self.ok += other.ok;
        self.not_found += other.not_found;
        self.failed += other.failed;
        self.from_export += other.from_export;
    }
}

/// API calls made and 429s received during one run: the client counts them, the writer stores
/// them with each batch, and the run's row gets the final figures.
#[derive(Debug, Default)]
pub struct CallCounters {
    api_calls: AtomicU64,
    throttled: AtomicU64,
}

/// What [`CallCounters`] held at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCount {
    pub api_calls: u64,
    pub throttled: u64,
}

impl CallCounters {
    /// One request sent.
    pub fn call(&self) {
        self.api_calls.fetch_add(1, Ordering::Relaxed);
    }

    /// One 429 received.
    pub fn throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }

    pub fn read(&self) -> CallCount {
        CallCount {
            api_calls: self.api_calls.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
        }
    }
}
