//! Faults against the real `kamaelia` binary: a slow-loris crowd, SIGTERM in the middle of a large
//! transfer, and random sequences of peer misbehaviour (property-based).
//!
//! Every process is killed by its id when its guard drops; every wait and loop is bounded; traffic
//! stays on 127.0.0.1. Nothing asserts how long anything took: the deadlines are hang guards.

mod util;

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use socket2::{Domain, SockRef, Socket, Type};

use util::{join_bounded, python, random_bytes, Proc, Server, HANG_GUARD, PATTERN_PY};

/// How long one blocking socket operation of a Rust-side client may take.
const IO_GUARD: Duration = Duration::from_secs(10);

/// A blocking client with [`IO_GUARD`] as read and write timeout.
fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_GUARD).expect("connect");
    s.set_read_timeout(Some(IO_GUARD)).unwrap();
    s.set_write_timeout(Some(IO_GUARD)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// One echo round trip of `payload` on a blocking stream.
fn round_trip(s: &mut TcpStream, payload: &[u8]) -> std::io::Result<()> {
    s.write_all(payload)?;
    let mut back = vec![0u8; payload.len()];
    s.read_exact(&mut back)?;
    if back != payload {
        return Err(std::io::Error::other("echo differs from what was sent"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Slow loris

/// Opens N connections from one process, then sends one byte on each every PERIOD seconds and
/// watches for the server to close them (EOF or reset). Prints `CONNECTED n`, then
/// `CLOSED n eof=… reset=… first=… median=… last=…` (seconds from the first trickled byte), or
/// exits non-zero if any is still open after GUARD seconds.
const LORIS_PY: &str = r#"
import resource, selectors, socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
period, guard = float(sys.argv[4]), float(sys.argv[5])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < n + 256:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 256), hard))
sel = selectors.DefaultSelector()
conns = {}
for i in range(n):
    s = socket.create_connection((host, port), timeout=10)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, i)
    conns[i] = s
print("CONNECTED", n)
eof = reset = sent = 0
closed_at = []
start = time.monotonic()
next_send = start
def close(i, s, how):
    global eof, reset
    if how == "eof":
        eof += 1
    else:
        reset += 1
    closed_at.append(time.monotonic() - start)
    sel.unregister(s)
    s.close()
    del conns[i]
while conns and time.monotonic() - start < guard:
    now = time.monotonic()
    if now >= next_send:
        next_send = now + period
        for i, s in list(conns.items()):
            try:
                s.send(b"x")
                sent += 1
            except BlockingIOError:
                pass
            except OSError:
                close(i, s, "reset")
    wait = max(0.0, min(0.05, next_send - time.monotonic()))
    for key, _ in sel.select(timeout=wait):
        i, s = key.data, key.fileobj
        if i not in conns:
            continue
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    close(i, s, "eof")
                    break
        except BlockingIOError:
            pass
        except OSError:
            close(i, s, "reset")
elapsed = time.monotonic() - start
if conns:
    sys.exit(f"{len(conns)} of {n} trickling connections still open after {elapsed:.1f}s "
             f"(eof={eof} reset={reset} bytes sent={sent})")
closed_at.sort()
print(f"CLOSED {n} eof={eof} reset={reset} sent={sent} first={closed_at[0]:.2f} "
      f"median={closed_at[n // 2]:.2f} last={closed_at[-1]:.2f}")
"#;

const LORIS: usize = 1000;

#[test]
fn slow_loris_connections_are_closed_while_a_good_client_is_served() {
    let mut server = Server::start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--read-timeout",
        "1",
        "--read-min-bytes",
        "16",
        "--idle-timeout",
        "30",
    ]);
    let addr = server.addr;

    // The well-behaved client: echo round trips of 256 bytes, back to back with a short pause,
    // until told to stop. Every one must succeed.
    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = stop.clone();
    let good = thread::spawn(move || -> Result<(TcpStream, usize), String> {
        let mut s = connect(addr);
        let mut n = 0usize;
        while !stop_flag.load(Ordering::Relaxed) && n < 100_000 {
            let payload = random_bytes(256, n as u64 + 1);
            round_trip(&mut s, &payload).map_err(|e| format!("round trip {n}: {e}"))?;
            n += 1;
            thread::sleep(Duration::from_millis(20));
        }
        Ok((s, n))
    });

    let mut loris = Proc::spawn_lines(
        "python slow loris",
        python(
            LORIS_PY,
            &[
                "127.0.0.1".into(),
                server.port().to_string(),
                LORIS.to_string(),
                "0.4".into(),
                "15".into(),
            ],
        ),
    );
    loris.close_stdin();
    loris.expect_line("CONNECTED", HANG_GUARD);
    let closed = loris.expect_line("CLOSED", HANG_GUARD);
    let status = loris.finish(Duration::from_secs(10));
    assert!(status.success(), "{}", loris.stderr());
    println!("slow loris: {closed}");
    assert!(closed.starts_with(&format!("CLOSED {LORIS} ")), "{closed}");

    // The good client was served throughout and still is.
    server.assert_healthy();
    stop.store(true, Ordering::Relaxed);
    let (mut s, n) = join_bounded(good, HANG_GUARD)
        .expect("the good client finished")
        .unwrap_or_else(|e| panic!("the good client failed: {e}"));
    assert!(n > 0, "the good client made no round trip");
    println!("good client: {n} round trips, all echoed");
    round_trip(&mut s, &random_bytes(4096, 99)).expect("a round trip after the loris crowd");
    server.assert_healthy();
}

