//! `ConnectedSocketAdapter`: the derived acceptance cases 1-12 for Kamaelia's CSA (reference
//! §11.4; upstream has no CSA tests) and the traces of §9, adapted to this design's fixed
//! behaviours (DESIGN.md §4, the CSA's rustdoc): `producerFinished` drains the queue before the
//! FIN, peer EOF is a half-close reported as `producerFinished` on `signal`, termination messages
//! carry the real connection and `CloseReason`, back-pressure works both ways.
//!
//! The peer is a real std socket on 127.0.0.1; the CSA runs on an axon scheduler, stepped by the
//! test. In the `hand_*` tests the test plays the selector: the selector is made but never
//! activated, so what the CSA sends on `_selectorSignal` stays in its `notify` inbox to be read,
//! and readiness is delivered by hand.
//!
//! | case (§11.4) | here |
//! |---|---|
//! | 1 start-up: one read, one `newReader`, no `newWriter`, pause | [`hand_startup_asks_for_one_read_notice_through_selector_signal`] |
//! | 2 reads until would-block, then `newReader` | [`hand_reads_until_would_block_then_asks_again_and_reports_the_end_in_order`] |
//! | 3 complete write: no registration; blocked write: one `newWriter`, resume from the offset | [`hand_a_complete_write_needs_no_registration_and_a_blocked_write_asks_for_one_write_notice`] |
//! | 4 inbox order on the wire, never merged | [`inbox_bytes_reach_the_peer_in_order`], [`several_megabytes_cross_intact_in_both_directions`] |
//! | 5 EOF: termination messages, then `removeReader`/`removeWriter` (now: half-close first) | [`hand_reads_until_would_block_then_asks_again_and_reports_the_end_in_order`], [`peer_eof_is_reported_after_every_byte_and_writing_continues`] |
//! | 6 read error ends it with that error | [`a_peer_reset_ends_it_with_the_io_error_exactly_once`] |
//! | 7 write error ends it with that error | not ported separately: a reset reaches the CSA through whichever of read or write comes first; [`a_peer_reset_ends_it_with_the_io_error_exactly_once`] checks the error is reported |
//! | 8 `producerFinished` / `shutdownMicroprocess` reasons | [`producer_finished_sends_everything_queued_then_fin_and_keeps_reading`], [`shutdown_microprocess_closes_at_once_dropping_the_queue`] |
//! | 9 data queued with `producerFinished` (now: all of it, not one attempt) | [`producer_finished_sends_everything_queued_then_fin_and_keeps_reading`] |
//! | 10 termination messages once | "exactly once" checks in every ending test |
//! | 11 full outbox: chunk kept and re-sent first, nothing lost | [`a_full_downstream_inbox_stops_reading_and_loses_nothing`] |
//! | (bounded `inbox`: producers get `NoSpaceInBox`) | [`a_bounded_inbox_refuses_sends_while_the_socket_is_not_drained`] |
//! | 12 `makessl` (TLS not built in: `SslReady::Failed`) | [`makessl_without_tls_answers_failed_and_the_connection_carries_on`] |
//! | §9 traces: reads, writes, `producerFinished` with `bye` queued, `shutdownMicroprocess` while write-blocked, ECONNRESET | the tests above |

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;

use axon::ipc::{CloseReason, ConnectionInfo, ShutdownCsa, SocketShutdown};
use axon::{Component, Core, FnComponent, Inbox, Ipc, Outbox, Scheduler};
use bytes::Bytes;
use kamaelia::internet::{
    ConnectedSocketAdapter, CsaConfig, MakeSsl, Readiness, Selector, SelectorHandle, SslReady,
};

use util::{
    collector, describe_request, drain_bytes, half_close, kinds, pattern, read_available,
    read_available_or_error, request_caller, reset, run, run_until, settle, std_pair_with,
    take_all, tcp_pair_with, wait_for_bytes_std, write_available, Buffers, ReadState,
};

