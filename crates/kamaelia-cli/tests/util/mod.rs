//! Helpers for the `kamaelia` binary's end-to-end tests: start the built binary and the peers that
//! are not our code (Python's `socket` module, `nc`, `socat`), read the server's `listening on`
//! line, measure a process's resident memory and CPU time, and kill every process started, by its
//! id, when the test ends however it ends.
//!
//! Everything here is bounded: each wait has a deadline, each loop a count. Traffic stays on
//! 127.0.0.1.
// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The built `kamaelia` binary.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_kamaelia");

/// How long any single step may take before the test gives up (a hang guard, not a timing
/// assertion).
pub(crate) const HANG_GUARD: Duration = Duration::from_secs(60);

/// A started process, killed (with its whole process group) when dropped unless it has already
/// exited. Every process is started as the leader of its own process group so that `sh -c`
/// pipelines can be killed completely, by the group id we know.
pub(crate) struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Option<Receiver<String>>,
    stderr: Option<Arc<Mutex<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Proc {
    /// Starts `cmd` as is (the caller chose its stdio), in its own process group.
    pub(crate) fn spawn(name: &str, mut cmd: Command) -> Proc {
        cmd.process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_owned(),
            child,
            stdin: None,
            lines: None,
            stderr: None,
            readers: Vec::new(),
        }
    }

    /// Starts `cmd` with piped stdin, its stdout read line by line (see [`Proc::expect_line`]) and
    /// its stderr collected (see [`Proc::stderr`]).
    pub(crate) fn spawn_lines(name: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut p = Proc::spawn(name, cmd);
        p.stdin = p.child.stdin.take();
        let stdout = p.child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        p.readers.push(thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        }));
        p.lines = Some(rx);
        p.collect_stderr();
        p
    }

    /// Collects the process's piped stderr in the background.
    fn collect_stderr(&mut self) {
        let Some(mut stderr) = self.child.stderr.take() else {
            return;
        };
        let buf = Arc::new(Mutex::new(String::new()));
        let out = buf.clone();
        self.readers.push(thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            loop {
                match stderr.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&chunk[..n])),
                }
            }
        }));
        self.stderr = Some(buf);
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process has written to stderr so far (if it was collected).
    pub(crate) fn stderr(&self) -> String {
        self.stderr
            .as_ref()
            .map(|s| s.lock().unwrap().clone())
            .unwrap_or_default()
    }

    /// Writes one line to the process's stdin.
    pub(crate) fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is piped");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: cannot write to stdin: {e}", self.name));
    }

    /// Closes the process's stdin.
    pub(crate) fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next stdout line, or `None` if none came within `wait` (the process may still run).
    /// Panics if stdout ended.
    pub(crate) fn next_line(&mut self, wait: Duration) -> Option<String> {
        let lines = self.lines.as_ref().expect("stdout is read by lines");
        match lines.recv_timeout(wait) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.wait_timeout(Duration::from_secs(5));
                panic!(
                    "{}: stdout ended (exit status {status:?}); stderr:\n{}",
                    self.name,
                    self.stderr()
                );
            }
        }
    }

    /// Reads stdout lines until one starts with `prefix` and returns it; other lines are printed.
    /// Panics with the process's stderr if none comes within `wait`.
    pub(crate) fn expect_line(&mut self, prefix: &str, wait: Duration) -> String {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line(left) {
                Some(line) if line.starts_with(prefix) => return line,
                Some(line) => println!("{}: {line}", self.name),
                None => panic!(
                    "{}: no line starting {prefix:?} within {wait:?}; stderr:\n{}",
                    self.name,
                    self.stderr()
                ),
            }
        }
    }

    /// Waits up to `wait` for the process to exit.
    pub(crate) fn wait_timeout(&mut self, wait: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + wait;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                Ok(None) => return None,
                Err(e) => panic!("{}: wait failed: {e}", self.name),
            }
        }
    }

    /// Waits for the process to exit (panicking with its stderr if it does not within `wait`),
    /// then for its output readers to finish.
    pub(crate) fn finish(&mut self, wait: Duration) -> ExitStatus {
        let status = self.wait_timeout(wait).unwrap_or_else(|| {
            panic!(
                "{}: still running after {wait:?}; stderr:\n{}",
                self.name,
                self.stderr()
            )
        });
        self.join_readers();
        status
    }

    /// Joins the output reader threads (after exit; a leftover grandchild holding a pipe would
    /// keep them waiting, so this is bounded too).
    fn join_readers(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        for r in self.readers.drain(..) {
            while !r.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if r.is_finished() {
                let _ = r.join();
            }
        }
    }

    /// Every stdout line not read yet (after the process ended).
    pub(crate) fn remaining_lines(&mut self) -> Vec<String> {
        self.lines
            .as_ref()
            .map(|l| l.try_iter().collect())
            .unwrap_or_default()
    }

    /// Whether the process is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` (e.g. "TERM") to the process, by its id (with the shell's `kill`).
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -s {signal} {}", self.pid()))
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// The underlying child, for taking its pipes.
    pub(crate) fn child(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stdin = None;
        // Until it is reaped, the leader's id cannot be reused, so its group id names only
        // processes this test started.
        if let Ok(None) = self.child.try_wait() {
            // The shell's own `kill`: no dependency on procps.
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!("kill -s KILL -- -{}", self.child.id()))
                .stderr(Stdio::null())
                .status();
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A running `kamaelia serve` / `kamaelia relay` and the address it announced.
pub(crate) struct Server {
    pub(crate) proc: Proc,
    pub(crate) addr: SocketAddr,
}

impl Server {
    /// `kamaelia ARGS…`; waits for `listening on IP:PORT`.
    pub(crate) fn start(args: &[&str]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        Server::from_command(cmd)
    }

    /// `sh -c 'SETUP; exec kamaelia ARGS…'` (e.g. `ulimit -n 64`): the server keeps the shell's
    /// process id, so /proc readings and signals reach it.
    pub(crate) fn start_sh(setup: &str, args: &[&str]) -> Server {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("{setup}; exec \"$0\" \"$@\""))
            .arg(BIN)
            .args(args);
        Server::from_command(cmd)
    }

    /// `kamaelia ARGS…` with its default logging (the environment's `KAMAELIA_LOG` removed).
    pub(crate) fn start_default_log(args: &[&str]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(args).env_remove("KAMAELIA_LOG");
        Server::from_command(cmd)
    }

    fn from_command(mut cmd: Command) -> Server {
        if !cmd.get_envs().any(|(k, _)| k == "KAMAELIA_LOG") {
            cmd.env("KAMAELIA_LOG", "warn");
        }
        let mut proc = Proc::spawn_lines("server", cmd);
        let line = proc.expect_line("listening on ", Duration::from_secs(30));
        let addr = parse_listening(&line);
        Server { proc, addr }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Asserts the server is still running and has not logged a panic.
    pub(crate) fn assert_healthy(&mut self) {
        assert!(
            self.proc.is_running(),
            "the server exited; stderr:\n{}",
            self.proc.stderr()
        );
        let stderr = self.proc.stderr();
        assert!(
            !stderr.contains("panicked"),
            "the server logged a panic:\n{stderr}"
        );
    }
}

/// Parses `listening on IP:PORT`.
pub(crate) fn parse_listening(line: &str) -> SocketAddr {
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("not a listening line: {line:?}"));
    addr.trim()
        .parse()
        .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"))
}

