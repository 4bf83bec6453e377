//! Hibernation (`ServerConfig::hibernate_after`): an idle connection of a stateless protocol gives
//! up its adapter and handler and keeps only its socket; the next byte wakes it with a new adapter
//! and a new handler under the same connection id, and the peer sees no difference. Real sockets
//! on loopback; every wait is bounded by the scheduler steps of `util::run_until`.

mod util;

use std::cell::RefCell;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use axon::ipc::ConnectionInfo;
use axon::{Component, Core, Inbox, Ipc, Scheduler};
use kamaelia::chassis::{ServerConfig, ServerCore, ServerStats};
use kamaelia::internet::{CsaConfig, TcpServerConfig};
use kamaelia::protocols::Echo;
use util::{
    collector, half_close, read_available, read_available_or_error, run_until, take_all, ReadState,
};

/// How long a connection must be idle before it hibernates, in these tests.
const NAP: Duration = Duration::from_millis(30);

/// An echo server that hibernates connections idle for [`NAP`], with its stats and what its
/// factory made.
struct Rig {
    sched: Scheduler,
    server: Core,
    addr: SocketAddr,
    control: Inbox<Ipc>,
    signal: Inbox<Ipc>,
    request: Inbox<()>,
    stats: Inbox<ServerStats>,
    /// Each factory call: the connection it was for and the handler it made.
    made: Rc<RefCell<Vec<(ConnectionInfo, Core)>>>,
}

fn rig(csa: CsaConfig) -> Rig {
    rig_with(csa, ServerConfig::default().handler_inbox_size)
}

fn rig_with(csa: CsaConfig, handler_inbox_size: usize) -> Rig {
    let sched = Scheduler::new();
    let made: Rc<RefCell<Vec<(ConnectionInfo, Core)>>> = Rc::default();
    let m = made.clone();
    let mut config = ServerConfig::default()
        .tcp(TcpServerConfig::default().csa(csa))
        .hibernate_after(Some(NAP));
    config.handler_inbox_size = handler_inbox_size;
    let server = ServerCore::new(
        "127.0.0.1:0".parse().unwrap(),
        move |info: &ConnectionInfo| {
            let echo = Echo::new();
            m.borrow_mut().push((*info, echo.core().clone()));
            Box::new(echo)
        },
        config,
    )
    .expect("bind");
    let signal = collector("signal");
    server.signal().link_to(&signal).unwrap();
    let stats = collector("stats");
    server.stats().link_to(&stats).unwrap();
    let r = Rig {
        addr: server.local_addr(),
        control: server.control().clone(),
        request: server.sample_stats().clone(),
        server: server.core().clone(),
        sched: sched.clone(),
        signal,
        stats,
        made,
    };
    sched.activate(server);
    r
}

impl Rig {
    fn sample(&self) -> ServerStats {
        self.request.deliver(()).unwrap();
        run_until(&self.sched, "a stats snapshot", || self.stats.data_ready());
        let mut got = take_all(&self.stats);
        assert_eq!(got.len(), 1, "one request, one snapshot");
        got.remove(0)
    }

    /// Steps the server, sampling its stats, until a snapshot satisfies `done`; returns it.
    fn wait_for(&self, what: &str, done: impl Fn(&ServerStats) -> bool) -> ServerStats {
        let mut last = None;
        run_until(&self.sched, what, || {
            let s = self.sample();
            let ok = done(&s);
            last = Some(s);
            ok
        });
        last.expect("sampled at least once")
    }

    /// Steps the server until `n` connections are hibernating; returns that snapshot.
    fn wait_until_hibernating(&self, n: usize) -> ServerStats {
        self.wait_for("connections to hibernate", |s| s.hibernating == n)
    }

    /// Steps the server until `n` connections have closed; returns that snapshot.
    fn wait_until_closed(&self, n: u64) -> ServerStats {
        self.wait_for("connections to close", |s| s.closed == n)
    }

    /// Sends `msg` and waits for the same bytes back.
    fn round_trip(&self, s: &mut TcpStream, msg: &[u8]) {
        util::echo_round_trip(&self.sched, s, msg);
    }

