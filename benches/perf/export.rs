//! The `export` row (issue 15): peak memory of reading the full vulnerability export of a fleet
//! into each device's missing KBs (`Client::export_states`), with its rows, pages and duration.
//!
//! The reader is a process of its own, so that the simulator (and its fleet) stay outside what
//! is measured: this program again, told by [`READER`] which configuration to read the export
//! with; it prints what it read as one JSON line. The peak is its `VmHWM`, read as the `memory`
//! row reads it. The tenant keeps kbwatch's defaults (`max_page_bytes` 64 MiB), and the export is
//! paced at its documented quota of 30 calls a minute, as kbwatch would read it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;

use crate::memory::high_water_until_exit;
use crate::setup::{Setup, finish, start};
use crate::table::{Row, mb, thousands};

/// Set to a configuration file's path, this program reads its first tenant's export and exits.
pub const READER: &str = "KBWATCH_BENCH_EXPORT_READER";

pub async fn run(devices: usize) -> Vec<Row> {
    let bench =
        start(Setup { devices, server_quota: None, client_quota: None, concurrency: 8 }).await;
    // kbwatch paces the export at 30 a minute; the simulator's own window would only add 429s
    // at the edges of its minute.
    bench.sim.set_export_quota(None);
    let config = bench.config_file();
    let started = Instant::now();
    let mut reader = tokio::process::Command::new(std::env::current_exe().expect("this program"))
        .env(READER, &config)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the reader starts");
    let pid = reader.id().expect("a running reader");
    let (status, peak) = high_water_until_exit(pid, || reader.try_wait().ok().flatten()).await;
    let elapsed = started.elapsed();
    let mut out = String::new();
    let mut stdout = reader.stdout.take().expect("piped");
    stdout.read_to_string(&mut out).await.expect("its output");
    assert!(status.success(), "the export reader failed ({status}): {out}");
    let read: Value = serde_json::from_str(out.trim()).expect("one JSON line");
    finish(bench).await;
    rows(devices, peak, elapsed, &read)
}

fn rows(devices: usize, peak: u64, elapsed: Duration, read: &Value) -> Vec<Row> {
    let count = |key: &str| thousands(read[key].as_u64().unwrap_or_default());
    let fleet = thousands(devices as u64);
    vec![
        Row::judged(
            &format!("peak memory (high-water RSS) of reading the export of {fleet} devices"),
            mb(peak),
            "< 150 MB",
            peak < 150_000_000,
        ),
        Row::context(
            "  its rows (with a KB), pages, devices named",
            format!(
                "{} ({}), {}, {}",
                count("rows"),
                count("kb_rows"),
                count("pages"),
                count("devices")
            ),
        ),
        Row::context(
            "  its duration (paced at 30 pages a minute), its CPU time",
            format!(
                "{:.1} s, {:.1} s",
                elapsed.as_secs_f64(),
                read["cpu_secs"].as_f64().unwrap_or(0.0)
            ),
        ),
    ]
}

/// The reader process: reads the export of the first tenant of the configuration `path` and
/// prints what it read.
pub fn read_export(path: &std::ffi::OsStr) {
    let config =
        kbwatch::config::load(std::path::Path::new(path)).expect("the bench's configuration loads");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let client =
        kbwatch::defender::client_for(&config.tenants[0], &config.tls).expect("the client builds");
    let states = runtime.block_on(client.export_states()).expect("the export is read");
    let c = states.counts;
    let cpu = crate::cpu::process_cpu().as_secs_f64();
    let read = json!({ "rows": c.rows, "kb_rows": c.kb_rows, "pages": c.pages,
                       "devices": states.len(), "cpu_secs": cpu });
    println!("{read}");
}
