//! A run's status and device counters.

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
}
