//! `connect`: N × (connect, one-byte echo, close), at most C at a time.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::common::{self, CpuUsed, CpuWindow, Error, Errors, Histogram};

/// What `connect` was asked to do.
#[derive(Debug, Clone)]
pub(crate) struct ConnectArgs {
    pub(crate) addr: SocketAddr,
    pub(crate) n: usize,
    pub(crate) concurrency: usize,
    /// The whole run's limit.
    pub(crate) timeout: Duration,
    /// The server's process: its CPU time over the run is reported per connection.
    pub(crate) server_pid: Option<u32>,
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

/// What one `connect` run measured.
struct Outcome {
    /// Connections at once.
    c: usize,
    ok: usize,
    secs: f64,
    latency: Histogram,
    errors: Errors,
    /// The server's CPU use over the run, when its PID was given.
    cpu: Option<io::Result<CpuUsed>>,
}

/// Runs `connect` and prints its `RESULT` line; `Ok(false)` when there were errors.
pub(crate) fn run(a: &ConnectArgs) -> Result<bool, Error> {
    let o = measure(a)?;
    let cpu = common::cpu_fields(o.cpu.as_ref(), "conn", o.ok as f64, 2, o.secs);
    o.errors.report();
    println!(
        "RESULT mode=connect n={} c={} secs={:.2} ok={} conns_per_s={:.0} p50_us={:.1} \
         p99_us={:.1} errors={}{cpu}",
        a.n,
        o.c,
        o.secs,
        o.ok,
        o.ok as f64 / o.secs,
        o.latency.quantile_us(0.5),
        o.latency.quantile_us(0.99),
        o.errors.count,
    );
    Ok(o.errors.count == 0 && o.ok == a.n)
}

/// Makes the connections and measures them.
fn measure(a: &ConnectArgs) -> Result<Outcome, Error> {
    let c = a.concurrency.clamp(1, a.n.max(1));
    common::check_open_files(c)?;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut inflight: Slab<Attempt> = Slab::with_capacity(c);
    let mut errors = Errors::default();
    let mut latency = Histogram::new();
    let (mut started, mut ok) = (0usize, 0usize);
    // Over the whole run: a connection's cost is its setup and teardown, with no warm-up to skip.
    let cpu = a.server_pid.map(CpuWindow::start);
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
    Ok(Outcome {
        c,
        ok,
        secs: t0.elapsed().as_secs_f64(),
        latency,
        errors,
        cpu: cpu.map(|w| w.and_then(|w| w.used())),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A blocking echo server on loopback that serves `n` connections, one thread each, and
    /// counts the bytes it echoed.
    fn echo_server(n: usize) -> (SocketAddr, std::thread::JoinHandle<usize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut echoed = 0;
            for _ in 0..n {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 16];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => {
                            echoed += k;
                            if s.write_all(&buf[..k]).is_err() {
                                break;
                            }
                        }
                    }
                }
            }
            echoed
        });
        (addr, server)
    }

    #[test]
    fn every_connection_echoes_one_byte_and_the_servers_cpu_is_read() {
        let (addr, server) = echo_server(40);
        let args = ConnectArgs {
            addr,
            n: 40,
            concurrency: 4,
            timeout: Duration::from_secs(30),
            // This process stands in for the server: its CPU time is readable.
            server_pid: Some(std::process::id()),
        };
        let o = measure(&args).unwrap();
        assert_eq!((o.ok, o.errors.count), (40, 0), "{:?}", o.errors.first);
        assert_eq!(server.join().unwrap(), 40, "one byte per connection");
        assert!(matches!(o.cpu, Some(Ok(_))), "{:?}", o.cpu);
        // And with no PID, no CPU figure.
        let (addr, server) = echo_server(3);
        let o = measure(&ConnectArgs {
            addr,
            n: 3,
            server_pid: None,
            ..args
        })
        .unwrap();
        assert_eq!(o.ok, 3);
        assert!(o.cpu.is_none());
        assert_eq!(server.join().unwrap(), 3);
    }
}
