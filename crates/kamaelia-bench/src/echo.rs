//! `echo`: C connections, one S-byte message in flight on each; every echoed byte is checked.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::common::{self, CpuUsed, CpuWindow, Error, Errors, Histogram, PERIOD};
use crate::transport::{Conn, TlsClient};

/// What `echo` was asked to do.
#[derive(Debug, Clone)]
pub(crate) struct EchoArgs {
    pub(crate) addr: SocketAddr,
    pub(crate) conns: usize,
    pub(crate) size: usize,
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
    pub(crate) tls: Option<PathBuf>,
    pub(crate) server_pid: Option<u32>,
    pub(crate) threads: usize,
}

/// How long connections may take to finish the message in flight once the window has closed. A
/// loopback echo slower than this is a stall, counted as an error.
const DRAIN: Duration = Duration::from_secs(3);

/// The measurement window, shared by every thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) start: Instant,
    pub(crate) end: Instant,
}

impl Window {
    /// A window that opens after `warmup` and lasts `duration`.
    pub(crate) fn after(warmup: Duration, duration: Duration) -> Self {
        let start = Instant::now() + warmup;
        Self {
            start,
            end: start + duration,
        }
    }
}

#[derive(Debug)]
struct Stats {
    msgs: u64,
    latency: Histogram,
    errors: Errors,
}

/// Runs `echo` and prints its `RESULT` line; `Ok(false)` when there were errors.
pub(crate) fn run(a: &EchoArgs) -> Result<bool, Error> {
    if a.size == 0 || a.conns == 0 {
        return Err("-c and -s must be at least 1".into());
    }
    common::check_open_files(a.conns)?;
    let tls = match &a.tls {
        Some(ca) => Some(TlsClient::new(ca, a.addr.ip())?),
        None => None,
    };
    let mut sockets = Vec::with_capacity(a.conns);
    for _ in 0..a.conns {
        let s = common::connect(a.addr, Duration::from_secs(5))
            .map_err(|e| format!("cannot connect to {}: {e}", a.addr))?;
        s.set_nonblocking(true)?;
        sockets.push(s);
    }
    let w = Window::after(a.warmup, a.duration);
    let groups = common::split(sockets, a.threads);
    let (stats, cpu) = std::thread::scope(|scope| -> Result<_, Error> {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|g| {
                let tls = tls.clone();
                let size = a.size;
                scope.spawn(move || run_thread(g, size, tls.as_ref(), w))
            })
            .collect();
        let cpu = measure_cpu(a.server_pid, w);
        let mut all = Stats {
            msgs: 0,
            latency: Histogram::new(),
            errors: Errors::default(),
        };
        for h in handles {
            let s = h.join().map_err(|_| "a generator thread panicked")??;
            all.msgs += s.msgs;
            all.latency.merge(&s.latency);
            all.errors.merge(s.errors);
        }
        Ok((all, cpu))
    })?;
    let secs = a.duration.as_secs_f64();
    let msgs_per_s = stats.msgs as f64 / secs;
    // Payload echoed, one direction, in 10^6 bytes per second.
    let mb_per_s = stats.msgs as f64 * a.size as f64 / secs / 1e6;
    let cpu = common::cpu_fields(cpu.as_ref(), "msg", stats.msgs as f64, 3, secs);
    stats.errors.report();
    println!(
        "RESULT mode=echo tls={} c={} s={} secs={secs:.2} msgs={} msgs_per_s={msgs_per_s:.0} \
         mb_per_s={mb_per_s:.1} p50_us={:.1} p99_us={:.1} errors={}{cpu}",
        u8::from(a.tls.is_some()),
        a.conns,
        a.size,
        stats.msgs,
        stats.latency.quantile_us(0.5),
        stats.latency.quantile_us(0.99),
        stats.errors.count,
    );
    Ok(stats.errors.count == 0)
}

/// Reads the server's CPU time at both ends of the window (sleeping in between).
pub(crate) fn measure_cpu(pid: Option<u32>, w: Window) -> Option<io::Result<CpuUsed>> {
    let pid = pid?;
    common::sleep_until(w.start);
    let cpu = match CpuWindow::start(pid) {
        Ok(c) => c,
        Err(e) => return Some(Err(e)),
    };
    common::sleep_until(w.end);
    Some(cpu.used())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Sending messages and checking their echoes.
    Running,
    /// The window closed: our FIN is sent, waiting for the server's.
    Closing,
    Done,
}

struct EchoConn {
    conn: Conn,
    id: usize,
    seq: u64,
    sent: usize,
    recvd: usize,
    started: Instant,
    can_read: bool,
    can_write: bool,
    phase: Phase,
}

impl EchoConn {
    /// Where in the pattern the current message starts: differs per connection and message.
    fn offset(&self) -> usize {
        (self.seq as usize)
            .wrapping_mul(7)
            .wrapping_add(self.id.wrapping_mul(13))
            % PERIOD
    }
}

/// Per-thread scratch and results.
struct Ctx<'a> {
    pattern: &'a [u8],
    rbuf: Vec<u8>,
    size: usize,
    w: Window,
    stats: Stats,
}

