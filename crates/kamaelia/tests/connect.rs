//! `ConnectedSocketAdapter::connect`, an adapter that makes its own connection, and the relay
//! built on it (`protocols::relay::factory`), against real loopback peers.
//!
//! | behaviour | here |
//! |---|---|
//! | bytes and `producerFinished` sent while connecting go out after the connect, then the FIN | [`bytes_and_producer_finished_sent_while_connecting_go_out_after_the_connect`] |
//! | a `producerFinished` alone while connecting is not lost (the FIN waits for the connect) | [`producer_finished_alone_while_connecting_half_closes_once_connected`] |
//! | a refused connect ends the adapter with the OS error, once on each outbox | [`a_refused_connect_ends_it_with_the_os_error`] |
//! | no answer: `Timeout("connect")` | [`a_connect_that_gets_no_answer_times_out`] |
//! | `shutdownMicroprocess` while connecting abandons the attempt | [`shutdown_microprocess_while_connecting_abandons_it`] |
//! | relay: bytes both ways, each half-close passed on, nothing left behind | [`a_relayed_connection_carries_both_ways_and_passes_each_half_close_on`], [`a_relay_to_a_name_does_the_same_through_a_tcp_client`] |
//! | relay: a name with one address, once looked up, is connected to by a bare adapter | [`a_relay_to_a_name_with_one_address_connects_directly_once_it_is_known`] |
//! | relay: the target's answer and FIN reach a client that still sends, and the rest reaches the target | [`the_target_finishing_first_reaches_the_client_while_it_still_sends`] |
//! | relay: a target that refuses closes the accepted connection | [`a_relay_whose_target_refuses_closes_the_accepted_connection`] |
//! | relay: a client's reset closes the target's side | [`a_client_reset_closes_the_target_side`] |
//!
//! The "while connecting" cases hold the connect open without traffic leaving the machine: the
//! target is a loopback listener whose accept queue is full (backlog 0 and one connection already
//! waiting), so the kernel drops the SYN. Once the test accepts the waiting connection, the
//! retransmitted SYN (about a second later) completes the connect.

mod util;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use axon::ipc::{CloseReason, SocketShutdown};
use axon::{Component, Core, Inbox, Ipc, Scheduler};
use bytes::Bytes;
use kamaelia::chassis::{ServerConfig, ServerCore};
use kamaelia::internet::{
    ConnectedSocketAdapter, CsaConfig, NameResolver, SelectorHandle, TcpClientConfig,
};
use kamaelia::protocols::relay;

use util::{
    accept_stepping, closed_port, collector, connect, drain_bytes, full_listener, half_close,
    kinds, pattern, read_available, receive_at_least, reset, run_until, settle, take_all,
    write_available, ReadState,
};

/// An adapter connecting to a target, on a scheduler, with its outboxes collected.
struct Rig {
    sched: Scheduler,
    csa: Core,
    input: Inbox<Bytes>,
    control: Inbox<Ipc>,
    received: Inbox<Bytes>,
    feedback: Inbox<Ipc>,
    signal: Inbox<Ipc>,
}

fn rig(addr: SocketAddr, config: CsaConfig) -> Rig {
    let sched = Scheduler::new();
    let selector = SelectorHandle::on(&sched).unwrap();
    let csa = ConnectedSocketAdapter::connect(addr, &selector, config).expect("connect starts");
    assert_eq!(csa.info().peer, addr);
    let r = Rig {
        csa: csa.core().clone(),
        input: csa.inbox().clone(),
        control: csa.control().clone(),
        received: collector("bytes from the target"),
        feedback: collector("CreatorFeedback"),
        signal: collector("signal"),
        sched: sched.clone(),
    };
    csa.outbox().link_to(&r.received).unwrap();
    csa.creator_feedback().link_to(&r.feedback).unwrap();
    csa.signal().link_to(&r.signal).unwrap();
    sched.activate(csa);
    r
}