/// A CSA on a running selector, with every outbox collected.
struct Rig {
    sched: Scheduler,
    csa: Core,
    info: ConnectionInfo,
    /// The CSA's `inbox`.
    input: Inbox<Bytes>,
    /// The CSA's `control`.
    control: Inbox<Ipc>,
    /// The CSA's `makessl`.
    #[cfg_attr(feature = "tls", allow(dead_code))]
    makessl: Inbox<MakeSsl>,
    /// What came out of `outbox`.
    received: Inbox<Bytes>,
    /// What came out of `CreatorFeedback`.
    feedback: Inbox<Ipc>,
    /// What came out of `signal`.
    signal: Inbox<Ipc>,
    /// What came out of `sslready`.
    sslready: Inbox<SslReady>,
    peer: TcpStream,
}

fn rig(bufs: Buffers, config: CsaConfig) -> Rig {
    let sched = Scheduler::new();
    let selector = SelectorHandle::on(&sched).unwrap();
    let (ours, peer) = tcp_pair_with(bufs);
    let csa = ConnectedSocketAdapter::new(ours, &selector, config).unwrap();
    let r = Rig {
        csa: csa.core().clone(),
        info: csa.info(),
        input: csa.inbox().clone(),
        control: csa.control().clone(),
        makessl: csa.makessl().clone(),
        received: collector("bytes from the peer"),
        feedback: collector("CreatorFeedback"),
        signal: collector("signal"),
        sslready: collector("sslready"),
        sched: sched.clone(),
        peer,
    };
    csa.outbox().link_to(&r.received).unwrap();
    csa.creator_feedback().link_to(&r.feedback).unwrap();
    csa.signal().link_to(&r.signal).unwrap();
    csa.sslready().link_to(&r.sslready).unwrap();
    assert_eq!(r.info.peer, r.peer.local_addr().unwrap());
    assert_eq!(r.info.local, r.peer.peer_addr().unwrap());
    sched.activate(csa);
    r
}

impl Rig {
    fn socket_shutdown(&self, reason: CloseReason) -> SocketShutdown {
        SocketShutdown {
            caller: Some(self.csa.id()),
            connection: Some(self.info),
            reason,
        }
    }

    fn shutdown_csa(&self, reason: CloseReason) -> ShutdownCsa {
        ShutdownCsa {
            caller: self.csa.id(),
            csa: self.csa.id(),
            connection: Some(self.info),
            reason: Some(reason),
        }
    }

    /// Checks the CSA ended with `reason`, reporting it exactly once on `CreatorFeedback` and on
    /// `signal` (after `signal_before`, e.g. the peer's EOF).
    fn assert_ended(&self, reason: CloseReason, signal_before: &[&str]) {
        assert!(self.csa.is_finished());
        settle(&self.sched); // anything sent twice would show up now
        let feedback = take_all(&self.feedback);
        assert_eq!(kinds(&feedback), ["socketShutdown"], "{feedback:?}");
        assert_eq!(
            socket_shutdown(&feedback[0]),
            &self.socket_shutdown(reason.clone())
        );
        let signal = take_all(&self.signal);
        let mut want = signal_before.to_vec();
        want.push("shutdownCSA");
        assert_eq!(kinds(&signal), want, "{signal:?}");
        assert_eq!(
            shutdown_csa(signal.last().unwrap()),
            &self.shutdown_csa(reason)
        );
    }
}

fn socket_shutdown(m: &Ipc) -> &SocketShutdown {
    match m {
        Ipc::SocketShutdown(s) => s,
        other => panic!("expected socketShutdown, got {other:?}"),
    }
}

fn shutdown_csa(m: &Ipc) -> &ShutdownCsa {
    match m {
        Ipc::ShutdownCsa(s) => s,
        other => panic!("expected shutdownCSA, got {other:?}"),
    }
}