    /// Steps the server until the client reads EOF; returns what came before it.
    fn read_to_eof(&self, s: &mut TcpStream) -> Vec<u8> {
        let mut got = Vec::new();
        run_until(&self.sched, "EOF at the client", || {
            read_available_or_error(s, &mut got).expect("client read") == ReadState::Eof
        });
        got
    }

    fn handlers_made(&self) -> usize {
        self.made.borrow().len()
    }
}

#[test]
fn an_idle_connection_hibernates_and_the_next_bytes_wake_it_under_the_same_id() {
    let r = rig(CsaConfig::default());
    let mut a = util::connect(r.addr);
    r.round_trip(&mut a, b"hello");

    let asleep = r.wait_until_hibernating(1);
    assert_eq!(asleep.accepted, 1);
    assert_eq!(
        asleep.open.len(),
        1,
        "a hibernating connection is still open"
    );
    assert_eq!((asleep.open[0].bytes_in, asleep.open[0].bytes_out), (5, 5));
    assert_eq!((asleep.bytes_in, asleep.bytes_out), (5, 5));
    let (first_info, first_handler) = r.made.borrow()[0].clone();
    run_until(&r.sched, "the first handler to end", || {
        first_handler.is_finished()
    });

    // Bytes in both directions, and more than one message, after waking.
    r.round_trip(&mut a, b"again");
    r.round_trip(&mut a, &util::pattern(300_000, 7));
    assert_eq!(r.handlers_made(), 2, "waking made a new handler");
    let (second_info, _) = r.made.borrow()[1].clone();
    assert_eq!(second_info, first_info, "same connection id and addresses");

    let awake = r.sample();
    assert_eq!(awake.accepted, 1, "waking is not a new connection");
    assert_eq!(awake.closed, 0);
    assert_eq!(awake.open.len(), 1);
    let total = 5 + 5 + 300_000;
    assert_eq!((awake.bytes_in, awake.bytes_out), (total, total));
    assert_eq!(
        (awake.open[0].bytes_in, awake.open[0].bytes_out),
        (total, total),
        "the new adapter counts on from the old one's counts"
    );
}

#[test]
fn a_peer_that_half_closes_while_hibernating_gets_everything_and_an_orderly_close() {
    let r = rig(CsaConfig::default());
    let mut a = util::connect(r.addr);
    r.round_trip(&mut a, b"one");
    r.wait_until_hibernating(1);

    a.write_all(b"last words").unwrap();
    half_close(&a);
    assert_eq!(r.read_to_eof(&mut a), b"last words");

    let s = r.wait_until_closed(1);
    assert_eq!(s.accepted, 1);
    assert!(s.open.is_empty());
    assert_eq!(s.hibernating, 0);
    assert_eq!(
        s.close_reasons.get("peer closed").copied(),
        Some(1),
        "{s:?}"
    );
    assert_eq!((s.bytes_in, s.bytes_out), (13, 13));
}

#[test]
fn the_idle_timeout_still_closes_a_hibernating_connection() {
    let r = rig(CsaConfig::default().idle_timeout(Some(Duration::from_millis(300))));
    let mut a = util::connect(r.addr);
    r.round_trip(&mut a, b"x");
    r.wait_until_hibernating(1);

    assert_eq!(r.read_to_eof(&mut a), b"", "the server closed it");
    let s = r.wait_until_closed(1);
    assert_eq!(s.hibernating, 0);
    assert!(s.open.is_empty());
    assert_eq!(
        s.close_reasons.get("idle timeout").copied(),
        Some(1),
        "{s:?}"
    );
    assert_eq!(r.handlers_made(), 1, "it was closed without waking");
}