/// Starts an echo server on 127.0.0.1, port 0.
pub(crate) fn echo_server() -> Server {
    Server::start(&["serve", "--listen", "127.0.0.1:0"])
}

/// Block-pattern helpers shared by the Python peers: `block(k)` is the k-th 64 KiB block of a
/// stream made of consecutive little-endian 64-bit word indexes, so every 8 bytes of a 200 MiB
/// stream are distinct, and a lost, repeated or reordered piece shows as a mismatch at once.
/// `Checker` verifies a received stream against it without keeping more than a block.
pub(crate) const PATTERN_PY: &str = r#"
import struct
BLK = 65536
_WORDS = BLK // 8
_BASE = int.from_bytes(b"".join(struct.pack("<Q", j) for j in range(_WORDS)), "little")
def block(k):
    # word j of block k is k * 8192 + j == j | (k << 13), since j < 8192
    mask = int.from_bytes(struct.pack("<Q", k << 13) * _WORDS, "little")
    return (_BASE ^ mask).to_bytes(BLK, "little")
class Checker:
    def __init__(self):
        self.k = 0
        self.pend = bytearray()
        self.total = 0
    def feed(self, data):
        self.total += len(data)
        self.pend += data
        while len(self.pend) >= BLK:
            if self.pend[:BLK] != block(self.k):
                want = block(self.k)
                i = next(i for i in range(BLK) if self.pend[i] != want[i])
                raise SystemExit(f"stream differs at byte {self.k * BLK + i}")
            del self.pend[:BLK]
            self.k += 1
    def done(self, blocks):
        if self.pend or self.k != blocks:
            raise SystemExit(f"stream ended after {self.total} bytes, expected {blocks * BLK}")