// ---------------------------------------------------------------------------------------------
// SIGTERM during a 50 MB transfer

/// 50 MiB in 64 KiB blocks of the shared pattern.
const BIG_BLOCKS: usize = 800;

/// Sends a quarter of the pattern (reading the echo on a thread), reports STARTED, waits for
/// TERMED, sends the rest, half-closes and checks every byte came back.
const BIG_TRANSFER_PY: &str = r#"
import socket, sys, threading
host, port, blocks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((host, port), timeout=60)
check = Checker()
failure = []
def reader():
    try:
        while True:
            d = s.recv(1 << 20)
            if not d:
                break
            check.feed(d)
        check.done(blocks)
    except BaseException as e:
        failure.append(repr(e))
t = threading.Thread(target=reader, daemon=True)
t.start()
first = blocks // 4
for k in range(first):
    s.sendall(block(k))
print("STARTED")
if sys.stdin.readline().strip() != "TERMED":
    sys.exit("expected TERMED")
for k in range(first, blocks):
    s.sendall(block(k))
s.shutdown(socket.SHUT_WR)
t.join(120)
if t.is_alive():
    sys.exit(f"no EOF from the server after {check.total} bytes")
if failure:
    sys.exit(f"reader failed: {failure[0]}")
print("OK", check.total)
"#;

