//! The tracing subscriber: `KBWATCH_LOG`, then `RUST_LOG`, default `info` (with the notices of
//! the libraries below it at `warn`); JSON lines when asked or when stderr is not a terminal,
//! readable text otherwise.
//!
//! While a progress bar is shown ([`show_progress`]), every log line is written with the bar
//! suspended, so lines scroll above the one bar instead of between its redraws.

use std::io::{IsTerminal as _, Write};
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// The default filter: kbwatch at `info`; sqlx's statement and notice lines ("relation
/// _sqlx_migrations already exists, skipping") only when they warn.
const DEFAULT_FILTER: &str = "info,sqlx=warn";

/// The bar on the terminal, if one is shown.
static PROGRESS: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

/// Installs the global subscriber. Later calls do nothing (tests call it more than once).
pub fn init(format: Option<LogFormat>) {
    let filter = std::env::var("KBWATCH_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    let json = match format {
        Some(LogFormat::Json) => true,
        Some(LogFormat::Text) => false,
        None => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(AboveProgress);
    let _ = if json {
        builder.json().flatten_event(true).with_current_span(true).try_init()
    } else {
        builder.compact().try_init()
    };
}

/// Draws log lines above `bar` until [`hide_progress`].
pub fn show_progress(bar: indicatif::ProgressBar) {
    *PROGRESS.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(bar);
}

/// Clears the bar from the terminal and writes log lines plainly again.
pub fn hide_progress() {
    let bar = PROGRESS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

/// Runs `print` with the bar (if any) out of the way: for lines printed beside the log.
pub fn suspend_progress<R>(print: impl FnOnce() -> R) -> R {
    let bar = PROGRESS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    match bar {
        Some(bar) => bar.suspend(print),
        None => print(),
    }
}

/// Standard error, with the progress bar (if any) suspended around each write.
struct AboveProgress;

impl<'a> MakeWriter<'a> for AboveProgress {
    type Writer = AboveProgress;

    fn make_writer(&'a self) -> Self::Writer {
        AboveProgress
    }
}

impl Write for AboveProgress {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The formatter writes each event with one `write_all`: the bar is suspended per line.
        suspend_progress(|| std::io::stderr().write_all(buf)).map(|()| buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
