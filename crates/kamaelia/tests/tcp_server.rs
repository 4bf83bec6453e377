//! `TcpServer`: derived acceptance case 14 for Kamaelia's `TCPServer` (reference §11.4; upstream
//! has no TCPServer tests) and the fixes listed in §10 item 9, against real loopback clients.
//!
//! | case | here |
//! |---|---|
//! | bind errors (Kamaelia: a silent `None` listener, then the *class* `shutdownMicroprocess`) | [`binding_a_busy_port_is_an_addr_in_use_error`], [`binding_an_address_not_on_this_host_is_an_error`] |
//! | (port 0, the real address) | [`port_zero_binds_a_free_port_that_local_addr_reports`] |
//! | 14: each accept emits `newCSA` with an unactivated child CSA | [`each_accept_emits_new_csa_with_an_unactivated_child_adapter`] |
//! | 14: `socketShutdown` from a CSA gives `shutdownCSA` (now with the reason) | [`a_closed_connection_is_reported_as_shutdown_csa_with_its_reason`] |
//! | (connection limit) | [`at_max_connections_newcomers_wait_in_the_backlog_until_one_closes`] |
//! | 14: only `serverShutdown` stops it (now `shutdownMicroprocess` too); graceful end | [`server_shutdown_closes_the_listener_and_ends_after_the_last_connection`], [`shutdown_microprocess_closes_the_listener_and_ends_after_the_last_connection`] |
//! | (IPv6) | [`ipv6_loopback_works`] |
//!
//! The IPv6 test returns early (saying so on stderr) on a host that cannot listen on `::1` at all.
//!
//! Not tested here: accept back-off after "too many open files" (it needs the process's file
//! descriptors exhausted, which would disturb every test running in parallel).

mod util;

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use axon::ipc::{CloseReason, ConnectionInfo, ServerShutdown, ShutdownCsa};
use axon::{Component, Core, Inbox, Ipc, Scheduler};
use bytes::Bytes;
use kamaelia::internet::{ConnectedSocketAdapter, ServerEvent, TcpServer, TcpServerConfig};

use util::{
    collector, connect, drain_bytes, half_close, kinds, read_available, receive_at_least, reset,
    run_until, settle, take_all, ReadState,
};

/// A running server with its outboxes collected.
struct Rig {
    sched: Scheduler,
    server: Core,
    addr: SocketAddr,
    control: Inbox<Ipc>,
    events: Inbox<ServerEvent>,
    signal: Inbox<Ipc>,
}

fn rig(addr: &str, config: TcpServerConfig) -> Rig {
    let sched = Scheduler::new();
    let server = TcpServer::bind(addr.parse().unwrap(), config).expect("bind");
    let events = collector("protocolHandlerSignal");
    let signal = collector("signal");
    server.protocol_handler_signal().link_to(&events).unwrap();
    server.signal().link_to(&signal).unwrap();
    let r = Rig {
        addr: server.local_addr(),
        control: server.control().clone(),
        server: server.core().clone(),
        sched: sched.clone(),
        events,
        signal,
    };
    sched.activate(server);
    r
}

impl Rig {
    /// Waits for the next event.
    fn next_event(&self) -> ServerEvent {
        run_until(&self.sched, "a server event", || !self.events.is_empty());
        self.events.recv_now().unwrap()
    }

    /// Waits for a `NewCsa` and returns the adapter and its connection.
    fn accepted(&self) -> (ConnectedSocketAdapter, ConnectionInfo) {
        match self.next_event() {
            ServerEvent::NewCsa { csa, connection } => (*csa, connection),
            other => panic!("expected NewCsa, got {other:?}"),
        }
    }

    /// Waits for a `ShutdownCsa`.
    fn closed(&self) -> ShutdownCsa {
        match self.next_event() {
            ServerEvent::ShutdownCsa(s) => s,
            other => panic!("expected ShutdownCsa, got {other:?}"),
        }
    }
}

/// An activated adapter with its `outbox` collected.
struct Live {
    core: Core,
    control: Inbox<Ipc>,
    input: Inbox<Bytes>,
    received: Inbox<Bytes>,
}

fn activate(sched: &Scheduler, csa: ConnectedSocketAdapter) -> Live {
    let received = collector("bytes from the client");
    csa.outbox().link_to(&received).unwrap();
    let live = Live {
        core: csa.core().clone(),
        control: csa.control().clone(),
        input: csa.inbox().clone(),
        received,
    };
    sched.activate(csa);
    live
}

fn assert_refused(addr: SocketAddr) {
    match TcpStream::connect_timeout(&addr, util::LIMIT) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}"),
        Ok(_) => panic!("a connection to {addr} was accepted after shutdown"),
    }
}

