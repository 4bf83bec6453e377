//! `connect`: N × (connect, one-byte echo, close), at most C at a time.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::common::{self, Error, Errors, Histogram};

/// What `connect` was asked to do.
#[derive(Debug, Clone)]
pub(crate) struct ConnectArgs {
    pub(crate) addr: SocketAddr,
    pub(crate) n: usize,
    pub(crate) concurrency: usize,
    /// The whole run's limit.
    pub(crate) timeout: Duration,
}

/// How long one connection may take (connect, echo) before it counts as an error.
const PER_CONN: Duration = Duration::from_secs(5);
/// The byte each connection sends and expects back.
const PROBE: u8 = b'k';

enum State {
    Connecting,
    Sent,
}

struct Attempt {
    stream: TcpStream,
    started: Instant,
    state: State,
}

/// Runs `connect` and prints its `RESULT` line; `Ok(false)` when there were errors.
pub(crate) fn run(a: &ConnectArgs) -> Result<bool, Error> {
    let c = a.concurrency.clamp(1, a.n.max(1));
    common::check_open_files(c)?;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut inflight: Slab<Attempt> = Slab::with_capacity(c);
    let mut errors = Errors::default();
    let mut latency = Histogram::new();
    let (mut started, mut ok) = (0usize, 0usize);
    let t0 = Instant::now();
    let hard_end = t0 + a.timeout;
    let mut last_scan = t0;
    loop {
        // Keep C attempts in flight.
        while inflight.len() < c && started < a.n {
            started += 1;
            match start(&poll, &mut inflight, a.addr) {
                Ok(()) => {}
                Err(e) => errors.add(format!("connect: {e}")),
            }
        }
        let now = Instant::now();
        if inflight.is_empty() && started >= a.n {
            break;
        }
        if now >= hard_end {
            errors.add(format!(
                "{} connections unfinished after {:?}",
                a.n - ok - errors.count as usize,
                a.timeout
            ));
            break;
        }
        match poll.poll(&mut events, Some(Duration::from_millis(100))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        for ev in events.iter() {
            let key = ev.token().0;
            let Some(att) = inflight.get_mut(key) else {
                continue;
            };
            match advance(att) {
                Ok(false) => {}
                Ok(true) => {
                    latency.record(att.started.elapsed());
                    ok += 1;
                    // Dropping closes: our FIN, the server closes its side.
                    drop(inflight.remove(key));
                }
                Err(e) => {
                    errors.add(format!("connection: {e}"));
                    drop(inflight.remove(key));
                }
            }
        }
        let now = Instant::now();
        if now - last_scan >= Duration::from_millis(100) {
            last_scan = now;
            let late: Vec<usize> = inflight
                .iter()
                .filter(|(_, att)| now - att.started > PER_CONN)
                .map(|(k, _)| k)
                .collect();
            for k in late {
                errors.add(format!("a connection took more than {PER_CONN:?}"));
                drop(inflight.remove(k));
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    errors.report();
    println!(
        "RESULT mode=connect n={} c={c} secs={secs:.2} ok={ok} conns_per_s={:.0} p50_us={:.1} \
         p99_us={:.1} errors={}",
        a.n,
        ok as f64 / secs,
        latency.quantile_us(0.5),
        latency.quantile_us(0.99),
        errors.count,
    );
    Ok(errors.count == 0 && ok == a.n)
}

fn start(poll: &Poll, inflight: &mut Slab<Attempt>, addr: SocketAddr) -> io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    let entry = inflight.vacant_entry();
    poll.registry().register(
        &mut stream,
        Token(entry.key()),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    entry.insert(Attempt {
        stream,
        started: Instant::now(),
        state: State::Connecting,
    });
    Ok(())
}

/// Moves one attempt on as far as it goes; true when its echo came back.
fn advance(att: &mut Attempt) -> io::Result<bool> {
    if let State::Connecting = att.state {
        if let Some(e) = att.stream.take_error()? {
            return Err(e);
        }
        match att.stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(false),
            Err(e) => return Err(e),
        }
        match att.stream.write(&[PROBE]) {
            Ok(1) => att.state = State::Sent,
            Ok(_) => return Err(io::ErrorKind::WriteZero.into()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    let mut b = [0u8; 1];
    match att.stream.read(&mut b) {
        Ok(1) if b[0] == PROBE => Ok(true),
        Ok(1) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "echoed byte differs",
        )),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "server closed before echoing",
        )),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}
