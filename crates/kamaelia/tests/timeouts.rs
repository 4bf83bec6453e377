//! `ConnectedSocketAdapter` timeouts and abort: the idle timeout, the read (slow-loris) timeout,
//! the write-stall timeout and `Ipc::Abort`.
//!
//! Each test runs several adapters on one scheduler and one selector: the connection the timeout
//! is meant for, and others that must not be touched by it. Every ending is checked for the exact
//! [`CloseReason`] in `socketShutdown` (on `CreatorFeedback`) and `shutdownCSA` (on `signal`),
//! reported exactly once; every surviving connection is checked to be open and still carrying
//! bytes both ways.
//!
//! The timeouts are short (100-300 ms) and no test asserts how long anything took: pacing uses the
//! clock, assertions only look at outcomes. Every wait is bounded ([`util::LIMIT`]).

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use axon::ipc::{Abort, CloseReason, ConnectionInfo, ShutdownCsa, SocketShutdown};
use axon::{Component, Core, Inbox, Ipc, Scheduler};
use bytes::Bytes;
use kamaelia::internet::{ConnectedSocketAdapter, CsaConfig, SelectorHandle};

use util::{
    collector, drain_bytes, kinds, pattern, read_available, read_available_or_error, run_until,
    settle, take_all, tcp_pair_with, Buffers, ReadState,
};

/// One scheduler with a running selector, for several adapters.
struct Net {
    sched: Scheduler,
    selector: SelectorHandle,
}

/// One adapter with every outbox collected, and its peer.
struct Conn {
    csa: Core,
    info: ConnectionInfo,
    /// The adapter's `inbox`.
    input: Inbox<Bytes>,
    /// The adapter's `control`.
    control: Inbox<Ipc>,
    /// What came out of `outbox`.
    received: Inbox<Bytes>,
    /// What came out of `CreatorFeedback`.
    feedback: Inbox<Ipc>,
    /// What came out of `signal`.
    signal: Inbox<Ipc>,
    peer: TcpStream,
}

impl Net {
    fn new() -> Self {
        let sched = Scheduler::new();
        let selector = SelectorHandle::on(&sched).unwrap();
        Net { sched, selector }
    }

    fn conn(&self, bufs: Buffers, config: CsaConfig) -> Conn {
        let (ours, peer) = tcp_pair_with(bufs);
        let csa = ConnectedSocketAdapter::new(ours, &self.selector, config).unwrap();
        let c = Conn {
            csa: csa.core().clone(),
            info: csa.info(),
            input: csa.inbox().clone(),
            control: csa.control().clone(),
            received: collector("bytes from the peer"),
            feedback: collector("CreatorFeedback"),
            signal: collector("signal"),
            peer,
        };
        csa.outbox().link_to(&c.received).unwrap();
        csa.creator_feedback().link_to(&c.feedback).unwrap();
        csa.signal().link_to(&c.signal).unwrap();
        self.sched.activate(csa);
        c
    }

    /// Steps the scheduler for `d` (bounded by `d`, which is always short here), calling `each`
    /// every cycle: lets timers run out, or shows they do not.
    fn run_for(&self, d: Duration, mut each: impl FnMut()) {
        let until = Instant::now() + d;
        run_until(&self.sched, "a fixed stretch of time", || {
            each();
            Instant::now() >= until
        });
    }
}

impl Conn {
    /// Checks the adapter ended with `reason`, reported exactly once on `CreatorFeedback` and on
    /// `signal`, with this connection's id and addresses.
    fn assert_ended(&self, sched: &Scheduler, reason: CloseReason) {
        assert!(self.csa.is_finished());
        settle(sched); // anything sent twice would show up now
        let feedback = take_all(&self.feedback);
        assert_eq!(kinds(&feedback), ["socketShutdown"], "{feedback:?}");
        let want = SocketShutdown {
            caller: Some(self.csa.id()),
            connection: Some(self.info),
            reason: reason.clone(),
        };
        match &feedback[0] {
            Ipc::SocketShutdown(s) => assert_eq!(s, &want),
            other => panic!("expected socketShutdown, got {other:?}"),
        }
        let signal = take_all(&self.signal);
        assert_eq!(kinds(&signal), ["shutdownCSA"], "{signal:?}");
        let want = ShutdownCsa {
            caller: self.csa.id(),
            csa: self.csa.id(),
            connection: Some(self.info),
            reason: Some(reason),
        };
        match &signal[0] {
            Ipc::ShutdownCsa(s) => assert_eq!(s, &want),
            other => panic!("expected shutdownCSA, got {other:?}"),
        }
    }

