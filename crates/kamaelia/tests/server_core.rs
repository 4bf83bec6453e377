//! `ServerCore`: derived acceptance case 15 for Kamaelia's `ServerCore` (reference §11.4; upstream
//! has no tests for it), the end-to-end flows of §9, and this design's graceful shutdown.
//!
//! | case | here |
//! |---|---|
//! | 15: the factory gets peer, peerport, localip, localport | [`the_factory_gets_the_connection_as_the_client_sees_it`] |
//! | §9: echo end to end (now with half-close) | [`echo_round_trip_and_half_close`] |
//! | 15: handler `signal` → CSA `control` | [`a_handler_signal_producer_finished_closes_our_side_after_its_bytes`], [`a_handler_signal_shutdown_closes_the_connection_at_once`] |
//! | 15: a closed CSA means the handler gets `socketShutdown` | [`a_handler_gets_socket_shutdown_when_its_connection_ends`] |
//! | 15: a handler's `serversignal` reaches ServerCore's `control` | [`a_handlers_serversignal_can_stop_the_whole_server`] |
//! | 15: `shutdownMicroprocess` / `serverShutdown` close every connection and stop the server | [`shutdown_microprocess_closes_every_connection_and_ends`], [`server_shutdown_closes_every_connection_and_ends`] |
//! | (graceful drain with a deadline) | [`producer_finished_drains_open_connections_then_force_closes_the_rest`] |
//! | (a wiring error closes only that connection) | [`a_handler_with_wrong_box_types_closes_only_its_connection`] |

mod util;

use std::cell::RefCell;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use axon::ipc::{CloseReason, ConnectionInfo, ServerShutdown};
use axon::{AnyComponent, Component, Core, FnComponent, Inbox, Ipc, Msg, Scheduler};
use bytes::Bytes;
use kamaelia::chassis::{ServerConfig, ServerCore};
use kamaelia::protocols::Echo;

use util::{
    collector, connect, echo_round_trip as round_trip, half_close, kinds, read_available_or_error,
    reset, run, run_until, settle, take_all, ReadState,
};

type Log = Rc<RefCell<Vec<Ipc>>>;

/// A server, its outboxes collected, and what its factory was asked for.
struct Rig {
    sched: Scheduler,
    server: Core,
    addr: SocketAddr,
    control: Inbox<Ipc>,
    signal: Inbox<Ipc>,
    /// The connection each factory call was given, in order.
    infos: Rc<RefCell<Vec<ConnectionInfo>>>,
    /// The handler each factory call made, in order.
    handlers: Rc<RefCell<Vec<Core>>>,
}

fn rig(
    config: ServerConfig,
    mut factory: impl FnMut(usize) -> Box<dyn AnyComponent> + 'static,
) -> Rig {
    let sched = Scheduler::new();
    let infos: Rc<RefCell<Vec<ConnectionInfo>>> = Rc::default();
    let handlers: Rc<RefCell<Vec<Core>>> = Rc::default();
    let (i, h) = (infos.clone(), handlers.clone());
    let server = ServerCore::new(
        "127.0.0.1:0".parse().unwrap(),
        move |info: &ConnectionInfo| {
            let n = i.borrow().len();
            i.borrow_mut().push(*info);
            let handler = factory(n);
            h.borrow_mut().push(handler.component_core().clone());
            handler
        },
        config,
    )
    .expect("bind");
    let signal = collector("signal");
    server.signal().link_to(&signal).unwrap();
    let r = Rig {
        addr: server.local_addr(),
        control: server.control().clone(),
        server: server.core().clone(),
        sched: sched.clone(),
        signal,
        infos,
        handlers,
    };
    sched.activate(server);
    r
}

impl Rig {
    fn wait_for_connections(&self, n: usize) {
        run_until(&self.sched, "the factory to be called", || {
            self.infos.borrow().len() >= n
        });
    }

    /// The `producerFinished` report the server sends when it ends.
    fn end_report(&self) -> String {
        let signal = take_all(&self.signal);
        assert_eq!(kinds(&signal), ["producerFinished"], "{signal:?}");
        match &signal[0] {
            Ipc::ProducerFinished(p) => {
                assert_eq!(p.caller, Some(self.server.id()));
                p.message.clone().unwrap_or_default()
            }
            other => panic!("{other:?}"),
        }
    }
}

fn echo(_: usize) -> Box<dyn AnyComponent> {
    Box::new(Echo::new())
}