impl Rig {
    /// Runs until the adapter ends; checks it reported `reason` exactly once on `CreatorFeedback`
    /// and, after `signal_before`, once on `signal`.
    fn ended(&self, reason: CloseReason, signal_before: &[&str]) {
        run_until(&self.sched, "the adapter to end", || self.csa.is_finished());
        settle(&self.sched);
        let feedback = take_all(&self.feedback);
        assert_eq!(kinds(&feedback), ["socketShutdown"], "{feedback:?}");
        match &feedback[0] {
            Ipc::SocketShutdown(SocketShutdown { reason: r, .. }) => assert_eq!(r, &reason),
            other => panic!("{other:?}"),
        }
        let signal = take_all(&self.signal);
        let mut want = signal_before.to_vec();
        want.push("shutdownCSA");
        assert_eq!(kinds(&signal), want, "{signal:?}");
        match signal.last() {
            Some(Ipc::ShutdownCsa(s)) => assert_eq!(s.reason.as_ref(), Some(&reason)),
            other => panic!("{other:?}"),
        }
    }

    /// Steps the scheduler a while and checks the adapter is still waiting for its connect.
    fn still_connecting(&self) {
        settle(&self.sched);
        assert!(!self.csa.is_finished());
        assert!(take_all(&self.feedback).is_empty());
    }
}

/// Makes room in a [`full_listener`]'s queue, then steps `sched` until the connection that was
/// kept waiting is accepted.
fn let_in(sched: &Scheduler, listener: &TcpListener, filler: TcpStream) -> TcpStream {
    let (first, _) = listener.accept().expect("the waiting connection");
    drop((first, filler));
    accept_stepping(sched, listener)
}

/// Steps `sched` until `s` has reached EOF, returning everything read before it.
fn read_to_eof(sched: &Scheduler, s: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    run_until(sched, what, || {
        read_available(s, &mut got) == ReadState::Eof
    });
    got
}

#[test]
fn bytes_and_producer_finished_sent_while_connecting_go_out_after_the_connect() {
    let (listener, filler, addr) = full_listener();
    let r = rig(addr, CsaConfig::default());
    let first = pattern(10_000, 31);
    r.input.deliver(Bytes::from(first.clone())).unwrap();
    r.input.deliver(Bytes::from_static(b"+more")).unwrap();
    r.control.deliver(Ipc::producer_finished()).unwrap();
    r.still_connecting();

    let mut target = let_in(&r.sched, &listener, filler);
    let got = read_to_eof(&r.sched, &mut target, "the bytes and the FIN at the target");
    let mut want = first;
    want.extend_from_slice(b"+more");
    assert!(
        got == want,
        "the target got {} bytes, not the {} sent",
        got.len(),
        want.len()
    );

    // Half-closed, still reading: the target's answer comes out, then its close ends the adapter.
    target.write_all(b"answer").unwrap();
    drop(target);
    r.ended(CloseReason::ProducerFinished, &["producerFinished"]);
    let mut received = Vec::new();
    drain_bytes(&r.received, &mut received);
    assert_eq!(received, b"answer");
}

#[test]
fn producer_finished_alone_while_connecting_half_closes_once_connected() {
    let (listener, filler, addr) = full_listener();
    let r = rig(addr, CsaConfig::default());
    r.control.deliver(Ipc::producer_finished()).unwrap();
    r.still_connecting();

    let mut target = let_in(&r.sched, &listener, filler);
    let got = read_to_eof(&r.sched, &mut target, "the FIN at the target");
    assert!(got.is_empty(), "{got:?}");
    target.write_all(b"late").unwrap();
    let mut received = Vec::new();
    receive_at_least(
        &r.sched,
        &r.received,
        &mut received,
        4,
        "the target's bytes",
    );
    assert_eq!(received, b"late");
    drop(target);
    r.ended(CloseReason::ProducerFinished, &["producerFinished"]);
}

#[test]
fn a_refused_connect_ends_it_with_the_os_error() {
    let r = rig(closed_port(), CsaConfig::default());
    r.input.deliver(Bytes::from_static(b"never sent")).unwrap();
    let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    r.ended(CloseReason::io(refused), &[]);
    assert!(take_all(&r.received).is_empty());
}