/// The peer's EOF as the CSA reports it on `signal`.
fn assert_peer_finished(m: &Ipc, csa: &Core) {
    match m {
        Ipc::ProducerFinished(p) => assert_eq!(p.caller, Some(csa.id())),
        other => panic!("expected producerFinished, got {other:?}"),
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

// ---------------------------------------------------------------------------------------------
// Ordering and integrity

#[test]
fn inbox_bytes_reach_the_peer_in_order() {
    let mut r = rig(Buffers::default(), CsaConfig::default());
    // Messages of many sizes (one empty), so a merge, split or swap would show.
    let data = pattern(60 * 61 / 2 * 97, 4);
    let mut want = Vec::new();
    let mut at = 0;
    for i in 0..60 {
        let len = i * 97;
        let msg = Bytes::copy_from_slice(&data[at..at + len]);
        want.extend_from_slice(&msg);
        at += len;
        r.input.deliver(msg).unwrap();
    }
    let mut got = Vec::new();
    run_until(&r.sched, "every byte at the peer", || {
        read_available(&mut r.peer, &mut got);
        got.len() >= want.len()
    });
    assert_eq!(got, want);
    assert!(!r.csa.is_finished());
}

#[test]
fn peer_bytes_come_out_of_outbox_in_order() {
    let mut r = rig(Buffers::default(), CsaConfig::default());
    let data = pattern(300_000, 5);
    for piece in data.chunks(7_001) {
        r.peer.write_all(piece).unwrap();
    }
    let mut got = Vec::new();
    run_until(&r.sched, "every byte out of outbox", || {
        drain_bytes(&r.received, &mut got);
        got.len() >= data.len()
    });
    assert_eq!(got, data);
    assert!(r.signal.is_empty() && r.feedback.is_empty());
}

#[test]
fn several_megabytes_cross_intact_in_both_directions() {
    const SIZE: usize = 4 << 20;
    let r = rig(Buffers::default(), CsaConfig::default());
    let to_peer = pattern(SIZE, 6);
    let from_peer = pattern(SIZE, 7);

    let producer = FnComponent::<(), Bytes, _>::new("Producer", {
        let msgs = chunks(&to_peer, 64 * 1024);
        move |b| async move {
            for m in msgs {
                b.outbox.send_wait(m).await;
            }
            let _ = b.signal.send(Ipc::producer_finished());
        }
    });
    producer.boxes().outbox.link_to(&r.input).unwrap();
    producer.boxes().signal.link_to(&r.control).unwrap();
    r.sched.activate(producer);

    let mut reader = r.peer.try_clone().unwrap();
    let reading = std::thread::spawn(move || {
        let mut got = Vec::new();
        reader.read_to_end(&mut got).map(|_| got)
    });
    let mut writer = r.peer.try_clone().unwrap();
    let sending = from_peer.clone();
    let writing = std::thread::spawn(move || {
        writer.write_all(&sending)?;
        writer.shutdown(std::net::Shutdown::Write)
    });

    run(&r.sched);
    writing.join().unwrap().expect("the peer's writes");
    let at_peer = reading.join().unwrap().expect("the peer's reads");
    assert_eq!(at_peer.len(), SIZE);
    assert!(at_peer == to_peer, "bytes at the peer differ");
    let mut got = Vec::new();
    drain_bytes(&r.received, &mut got);
    assert_eq!(got.len(), SIZE);
    assert!(got == from_peer, "bytes out of outbox differ");
    // Both sides finished cleanly; which first is a race.
    let feedback = take_all(&r.feedback);
    assert_eq!(kinds(&feedback), ["socketShutdown"]);
    let reason = &socket_shutdown(&feedback[0]).reason;
    assert!(
        *reason == CloseReason::Eof || *reason == CloseReason::ProducerFinished,
        "{reason:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Closing: producerFinished, shutdownMicroprocess, peer EOF, reset

#[test]
fn producer_finished_sends_everything_queued_then_fin_and_keeps_reading() {
    let mut r = rig(Buffers::small(), CsaConfig::default());
    let data = pattern(64 * 16 * 1024, 8);
    for m in chunks(&data, 16 * 1024) {
        r.input.deliver(m).unwrap();
    }
    r.control.deliver(Ipc::producer_finished()).unwrap();
    settle(&r.sched);
    // The precondition that makes this test mean something: producerFinished has been taken while
    // most of the data is still queued (the peer has not read, the socket is full).
    assert!(r.control.is_empty(), "producerFinished was taken");
    assert!(!r.input.is_empty(), "data is still queued behind it");
    assert!(!r.csa.is_finished());

    let mut got = Vec::new();
    run_until(&r.sched, "every byte, then EOF, at the peer", || {
        read_available(&mut r.peer, &mut got) == ReadState::Eof
    });
    assert_eq!(got.len(), data.len());
    assert!(got == data, "queued bytes arrived damaged");

    // Only the write side is closed: the peer can still send and the CSA still reads.
    r.peer.write_all(b"still talking").unwrap();
    let mut back = Vec::new();
    run_until(&r.sched, "the peer's late bytes", || {
        drain_bytes(&r.received, &mut back);
        back.len() >= 13
    });
    assert_eq!(back, b"still talking");
    assert!(!r.csa.is_finished());
    assert!(r.feedback.is_empty() && r.signal.is_empty());

    half_close(&r.peer);
    run_until(&r.sched, "the CSA to end", || r.csa.is_finished());
    r.assert_ended(CloseReason::ProducerFinished, &["producerFinished"]);
}

#[test]
fn shutdown_microprocess_closes_at_once_dropping_the_queue() {
    let mut r = rig(Buffers::small(), CsaConfig::default());
    let data = pattern(64 * 16 * 1024, 9);
    for m in chunks(&data, 16 * 1024) {
        r.input.deliver(m).unwrap();
    }
    settle(&r.sched);
    assert!(!r.input.is_empty(), "the socket is full, data is queued");
    r.control.deliver(Ipc::shutdown_microprocess()).unwrap();
    // At once: without the peer reading anything.
    run_until(&r.sched, "the CSA to end", || r.csa.is_finished());
    r.assert_ended(CloseReason::Shutdown, &[]);

    // What reached the peer is a prefix of what was sent, in order, and not all of it.
    let mut got = Vec::new();
    let mut end = Ok(ReadState::Open);
    run_until(&r.sched, "the peer to see the end", || {
        end = read_available_or_error(&mut r.peer, &mut got);
        !matches!(end, Ok(ReadState::Open))
    });
    assert!(
        matches!(&end, Ok(ReadState::Eof))
            || matches!(&end, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{end:?}"
    );
    assert!(got.len() < data.len(), "the queue was dropped");
    assert!(
        got == data[..got.len()],
        "the bytes sent are a clean prefix"
    );
}

#[test]
fn peer_eof_is_reported_after_every_byte_and_writing_continues() {
    let mut r = rig(Buffers::default(), CsaConfig::default());
    let data = pattern(100_000, 10);
    r.peer.write_all(&data).unwrap();
    half_close(&r.peer);
    let mut got = Vec::new();
    let mut at_eof = None;
    run_until(&r.sched, "the peer's EOF on signal", || {
        if !r.signal.is_empty() {
            // Everything read before EOF is already out of outbox.
            drain_bytes(&r.received, &mut got);
            at_eof = Some(got.len());
            return true;
        }
        false
    });
    assert_eq!(at_eof, Some(data.len()));
    assert!(got == data);
    let signal = take_all(&r.signal);
    assert_eq!(kinds(&signal), ["producerFinished"]);
    assert_peer_finished(&signal[0], &r.csa);
    assert!(r.feedback.is_empty());

    // Half-close: the CSA keeps writing until its own producer finishes.
    settle(&r.sched);
    assert!(!r.csa.is_finished());
    r.input.deliver(Bytes::from_static(b"reply")).unwrap();
    let mut back = Vec::new();
    run_until(&r.sched, "the reply at the peer", || {
        read_available(&mut r.peer, &mut back);
        back.len() >= 5
    });
    assert_eq!(back, b"reply");
    r.control.deliver(Ipc::producer_finished()).unwrap();
    run_until(&r.sched, "EOF at the peer", || {
        read_available(&mut r.peer, &mut back) == ReadState::Eof
    });
    assert_eq!(back, b"reply");
    run_until(&r.sched, "the CSA to end", || r.csa.is_finished());
    r.assert_ended(CloseReason::Eof, &[]);
}

#[test]
fn a_peer_reset_ends_it_with_the_io_error_exactly_once() {
    let Rig {
        sched,
        csa,
        info,
        received,
        feedback,
        signal,
        peer,
        ..
    } = rig(Buffers::default(), CsaConfig::default());
    settle(&sched); // the CSA is up and waiting for a read notice
    reset(peer);
    run_until(&sched, "the CSA to end", || csa.is_finished());
    settle(&sched);
    let feedback = take_all(&feedback);
    assert_eq!(kinds(&feedback), ["socketShutdown"], "{feedback:?}");
    let reset_reason = CloseReason::io(std::io::ErrorKind::ConnectionReset.into());
    assert_eq!(
        socket_shutdown(&feedback[0]),
        &SocketShutdown {
            caller: Some(csa.id()),
            connection: Some(info),
            reason: reset_reason.clone(),
        }
    );
    let signal = take_all(&signal);
    assert_eq!(kinds(&signal), ["shutdownCSA"], "a reset is not an EOF");
    assert_eq!(
        shutdown_csa(&signal[0]),
        &ShutdownCsa {
            caller: csa.id(),
            csa: csa.id(),
            connection: Some(info),
            reason: Some(reset_reason),
        }
    );
    assert!(received.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Back-pressure

#[test]
fn a_full_downstream_inbox_stops_reading_and_loses_nothing() {
    let mut r = rig(Buffers::small(), CsaConfig::default());
    r.received.set_size(Some(4));
    let data = pattern(512 * 1024, 11);
    let mut sent = 0;
    let mut stalled_rounds = 0;
    run_until(&r.sched, "the peer's writes to block", || {
        if write_available(&mut r.peer, &data, &mut sent) == 0 {
            stalled_rounds += 1;
        } else {
            stalled_rounds = 0;
        }
        stalled_rounds >= 200
    });
    assert!(
        sent < data.len(),
        "the CSA kept reading into a full inbox: the peer wrote all {sent} bytes"
    );
    assert_eq!(r.received.len(), 4, "the downstream inbox is full");
    assert!(!r.csa.is_finished());
    settle(&r.sched);
    assert_eq!(
        write_available(&mut r.peer, &data, &mut sent),
        0,
        "still blocked"
    );

    // Collecting lets everything through, intact and in order; the peer's EOF is reported only
    // once every byte before it has gone out (none is left held back by the full inbox).
    let mut got = Vec::new();
    let mut closed = false;
    run_until(&r.sched, "every byte and the peer's EOF", || {
        let eof_reported = !r.signal.is_empty();
        drain_bytes(&r.received, &mut got);
        if eof_reported {
            assert_eq!(got.len(), data.len(), "EOF reported before the last bytes");
            return true;
        }
        write_available(&mut r.peer, &data, &mut sent);
        if sent == data.len() && !closed {
            half_close(&r.peer);
            closed = true;
        }
        false
    });
    assert!(got == data, "bytes lost or reordered under back-pressure");
    assert_eq!(kinds(&take_all(&r.signal)), ["producerFinished"]);
}

#[test]
fn a_bounded_inbox_refuses_sends_while_the_socket_is_not_drained() {
    let mut r = rig(Buffers::small(), CsaConfig::default().inbox_size(4));
    assert_eq!(r.input.size(), Some(4));
    let producer = Core::new("Producer").outbox::<Bytes>("outbox", "bytes for the CSA");
    producer.link_to(&r.input).unwrap();
    let data = pattern(64 * 16 * 1024, 12);
    let msgs = chunks(&data, 16 * 1024);
    let mut next = 0;
    let mut refused = None;
    while next < msgs.len() {
        match producer.send(msgs[next].clone()) {
            Ok(()) => next += 1,
            Err(full) => {
                refused = Some(full);
                break;
            }
        }
        settle(&r.sched);
    }
    let full = refused.expect("a send was refused before 1 MiB went into a full socket");
    assert_eq!(
        full.message, msgs[next],
        "the refused message is handed back"
    );
    assert_eq!((full.len, full.size), (4, 4));
    assert!(!producer.has_room());

    // Once the peer reads, the queue drains and the rest goes through, intact.
    let mut got = Vec::new();
    run_until(&r.sched, "every byte at the peer", || {
        while next < msgs.len() && producer.send(msgs[next].clone()).is_ok() {
            next += 1;
        }
        read_available(&mut r.peer, &mut got);
        got.len() >= data.len()
    });
    assert_eq!(got.len(), data.len());
    assert!(got == data, "bytes lost or reordered");
}

// ---------------------------------------------------------------------------------------------
// makessl

#[cfg(not(feature = "tls"))]
#[test]
fn makessl_without_tls_answers_failed_and_the_connection_carries_on() {
    let mut r = rig(Buffers::default(), CsaConfig::default());
    r.makessl.deliver(MakeSsl::default()).unwrap();
    run_until(&r.sched, "an answer on sslready", || !r.sslready.is_empty());
    settle(&r.sched);
    let answers = take_all(&r.sslready);
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(
        matches!(&answers[0], SslReady::Failed(why) if why.contains("tls")),
        "{answers:?}"
    );
    r.input.deliver(Bytes::from_static(b"plain")).unwrap();
    let mut got = Vec::new();
    run_until(&r.sched, "plain bytes at the peer", || {
        read_available(&mut r.peer, &mut got);
        got.len() >= 5
    });
    assert_eq!(got, b"plain");
    assert!(!r.csa.is_finished());
}

#[test]
fn boxes_made_on_first_use_are_listed_and_work_when_made_by_name() {
    let sched = Scheduler::new();
    let selector = SelectorHandle::on(&sched).unwrap();
    let (ours, _peer) = tcp_pair_with(Buffers::default());
    let csa = ConnectedSocketAdapter::new(ours, &selector, CsaConfig::default()).unwrap();
    let core = csa.core().clone();
    // `SendReady`, `makessl`, `sslready` and `_selectorSignal` are made on first use, but listed
    // (after the boxes made) like the rest, as Kamaelia's `Inboxes` and `Outboxes` list them.
    let names = |v: Vec<(String, String)>| v.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(
        names(core.inboxes()),
        ["inbox", "control", "ReadReady", "SendReady", "makessl"]
    );
    assert_eq!(
        names(core.outboxes()),
        [
            "outbox",
            "CreatorFeedback",
            "signal",
            "sslready",
            "_selectorSignal"
        ]
    );
    // A STARTTLS-style handler linked by name, as a Graphline links: the lookups make the boxes,
    // and the adapter must find a message in a box it did not make itself.
    let handler = Core::new("Handler");
    let ask: Outbox<MakeSsl> = handler.outbox("makessl", "upgrade requests");
    let answers: Inbox<SslReady> = handler.inbox("sslready", "upgrade outcomes");
    handler
        .link_named((&handler, "makessl"), (&core, "makessl"))
        .unwrap();
    handler
        .link_named((&core, "sslready"), (&handler, "sslready"))
        .unwrap();
    sched.activate(csa);
    settle(&sched);
    ask.send(MakeSsl::default()).unwrap();
    run_until(&sched, "an answer on sslready", || !answers.is_empty());
    // Without TLS built in, or without a TLS role: either way the upgrade fails, and says so.
    assert!(
        matches!(answers.recv_now(), Some(SslReady::Failed(_))),
        "a failed upgrade reported"
    );
}

// ---------------------------------------------------------------------------------------------
// The test plays the selector

/// A CSA whose selector is never activated: its requests pile up in `notify` for the test.
struct HandRig {
    sched: Scheduler,
    handle: SelectorHandle,
    _selector: Selector,
    csa: Core,
    info: ConnectionInfo,
    input: Inbox<Bytes>,
    control: Inbox<Ipc>,
    read_ready: Inbox<Readiness>,
    send_ready: Inbox<Readiness>,
    received: Inbox<Bytes>,
    /// `CreatorFeedback` and `signal` both, so their relative order shows.
    events: Inbox<Ipc>,
    /// A second handle on the CSA's socket, to see what has arrived without taking it.
    watch: TcpStream,
    peer: TcpStream,
}

fn hand_rig(bufs: Buffers) -> HandRig {
    let sched = Scheduler::new();
    let selector = Selector::new().unwrap();
    let handle = selector.handle();
    let (ours, peer) = std_pair_with(bufs);
    let watch = ours.try_clone().unwrap();
    let csa = ConnectedSocketAdapter::new(
        mio::net::TcpStream::from_std(ours),
        &handle,
        CsaConfig::default(),
    )
    .unwrap();
    let received = collector("bytes from the peer");
    let events = collector("CreatorFeedback and signal");
    csa.outbox().link_to(&received).unwrap();
    csa.creator_feedback().link_to(&events).unwrap();
    csa.signal().link_to(&events).unwrap();
    let r = HandRig {
        csa: csa.core().clone(),
        info: csa.info(),
        input: csa.inbox().clone(),
        control: csa.control().clone(),
        read_ready: csa.read_ready().clone(),
        send_ready: csa.send_ready().clone(),
        sched: sched.clone(),
        handle,
        _selector: selector,
        received,
        events,
        watch,
        peer,
    };
    sched.activate(csa);
    r
}

impl HandRig {
    /// The requests the CSA has sent, as `(kind, token, reply box)`, checking each names the CSA.
    fn requests(&self) -> Vec<(&'static str, usize, String)> {
        self.handle
            .notify()
            .drain()
            .map(|m| {
                assert_eq!(request_caller(&m), Some(self.csa.id()));
                describe_request(&m)
            })
            .collect()
    }

    /// Starts the CSA and returns the token its first request names.
    fn start(&self) -> usize {
        self.sched.try_tick();
        let reqs = self.requests();
        assert_eq!(reqs.len(), 1, "{reqs:?}");
        reqs[0].1
    }
}

fn read_req(token: usize) -> (&'static str, usize, String) {
    ("newReader", token, "ReadReady".to_owned())
}

fn write_req(token: usize) -> (&'static str, usize, String) {
    ("newWriter", token, "SendReady".to_owned())
}

#[test]
fn hand_startup_asks_for_one_read_notice_through_selector_signal() {
    let r = hand_rig(Buffers::default());
    let linked = |r: &HandRig| {
        r.csa
            .linkages()
            .iter()
            .any(|l| l.to_string().contains("_selectorSignal"))
    };
    // `_selectorSignal` is made and linked on first use: here, where no selector runs to apply
    // the request at once, the adapter's first request.
    assert!(!linked(&r), "not linked before it is needed");
    assert_eq!(r.handle.registrations(), 1, "registered with the selector");
    r.sched.try_tick();
    assert!(
        linked(&r),
        "linked to the selector's notify when first needed"
    );
    let reqs = r.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let token = reqs[0].1;
    assert_eq!(reqs, [read_req(token)], "one newReader, no newWriter");
    assert!(r.csa.is_paused());
    settle(&r.sched);
    assert!(
        r.requests().is_empty(),
        "no repeat while the request stands"
    );
    assert!(r.received.is_empty() && r.events.is_empty());
}

#[test]
fn hand_a_complete_write_needs_no_registration_and_a_blocked_write_asks_for_one_write_notice() {
    let mut r = hand_rig(Buffers::small());
    let token = r.start();

    // A write that completes needs no notice.
    r.input.deliver(Bytes::from_static(b"hello")).unwrap();
    r.sched.try_tick();
    let mut hello = [0u8; 5];
    r.peer.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"hello");
    assert!(r.requests().is_empty());

    // A write that would block asks for exactly one write notice; the rest stays queued.
    let data = pattern(64 * 16 * 1024, 13);
    for m in chunks(&data, 16 * 1024) {
        r.input.deliver(m).unwrap();
    }
    settle(&r.sched);
    assert_eq!(r.requests(), [write_req(token)]);
    assert!(!r.input.is_empty());
    settle(&r.sched);
    assert!(
        r.requests().is_empty(),
        "no repeat while the request stands"
    );

    // Each notice resumes from the unsent offset; the peer gets every byte in order. The test
    // answers a request once the peer has read something, or after a while anyway (readiness is a
    // hint: an early notice just makes the CSA ask again).
    let mut got = Vec::new();
    let mut waiting = true; // the request checked above
    let mut rounds = 0;
    let mut peer = r.peer.try_clone().unwrap();
    run_until(&r.sched, "every byte at the peer", || {
        for req in r.requests() {
            assert_eq!(req, write_req(token), "only write notices are asked for");
            waiting = true;
        }
        let before = got.len();
        read_available(&mut peer, &mut got);
        rounds += 1;
        if waiting && (got.len() > before || rounds >= 20) {
            waiting = false;
            rounds = 0;
            r.send_ready
                .deliver(Readiness {
                    token: mio::Token(token),
                })
                .unwrap();
        }
        got.len() >= data.len()
    });
    assert_eq!(got.len(), data.len());
    assert!(got == data, "bytes lost or reordered across write notices");
}

#[test]
fn hand_reads_until_would_block_then_asks_again_and_reports_the_end_in_order() {
    let mut r = hand_rig(Buffers::default());
    let token = r.start();
    let notice = Readiness {
        token: mio::Token(token),
    };

    r.peer.write_all(b"abc").unwrap();
    r.peer.write_all(b"def").unwrap();
    wait_for_bytes_std(&r.watch, 6);
    r.read_ready.deliver(notice).unwrap();
    r.sched.try_tick();
    let mut got = Vec::new();
    drain_bytes(&r.received, &mut got);
    assert_eq!(got, b"abcdef", "read until would-block");
    assert_eq!(r.requests(), [read_req(token)], "then one newReader");

    // Peer EOF: reported on signal, the CSA stays up (half-close) and stops asking to read.
    half_close(&r.peer);
    wait_for_bytes_std(&r.watch, 0);
    r.read_ready.deliver(notice).unwrap();
    r.sched.try_tick();
    let events = take_all(&r.events);
    assert_eq!(kinds(&events), ["producerFinished"]);
    assert_peer_finished(&events[0], &r.csa);
    assert!(r.requests().is_empty());
    settle(&r.sched);
    assert!(!r.csa.is_finished());

    // Our producer finishing closes the other side: the end is reported once, in Kamaelia's order
    // (CreatorFeedback, signal, then the selector removals), with the real connection.
    r.control.deliver(Ipc::producer_finished()).unwrap();
    run_until(&r.sched, "the CSA to end", || r.csa.is_finished());
    settle(&r.sched);
    let events = take_all(&r.events);
    assert_eq!(kinds(&events), ["socketShutdown", "shutdownCSA"]);
    assert_eq!(
        socket_shutdown(&events[0]),
        &SocketShutdown {
            caller: Some(r.csa.id()),
            connection: Some(r.info),
            reason: CloseReason::Eof,
        }
    );
    assert_eq!(
        shutdown_csa(&events[1]),
        &ShutdownCsa {
            caller: r.csa.id(),
            csa: r.csa.id(),
            connection: Some(r.info),
            reason: Some(CloseReason::Eof),
        }
    );
    assert_eq!(
        r.requests(),
        [
            ("removeReader", token, String::new()),
            ("removeWriter", token, String::new())
        ]
    );
    assert_eq!(r.handle.registrations(), 0, "deregistered");
    let mut rest = Vec::new();
    assert_eq!(read_available(&mut r.peer, &mut rest), ReadState::Eof);
    assert!(rest.is_empty());
}
