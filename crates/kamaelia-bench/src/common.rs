//! Pieces every mode shares: the byte pattern, the latency histogram, `/proc` readers, loopback
//! address checks and the error type.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Errors of the generator: a line for the user.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// The period of the byte pattern. A prime, so that a message or stream position that lost,
/// duplicated or reordered bytes almost never lines up with the pattern again.
pub(crate) const PERIOD: usize = 251;

/// A buffer whose byte `i` is `i % PERIOD`. The bytes of a stream at position `p`, or of a message
/// that starts at pattern offset `o`, are `pattern[o..]`: sending and checking are slices of it.
pub(crate) fn pattern(len: usize) -> Vec<u8> {
    (0..len + PERIOD).map(|i| (i % PERIOD) as u8).collect()
}

/// Parses `IP:PORT` (or `localhost:PORT`) and refuses anything that is not loopback: the harness
/// never sends load anywhere else.
pub(crate) fn loopback(s: &str) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("invalid address {s:?}: {e}"))?
        .collect();
    addrs
        .iter()
        .copied()
        .find(|a| a.ip().is_loopback())
        .ok_or_else(|| format!("{s:?} is not a loopback address (127.0.0.1, ::1): refused"))
}

/// A blocking connect with a deadline, `TCP_NODELAY` on (every server under test sets it too).
pub(crate) fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Sleeps until `t` (returns at once if it has passed).
pub(crate) fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Clock ticks per second of `/proc/PID/stat`'s `utime`/`stime` (Linux `USER_HZ`: 100 on x86-64
/// and arm64 whatever the kernel's `HZ`).
pub(crate) const CLK_TCK: u64 = 100;

/// User and system CPU time of process `pid` (all its threads) in clock ticks, from
/// `/proc/PID/stat` fields 14 and 15. The kernel keeps their sum exact (the threads' run time) and
/// splits it by where its timer ticks found the process, so the split is a sampled ratio.
pub(crate) fn cpu_ticks(pid: u32) -> io::Result<Ticks> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("unexpected /proc/PID/stat format"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    let field = |i: usize| -> io::Result<u64> {
        fields
            .get(i - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other("unexpected /proc/PID/stat format"))
    };
    Ok(Ticks {
        user: field(14)?,
        system: field(15)?,
    })
}

/// A reading of [`cpu_ticks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticks {
    pub(crate) user: u64,
    pub(crate) system: u64,
}

/// Whether this kernel keeps per-thread scheduler statistics (`/proc/PID/task/TID/schedstat`,
/// `CONFIG_SCHED_INFO`). Decided once: a kernel either has them for every process or for none.
fn has_schedstat() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| std::path::Path::new("/proc/self/schedstat").exists())
}

/// CPU time of process `pid` (all its live threads) in nanoseconds, from the scheduler's count in
/// `/proc/PID/task/*/schedstat` (its first field). A relay's 2,000 connects take about 13 ticks
/// of `/proc/PID/stat`, so ticks would move CPU per connection in 5 µs steps. On a kernel without
/// `schedstat` it falls back to [`cpu_ticks`].
pub(crate) fn cpu_ns(pid: u32) -> io::Result<u64> {
    if !has_schedstat() {
        let t = cpu_ticks(pid)?;
        return Ok((t.user + t.system) * (1_000_000_000 / CLK_TCK));
    }
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            // The thread ended between the listing and the read: its time is gone with it.
            Err(e) if thread_gone(&e) => continue,
            Err(e) => return Err(e),
        };
        let ns: u64 = text
            .split_whitespace()
            .next()
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other(format!("unexpected format of {}", path.display())))?;
        total += ns;
    }
    Ok(total)
}

/// Whether reading a thread's `/proc` entry failed because the thread has ended: its directory is
/// gone (`ENOENT`), or it is still listed but the thread is dead (`ESRCH`, "No such process", seen
/// when a test thread exits during the read).
fn thread_gone(e: &io::Error) -> bool {
    const ESRCH: i32 = 3;
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(ESRCH)
}