#[test]
fn a_connect_that_gets_no_answer_times_out() {
    let (_listener, _filler, addr) = full_listener();
    let config = CsaConfig::default().connect_timeout(Duration::from_millis(200));
    let r = rig(addr, config);
    r.ended(CloseReason::Timeout("connect"), &[]);
}

#[test]
fn shutdown_microprocess_while_connecting_abandons_it() {
    let (_listener, _filler, addr) = full_listener();
    let r = rig(addr, CsaConfig::default());
    r.input.deliver(Bytes::from_static(b"never sent")).unwrap();
    r.still_connecting();
    r.control.deliver(Ipc::shutdown_microprocess()).unwrap();
    r.ended(CloseReason::Shutdown, &[]);
}

/// A relay (ServerCore with the relay factory) to `host:port` on a scheduler, and the number of
/// components it runs with no connection.
fn relay_to(host: &str, port: u16) -> (Scheduler, SocketAddr, usize) {
    relay_with(host, port, TcpClientConfig::default())
}

/// [`relay_to`] with the relay's client settings.
fn relay_with(host: &str, port: u16, config: TcpClientConfig) -> (Scheduler, SocketAddr, usize) {
    let sched = Scheduler::new();
    let server = ServerCore::new(
        "127.0.0.1:0".parse().unwrap(),
        relay::factory(host, port, config),
        ServerConfig::default(),
    )
    .expect("bind");
    let addr = server.local_addr();
    sched.activate(server);
    settle(&sched);
    let idle = sched.len();
    (sched, addr, idle)
}

/// Sends `up` from the client and `down` from the target at once, both in pieces as the sockets
/// take them; then the client half-closes, the target reads to EOF and answers `after`, and
/// closes. Checks every byte both ways and that the relay's components for the connection end.
fn relay_both_ways(host: &str, components_per_connection: usize) {
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let (sched, addr, idle) = relay_to(host, target.local_addr().unwrap().port());
    let mut client = connect(addr);
    let mut server = accept_stepping(&sched, &target);

    let (up, down) = (pattern(300_000, 41), pattern(200_000, 43));
    let (mut up_sent, mut down_sent) = (0, 0);
    let (mut at_server, mut at_client) = (Vec::new(), Vec::new());
    run_until(&sched, "both directions to cross", || {
        write_available(&mut client, &up, &mut up_sent);
        write_available(&mut server, &down, &mut down_sent);
        read_available(&mut server, &mut at_server);
        read_available(&mut client, &mut at_client);
        at_server.len() >= up.len() && at_client.len() >= down.len()
    });
    assert_eq!(sched.len(), idle + components_per_connection);
    half_close(&client);
    let rest = read_to_eof(&sched, &mut server, "the client's FIN at the target");
    at_server.extend_from_slice(&rest);
    assert!(at_server == up, "the target got {} bytes", at_server.len());

    server.write_all(b"after").unwrap();
    drop(server);
    let rest = read_to_eof(
        &sched,
        &mut client,
        "the target's answer and FIN at the client",
    );
    at_client.extend_from_slice(&rest);
    let mut want = down;
    want.extend_from_slice(b"after");
    assert!(
        at_client == want,
        "the client got {} bytes",
        at_client.len()
    );
    drop(client);
    run_until(&sched, "the connection's components to end", || {
        sched.len() == idle
    });
}

#[test]
fn a_relayed_connection_carries_both_ways_and_passes_each_half_close_on() {
    // An address: the target side is one adapter, not a client around one.
    relay_both_ways("127.0.0.1", 2);
}

#[test]
fn a_relay_to_a_name_does_the_same_through_a_tcp_client() {
    relay_both_ways("localhost", 3);
}

