//! `stream`: C connections write and read full duplex for the duration, then half-close; the run
//! passes only if every byte came back, in order, and the server then closed cleanly.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::common::{self, Error, Errors, PERIOD};
use crate::echo::{measure_cpu, Window};
use crate::transport::{Conn, TlsClient};

/// What `stream` was asked to do.
#[derive(Debug, Clone)]
pub(crate) struct StreamArgs {
    pub(crate) addr: SocketAddr,
    pub(crate) conns: usize,
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
    pub(crate) tls: Option<PathBuf>,
    pub(crate) server_pid: Option<u32>,
    pub(crate) threads: usize,
}

/// Bytes per write and per read.
const CHUNK: usize = 64 * 1024;
/// How long the echo of what is in flight may take to come back after our FIN.
const DRAIN: Duration = Duration::from_secs(10);
/// Read/write rounds one connection gets before the others are served.
const ROUNDS: usize = 16;

#[derive(Debug, Default)]
struct Stats {
    /// Bytes echoed back inside the window.
    window_bytes: u64,
    total_bytes: u64,
    complete: usize,
    errors: Errors,
}

/// Runs `stream` and prints its `RESULT` line; `Ok(false)` when it did not pass.
pub(crate) fn run(a: &StreamArgs) -> Result<bool, Error> {
    if a.conns == 0 {
        return Err("-c must be at least 1".into());
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
                scope.spawn(move || run_thread(g, tls.as_ref(), w))
            })
            .collect();
        let cpu = measure_cpu(a.server_pid, w);
        let mut all = Stats::default();
        for h in handles {
            let s = h.join().map_err(|_| "a generator thread panicked")??;
            all.window_bytes += s.window_bytes;
            all.total_bytes += s.total_bytes;
            all.complete += s.complete;
            all.errors.merge(s.errors);
        }
        Ok((all, cpu))
    })?;
    let secs = a.duration.as_secs_f64();
    let mb_per_s = stats.window_bytes as f64 / secs / 1e6;
    let pass = stats.errors.count == 0 && stats.complete == a.conns;
    let mb = stats.window_bytes as f64 / 1e6;
    let cpu = common::cpu_fields(cpu.as_ref(), "mb", mb, 1, secs);
    stats.errors.report();
    println!(
        "RESULT mode=stream tls={} c={} secs={secs:.2} mb_per_s={mb_per_s:.1} total_mb={:.1} \
         complete={} pass={} errors={}{cpu}",
        u8::from(a.tls.is_some()),
        a.conns,
        stats.total_bytes as f64 / 1e6,
        stats.complete,
        u8::from(pass),
        stats.errors.count,
    );
    Ok(pass)
}

struct StreamConn {
    conn: Conn,
    id: usize,
    written: u64,
    received: u64,
    can_read: bool,
    can_write: bool,
    write_shut: bool,
    eof: bool,
    failed: bool,
}

impl StreamConn {
    fn offset(&self, pos: u64) -> usize {
        ((pos % PERIOD as u64) as usize + self.id * 13) % PERIOD
    }

    fn finished(&self) -> bool {
        self.eof || self.failed
    }
}

struct Ctx {
    pattern: Vec<u8>,
    rbuf: Vec<u8>,
    writing: bool,
    received: u64,
    errors: Errors,
}

fn run_thread(
    group: Vec<(usize, std::net::TcpStream)>,
    tls: Option<&TlsClient>,
    w: Window,
) -> Result<Stats, Error> {
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(group.len());
    for (i, (id, s)) in group.into_iter().enumerate() {
        let mut conn = Conn::new(TcpStream::from_std(s), tls)?;
        poll.registry().register(
            conn.socket(),
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns.push(StreamConn {
            conn,
            id,
            written: 0,
            received: 0,
            can_read: true,
            can_write: true,
            write_shut: false,
            eof: false,
            failed: false,
        });
    }
    let mut ctx = Ctx {
        pattern: common::pattern(CHUNK),
        rbuf: vec![0; CHUNK],
        writing: true,
        received: 0,
        errors: Errors::default(),
    };
    // Connections that used up their rounds with work left: served again before the next wait.
    let mut again: Vec<usize> = (0..conns.len()).collect();
    let mut events = Events::with_capacity(1024);
    let mut base: Option<u64> = None;
    let mut window_bytes = None;
    let hard_end = w.end + DRAIN;
    loop {
        let now = Instant::now();
        if base.is_none() && now >= w.start {
            base = Some(ctx.received);
        }
        if ctx.writing && now >= w.end {
            ctx.writing = false;
            window_bytes = Some(ctx.received - base.unwrap_or(ctx.received));
            again = (0..conns.len()).collect();
        }
        if conns.iter().all(StreamConn::finished) || now >= hard_end {
            break;
        }
        for i in std::mem::take(&mut again) {
            if drive(&mut conns[i], &mut ctx) {
                again.push(i);
            }
        }
        let next = if now < w.start {
            w.start
        } else if now < w.end {
            w.end
        } else {
            hard_end
        };
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
    let mut complete = 0;
    for c in &conns {
        if c.eof && !c.failed {
            complete += 1;
        } else if !c.failed {
            ctx.errors.add(format!(
                "connection {}: got back {} of {} bytes, no close within {DRAIN:?} of our FIN",
                c.id, c.received, c.written
            ));
        }
    }
    Ok(Stats {
        window_bytes: window_bytes.unwrap_or(0),
        total_bytes: ctx.received,
        complete,
        errors: ctx.errors,
    })
}

/// Serves one connection; true if it stopped with work left (its rounds ran out).
fn drive(c: &mut StreamConn, ctx: &mut Ctx) -> bool {
    if c.finished() {
        return false;
    }
    match step(c, ctx) {
        Ok(more) => more,
        Err(e) => {
            ctx.errors.add(format!("connection {}: {e}", c.id));
            c.failed = true;
            false
        }
    }
}

fn step(c: &mut StreamConn, ctx: &mut Ctx) -> io::Result<bool> {
    c.conn.flush()?;
    for _ in 0..ROUNDS {
        let mut progress = false;
        if ctx.writing {
            if c.can_write {
                let off = c.offset(c.written);
                match c.conn.write(&ctx.pattern[off..off + CHUNK]) {
                    Ok(n) => {
                        c.written += n as u64;
                        progress = n > 0;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.can_write = false,
                    Err(e) => return Err(e),
                }
            }
        } else if !c.write_shut {
            c.write_shut = true;
            c.conn.shutdown_write()?;
        }
        if c.can_read {
            match c.conn.read(&mut ctx.rbuf) {
                Ok(0) => {
                    if c.received != c.written || ctx.writing {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "server closed early: got back {} of {} bytes",
                                c.received, c.written
                            ),
                        ));
                    }
                    c.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    if c.received + n as u64 > c.written {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "got back more bytes than were sent",
                        ));
                    }
                    let off = c.offset(c.received);
                    if ctx.rbuf[..n] != ctx.pattern[off..off + n] {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("bytes at offset {} differ from those sent", c.received),
                        ));
                    }
                    c.received += n as u64;
                    ctx.received += n as u64;
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.can_read = false,
                Err(e) => return Err(e),
            }
        }
        if !progress {
            return Ok(false);
        }
    }
    Ok(true)
}