#[test]
fn a_graceful_shutdown_closes_hibernating_connections_at_once_and_counts_them_finished() {
    let r = rig(CsaConfig::default());
    let mut asleep = util::connect(r.addr);
    r.round_trip(&mut asleep, b"zzz");
    r.wait_until_hibernating(1);

    r.control.deliver(Ipc::producer_finished()).unwrap();
    assert_eq!(r.read_to_eof(&mut asleep), b"");
    run_until(&r.sched, "the server to end", || r.server.is_finished());
    let signal = take_all(&r.signal);
    let report = match signal.as_slice() {
        [Ipc::ProducerFinished(p)] => p.message.clone().unwrap_or_default(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        report,
        "server stopped: 1 connections finished, 0 closed at the deadline"
    );
}

#[test]
fn a_connection_with_bytes_in_flight_does_not_hibernate() {
    // Small inboxes, a small client receive buffer, and a client that does not read: the echo
    // backs up into the server and stays there, with no byte moving, for many hibernation periods.
    let r = rig_with(CsaConfig::default().inbox_size(2), 2);
    let client = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    client.set_recv_buffer_size(16 * 1024).unwrap();
    client.connect(&r.addr.into()).unwrap();
    let (mut a, mut sent) = (TcpStream::from(client), 0usize);
    let data = util::pattern(32 << 20, 3);
    run_until(&r.sched, "the client's writes to stall", || {
        util::write_available(&mut a, &data, &mut sent);
        let before = sent;
        // Stalled when the server has read what it can and nothing more goes in.
        for _ in 0..50 {
            r.sched.try_tick();
        }
        util::write_available(&mut a, &data, &mut sent) == 0 && sent == before
    });
    let stalled_since = std::time::Instant::now();
    run_until(&r.sched, "several hibernation periods to pass", || {
        stalled_since.elapsed() >= NAP * 5
    });
    assert_eq!(
        r.sample().hibernating,
        0,
        "a stalled connection must stay awake"
    );
    assert_eq!(r.handlers_made(), 1);

    // Now read: every byte comes back, in order.
    let mut got = Vec::new();
    run_until(&r.sched, "the whole echo", || {
        util::write_available(&mut a, &data, &mut sent);
        read_available(&mut a, &mut got);
        got.len() >= data.len()
    });
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the echo differs from what was sent");
}

/// Deterministic pseudo-random numbers (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

#[test]
fn many_connections_falling_asleep_and_waking_at_random_moments_lose_no_byte() {
    const CONNS: usize = 48;
    const ROUNDS: usize = 40;
    let r = rig(CsaConfig::default());
    let mut conns: Vec<TcpStream> = (0..CONNS).map(|_| util::connect(r.addr)).collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut sent: Vec<Vec<u8>> = vec![Vec::new(); CONNS];
    let mut got: Vec<Vec<u8>> = vec![Vec::new(); CONNS];
    for round in 0..ROUNDS {
        // Some connections send, at a moment that falls before, around or after the moment they
        // would hibernate; all must get exactly their bytes back.
        for (i, s) in conns.iter_mut().enumerate() {
            if rng.below(3) == 0 {
                continue;
            }
            let len = 1 + rng.below(16 * 1024) as usize;
            let msg = util::pattern(len, (round * CONNS + i) as u64);
            s.write_all(&msg).unwrap();
            sent[i].extend_from_slice(&msg);
        }
        run_until(&r.sched, "every echo of the round", || {
            for (s, g) in conns.iter_mut().zip(&mut got) {
                read_available(s, g);
            }
            got.iter().zip(&sent).all(|(g, s)| g.len() >= s.len())
        });
        let pause = NAP.mul_f64(rng.below(250) as f64 / 100.0);
        let start = std::time::Instant::now();
        run_until(&r.sched, "a pause between rounds", || {
            start.elapsed() >= pause
        });
    }
    for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(g.len(), s.len(), "connection {i}: byte count");
        assert!(
            g == s,
            "connection {i}: the echo differs from what was sent"
        );
    }
    let s = r.wait_until_hibernating(CONNS);
    assert_eq!((s.accepted, s.closed), (CONNS as u64, 0));
    let total: u64 = sent.iter().map(|v| v.len() as u64).sum();
    assert_eq!((s.bytes_in, s.bytes_out), (total, total));
    println!(
        "{} handlers for {CONNS} connections over {ROUNDS} rounds",
        r.handlers_made()
    );
    assert!(
        r.handlers_made() > CONNS,
        "some connections must have hibernated and woken ({} handlers for {CONNS} connections)",
        r.handlers_made()
    );
}
