//! CPU time spent by the benchmark's process (kbwatch and the simulator) and by the PostgreSQL
//! server, from the kernel's accounting (Linux): where the end-to-end row's time goes.

use std::time::Duration;

use kbwatch::store::Store;

/// CPU time used so far by this process and by the server's processes.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTimes {
    pub process: Duration,
    /// `None` when the server is not on this machine (its processes cannot be read).
    pub server: Option<Duration>,
}

impl std::ops::Sub for CpuTimes {
    type Output = CpuTimes;

    fn sub(self, earlier: CpuTimes) -> CpuTimes {
        CpuTimes {
            process: self.process.saturating_sub(earlier.process),
            server: self.server.zip(earlier.server).map(|(now, then)| now.saturating_sub(then)),
        }
    }
}

/// Reads the CPU time of this process and of the PostgreSQL server behind `store`.
pub struct CpuClock {
    /// The server's postmaster, the parent of every backend and background process.
    postmaster: Option<u32>,
}

impl CpuClock {
    pub async fn new(store: &Store) -> CpuClock {
        let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(store.pool())
            .await
            .expect("the bench database answers");
        let postmaster = u32::try_from(backend).ok().and_then(parent);
        CpuClock { postmaster }
    }

    pub fn now(&self) -> CpuTimes {
        CpuTimes { process: process_cpu(), server: self.postmaster.map(server_cpu) }
    }
}

/// User and system time of this process, its finished threads included.
pub fn process_cpu() -> Duration {
    // SAFETY: getrusage writes one `rusage` into the zeroed value it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Time on CPU of the postmaster and of its children (PostgreSQL's processes are single-threaded).
/// A backend that exited in between is not counted; the benchmark's connections stay open.
fn server_cpu(postmaster: u32) -> Duration {
    let pids =
        std::fs::read_dir("/proc").into_iter().flatten().flatten().filter_map(|entry| {
            entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok())
        });
    pids.filter(|&pid| pid == postmaster || parent(pid) == Some(postmaster))
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .map(Duration::from_nanos)
        .sum()
}

/// The parent process of `pid`, from `/proc/PID/stat` (the field after the parenthesised name).
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}