#[test]
fn a_relay_to_a_name_with_one_address_connects_directly_once_it_is_known() {
    // The first connection looks the name up through a client: three components. While the
    // answer is fresh, a name with one address is as good as an address: two. A name with two
    // addresses keeps a client per connection, to try them in turn.
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let to = target.local_addr().unwrap();
    for (addrs, later) in [(vec![to], 2), (vec![to, closed_port()], 3)] {
        let resolver = NameResolver::new(move |host, _| match host {
            "backend.test" => Ok(addrs.clone()),
            _ => Err(std::io::Error::other("unexpected name")),
        });
        let config = TcpClientConfig::default()
            .resolver(resolver)
            .resolve_ttl(Duration::from_secs(3600));
        let (sched, addr, idle) = relay_with("backend.test", to.port(), config);
        for (i, components) in [3, later, later].into_iter().enumerate() {
            let mut client = connect(addr);
            let mut server = accept_stepping(&sched, &target);
            client.write_all(b"up").unwrap();
            server.write_all(b"down").unwrap();
            let (mut up, mut down) = (Vec::new(), Vec::new());
            run_until(&sched, "bytes both ways", || {
                read_available(&mut server, &mut up);
                read_available(&mut client, &mut down);
                up.len() >= 2 && down.len() >= 4
            });
            assert_eq!((&up[..], &down[..]), (&b"up"[..], &b"down"[..]));
            assert_eq!(sched.len(), idle + components, "connection {i}");
            drop((client, server));
            run_until(&sched, "the connection's components to end", || {
                sched.len() == idle
            });
        }
    }
}

/// The target answers and half-closes first; the client reads that answer and EOF while it still
/// sends, and what it sends after reaches the target; then the client half-closes too. The target
/// side's `signal` must reach the accepted side's `control` (its `producerFinished` becomes the
/// client's FIN), and the accepted side's `signal` the target side's.
fn target_finishes_first(host: &str) {
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let (sched, addr, idle) = relay_to(host, target.local_addr().unwrap().port());
    let mut client = connect(addr);
    let mut server = accept_stepping(&sched, &target);
    client.write_all(b"request").unwrap();
    let mut got = Vec::new();
    run_until(&sched, "the request at the target", || {
        read_available(&mut server, &mut got);
        got.len() >= 7
    });
    assert_eq!(got, b"request");

    server.write_all(b"answer").unwrap();
    half_close(&server);
    let answer = read_to_eof(&sched, &mut client, "the answer and the FIN at the client");
    assert_eq!(answer, b"answer");

    let more = pattern(100_000, 47);
    client.write_all(&more).unwrap();
    half_close(&client);
    let rest = read_to_eof(&sched, &mut server, "the rest and the FIN at the target");
    assert!(
        rest == more,
        "the target got {} of {} bytes",
        rest.len(),
        more.len()
    );
    drop((client, server));
    run_until(&sched, "the connection's components to end", || {
        sched.len() == idle
    });
}

#[test]
fn the_target_finishing_first_reaches_the_client_while_it_still_sends() {
    target_finishes_first("127.0.0.1");
    target_finishes_first("localhost");
}

#[test]
fn a_relay_whose_target_refuses_closes_the_accepted_connection() {
    let (sched, addr, idle) = relay_to("127.0.0.1", closed_port().port());
    let mut client = connect(addr);
    let got = read_to_eof(&sched, &mut client, "EOF at the client");
    assert!(got.is_empty(), "{got:?}");
    drop(client);
    run_until(&sched, "the connection's components to end", || {
        sched.len() == idle
    });
}

#[test]
fn a_client_reset_closes_the_target_side() {
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let (sched, addr, idle) = relay_to("127.0.0.1", target.local_addr().unwrap().port());
    let mut client = connect(addr);
    let mut server = accept_stepping(&sched, &target);
    client.write_all(b"hello").unwrap();
    let mut got = Vec::new();
    run_until(&sched, "the client's bytes at the target", || {
        read_available(&mut server, &mut got);
        got.len() >= 5
    });
    assert_eq!(got, b"hello");
    reset(client);
    let rest = read_to_eof(&sched, &mut server, "EOF at the target");
    assert!(rest.is_empty(), "{rest:?}");
    drop(server);
    run_until(&sched, "the connection's components to end", || {
        sched.len() == idle
    });
}