#[test]
fn binding_a_busy_port_is_an_addr_in_use_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let err = TcpServer::bind(taken.local_addr().unwrap(), TcpServerConfig::default())
        .expect_err("the port is taken");
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");

    let first =
        TcpServer::bind("127.0.0.1:0".parse().unwrap(), TcpServerConfig::default()).unwrap();
    let err = TcpServer::bind(first.local_addr(), TcpServerConfig::default())
        .expect_err("the port is taken by the first server");
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
}

#[test]
fn binding_an_address_not_on_this_host_is_an_error() {
    // 192.0.2.1 is TEST-NET-1 (RFC 5737): never a local address. Binding sends nothing.
    let err = TcpServer::bind("192.0.2.1:0".parse().unwrap(), TcpServerConfig::default())
        .expect_err("not a local address");
    assert_eq!(err.kind(), ErrorKind::AddrNotAvailable, "{err}");
}

#[test]
fn port_zero_binds_a_free_port_that_local_addr_reports() {
    let server =
        TcpServer::bind("127.0.0.1:0".parse().unwrap(), TcpServerConfig::default()).unwrap();
    let addr = server.local_addr();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0);
    // The listener exists from `bind`: a client connects even before the server runs.
    let client = connect(addr);
    assert_eq!(client.peer_addr().unwrap(), addr);
}

#[test]
fn each_accept_emits_new_csa_with_an_unactivated_child_adapter() {
    let r = rig("127.0.0.1:0", TcpServerConfig::default());
    let mut clients = [connect(r.addr), connect(r.addr)];
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (csa, info) = r.accepted();
        assert!(!csa.core().is_activated(), "the receiver activates it");
        assert_eq!(csa.info(), info);
        assert_eq!(info.local, r.addr);
        assert!(
            r.server.children().contains(csa.core()),
            "the adapter is the server's child"
        );
        let which = clients
            .iter()
            .position(|c| c.local_addr().unwrap() == info.peer)
            .expect("the connection's peer is one of the clients");
        assert_eq!(clients[which].peer_addr().unwrap(), info.local);
        seen.push((which, info, csa));
    }
    assert_ne!(seen[0].0, seen[1].0);
    assert_ne!(seen[0].1.id, seen[1].1.id);
    settle(&r.sched);
    assert!(r.events.is_empty(), "one event per connection");

    // Once activated, the adapter carries the connection.
    let (which, _, csa) = seen.pop().unwrap();
    let live = activate(&r.sched, csa);
    clients[which].write_all(b"ping").unwrap();
    let mut got = Vec::new();
    run_until(&r.sched, "the client's bytes", || {
        drain_bytes(&live.received, &mut got);
        got.len() >= 4
    });
    assert_eq!(got, b"ping");
    live.input.deliver(Bytes::from_static(b"pong")).unwrap();
    let mut back = Vec::new();
    run_until(&r.sched, "the reply", || {
        read_available(&mut clients[which], &mut back);
        back.len() >= 4
    });
    assert_eq!(back, b"pong");
}

#[test]
fn a_closed_connection_is_reported_as_shutdown_csa_with_its_reason() {
    let r = rig("127.0.0.1:0", TcpServerConfig::default());

    // A clean close: the client finishes, then the server side's producer does.
    let clean = connect(r.addr);
    let (csa, info) = r.accepted();
    let live = activate(&r.sched, csa);
    half_close(&clean);
    settle(&r.sched);
    live.control.deliver(Ipc::producer_finished()).unwrap();
    let closed = r.closed();
    assert_eq!(
        closed,
        ShutdownCsa {
            caller: r.server.id(),
            csa: live.core.id(),
            connection: Some(info),
            reason: Some(CloseReason::Eof),
        }
    );
    assert!(
        !r.server.children().contains(&live.core),
        "no longer a child"
    );

    // A reset.
    let rude = connect(r.addr);
    let (csa, info) = r.accepted();
    let live = activate(&r.sched, csa);
    settle(&r.sched);
    reset(rude);
    let closed = r.closed();
    assert_eq!(
        closed,
        ShutdownCsa {
            caller: r.server.id(),
            csa: live.core.id(),
            connection: Some(info),
            reason: Some(CloseReason::io(ErrorKind::ConnectionReset.into())),
        }
    );
    settle(&r.sched);
    assert!(r.events.is_empty(), "each close reported once");
    assert!(!r.server.is_finished() && r.signal.is_empty());
}