/// Echoes data and logs every control message; ends on `socketShutdown`.
fn recorder(log: Log) -> Box<dyn AnyComponent> {
    Box::new(FnComponent::<Bytes, Bytes, _>::new(
        "Recorder",
        move |b| async move {
            loop {
                match b.next().await {
                    Msg::Data(d) => b.outbox.send_wait(d).await,
                    Msg::Control(c) => {
                        let done = matches!(c, Ipc::SocketShutdown(_));
                        log.borrow_mut().push(c);
                        if done {
                            return;
                        }
                    }
                }
            }
        },
    ))
}

/// On its first data, sends `reply` (if any) then `close` on its `signal`; logs control messages
/// and ends on `socketShutdown`.
fn closer(reply: &'static [u8], close: Ipc, log: Log) -> Box<dyn AnyComponent> {
    Box::new(FnComponent::<Bytes, Bytes, _>::new(
        "Closer",
        move |b| async move {
            let mut close = Some(close);
            loop {
                match b.next().await {
                    Msg::Data(_) => {
                        if let Some(c) = close.take() {
                            if !reply.is_empty() {
                                b.outbox.send_wait(Bytes::from_static(reply)).await;
                            }
                            let _ = b.signal.send(c);
                        }
                    }
                    Msg::Control(c) => {
                        let done = matches!(c, Ipc::SocketShutdown(_));
                        log.borrow_mut().push(c);
                        if done {
                            return;
                        }
                    }
                }
            }
        },
    ))
}

/// Reads from `s` while stepping `sched` until EOF; returns what came. A reset counts as the end
/// too when `reset_ok`.
fn read_to_eof(sched: &Scheduler, s: &mut TcpStream, reset_ok: bool) -> Vec<u8> {
    let mut got = Vec::new();
    run_until(
        sched,
        "EOF at the client",
        || match read_available_or_error(s, &mut got) {
            Ok(state) => state == ReadState::Eof,
            Err(e) if reset_ok && e.kind() == std::io::ErrorKind::ConnectionReset => true,
            Err(e) => panic!("client read failed: {e}"),
        },
    );
    got
}

fn assert_refused(addr: SocketAddr) {
    match TcpStream::connect_timeout(&addr, util::LIMIT) {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}"),
        Ok(_) => panic!("a connection to {addr} was accepted after shutdown"),
    }
}

#[test]
fn the_factory_gets_the_connection_as_the_client_sees_it() {
    let r = rig(ServerConfig::default(), echo);
    assert_eq!(r.addr.ip().to_string(), "127.0.0.1");
    assert_ne!(r.addr.port(), 0);
    let a = connect(r.addr);
    r.wait_for_connections(1);
    let b = connect(r.addr);
    r.wait_for_connections(2);
    let infos = r.infos.borrow().clone();
    for (info, client) in infos.iter().zip([&a, &b]) {
        assert_eq!(info.peer, client.local_addr().unwrap());
        assert_eq!(info.local, client.peer_addr().unwrap());
        assert_eq!(info.local, r.addr);
    }
    assert_ne!(infos[0].id, infos[1].id);
    // Each handler is a running child of the server.
    for h in r.handlers.borrow().iter() {
        assert!(h.is_activated() && !h.is_finished());
        assert!(r.server.children().contains(h));
    }
}

#[test]
fn echo_round_trip_and_half_close() {
    let r = rig(ServerConfig::default(), echo);
    let mut client = connect(r.addr);
    round_trip(&r.sched, &mut client, b"hello");
    client.write_all(b"world").unwrap();
    half_close(&client);
    // `printf hello | nc`: everything comes back, then EOF.
    assert_eq!(read_to_eof(&r.sched, &mut client, false), b"world");
    let handler = r.handlers.borrow()[0].clone();
    run_until(&r.sched, "the connection to be cleaned up", || {
        handler.is_finished() && r.server.children().len() == 1
    });
    assert!(!r.server.is_finished(), "the server carries on");
}

#[test]
fn a_handler_signal_producer_finished_closes_our_side_after_its_bytes() {
    let log: Log = Rc::default();
    let l = log.clone();
    let r = rig(ServerConfig::default(), move |_| {
        closer(b"bye\n", Ipc::producer_finished(), l.clone())
    });
    let mut client = connect(r.addr);
    client.write_all(b"hi").unwrap();
    assert_eq!(read_to_eof(&r.sched, &mut client, false), b"bye\n");
    // Our side is closed; the connection ends once the client closes too.
    assert!(log.borrow().is_empty());
    drop(client);
    run_until(&r.sched, "socketShutdown at the handler", || {
        log.borrow()
            .iter()
            .any(|m| matches!(m, Ipc::SocketShutdown(_)))
    });
    let log = log.borrow();
    let Some(Ipc::SocketShutdown(s)) = log.last() else {
        panic!("{log:?}")
    };
    assert_eq!(s.connection, Some(r.infos.borrow()[0]));
    assert_eq!(
        s.reason,
        CloseReason::ProducerFinished,
        "our side closed first"
    );
}