#[test]
fn sigterm_during_a_50_mb_transfer_lets_it_finish_within_the_drain_deadline() {
    let mut server = Server::start(&["serve", "--listen", "127.0.0.1:0", "--drain-timeout", "10"]);
    let script = format!("{PATTERN_PY}\n{BIG_TRANSFER_PY}");
    let mut client = Proc::spawn_lines(
        "python 50 MB transfer",
        python(
            &script,
            &[
                "127.0.0.1".into(),
                server.port().to_string(),
                BIG_BLOCKS.to_string(),
            ],
        ),
    );
    client.expect_line("STARTED", HANG_GUARD);
    let termed = Instant::now();
    server.proc.signal("TERM");
    client.send_line("TERMED");
    let ok = client.expect_line("OK", HANG_GUARD);
    println!(
        "50 MiB transfer finished {:?} after SIGTERM",
        termed.elapsed()
    );
    assert_eq!(ok, format!("OK {}", BIG_BLOCKS * 65536));
    let status = client.finish(Duration::from_secs(10));
    assert!(status.success(), "{}", client.stderr());

    let status = server.proc.finish(HANG_GUARD);
    let stderr = server.proc.stderr();
    assert!(status.success(), "server exit {status}; stderr:\n{stderr}");
    assert!(
        stderr.contains("1 connections finished, 0 closed at the deadline"),
        "the transfer should have been drained, not cut; stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Random peer behaviour (property-based)

/// What a misbehaving peer does next.
#[derive(Debug, Clone)]
enum Action {
    /// Send `len` pseudo-random bytes (from `seed`); what the socket does not take now is sent
    /// as soon as it can be.
    Send { len: usize, seed: u64 },
    /// Close our sending side (FIN) once everything given to `Send` has gone out.
    HalfClose,
    /// Close with `SO_LINGER` 0: the server gets a reset. Ends the case.
    Reset,
    /// Stop reading the echo (the server's writes then stall, and so, in turn, do ours).
    PauseReading,
    /// Read the echo again.
    ResumeReading,
}

fn action() -> impl Strategy<Value = Action> {
    // Mostly small sends, sometimes large ones: the server buffers about 10 MiB of echo (socket
    // buffers plus its bounded queues) before back-pressure reaches a peer that stopped reading.
    let len = prop_oneof![
        3 => 1usize..=4096,
        2 => 4096usize..=64 * 1024,
        2 => 512 * 1024usize..=2 * 1024 * 1024,
    ];
    prop_oneof![
        6 => (len, any::<u64>()).prop_map(|(len, seed)| Action::Send { len, seed }),
        1 => Just(Action::HalfClose),
        1 => Just(Action::Reset),
        3 => Just(Action::PauseReading),
        2 => Just(Action::ResumeReading),
    ]
}

/// The most one case sends (later sends are skipped), so a case stays well within its guards.
const CASE_BYTES: usize = 16 * 1024 * 1024;

/// One connection to the echo server, driven without blocking.
struct Peer {
    s: TcpStream,
    /// Bytes the kernel took from us, in order.
    sent: Vec<u8>,
    /// Bytes given to `Send` that the kernel has not taken yet.
    pending: Vec<u8>,
    /// Bytes echoed back.
    echoed: Vec<u8>,
    reading: bool,
    half_close_wanted: bool,
    write_closed: bool,
    eof: bool,
    /// A write found our send buffer full at least once.
    blocked: bool,
}

impl Peer {
    fn connect(addr: SocketAddr) -> Peer {
        // Small buffers, so pausing our reads soon stalls the server and then our own writes.
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(16 * 1024).unwrap();
        sock.set_send_buffer_size(16 * 1024).unwrap();
        sock.connect_timeout(&addr.into(), IO_GUARD)
            .expect("connect");
        let s: TcpStream = sock.into();
        s.set_nonblocking(true).unwrap();
        Peer {
            s,
            sent: Vec::new(),
            pending: Vec::new(),
            echoed: Vec::new(),
            reading: true,
            half_close_wanted: false,
            write_closed: false,
            eof: false,
            blocked: false,
        }
    }

    /// Reads what is there (if reading) and writes what the socket takes, without blocking.
    fn pump(&mut self) -> Result<(), TestCaseError> {
        if self.reading && !self.eof {
            let mut buf = [0u8; 64 * 1024];
            loop {
                match self.s.read(&mut buf) {
                    Ok(0) => {
                        self.eof = true;
                        break;
                    }
                    Ok(n) => self.echoed.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(TestCaseError::fail(format!("read: {e}"))),
                }
            }
        }
        while !self.pending.is_empty() && !self.write_closed {
            match self.s.write(&self.pending) {
                Ok(0) => break,
                Ok(n) => {
                    self.sent.extend_from_slice(&self.pending[..n]);
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.blocked = true;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(TestCaseError::fail(format!("write: {e}"))),
            }
        }
        if self.half_close_wanted && self.pending.is_empty() && !self.write_closed {
            self.s
                .shutdown(Shutdown::Write)
                .map_err(|e| TestCaseError::fail(format!("shutdown: {e}")))?;
            self.write_closed = true;
        }
        prop_assert!(
            self.sent.starts_with(&self.echoed),
            "the echo is not a prefix of what was sent ({} echoed, {} sent)",
            self.echoed.len(),
            self.sent.len()
        );
        prop_assert!(!self.eof || self.write_closed, "EOF before we half-closed");
        Ok(())
    }
}

/// What the cases exercised, for the summary.
#[derive(Debug, Default, Clone, Copy)]
struct Exercised {
    cases: usize,
    resets: usize,
    blocked: usize,
    bytes_echoed: usize,
}

/// Runs one sequence of actions on a fresh connection and checks the echo.
fn run_case(
    addr: SocketAddr,
    actions: &[Action],
    seen: &mut Exercised,
) -> Result<(), TestCaseError> {
    seen.cases += 1;
    let mut p = Peer::connect(addr);
    for a in actions {
        match a {
            Action::Send { len, seed } => {
                if !p.half_close_wanted && p.sent.len() + p.pending.len() + len <= CASE_BYTES {
                    p.pending.extend_from_slice(&random_bytes(*len, *seed));
                }
            }
            Action::HalfClose => p.half_close_wanted = true,
            Action::PauseReading => p.reading = false,
            Action::ResumeReading => p.reading = true,
            Action::Reset => {
                p.pump()?;
                SockRef::from(&p.s)
                    .set_linger(Some(Duration::ZERO))
                    .map_err(|e| TestCaseError::fail(format!("SO_LINGER: {e}")))?;
                // The echo so far was checked to be a prefix of what was sent by `pump`.
                seen.resets += 1;
                seen.blocked += usize::from(p.blocked);
                seen.bytes_echoed += p.echoed.len();
                return Ok(());
            }
        }
        p.pump()?;
        thread::sleep(Duration::from_millis(1));
        p.pump()?;
    }
    // No reset: read again, finish sending, half-close, and everything must come back.
    p.reading = true;
    p.half_close_wanted = true;
    let start = Instant::now();
    let mut rounds = 0u32;
    while !p.eof {
        p.pump()?;
        rounds += 1;
        prop_assert!(
            start.elapsed() < IO_GUARD && rounds < 1_000_000,
            "no EOF from the server: {} echoed of {} sent, {} pending",
            p.echoed.len(),
            p.sent.len(),
            p.pending.len()
        );
        if !p.eof {
            thread::sleep(Duration::from_micros(200));
        }
    }
    prop_assert!(p.pending.is_empty());
    prop_assert_eq!(p.echoed.len(), p.sent.len());
    prop_assert!(p.echoed == p.sent, "the echo differs from what was sent");
    seen.blocked += usize::from(p.blocked);
    seen.bytes_echoed += p.echoed.len();
    Ok(())
}

#[test]
fn random_peer_faults_never_corrupt_an_echo_or_hurt_the_server() {
    let server = RefCell::new(Server::start(&["serve", "--listen", "127.0.0.1:0"]));
    let addr = server.borrow().addr;
    let control = RefCell::new(connect(addr));
    round_trip(&mut control.borrow_mut(), b"hello").expect("the control connection echoes");
    let seen = RefCell::new(Exercised::default());

    let mut runner = TestRunner::new(Config {
        cases: 32,
        max_shrink_iters: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(action(), 1..=20), |actions| {
        let n = seen.borrow().cases as u64 + 1;
        run_case(addr, &actions, &mut seen.borrow_mut())?;
        let mut srv = server.borrow_mut();
        prop_assert!(
            srv.proc.is_running(),
            "the server exited; stderr:\n{}",
            srv.proc.stderr()
        );
        let stderr = srv.proc.stderr();
        prop_assert!(!stderr.contains("panicked"), "{}", stderr);
        drop(srv);
        round_trip(
            &mut control.borrow_mut(),
            &random_bytes(1024 + n as usize, n),
        )
        .map_err(|e| TestCaseError::fail(format!("control connection: {e}")))?;
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // Run with --nocapture to see what the random cases covered.
    println!("property cases: {:?}", seen.borrow());
    server.borrow_mut().assert_healthy();
}