fn run_thread(
    group: Vec<(usize, std::net::TcpStream)>,
    size: usize,
    tls: Option<&TlsClient>,
    w: Window,
) -> Result<Stats, Error> {
    let pattern = common::pattern(size);
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(group.len());
    let now = Instant::now();
    for (i, (id, s)) in group.into_iter().enumerate() {
        let mut conn = Conn::new(TcpStream::from_std(s), tls)?;
        poll.registry().register(
            conn.socket(),
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns.push(EchoConn {
            conn,
            id,
            seq: 0,
            sent: 0,
            recvd: 0,
            started: now,
            can_read: true,
            can_write: true,
            phase: Phase::Running,
        });
    }
    let mut ctx = Ctx {
        pattern: &pattern,
        rbuf: vec![0; size],
        size,
        w,
        stats: Stats {
            msgs: 0,
            latency: Histogram::new(),
            errors: Errors::default(),
        },
    };
    // Connections that used up their rounds with work left: served again before the next wait.
    let mut again: Vec<usize> = (0..conns.len()).collect();
    let mut events = Events::with_capacity(1024);
    let hard_end = w.end + DRAIN;
    let mut closing_started = false;
    loop {
        let now = Instant::now();
        if now >= w.end && !closing_started {
            // Idle connections (none in flight) must be told the window is over.
            closing_started = true;
            again = (0..conns.len()).collect();
        }
        if conns.iter().all(|c| c.phase == Phase::Done) || now >= hard_end {
            break;
        }
        for i in std::mem::take(&mut again) {
            if drive(&mut conns[i], &mut ctx) {
                again.push(i);
            }
        }
        let next = if now < w.end { w.end } else { hard_end };
        let timeout = if again.is_empty() {
            next.saturating_duration_since(now)
                .min(Duration::from_millis(100))
        } else {
            Duration::ZERO
        };
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        for ev in events.iter() {
            let i = ev.token().0;
            let Some(c) = conns.get_mut(i) else {
                continue;
            };
            let broken = ev.is_error() || ev.is_read_closed() || ev.is_write_closed();
            if ev.is_readable() || broken || c.conn.is_tls() {
                c.can_read = true;
            }
            if ev.is_writable() || broken || c.conn.is_tls() {
                c.can_write = true;
            }
            if drive(c, &mut ctx) && !again.contains(&i) {
                again.push(i);
            }
        }
    }
    for c in &conns {
        match c.phase {
            Phase::Done => {}
            Phase::Running if c.sent > 0 || c.recvd > 0 => ctx.stats.errors.add(format!(
                "connection {}: message {} not echoed within {DRAIN:?} (sent {} of {}, got back {})",
                c.id, c.seq, c.sent, ctx.size, c.recvd
            )),
            _ => ctx.stats.errors.add(format!(
                "connection {}: server did not close within {DRAIN:?} of our FIN",
                c.id
            )),
        }
    }
    Ok(ctx.stats)
}

/// Serves one connection; true if it stopped with work left (its rounds ran out).
fn drive(c: &mut EchoConn, ctx: &mut Ctx<'_>) -> bool {
    if c.phase == Phase::Done {
        return false;
    }
    match step(c, ctx) {
        Ok(more) => more,
        Err(e) => {
            ctx.stats.errors.add(format!("connection {}: {e}", c.id));
            c.phase = Phase::Done;
            false
        }
    }
}

/// Read/write rounds one connection gets before the others are served.
const ROUNDS: usize = 64;

/// Does what can be done without blocking, for at most [`ROUNDS`] rounds; true if work is left.
fn step(c: &mut EchoConn, ctx: &mut Ctx<'_>) -> io::Result<bool> {
    let size = ctx.size;
    c.conn.flush()?;
    if c.phase == Phase::Running && c.sent == 0 && Instant::now() >= ctx.w.end {
        c.phase = Phase::Closing;
        c.conn.shutdown_write()?;
    }
    if c.phase == Phase::Closing {
        // Anything but the server's clean close is an error now.
        while c.can_read {
            match c.conn.read(&mut ctx.rbuf) {
                Ok(0) => {
                    c.phase = Phase::Done;
                    return Ok(false);
                }
                Ok(n) => {
                    return Err(io::Error::other(format!(
                        "{n} unexpected bytes after the last echo"
                    )))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.can_read = false,
                Err(e) => return Err(e),
            }
        }
        return Ok(false);
    }
    for _ in 0..ROUNDS {
        let mut progress = false;
        if c.sent < size && c.can_write {
            let off = c.offset();
            match c.conn.write(&ctx.pattern[off + c.sent..off + size]) {
                Ok(n) => {
                    c.sent += n;
                    progress = n > 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.can_write = false,
                Err(e) => return Err(e),
            }
        }
        if c.recvd < c.sent && c.can_read {
            match c.conn.read(&mut ctx.rbuf[..size - c.recvd]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("server closed with message {} in flight", c.seq),
                    ))
                }
                Ok(n) => {
                    let off = c.offset() + c.recvd;
                    if ctx.rbuf[..n] != ctx.pattern[off..off + n] {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("message {}: echoed bytes differ from those sent", c.seq),
                        ));
                    }
                    c.recvd += n;
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.can_read = false,
                Err(e) => return Err(e),
            }
        }
        if c.recvd == size {
            let now = Instant::now();
            if now > ctx.w.start && now <= ctx.w.end {
                ctx.stats.msgs += 1;
                ctx.stats.latency.record(now - c.started);
            }
            c.seq += 1;
            c.sent = 0;
            c.recvd = 0;
            c.started = now;
            if !c.conn.is_tls() {
                // The socket is drained (one message in flight, all of it read): the next echo
                // arrives as a new edge, so skip the read that would only say WouldBlock.
                c.can_read = false;
            }
            if now >= ctx.w.end {
                c.phase = Phase::Closing;
                c.conn.shutdown_write()?;
                return Ok(false);
            }
            progress = true;
        }
        if !progress {
            return Ok(false);
        }
    }
    Ok(true)
}
