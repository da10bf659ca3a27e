//! The one way to run the `kbwatch` binary: [`Kbwatch`] builds the command; [`Kbwatch::output`]
//! runs it to its end, [`Kbwatch::start`] returns a [`Daemon`] that is polled with
//! [`Daemon::wait_for`], signalled, and killed when dropped. [`wait_for`] polls any condition.

use std::ffi::OsStr;
use std::future::Future;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

/// The binary cargo built for this run.
pub const PATH: &str = env!("CARGO_BIN_EXE_kbwatch");

/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(50);

/// A `kbwatch` command line being built.
pub struct Kbwatch {
    command: tokio::process::Command,
}

/// What a finished run printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

impl Kbwatch {
    /// `kbwatch ARGS…`.
    pub fn new<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Self {
        let mut command = tokio::process::Command::new(PATH);
        command.args(args);
        Kbwatch { command }
    }

    /// `… --config PATH`.
    pub fn config(mut self, path: &Path) -> Self {
        self.command.arg("--config").arg(path);
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.command.arg(arg);
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    pub fn env_remove(mut self, key: &str) -> Self {
        self.command.env_remove(key);
        self
    }

    /// Runs to its end; what it printed (which must be UTF-8).
    pub async fn output(mut self) -> Output {
        let out = self.command.stdin(Stdio::null()).output().await.expect("kbwatch runs");
        let text = |b: Vec<u8>| String::from_utf8(b).expect("kbwatch prints UTF-8");
        Output { status: out.status, stdout: text(out.stdout), stderr: text(out.stderr) }
    }

    /// Starts it; its output goes to files read by [`Daemon::stdout`] and [`Daemon::stderr`].
    pub fn start(mut self) -> Daemon {
        let (stdout, stderr) = (capture(), capture());
        let child = self
            .command
            .stdin(Stdio::null())
            .stdout(stdout.try_clone().expect("a file handle"))
            .stderr(stderr.try_clone().expect("a file handle"))
            .kill_on_drop(true)
            .spawn()
            .expect("kbwatch starts");
        Daemon { child: Mutex::new(child), stdout, stderr }
    }
}

fn capture() -> std::fs::File {
    tempfile::tempfile().expect("a temporary file for the output")
}

/// A running `kbwatch` process, killed when dropped.
pub struct Daemon {
    child: Mutex<tokio::process::Child>,
    stdout: std::fs::File,
    stderr: std::fs::File,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.lock().expect("child lock").id().expect("the process has not been reaped")
    }

    pub fn signal(&self, signal: Signal) {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        nix::sys::signal::kill(pid, signal).expect("the signal is sent");
    }

    /// SIGTERM: the drain.
    pub fn terminate(&self) {
        self.signal(Signal::SIGTERM);
    }

    /// The exit status once it has exited.
    pub fn exited(&self) -> Option<ExitStatus> {
        self.child.lock().expect("child lock").try_wait().expect("the child can be waited for")
    }

    /// Waits up to `timeout` for it to exit.
    pub async fn wait(&self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                started.elapsed() < timeout,
                "kbwatch still runs after {timeout:?}\n{}",
                self.stderr_tail()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL, and waits for it to be gone.
    pub async fn kill(&self) -> ExitStatus {
        self.child.lock().expect("child lock").start_kill().expect("the process is killed");
        self.wait(Duration::from_secs(10)).await
    }

    /// Polls `condition` until it holds; panics, with what the process printed, if the process
    /// exits first or `timeout` passes.
    pub async fn wait_for<F, Fut>(&self, what: &str, timeout: Duration, mut condition: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let started = Instant::now();
        loop {
            if condition().await {
                return;
            }
            if let Some(status) = self.exited() {
                panic!("kbwatch exited ({status}) before {what}\n{}", self.stderr_tail());
            }
            assert!(
                started.elapsed() < timeout,
                "no {what} after {timeout:?}\n{}",
                self.stderr_tail()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Everything it printed on stdout so far.
    pub fn stdout(&self) -> String {
        read_all(&self.stdout)
    }

    /// Everything it printed on stderr so far.
    pub fn stderr(&self) -> String {
        read_all(&self.stderr)
    }

    fn stderr_tail(&self) -> String {
        let text = self.stderr();
        let lines: Vec<&str> = text.lines().collect();
        format!("last lines of its stderr:\n{}", lines[lines.len().saturating_sub(20)..].join("\n"))
    }
}

/// The file's whole text, read at offsets: the process writes through the same file offset, which
/// must not move under it.
fn read_all(file: &std::fs::File) -> String {
    let (mut bytes, mut chunk) = (Vec::new(), [0; 8192]);
    loop {
        let n = file.read_at(&mut chunk, bytes.len() as u64).expect("the capture file reads");
        if n == 0 {
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
}

/// Polls `condition` every 50 ms until it holds; panics naming `what` after `timeout`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < timeout, "no {what} after {timeout:?}");
        tokio::time::sleep(POLL).await;
    }
}