"#;

/// `python3 -c SCRIPT ARGS…`, unbuffered.
pub(crate) fn python(script: &str, args: &[String]) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg("-u").arg("-c").arg(script).args(args);
    cmd
}

/// Runs a Python peer to completion (bounded by `wait`), asserts it succeeded and returns its
/// stdout lines.
pub(crate) fn run_python(name: &str, script: &str, args: &[String], wait: Duration) -> Vec<String> {
    let mut p = Proc::spawn_lines(name, python(script, args));
    p.close_stdin();
    let status = p.finish(wait);
    let lines = p.remaining_lines();
    assert!(
        status.success(),
        "{name} failed ({status}); stdout: {lines:?}; stderr:\n{}",
        p.stderr()
    );
    lines
}

/// Resident memory of a process, in bytes (`VmRSS` in /proc/PID/status).
pub(crate) fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"));
    kb * 1024
}

/// CPU time a process has used, user plus system, all threads (/proc/PID/stat utime + stime).
pub(crate) fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/stat: {e}"));
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = &stat[stat.rfind(')').expect("comm field") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64)
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`, normally 100).
fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// How many file descriptors a process has open.
pub(crate) fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/fd: {e}"))
        .count()
}

/// Whether a program is on `PATH`.
pub(crate) fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Panics unless `program` is installed (CI installs `nc` and `socat` in `.ci/run`).
pub(crate) fn require(program: &str) {
    assert!(
        have(program),
        "{program} is not installed: apt-get install socat netcat-openbsd (see .ci/run)"
    );
}

/// Deterministic pseudo-random bytes (xorshift64*), for payloads a peer checks against.
pub(crate) fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Runs `cmd` with `input` on its stdin (written on a thread, then closed) and returns its exit
/// status, stdout and stderr, bounded by `wait`.
pub(crate) fn run_with_input(
    name: &str,
    mut cmd: Command,
    input: Vec<u8>,
    wait: Duration,
) -> (ExitStatus, Vec<u8>, String) {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut p = Proc::spawn(name, cmd);
    let mut stdin = p.child().stdin.take().expect("stdin is piped");
    let mut stdout = p.child().stdout.take().expect("stdout is piped");
    let writer = thread::spawn(move || {
        // A failed write shows up as a short output.
        let _ = stdin.write_all(&input);
    });
    let reader = thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    p.collect_stderr();
    let status = p.finish(wait);
    let out = join_bounded(reader, Duration::from_secs(10)).unwrap_or_default();
    let _ = join_bounded(writer, Duration::from_secs(10));
    (status, out, p.stderr())
}

/// Joins a thread if it finishes within `wait`.
pub(crate) fn join_bounded<T>(h: JoinHandle<T>, wait: Duration) -> Option<T> {
    let deadline = Instant::now() + wait;
    while !h.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    h.is_finished().then(|| h.join().expect("thread panicked"))
}