/// The resident set size of process `pid`, in KiB (`VmRSS` of `/proc/PID/status`).
pub(crate) fn vm_rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::other(format!("no VmRSS in /proc/{pid}/status")))
}

/// This process's soft limit on open files.
pub(crate) fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Fails with a clear message when `n` sockets will not fit under the open-files limit.
pub(crate) fn check_open_files(n: usize) -> Result<(), Error> {
    match open_files_limit() {
        Some(limit) if (limit as usize) < n + 64 => Err(format!(
            "{n} connections need more open files than this process may have ({limit}): \
             raise it first, e.g. `ulimit -n {}`",
            n + 1024
        )
        .into()),
        _ => Ok(()),
    }
}

/// Splits connected sockets into at most `threads` groups of consecutive ones, each socket with its
/// index (the connection id).
pub(crate) fn split(sockets: Vec<TcpStream>, threads: usize) -> Vec<Vec<(usize, TcpStream)>> {
    let per = sockets
        .len()
        .div_ceil(threads.clamp(1, sockets.len().max(1)));
    let mut groups: Vec<Vec<(usize, TcpStream)>> = Vec::new();
    for (i, s) in sockets.into_iter().enumerate() {
        if i % per == 0 {
            groups.push(Vec::with_capacity(per));
        }
        if let Some(g) = groups.last_mut() {
            g.push((i, s));
        }
    }
    groups
}

/// The `RESULT` line's server-CPU fields: ` server_cpu_us_per_UNIT=...` (the CPU µs divided by
/// `per`, with `decimals` places), ` server_cpu_pct=...` over `secs`, and, when the split was
/// read, ` server_user_us_per_UNIT=...` (the part of it in user space: the server's own code and
/// libraries, not the kernel). Empty without a reading (no PID given) or with nothing to divide
/// by; a reading that failed is a warning on stderr.
pub(crate) fn cpu_fields(
    cpu: Option<&io::Result<CpuUsed>>,
    unit: &str,
    per: f64,
    decimals: usize,
    secs: f64,
) -> String {
    match cpu {
        Some(Ok(used)) if per > 0.0 => {
            let mut fields = format!(
                " server_cpu_us_per_{unit}={:.decimals$} server_cpu_pct={:.1}",
                used.us as f64 / per,
                used.us as f64 / 1e4 / secs
            );
            if let Some(user) = used.user_us {
                fields += &format!(
                    " server_user_us_per_{unit}={:.decimals$}",
                    user as f64 / per
                );
            }
            fields
        }
        Some(Err(e)) => {
            eprintln!("warning: cannot read the server's CPU time: {e}");
            String::new()
        }
        _ => String::new(),
    }
}

/// What a server used over a [`CpuWindow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuUsed {
    /// CPU microseconds, all threads.
    pub(crate) us: u64,
    /// The part of `us` spent in user space: `us` split in the ratio of the window's user and
    /// system ticks ([`cpu_ticks`]). None when no tick passed in the window or the ticks could
    /// not be read.
    pub(crate) user_us: Option<u64>,
}

/// A server's CPU time over a window, read from `/proc` at both ends ([`cpu_ns`], and
/// [`cpu_ticks`] for the user/system split).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuWindow {
    pid: u32,
    start_ns: u64,
    start_ticks: Option<Ticks>,
}

impl CpuWindow {
    /// Starts the window now.
    pub(crate) fn start(pid: u32) -> io::Result<Self> {
        Ok(Self {
            pid,
            start_ns: cpu_ns(pid)?,
            start_ticks: cpu_ticks(pid).ok(),
        })
    }

    /// What the process used since [`CpuWindow::start`] (a thread that ended in between takes
    /// its time with it, so the count cannot go below zero, only short).
    pub(crate) fn used(&self) -> io::Result<CpuUsed> {
        let us = cpu_ns(self.pid)?.saturating_sub(self.start_ns) / 1_000;
        let user_us = match (self.start_ticks, cpu_ticks(self.pid).ok()) {
            (Some(a), Some(b)) => user_part(us, a, b),
            _ => None,
        };
        Ok(CpuUsed { us, user_us })
    }
}