    /// Checks the adapter is running and has reported nothing.
    fn assert_open(&self, what: &str) {
        assert!(!self.csa.is_finished(), "{what}: the adapter ended");
        let feedback = take_all(&self.feedback);
        assert!(feedback.is_empty(), "{what}: {feedback:?}");
        let signal = take_all(&self.signal);
        assert!(signal.is_empty(), "{what}: {signal:?}");
    }

    /// Bytes both ways: the peer sends `n` bytes that come out of `outbox`, and `n` bytes given to
    /// `inbox` reach the peer. Fails if the adapter ends meanwhile.
    fn round_trip(&mut self, sched: &Scheduler, n: usize, seed: u64) {
        drain_bytes(&self.received, &mut Vec::new());
        let up = pattern(n, seed);
        self.peer.write_all(&up).unwrap();
        let mut got = Vec::new();
        run_until(sched, "the peer's bytes out of outbox", || {
            drain_bytes(&self.received, &mut got);
            got.len() >= n || self.csa.is_finished()
        });
        assert_eq!(got, up, "upstream bytes");
        let down = pattern(n, seed + 1);
        self.input
            .deliver(Bytes::copy_from_slice(&down))
            .expect("inbox has room");
        let mut back = Vec::new();
        run_until(sched, "the bytes at the peer", || {
            read_available(&mut self.peer, &mut back);
            back.len() >= n || self.csa.is_finished()
        });
        assert_eq!(back, down, "downstream bytes");
        self.assert_open("after a round trip");
    }

    /// Reads what the peer gets until the connection ends; returns the bytes and how it ended.
    fn read_to_end(&mut self, sched: &Scheduler) -> (Vec<u8>, Result<ReadState, std::io::Error>) {
        let mut got = Vec::new();
        let mut end = Ok(ReadState::Open);
        run_until(sched, "the peer to see the end", || {
            end = read_available_or_error(&mut self.peer, &mut got);
            !matches!(end, Ok(ReadState::Open))
        });
        (got, end)
    }
}

/// Splits `data` into `n`-byte messages.
fn chunks(data: &[u8], n: usize) -> Vec<Bytes> {
    let data = Bytes::copy_from_slice(data);
    (0..data.len())
        .step_by(n)
        .map(|i| data.slice(i..(i + n).min(data.len())))
        .collect()
}

/// Sends one byte from `peer` whenever `every` has passed since the last one.
struct Trickle {
    every: Duration,
    last: Option<Instant>,
    sent: usize,
}

impl Trickle {
    fn new(every: Duration) -> Self {
        Trickle {
            every,
            last: None,
            sent: 0,
        }
    }