#[test]
fn at_max_connections_newcomers_wait_in_the_backlog_until_one_closes() {
    let r = rig("127.0.0.1:0", TcpServerConfig::default().max_connections(1));
    let mut first = connect(r.addr);
    let (csa, first_info) = r.accepted();
    assert_eq!(first_info.peer, first.local_addr().unwrap());
    let live = activate(&r.sched, csa);

    // The kernel completes the second handshake; the server does not accept it yet.
    let mut second = connect(r.addr);
    second.write_all(b"waiting").unwrap();
    settle(&r.sched);
    assert!(
        r.events.is_empty(),
        "no second connection while at the limit"
    );

    live.control.deliver(Ipc::shutdown_microprocess()).unwrap();
    let closed = r.closed();
    assert_eq!(closed.connection, Some(first_info));
    assert_eq!(closed.reason, Some(CloseReason::Shutdown));
    let (csa, info) = r.accepted();
    assert_eq!(info.peer, second.local_addr().unwrap());

    let live = activate(&r.sched, csa);
    let mut got = Vec::new();
    run_until(&r.sched, "the bytes sent while waiting", || {
        drain_bytes(&live.received, &mut got);
        got.len() >= 7
    });
    assert_eq!(got, b"waiting");
    let mut rest = Vec::new();
    assert_eq!(read_available(&mut first, &mut rest), ReadState::Eof);
    // The second connection is still served: a reply reaches it.
    live.input.deliver(Bytes::from_static(b"in")).unwrap();
    let mut back = Vec::new();
    run_until(&r.sched, "the reply", || {
        read_available(&mut second, &mut back);
        back.len() >= 2
    });
    assert_eq!(back, b"in");
}

fn stopping_closes_the_listener_and_ends_after_the_last_connection(stop: Ipc) {
    let r = rig("127.0.0.1:0", TcpServerConfig::default());
    let mut client = connect(r.addr);
    let (csa, info) = r.accepted();
    let live = activate(&r.sched, csa);

    r.control.deliver(stop).unwrap();
    settle(&r.sched);
    assert_refused(r.addr);
    // The open connection is untouched and still works.
    assert!(!r.server.is_finished());
    assert!(r.signal.is_empty());
    live.input
        .deliver(Bytes::from_static(b"still here"))
        .unwrap();
    let mut got = Vec::new();
    run_until(&r.sched, "bytes on the open connection", || {
        read_available(&mut client, &mut got);
        got.len() >= 10
    });
    assert_eq!(got, b"still here");

    // Once it ends, so does the server.
    live.control.deliver(Ipc::shutdown_microprocess()).unwrap();
    let closed = r.closed();
    assert_eq!(closed.connection, Some(info));
    run_until(&r.sched, "the server to end", || r.server.is_finished());
    let signal = take_all(&r.signal);
    assert_eq!(kinds(&signal), ["serverShutdown"]);
    match &signal[0] {
        Ipc::ServerShutdown(s) => assert_eq!(
            s,
            &ServerShutdown {
                caller: Some(r.server.id())
            }
        ),
        other => panic!("{other:?}"),
    }
    assert!(r.events.is_empty());
}

#[test]
fn server_shutdown_closes_the_listener_and_ends_after_the_last_connection() {
    stopping_closes_the_listener_and_ends_after_the_last_connection(Ipc::ServerShutdown(
        ServerShutdown::default(),
    ));
}

#[test]
fn shutdown_microprocess_closes_the_listener_and_ends_after_the_last_connection() {
    stopping_closes_the_listener_and_ends_after_the_last_connection(Ipc::shutdown_microprocess());
}

#[test]
fn producer_finished_does_not_stop_the_server() {
    let r = rig("127.0.0.1:0", TcpServerConfig::default());
    r.control.deliver(Ipc::producer_finished()).unwrap();
    settle(&r.sched);
    let _client = connect(r.addr);
    let (_csa, _info) = r.accepted();
    assert!(!r.server.is_finished());
}

#[test]
fn ipv6_loopback_works() {
    if !util::ipv6_loopback_available() {
        return;
    }
    let r = rig("[::1]:0", TcpServerConfig::default());
    assert!(r.addr.is_ipv6());
    let mut client = connect(r.addr);
    let (csa, info) = r.accepted();
    assert_eq!(info.peer, client.local_addr().unwrap());
    assert_eq!(info.local, r.addr);
    let live = activate(&r.sched, csa);
    client.write_all(b"v6").unwrap();
    let mut got = Vec::new();
    receive_at_least(&r.sched, &live.received, &mut got, 2, "bytes over ::1");
    assert_eq!(got, b"v6");
    live.input.deliver(Bytes::from_static(b"six")).unwrap();
    let mut back = Vec::new();
    run_until(&r.sched, "the reply over ::1", || {
        read_available(&mut client, &mut back);
        back.len() >= 3
    });
    assert_eq!(back, b"six");
}