#[test]
fn a_handler_signal_shutdown_closes_the_connection_at_once() {
    let log: Log = Rc::default();
    let l = log.clone();
    let r = rig(ServerConfig::default(), move |_| {
        closer(b"", Ipc::shutdown_microprocess(), l.clone())
    });
    let mut client = connect(r.addr);
    client.write_all(b"hi").unwrap();
    // The client has not closed anything: the server did.
    assert_eq!(read_to_eof(&r.sched, &mut client, false), b"");
    run_until(&r.sched, "socketShutdown at the handler", || {
        log.borrow()
            .iter()
            .any(|m| matches!(m, Ipc::SocketShutdown(_)))
    });
    let log = log.borrow();
    assert_eq!(kinds(&log), ["shutdownCSA", "socketShutdown"], "{log:?}");
    let Ipc::SocketShutdown(s) = &log[1] else {
        unreachable!()
    };
    assert_eq!(s.connection, Some(r.infos.borrow()[0]));
    assert_eq!(s.reason, CloseReason::Shutdown);
}

#[test]
fn a_handler_gets_socket_shutdown_when_its_connection_ends() {
    let log: Log = Rc::default();
    let l = log.clone();
    let r = rig(ServerConfig::default(), move |_| recorder(l.clone()));
    let mut client = connect(r.addr);
    round_trip(&r.sched, &mut client, b"x");
    reset(client);
    let handler = r.handlers.borrow()[0].clone();
    run_until(&r.sched, "the handler to end", || handler.is_finished());
    settle(&r.sched);
    let log = log.borrow();
    // The CSA's own end notice (its signal is wired to the handler's control), then ServerCore's.
    assert_eq!(kinds(&log), ["shutdownCSA", "socketShutdown"], "{log:?}");
    let (Ipc::ShutdownCsa(csa_end), Ipc::SocketShutdown(s)) = (&log[0], &log[1]) else {
        unreachable!()
    };
    let info = r.infos.borrow()[0];
    let reset_reason = CloseReason::io(std::io::ErrorKind::ConnectionReset.into());
    assert_eq!(csa_end.connection, Some(info));
    assert_eq!(csa_end.reason, Some(reset_reason.clone()));
    assert_eq!(s.caller, Some(csa_end.csa));
    assert_eq!(s.connection, Some(info));
    assert_eq!(s.reason, reset_reason);
    assert_eq!(r.server.children().len(), 1, "only the TcpServer is left");
}

#[test]
fn a_handlers_serversignal_can_stop_the_whole_server() {
    let r = rig(ServerConfig::default(), |_| {
        let h = FnComponent::<Bytes, Bytes, _>::new("Stopper", |b| async move {
            let serversignal = b.core.outbox_named::<Ipc>("serversignal").unwrap();
            loop {
                match b.next().await {
                    Msg::Data(d) if d == "stop" => {
                        let _ = serversignal.send(Ipc::shutdown_microprocess());
                    }
                    Msg::Data(d) => b.outbox.send_wait(d).await,
                    Msg::Control(Ipc::SocketShutdown(_)) => return,
                    Msg::Control(_) => {}
                }
            }
        });
        let (name, _) = h
            .core()
            .add_outbox::<Ipc>("serversignal", "stops the server");
        assert_eq!(name, "serversignal");
        Box::new(h)
    });
    let mut a = connect(r.addr);
    r.wait_for_connections(1);
    let mut b = connect(r.addr);
    r.wait_for_connections(2);
    round_trip(&r.sched, &mut b, b"hi");
    a.write_all(b"stop").unwrap();
    run_until(&r.sched, "the server to end", || r.server.is_finished());
    assert_eq!(read_to_eof(&r.sched, &mut a, false), b"");
    assert_eq!(read_to_eof(&r.sched, &mut b, false), b"");
    assert_refused(r.addr);
    assert_eq!(
        r.end_report(),
        "server stopped: 0 connections finished, 2 closed at the deadline"
    );
    // Everything else ends too (the handlers on their socketShutdown): `run` returns.
    run(&r.sched);
    assert!(r.handlers.borrow().iter().all(Core::is_finished));
}