    /// Sends the next byte if it is time; a failed write (the adapter has closed) is ignored.
    fn tick(&mut self, peer: &mut TcpStream) {
        if self.last.is_none_or(|t| t.elapsed() >= self.every) {
            self.last = Some(Instant::now());
            if peer.write(&[b'a' + (self.sent % 26) as u8]).is_ok() {
                self.sent += 1;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Idle timeout

#[test]
fn the_idle_timeout_ends_a_silent_connection_and_spares_a_busy_one() {
    let net = Net::new();
    let config = CsaConfig::default().idle_timeout(Some(Duration::from_millis(250)));
    let mut silent = net.conn(Buffers::default(), config.clone());
    let mut busy = net.conn(Buffers::default(), config);

    // The busy peer sends a byte far more often than the idle timeout; the silent one sends nothing.
    let mut trickle = Trickle::new(Duration::from_millis(25));
    let mut seen = Vec::new();
    run_until(&net.sched, "the silent connection to end", || {
        trickle.tick(&mut busy.peer);
        drain_bytes(&busy.received, &mut seen);
        silent.csa.is_finished()
    });
    silent.assert_ended(&net.sched, CloseReason::Timeout("idle"));
    // We had nothing queued: the peer sees an orderly close, nothing else.
    let (got, end) = silent.read_to_end(&net.sched);
    assert!(got.is_empty(), "{got:?}");
    assert!(matches!(end, Ok(ReadState::Eof)), "{end:?}");

    // The busy connection lived through it and still works; every byte it sent arrived in order.
    assert!(trickle.sent > 0);
    busy.assert_open("the busy connection");
    run_until(&net.sched, "the busy peer's bytes", || {
        drain_bytes(&busy.received, &mut seen);
        seen.len() >= trickle.sent
    });
    let want: Vec<u8> = (0..trickle.sent).map(|i| b'a' + (i % 26) as u8).collect();
    assert_eq!(seen, want);
    busy.round_trip(&net.sched, 1000, 1);

    // Silence from now on ends it too, with the same reason: the timeout was live all along.
    run_until(&net.sched, "the busy connection to go idle", || {
        busy.csa.is_finished()
    });
    busy.assert_ended(&net.sched, CloseReason::Timeout("idle"));
}

#[test]
fn bytes_we_send_count_as_activity_for_the_idle_timeout() {
    let net = Net::new();
    let config = CsaConfig::default().idle_timeout(Some(Duration::from_millis(250)));
    let mut talker = net.conn(Buffers::default(), config.clone());
    let silent = net.conn(Buffers::default(), config);

    // The peer never sends; we send it a message far more often than the idle timeout.
    let mut last = Instant::now();
    let mut sent = 0usize;
    let mut got = Vec::new();
    run_until(&net.sched, "the silent connection to end", || {
        if last.elapsed() >= Duration::from_millis(25) {
            last = Instant::now();
            if talker.input.deliver(Bytes::from_static(b"x")).is_ok() {
                sent += 1;
            }
        }
        read_available(&mut talker.peer, &mut got);
        silent.csa.is_finished()
    });
    silent.assert_ended(&net.sched, CloseReason::Timeout("idle"));
    assert!(sent > 0);
    talker.assert_open("the connection we kept talking on");
    talker.round_trip(&net.sched, 100, 2);
}

// ---------------------------------------------------------------------------------------------
// Read (slow-loris) timeout

const WINDOW: Duration = Duration::from_millis(150);
const MIN_BYTES: usize = 16;

#[test]
fn the_read_timeout_ends_a_trickling_connection_but_not_a_silent_one() {
    let net = Net::new();
    // Idle timeout off: silence must not be the read timeout's business.
    let config = CsaConfig::default().read_timeout(Some(WINDOW), MIN_BYTES);
    let mut trickler = net.conn(Buffers::default(), config.clone());
    let mut silent = net.conn(Buffers::default(), config.clone());
    let mut steady = net.conn(Buffers::default(), config);

    // The trickler sends a byte about twice per window, so every window has some but far fewer
    // than MIN_BYTES; the steady peer sends MIN_BYTES about three times per window.
    let mut trickle = Trickle::new(WINDOW / 2);
    let mut last_steady = Instant::now();
    let mut steady_sent = Vec::new();
    let mut steady_got = Vec::new();
    let mut steady_tick = |steady: &mut Conn| {
        if last_steady.elapsed() >= WINDOW / 3 {
            last_steady = Instant::now();
            let b = pattern(MIN_BYTES, steady_sent.len() as u64);
            steady.peer.write_all(&b).unwrap();
            steady_sent.extend_from_slice(&b);
        }
        drain_bytes(&steady.received, &mut steady_got);
    };
    let mut trickled = Vec::new();
    run_until(&net.sched, "the trickling connection to end", || {
        trickle.tick(&mut trickler.peer);
        drain_bytes(&trickler.received, &mut trickled);
        steady_tick(&mut steady);
        trickler.csa.is_finished()
    });
    trickler.assert_ended(&net.sched, CloseReason::Timeout("read"));
    assert!(
        !trickled.is_empty() && trickled.len() < 4 * MIN_BYTES,
        "it did trickle: {} bytes",
        trickled.len()
    );

    // The silent and the steady connections stay open for several more windows, then still work.
    net.run_for(WINDOW * 4, || steady_tick(&mut steady));
    silent.assert_open("the silent connection");
    steady.assert_open("the steady connection");
    run_until(&net.sched, "the steady peer's bytes", || {
        drain_bytes(&steady.received, &mut steady_got);
        steady_got.len() >= steady_sent.len()
    });
    assert_eq!(steady_got, steady_sent);
    silent.round_trip(&net.sched, MIN_BYTES * 4, 3);
    steady.round_trip(&net.sched, MIN_BYTES * 4, 4);
}

#[test]
fn the_read_timeout_does_not_count_time_held_back_by_a_full_consumer() {
    let net = Net::new();
    // Tiny reads into a consumer that holds one message: each time it collects, the adapter reads
    // only 8 bytes (fewer than MIN_BYTES) before it is held back again. Were the held-back time
    // counted, every window would look like a trickle.
    let config = CsaConfig::default()
        .read_timeout(Some(WINDOW), MIN_BYTES)
        .read_size(8);
    let mut held = net.conn(Buffers::default(), config.clone());
    held.received.set_size(Some(1));
    // The positive control on the same scheduler: a real trickler is ended.
    let mut trickler = net.conn(Buffers::default(), config);

    let data = pattern(4096, 5);
    held.peer.write_all(&data).unwrap();
    let mut got = Vec::new();
    let mut trickle = Trickle::new(WINDOW / 2);
    let mut last_collect = Instant::now();
    // The consumer collects one message about every window and a half.
    let mut slow_collect = |held: &mut Conn, got: &mut Vec<u8>| {
        if last_collect.elapsed() >= WINDOW * 3 / 2 {
            last_collect = Instant::now();
            if let Some(b) = held.received.recv_now() {
                got.extend_from_slice(&b);
            }
        }
    };
    run_until(&net.sched, "the trickling connection to end", || {
        trickle.tick(&mut trickler.peer);
        slow_collect(&mut held, &mut got);
        trickler.csa.is_finished() || held.csa.is_finished()
    });
    trickler.assert_ended(&net.sched, CloseReason::Timeout("read"));
    // A few more windows of slow collecting.
    net.run_for(WINDOW * 4, || slow_collect(&mut held, &mut got));
    held.assert_open("the connection held back by its consumer");
    assert!(
        !got.is_empty() && got.len() < data.len(),
        "the consumer really was slow: {} of {} bytes collected",
        got.len(),
        data.len()
    );

    // Collecting at full speed lets the rest through, intact, and the connection stays open.
    run_until(&net.sched, "every byte", || {
        drain_bytes(&held.received, &mut got);
        got.len() >= data.len() || held.csa.is_finished()
    });
    assert!(got == data, "bytes lost or reordered under back-pressure");
    held.received.set_size(None);
    held.round_trip(&net.sched, MIN_BYTES * 4, 6);
}

// ---------------------------------------------------------------------------------------------
// Write-stall timeout

#[test]
fn the_write_stall_timeout_ends_a_peer_that_never_reads_but_not_a_slow_reader() {
    let net = Net::new();
    let config = CsaConfig::default().write_stall_timeout(Some(Duration::from_millis(200)));
    // Small buffers on both sides (SO_RCVBUF / SO_SNDBUF via socket2), so the stall comes quickly.
    let mut stalled = net.conn(Buffers::small(), config.clone());
    let mut slow = net.conn(Buffers::small(), config);

    let data = pattern(256 * 1024, 7);
    for m in chunks(&data, 16 * 1024) {
        stalled.input.deliver(m.clone()).unwrap();
        slow.input.deliver(m).unwrap();
    }
    // The slow peer reads at most 8 KiB about every 30 ms: slow, but always progressing.
    let mut got = Vec::new();
    let mut last = Instant::now();
    let mut buf = vec![0u8; 8 * 1024];
    slow.peer.set_nonblocking(true).unwrap();
    let mut slow_read = |slow: &mut Conn, got: &mut Vec<u8>| {
        if last.elapsed() >= Duration::from_millis(30) {
            last = Instant::now();
            match slow.peer.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("slow reader: {e}"),
            }
        }
    };
    run_until(&net.sched, "the stalled connection to end", || {
        slow_read(&mut slow, &mut got);
        stalled.csa.is_finished() || slow.csa.is_finished()
    });
    stalled.assert_ended(&net.sched, CloseReason::Timeout("write stall"));
    // What the stalled peer can still read is a prefix of what was queued, and not all of it.
    let (prefix, end) = stalled.read_to_end(&net.sched);
    assert!(prefix.len() < data.len() && prefix[..] == data[..prefix.len()]);
    assert!(
        matches!(&end, Ok(ReadState::Eof))
            || matches!(&end, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "{end:?}"
    );

    // The slow reader gets everything, intact, and stays open.
    run_until(&net.sched, "every byte at the slow reader", || {
        slow_read(&mut slow, &mut got);
        got.len() >= data.len() || slow.csa.is_finished()
    });
    slow.assert_open("the slow reader");
    assert!(got == data, "bytes lost or reordered at the slow reader");
    slow.round_trip(&net.sched, 1000, 8);
}

#[test]
fn the_write_stall_timeout_spares_a_peer_that_does_not_read_while_nothing_is_queued() {
    let net = Net::new();
    let config = CsaConfig::default().write_stall_timeout(Some(Duration::from_millis(100)));
    let mut quiet = net.conn(Buffers::small(), config.clone());
    let stalled = net.conn(Buffers::small(), config);
    // Only the positive control has data queued.
    for m in chunks(&pattern(256 * 1024, 9), 16 * 1024) {
        stalled.input.deliver(m).unwrap();
    }
    run_until(&net.sched, "the stalled connection to end", || {
        stalled.csa.is_finished()
    });
    stalled.assert_ended(&net.sched, CloseReason::Timeout("write stall"));
    net.run_for(Duration::from_millis(400), || {});
    quiet.assert_open("the connection with nothing queued");
    quiet.round_trip(&net.sched, 1000, 10);
}

// ---------------------------------------------------------------------------------------------
// Abort

/// Asserts the peer's reads end in a reset, and returns what it read before.
fn expect_reset(c: &mut Conn, sched: &Scheduler) -> Vec<u8> {
    let (got, end) = c.read_to_end(sched);
    match end {
        Err(e) if e.kind() == ErrorKind::ConnectionReset => got,
        other => panic!(
            "the peer should see ECONNRESET, saw {other:?} after {} bytes",
            got.len()
        ),
    }
}

#[test]
fn abort_resets_the_connection_and_drops_what_is_queued() {
    let net = Net::new();
    let mut victim = net.conn(Buffers::small(), CsaConfig::default());
    let mut other = net.conn(Buffers::small(), CsaConfig::default());
    let data = pattern(64 * 16 * 1024, 11);
    for m in chunks(&data, 16 * 1024) {
        victim.input.deliver(m).unwrap();
    }
    settle(&net.sched);
    assert!(
        !victim.input.is_empty(),
        "the socket is full, data is queued"
    );
    victim
        .control
        .deliver(Ipc::Abort(Abort { caller: None }))
        .unwrap();
    run_until(&net.sched, "the aborted connection to end", || {
        victim.csa.is_finished()
    });
    victim.assert_ended(&net.sched, CloseReason::Aborted);

    let got = expect_reset(&mut victim, &net.sched);
    assert!(got.len() < data.len(), "the queue was dropped");
    assert!(got[..] == data[..got.len()], "what arrived is a prefix");

    other.assert_open("the other connection");
    other.round_trip(&net.sched, 1000, 12);
}

#[test]
fn abort_of_an_idle_connection_is_a_reset_not_an_orderly_close() {
    let net = Net::new();
    let mut victim = net.conn(Buffers::default(), CsaConfig::default());
    let mut other = net.conn(Buffers::default(), CsaConfig::default());
    // Something crossed both ways first, so the connection is established and in use.
    victim.round_trip(&net.sched, 100, 13);
    victim
        .control
        .deliver(Ipc::Abort(Abort { caller: None }))
        .unwrap();
    run_until(&net.sched, "the aborted connection to end", || {
        victim.csa.is_finished()
    });
    victim.assert_ended(&net.sched, CloseReason::Aborted);
    // Nothing queued: with an orderly close the peer would read EOF (a FIN); it must see a reset.
    let mut buf = [0u8; 16];
    victim.peer.set_nonblocking(false).unwrap();
    let r = victim.peer.read(&mut buf);
    assert!(
        matches!(&r, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "the peer should see ECONNRESET, got {r:?}"
    );
    other.assert_open("the other connection");
    other.round_trip(&net.sched, 1000, 14);
}

// ---------------------------------------------------------------------------------------------
// Degenerate settings

/// Zero-length timeouts are allowed by the API (`Some(Duration::ZERO)`). A read window of zero
/// made the adapter's next deadline "now" after every pass, so its timer fired inside the same poll,
/// again and again, and the scheduler never got the poll back (a regression shows as this test
/// hanging). Now the adapter looks again a millisecond later at the soonest; the connection works.
#[test]
fn a_zero_read_window_neither_hangs_the_scheduler_nor_ends_a_working_connection() {
    let net = Net::new();
    let config = CsaConfig::default().read_timeout(Some(Duration::ZERO), 1);
    let mut c = net.conn(Buffers::default(), config);
    c.round_trip(&net.sched, 1000, 21);
    net.run_for(Duration::from_millis(50), || {});
    c.assert_open("the connection with a zero read window");
    c.round_trip(&net.sched, 1000, 22);
}