/// The user-space part of `us`, in the ratio of the user and system ticks between readings `a`
/// and `b`; none if no tick passed.
fn user_part(us: u64, a: Ticks, b: Ticks) -> Option<u64> {
    let user = b.user.saturating_sub(a.user);
    let system = b.system.saturating_sub(a.system);
    let all = user + system;
    (all > 0).then(|| (u128::from(us) * u128::from(user) / u128::from(all)) as u64)
}

/// Sub-buckets per power of two in [`Histogram`]: values are kept to within 1/32 (about 3%).
const SUB: u64 = 32;
const SUB_BITS: u32 = 5;

/// A log-linear histogram of nanosecond latencies: fixed size, no allocation per sample.
#[derive(Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Self {
            counts: vec![0; ((64 - SUB_BITS as u64 + 1) * SUB) as usize],
            total: 0,
        }
    }

    fn bucket(v: u64) -> usize {
        if v < SUB {
            v as usize
        } else {
            let e = 63 - v.leading_zeros(); // >= SUB_BITS
            let sub = (v >> (e - SUB_BITS)) & (SUB - 1);
            ((e - SUB_BITS + 1) as u64 * SUB + sub) as usize
        }
    }

    /// The middle of bucket `i`'s range.
    fn value(i: usize) -> u64 {
        let i = i as u64;
        if i < SUB {
            i
        } else {
            let e = (i / SUB) as u32 + SUB_BITS - 1;
            let low = (SUB + i % SUB) << (e - SUB_BITS);
            low + (1u64 << (e - SUB_BITS)) / 2
        }
    }

    pub(crate) fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[Self::bucket(ns)] += 1;
        self.total += 1;
    }

    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
    }

    /// The `q` quantile (0..=1) in microseconds; 0 when empty.
    pub(crate) fn quantile_us(&self, q: f64) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        let rank = ((self.total as f64 * q).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i) as f64 / 1000.0;
            }
        }
        0.0
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .finish()
    }
}

/// Counts errors and keeps the first few messages for stderr.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    pub(crate) count: u64,
    pub(crate) first: Vec<String>,
}

impl Errors {
    pub(crate) fn add(&mut self, what: impl fmt::Display) {
        self.count += 1;
        if self.first.len() < 5 {
            self.first.push(what.to_string());
        }
    }

    pub(crate) fn merge(&mut self, other: Errors) {
        self.count += other.count;
        for m in other.first {
            if self.first.len() < 5 {
                self.first.push(m);
            }
        }
    }