fn stopping_closes_every_connection_and_ends(stop: Ipc) {
    let r = rig(ServerConfig::default(), echo);
    let mut clients = [connect(r.addr), connect(r.addr)];
    for c in &mut clients {
        round_trip(&r.sched, c, b"up");
    }
    r.control.deliver(stop).unwrap();
    run(&r.sched); // everything ends: server, TcpServer, adapters, handlers
    assert!(r.server.is_finished());
    assert!(r.handlers.borrow().iter().all(Core::is_finished));
    for c in &mut clients {
        assert_eq!(read_to_eof(&r.sched, c, false), b"");
    }
    assert_refused(r.addr);
    assert_eq!(
        r.end_report(),
        "server stopped: 0 connections finished, 2 closed at the deadline"
    );
}

#[test]
fn shutdown_microprocess_closes_every_connection_and_ends() {
    stopping_closes_every_connection_and_ends(Ipc::shutdown_microprocess());
}

#[test]
fn server_shutdown_closes_every_connection_and_ends() {
    stopping_closes_every_connection_and_ends(Ipc::ServerShutdown(ServerShutdown::default()));
}

#[test]
fn producer_finished_drains_open_connections_then_force_closes_the_rest() {
    let r = rig(
        ServerConfig::default().drain_deadline(Duration::from_millis(1500)),
        echo,
    );
    let mut busy = connect(r.addr);
    r.wait_for_connections(1);
    let mut idle = connect(r.addr);
    r.wait_for_connections(2);
    round_trip(&r.sched, &mut busy, b"part1");

    r.control.deliver(Ipc::producer_finished()).unwrap();
    // The busy client finishes its transfer during the drain.
    busy.write_all(b"part2").unwrap();
    half_close(&busy);
    assert_eq!(read_to_eof(&r.sched, &mut busy, false), b"part2");
    assert_refused(r.addr);
    assert!(!r.server.is_finished(), "the idle connection is still open");

    // The idle one never finishes: it is closed at the deadline, and the server ends.
    run_until(&r.sched, "the server to end", || r.server.is_finished());
    assert_eq!(read_to_eof(&r.sched, &mut idle, false), b"");
    assert_eq!(
        r.end_report(),
        "server stopped: 1 connections finished, 1 closed at the deadline"
    );
}

#[test]
fn a_handler_with_wrong_box_types_closes_only_its_connection() {
    let r = rig(ServerConfig::default(), |n| {
        if n == 0 {
            // `inbox` carries String, not Bytes: it cannot be wired to the adapter.
            Box::new(FnComponent::<String, Bytes, _>::new(
                "Mistyped",
                |_b| async move {},
            ))
        } else {
            Box::new(Echo::new())
        }
    });
    let mut bad = connect(r.addr);
    r.wait_for_connections(1);
    assert_eq!(read_to_eof(&r.sched, &mut bad, true), b"");
    assert!(
        !r.handlers.borrow()[0].is_activated(),
        "the mistyped handler never runs"
    );

    let mut good = connect(r.addr);
    r.wait_for_connections(2);
    round_trip(&r.sched, &mut good, b"still serving");
    assert!(!r.server.is_finished());
    assert!(r.signal.is_empty());
}

#[test]
fn a_graceful_drain_tells_each_handler_and_lets_it_go_on_serving() {
    let log: Log = Rc::default();
    let l = log.clone();
    // Echoes, logs control messages, and finishes (half-closing) after the peer finishes.
    let r = rig(
        ServerConfig::default().drain_deadline(Duration::from_secs(30)),
        move |_| {
            let log = l.clone();
            Box::new(FnComponent::<Bytes, Bytes, _>::new(
                "PoliteEcho",
                move |b| async move {
                    loop {
                        match b.next().await {
                            Msg::Data(d) => b.outbox.send_wait(d).await,
                            Msg::Control(c) => {
                                let finished = matches!(c, Ipc::ProducerFinished(_));
                                log.borrow_mut().push(c);
                                if finished {
                                    let _ = b.signal.send(Ipc::producer_finished());
                                    return;
                                }
                            }
                        }
                    }
                },
            ))
        },
    );
    let mut client = connect(r.addr);
    r.wait_for_connections(1);
    round_trip(&r.sched, &mut client, b"before");

    r.control.deliver(Ipc::producer_finished()).unwrap();
    run_until(&r.sched, "the drain notice", || !log.borrow().is_empty());
    match &log.borrow()[0] {
        Ipc::Notify(n) => {
            assert_eq!(n.object, kamaelia::chassis::DRAINING);
            assert_eq!(n.caller, Some(r.server.id()));
        }
        other => panic!("expected the drain notice, got {other:?}"),
    }
    // The connection is still served while the server drains.
    round_trip(&r.sched, &mut client, b"during the drain");
    half_close(&client);
    run_until(&r.sched, "the server to end", || r.server.is_finished());
    assert_eq!(
        r.end_report(),
        "server stopped: 1 connections finished, 0 closed at the deadline"
    );
}