    /// Prints the kept messages to stderr.
    pub(crate) fn report(&self) {
        for m in &self.first {
            eprintln!("error: {m}");
        }
        if self.count > self.first.len() as u64 {
            eprintln!("error: ... {} errors in all", self.count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_round_trip_within_three_percent() {
        for v in [0u64, 1, 31, 32, 33, 63, 64, 100, 1000, 12_345, 1 << 40] {
            let back = Histogram::value(Histogram::bucket(v));
            let err = back.abs_diff(v) as f64 / (v.max(1) as f64);
            assert!(err <= 1.0 / 32.0, "{v} -> {back}");
        }
    }

    #[test]
    fn histogram_quantiles() {
        let mut h = Histogram::new();
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile_us(0.5);
        let p99 = h.quantile_us(0.99);
        assert!((48.0..=52.0).contains(&p50), "{p50}");
        assert!((96.0..=102.0).contains(&p99), "{p99}");
    }

    #[test]
    fn only_loopback_is_accepted() {
        assert!(loopback("127.0.0.1:1").is_ok());
        assert!(loopback("[::1]:1").is_ok());
        assert!(loopback("10.0.0.1:1").is_err());
    }

    #[test]
    fn cpu_fields_divide_and_format_as_each_mode_reports_them() {
        let us: io::Result<CpuUsed> = Ok(CpuUsed {
            us: 1_500_000,
            user_us: None,
        });
        assert_eq!(
            cpu_fields(Some(&us), "msg", 1_000.0, 3, 3.0),
            " server_cpu_us_per_msg=1500.000 server_cpu_pct=50.0"
        );
        let split: io::Result<CpuUsed> = Ok(CpuUsed {
            us: 1_500_000,
            user_us: Some(300_000),
        });
        assert_eq!(
            cpu_fields(Some(&split), "msg", 1_000.0, 3, 3.0),
            " server_cpu_us_per_msg=1500.000 server_cpu_pct=50.0 server_user_us_per_msg=300.000"
        );
        assert_eq!(
            cpu_fields(Some(&us), "conn", 4_000.0, 2, 1.5),
            " server_cpu_us_per_conn=375.00 server_cpu_pct=100.0"
        );
        assert_eq!(
            cpu_fields(Some(&us), "mb", 0.0, 1, 3.0),
            "",
            "nothing to divide by"
        );
        assert_eq!(cpu_fields(None, "mb", 10.0, 1, 3.0), "", "no PID given");
        let failed: io::Result<CpuUsed> = Err(io::ErrorKind::NotFound.into());
        assert_eq!(cpu_fields(Some(&failed), "mb", 10.0, 1, 3.0), "");
    }

    #[test]
    fn reads_own_proc_stats() {
        let pid = std::process::id();
        assert!(vm_rss_kib(pid).unwrap() > 0);
        cpu_ticks(pid).unwrap();
    }

    #[test]
    fn the_user_part_follows_the_ticks() {
        let t = |user, system| Ticks { user, system };
        assert_eq!(
            user_part(1_000, t(10, 5), t(13, 6)),
            Some(750),
            "3 of 4 ticks"
        );
        assert_eq!(
            user_part(1_000, t(10, 5), t(10, 9)),
            Some(0),
            "all in the kernel"
        );
        assert_eq!(user_part(1_000, t(10, 5), t(10, 5)), None, "no tick passed");
        assert_eq!(
            user_part(u64::MAX / 2, t(0, 0), t(1, 1)),
            Some(u64::MAX / 4),
            "no overflow"
        );
    }

    #[test]
    fn a_thread_that_ends_during_the_reading_is_skipped_not_an_error() {
        assert!(thread_gone(&io::Error::from_raw_os_error(3)), "ESRCH");
        assert!(thread_gone(&io::ErrorKind::NotFound.into()));
        assert!(!thread_gone(&io::ErrorKind::PermissionDenied.into()));
        // Threads starting and ending all through the readings: every reading succeeds.
        let pid = std::process::id();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = std::thread::spawn(|| std::hint::black_box(1 + 1)).join();
                }
            })
        };
        for _ in 0..2_000 {
            cpu_ns(pid).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        churn.join().unwrap();
    }

    #[test]
    fn cpu_time_counts_what_this_process_spins() {
        let pid = std::process::id();
        let window = CpuWindow::start(pid).unwrap();
        // Spin until 20 ms of CPU show (wall time says nothing under a loaded test run), with a
        // limit so a reader stuck at zero fails instead of hanging.
        let limit = Instant::now() + Duration::from_secs(20);
        let mut x = 0u64;
        while window.used().unwrap().us < 20_000 {
            for i in 0..10_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            assert!(
                Instant::now() < limit,
                "20 ms of spinning never showed as CPU time"
            );
        }
        // 20 ms is two ticks of /proc/PID/stat: the window has a user/system split, and the
        // user part is a part.
        let used = window.used().unwrap();
        let user = used.user_us.expect("ticks passed in 20 ms of CPU");
        assert!(user <= used.us, "{used:?}");
        assert!(
            cpu_ns(u32::MAX).is_err(),
            "a process that does not exist is an error"
        );
    }
}
