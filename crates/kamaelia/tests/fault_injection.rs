//! The `ConnectedSocketAdapter`'s state machine under injected faults, deterministically: the
//! socket is a [`FaultySocket`] scripted call by call and the test plays the selector
//! ([`FaultRig`], in `fault/mod.rs`). No timing: every step runs the scheduler until nothing is
//! runnable, and a CSA that would spin fails the step.
//!
//! Every test checks that no promised byte is lost or reordered (what was queued before
//! `producerFinished` is on the wire, in order, before the FIN; what was read before EOF came out
//! of `outbox`, in order, before `producerFinished` on `signal`), and that the CSA reports its end
//! exactly once: one `socketShutdown` on `CreatorFeedback` and one `shutdownCSA` on `signal`, with
//! the expected `CloseReason`, then `removeReader` / `removeWriter` once.
//!
//! | failure | test |
//! |---|---|
//! | partial writes at every size, with `producerFinished` drain | [`partial_writes_of_every_size_lose_nothing_and_the_fin_comes_last`], [`a_send_buffer_filling_at_every_byte_loses_nothing`] |
//! | `EAGAIN` at every read step | [`would_block_at_every_read_step_loses_nothing`] |
//! | `EAGAIN` at every write step | [`would_block_at_every_write_step_loses_nothing`] |
//! | spurious `ReadReady` / `SendReady` | [`spurious_readiness_is_harmless`] |
//! | missing readiness | [`missing_readiness_leaves_the_csa_paused_until_the_notice_comes`] |
//! | `EINTR` on read and write | [`interrupted_reads_and_writes_are_retried`] |
//! | `ECONNRESET` on read mid-stream | [`a_reset_on_read_delivers_the_bytes_read_before_it_first`] |
//! | `EPIPE` on write with queued data | [`a_broken_pipe_on_write_ends_it_with_that_error`] |
//! | `EMFILE` as a read or write error | [`emfile_ends_only_the_csa_that_hit_it`] |
//! | peer EOF while a full downstream inbox holds data | [`peer_eof_behind_a_full_downstream_is_reported_after_every_byte`] |
//! | `shutdownMicroprocess` while write-blocked | [`shutdown_while_write_blocked_drops_the_queue_and_reports_once`] |
//! | the FIN itself failing | [`a_failing_fin_is_an_error_unless_the_peer_is_already_gone`] |

mod fault;
mod util;

use std::io;
use std::net::Shutdown;

use axon::ipc::CloseReason;
use axon::{Component, Ipc, Scheduler};
use bytes::Bytes;
use kamaelia::internet::CsaConfig;
use kamaelia::protocols::Echo;

use fault::{
    messages, os_reason, raw_os_error, Fault, FaultRig, ECONNRESET, EMFILE, ENOTCONN, EPIPE,
};

/// Message sizes for the write tests: one empty, one of a single byte, some odd sizes.
const SIZES: &[usize] = &[5, 0, 7, 1, 64, 13, 2, 40];

/// Ends a CSA whose write side is done (FIN sent) by the peer's EOF, checking the end.
fn end_by_peer_eof(r: &mut FaultRig, reason: CloseReason) {
    r.sock.borrow_mut().eof = true;
    r.pump();
    r.assert_ended(reason, &["producerFinished"]);
}

/// Checks everything in `data` is on the wire in order, followed by the FIN, and the CSA lives on.
fn assert_drained_then_fin(r: &FaultRig, data: &[u8], what: &str) {
    let s = r.sock.borrow();
    assert!(
        s.wire == data,
        "{what}: bytes lost or reordered on the wire"
    );
    assert_eq!(
        s.fin_at,
        Some(data.len()),
        "{what}: the FIN must follow the last byte"
    );
    assert!(!r.csa.is_finished(), "{what}: the read side is still open");
}

// ---------------------------------------------------------------------------------------------
// Partial writes and EAGAIN

#[test]
fn partial_writes_of_every_size_lose_nothing_and_the_fin_comes_last() {
    let (msgs, data) = messages(SIZES, 1);
    for k in 1..=data.len() + 1 {
        let mut r = FaultRig::new(CsaConfig::default());
        // Every write takes at most k bytes.
        r.sock.borrow_mut().write_faults =
            std::iter::repeat_n(Fault::Partial(k), data.len() + 8).collect();
        r.queue(&msgs);
        r.producer_finished();
        r.pump();
        assert_drained_then_fin(&r, &data, &format!("writes of at most {k} bytes"));
        assert_eq!(r.writer_requests, 0, "a short write is not a would-block");
        end_by_peer_eof(&mut r, CloseReason::ProducerFinished);
    }
}

#[test]
fn a_send_buffer_filling_at_every_byte_loses_nothing() {
    let (msgs, data) = messages(SIZES, 2);
    for k in 0..data.len() {
        let mut r = FaultRig::new(CsaConfig::default());
        // The send buffer takes k bytes, then would block mid-message; producerFinished comes
        // with the data and must wait for the rest.
        r.sock.borrow_mut().write_room = Some(k);
        r.queue(&msgs);
        r.producer_finished();
        r.pump();
        assert_eq!(r.wire(), &data[..k], "split at {k}");
        assert!(
            r.writer_wanted,
            "split at {k}: blocked without asking for a write notice"
        );
        assert_eq!(
            r.sock.borrow().fin_at,
            None,
            "split at {k}: FIN before the data"
        );
        assert!(r.csa.is_paused());
        // The peer reads: room again, one notice, everything else follows, then the FIN.
        r.sock.borrow_mut().write_room = None;
        r.pump();
        assert_drained_then_fin(&r, &data, &format!("split at {k}"));
        end_by_peer_eof(&mut r, CloseReason::ProducerFinished);
    }
}

#[test]
fn would_block_at_every_write_step_loses_nothing() {
    let (msgs, data) = messages(SIZES, 3);
    // Writes of at most 7 bytes: how many calls a clean run needs.
    let calls: usize = SIZES.iter().map(|n| n.div_ceil(7)).sum();
    for p in 0..=calls {
        let mut r = FaultRig::new(CsaConfig::default());
        let faults = (0..=calls)
            .map(|i| {
                if i == p {
                    Fault::WouldBlock
                } else {
                    Fault::Partial(7)
                }
            })
            .collect();
        r.sock.borrow_mut().write_faults = faults;
        r.queue(&msgs);
        r.producer_finished();
        r.pump();
        assert_drained_then_fin(&r, &data, &format!("EAGAIN at write {p}"));
        if p < calls {
            assert_eq!(
                r.writer_requests, 1,
                "EAGAIN at write {p}: one write notice asked for"
            );
        }
        end_by_peer_eof(&mut r, CloseReason::ProducerFinished);
    }
}

#[test]
fn would_block_at_every_read_step_loses_nothing() {
    let data = util::pattern(200, 4);
    // Reads of at most 16 bytes, then the EOF read.
    let calls = data.len().div_ceil(16) + 1;
    for p in 0..=calls {
        let mut r = FaultRig::new(CsaConfig::default());
        {
            let mut s = r.sock.borrow_mut();
            s.send(&data);
            s.eof = true;
            s.read_faults = (0..=calls)
                .map(|i| {
                    if i == p {
                        Fault::WouldBlock
                    } else {
                        Fault::Partial(16)
                    }
                })
                .collect();
        }
        r.pump();
        r.collect();
        assert!(r.got == data, "EAGAIN at read {p}: bytes lost or reordered");
        assert_eq!(r.signal_kinds(), ["producerFinished"], "EAGAIN at read {p}");
        assert_eq!(
            r.sock.borrow().fin_at,
            None,
            "EOF must not close our write side"
        );
        // Still writable after the peer's EOF; our producerFinished ends it.
        r.queue(&[Bytes::from_static(b"after eof")]);
        r.producer_finished();
        r.pump();
        assert_eq!(r.wire(), b"after eof");
        r.assert_ended(CloseReason::Eof, &["producerFinished"]);
    }
}

// ---------------------------------------------------------------------------------------------
// Readiness that lies, or never comes

#[test]
fn spurious_readiness_is_harmless() {
    let mut r = FaultRig::new(CsaConfig::default());
    r.step();
    assert!(r.reader_wanted && !r.writer_wanted);
    assert_eq!(r.sock.borrow().reads, 1);

    // ReadReady with nothing to read (several at once): one read, EAGAIN, one new request.
    r.notify_read();
    r.notify_read();
    r.notify_read();
    r.step();
    assert_eq!(r.sock.borrow().reads, 2, "queued notices are one wake-up");
    assert!(r.reader_wanted, "asked again after the spurious notice");
    assert!(r.received.is_empty());

    // SendReady with nothing queued: no write, no request.
    r.notify_write();
    r.step();
    assert_eq!(r.sock.borrow().writes, 0);
    assert!(!r.writer_wanted);

    // SendReady while the socket still would block: one attempt, then ask again.
    let (msgs, data) = messages(SIZES, 5);
    r.sock.borrow_mut().write_room = Some(3);
    r.queue(&msgs);
    r.step();
    assert!(r.writer_wanted);
    let writes = r.sock.borrow().writes;
    r.notify_write();
    r.step();
    assert_eq!(r.sock.borrow().writes, writes + 1);
    assert!(r.writer_wanted, "asked again after the spurious notice");
    assert_eq!(r.wire(), &data[..3]);
    assert!(r.csa.is_paused());

    // Real readiness: everything, in order; then data both ways to show nothing is stuck.
    r.sock.borrow_mut().write_room = None;
    r.pump();
    assert!(r.wire() == data);
    r.sock.borrow_mut().send(b"inbound");
    r.pump();
    r.collect();
    assert_eq!(r.got, b"inbound");
    r.producer_finished();
    r.pump();
    assert_drained_then_fin(&r, &data, "after spurious notices");
    end_by_peer_eof(&mut r, CloseReason::ProducerFinished);
}

#[test]
fn missing_readiness_leaves_the_csa_paused_until_the_notice_comes() {
    let mut r = FaultRig::new(CsaConfig::default());
    r.step();
    assert!(r.reader_wanted);
    // The peer sends, but the readiness edge is never delivered.
    r.sock.borrow_mut().send(b"first");
    let (msgs, data) = messages(SIZES, 6);
    r.sock.borrow_mut().write_room = Some(10);
    r.queue(&msgs);
    r.step();
    assert!(r.writer_wanted);
    assert_eq!(r.wire(), &data[..10]);
    // The send buffer drains too, again without a notice.
    r.sock.borrow_mut().write_room = None;
    let (reads, writes) = (r.sock.borrow().reads, r.sock.borrow().writes);
    for _ in 0..50 {
        r.step();
        assert!(r.csa.is_paused(), "waiting for readiness must not spin");
    }
    assert_eq!(
        (r.sock.borrow().reads, r.sock.borrow().writes),
        (reads, writes),
        "no socket calls without a notice"
    );
    assert!(r.received.is_empty());
    assert_eq!(
        (r.reader_requests, r.writer_requests),
        (1, 1),
        "no repeated requests"
    );

    // The notices finally come: everything proceeds.
    r.notify_read();
    r.step();
    r.collect();
    assert_eq!(r.got, b"first");
    assert!(r.wire().len() == 10, "a read notice does not write");
    r.notify_write();
    r.step();
    assert!(r.wire() == data);
    r.producer_finished();
    r.pump();
    assert_drained_then_fin(&r, &data, "after late notices");
    end_by_peer_eof(&mut r, CloseReason::ProducerFinished);
}

#[test]
fn interrupted_reads_and_writes_are_retried() {
    let config = CsaConfig::default();
    let budget = config.reads_per_wake;
    let mut r = FaultRig::new(config);
    let inbound = util::pattern(100, 7);
    let (msgs, data) = messages(SIZES, 8);
    {
        let mut s = r.sock.borrow_mut();
        s.send(&inbound);
        // More interruptions in a row than one wake-up's read budget: the CSA yields and carries
        // on without a notice.
        s.read_faults = std::iter::repeat_n(Fault::Interrupted, budget * 2 + 1)
            .chain([Fault::Partial(3), Fault::Interrupted, Fault::Partial(50)])
            .collect();
        s.write_faults = [
            Fault::Interrupted,
            Fault::Partial(2),
            Fault::Interrupted,
            Fault::Interrupted,
            Fault::Partial(9),
            Fault::Interrupted,
        ]
        .into();
    }
    r.queue(&msgs);
    r.producer_finished();
    r.pump();
    r.collect();
    assert!(
        r.got == inbound,
        "bytes lost or reordered across EINTR on read"
    );
    assert_drained_then_fin(&r, &data, "EINTR on write");
    assert_eq!(r.writer_requests, 0, "EINTR is not a would-block");
    assert_eq!(
        r.reader_requests, 1,
        "only the final EAGAIN asks for a read notice"
    );
    end_by_peer_eof(&mut r, CloseReason::ProducerFinished);
}

// ---------------------------------------------------------------------------------------------
// Errors

#[test]
fn a_reset_on_read_delivers_the_bytes_read_before_it_first() {
    let inbound = util::pattern(100, 9);
    // The reset as the OS reports it, and as a bare error kind.
    let resets = [
        Fault::Os(ECONNRESET),
        Fault::Error(io::ErrorKind::ConnectionReset),
    ];
    for (p, reset, bound) in (0..5)
        .flat_map(|p| resets.map(|f| (p, f)))
        .flat_map(|(p, f)| [None, Some(1)].map(|b| (p, f, b)))
    {
        let mut r = FaultRig::new(CsaConfig::default());
        // A slow consumer (bound 1) holds the reader back: the reset is found only after
        // every chunk before it has been taken.
        r.received.set_size(bound);
        {
            let mut s = r.sock.borrow_mut();
            s.send(&inbound);
            s.read_faults = std::iter::repeat_n(Fault::Partial(20), p)
                .chain([reset])
                .collect();
        }
        r.queue(&[Bytes::from_static(b"queued")]);
        r.pump();
        while !r.csa.is_finished() {
            assert!(r.take_one(), "p={p}: paused with nothing held back");
            r.pump();
        }
        r.collect();
        assert!(
            r.got == inbound[..20 * p],
            "p={p} {reset:?} {bound:?}: bytes read before the reset"
        );
        let reason = r.assert_ended(os_reason(ECONNRESET), &[]);
        if let Fault::Os(code) = reset {
            assert_eq!(raw_os_error(&reason), Some(code));
        }
        assert!(
            matches!(&reason, CloseReason::Io(e) if e.kind() == io::ErrorKind::ConnectionReset)
        );
        assert_eq!(r.wire(), b"queued");
        assert_eq!(
            r.sock.borrow().shutdowns,
            [Shutdown::Both],
            "no FIN before the end"
        );
    }
}

#[test]
fn a_broken_pipe_on_write_ends_it_with_that_error() {
    // Short writes of 6 bytes stay inside the first message, so the wire's length is exact.
    let (msgs, data) = messages(&[30, 30, 30], 10);
    for p in 0..5 {
        let mut r = FaultRig::new(CsaConfig::default());
        r.sock.borrow_mut().write_faults = std::iter::repeat_n(Fault::Partial(6), p)
            .chain([Fault::Os(EPIPE)])
            .collect();
        r.queue(&msgs);
        r.producer_finished();
        r.pump();
        // What did go out is the start of the stream, in order; nothing after the error.
        let wire = r.wire();
        assert!(
            wire == data[..6 * p],
            "p={p}: the wire is not the stream's start"
        );
        assert_eq!(r.sock.borrow().writes, p + 1, "p={p}: no write after EPIPE");
        assert_eq!(
            r.sock.borrow().shutdowns,
            [Shutdown::Both],
            "p={p}: no drained FIN"
        );
        let reason = r.assert_ended(os_reason(EPIPE), &[]);
        assert!(matches!(&reason, CloseReason::Io(e) if e.kind() == io::ErrorKind::BrokenPipe));
        assert_eq!(raw_os_error(&reason), Some(EPIPE));
    }
}

#[test]
fn emfile_ends_only_the_csa_that_hit_it() {
    for on_write in [false, true] {
        let sched = Scheduler::new();
        let mut hit = FaultRig::on(&sched, CsaConfig::default());
        let mut other = FaultRig::on(&sched, CsaConfig::default());
        if on_write {
            hit.sock.borrow_mut().write_faults = [Fault::Partial(4), Fault::Os(EMFILE)].into();
            hit.queue(&[Bytes::from_static(b"0123456789")]);
        } else {
            let mut s = hit.sock.borrow_mut();
            s.send(b"abc");
            s.read_faults = [Fault::Pass, Fault::Os(EMFILE)].into();
        }
        other.sock.borrow_mut().send(b"still here");
        other.queue(&[Bytes::from_static(b"and writing")]);
        hit.pump();
        other.pump();
        hit.collect();
        let reason = hit.assert_ended(os_reason(EMFILE), &[]);
        assert_eq!(raw_os_error(&reason), Some(EMFILE));
        if on_write {
            assert_eq!(hit.wire(), b"0123");
        } else {
            assert_eq!(hit.got, b"abc");
        }

        // The other connection is untouched and carries on to a clean end.
        assert!(!other.csa.is_finished());
        other.collect();
        assert_eq!(other.got, b"still here");
        assert_eq!(other.wire(), b"and writing");
        other.producer_finished();
        other.pump();
        end_by_peer_eof(&mut other, CloseReason::ProducerFinished);
    }
}

#[test]
fn a_failing_fin_is_an_error_unless_the_peer_is_already_gone() {
    let (msgs, data) = messages(SIZES, 11);
    // ENOTCONN: the peer is gone already; the FIN is moot, not an error.
    let mut r = FaultRig::new(CsaConfig::default());
    r.sock.borrow_mut().shutdown_faults = [Fault::Os(ENOTCONN)].into();
    r.queue(&msgs);
    r.producer_finished();
    r.pump();
    assert!(r.wire() == data);
    assert!(!r.csa.is_finished());
    // The write side counts as closed: more data is not sent.
    r.queue(&[Bytes::from_static(b"late")]);
    r.pump();
    assert!(r.wire() == data);
    end_by_peer_eof(&mut r, CloseReason::ProducerFinished);

    // EPIPE on the FIN: an error, after every byte went out.
    let mut r = FaultRig::new(CsaConfig::default());
    r.sock.borrow_mut().shutdown_faults = [Fault::Os(EPIPE)].into();
    r.queue(&msgs);
    r.producer_finished();
    r.pump();
    assert!(r.wire() == data);
    r.assert_ended(os_reason(EPIPE), &[]);
}

// ---------------------------------------------------------------------------------------------
// EOF and shutdown

#[test]
fn peer_eof_behind_a_full_downstream_is_reported_after_every_byte() {
    let mut r = FaultRig::new(CsaConfig::default().read_size(10));
    r.received.set_size(Some(2));
    let inbound = util::pattern(95, 12);
    {
        let mut s = r.sock.borrow_mut();
        s.send(&inbound);
        s.eof = true;
    }
    r.pump();
    assert_eq!(r.received.len(), 2, "the downstream inbox is full");
    assert!(r.csa.is_paused(), "held back, waiting for the consumer");
    assert!(r.signal_kinds().is_empty(), "EOF reported before the bytes");
    // The consumer takes one chunk at a time; `collect` checks that when the EOF shows up on
    // `signal`, every byte before it has already come out of `outbox`.
    while r.signal_kinds().is_empty() {
        assert!(r.take_one(), "nothing held, yet no EOF reported");
        r.pump();
        assert_eq!(r.sock.borrow().fin_at, None);
    }
    r.collect();
    assert!(
        r.got == inbound,
        "bytes lost or reordered behind the full inbox"
    );
    assert_eq!(r.signal_kinds(), ["producerFinished"]);
    assert!(
        !r.csa.is_finished(),
        "the write side stays open until producerFinished"
    );

    // Writing still works after the peer's EOF; producerFinished drains, sends the FIN and ends.
    let (msgs, data) = messages(SIZES, 13);
    r.sock.borrow_mut().write_faults = [Fault::Partial(3), Fault::WouldBlock].into();
    r.queue(&msgs);
    r.pump();
    assert!(r.wire() == data);
    assert!(!r.csa.is_finished());
    r.queue(&[Bytes::from_static(b"last")]);
    r.producer_finished();
    r.pump();
    let mut all = data;
    all.extend_from_slice(b"last");
    assert_eq!(r.sock.borrow().fin_at, Some(all.len()));
    assert!(r.wire() == all);
    r.assert_ended(CloseReason::Eof, &["producerFinished"]);
}

#[test]
fn shutdown_while_write_blocked_drops_the_queue_and_reports_once() {
    let (msgs, data) = messages(SIZES, 14);
    let mut r = FaultRig::new(CsaConfig::default());
    r.sock.borrow_mut().write_room = Some(9);
    r.sock.borrow_mut().send(b"in");
    r.queue(&msgs);
    r.producer_finished();
    r.pump();
    assert_eq!(r.wire(), &data[..9]);
    assert!(r.writer_wanted && r.csa.is_paused());
    assert!(!r.input.is_empty());

    r.control.deliver(Ipc::shutdown_microprocess()).unwrap();
    r.control.deliver(Ipc::shutdown_microprocess()).unwrap();
    r.sock.borrow_mut().write_room = None;
    r.step();
    assert!(r.csa.is_finished());
    assert_eq!(
        r.wire(),
        &data[..9],
        "nothing written after shutdownMicroprocess"
    );
    {
        let s = r.sock.borrow();
        assert_eq!(
            s.fin_at,
            Some(9),
            "closed by the final shutdown, not a drained FIN"
        );
        assert_eq!(s.shutdowns, [Shutdown::Both]);
        assert!(!s.reset_on_close);
    }
    r.collect();
    assert_eq!(r.got, b"in");
    r.assert_ended(CloseReason::Shutdown, &[]);
}

// ---------------------------------------------------------------------------------------------
// Hand-off

#[test]
fn a_chunk_handed_off_ends_the_wake_and_the_rest_follows_in_order() {
    // Ten-byte reads of 100 waiting bytes: without a hand-off one wake reads the budget (8 chunks);
    // with every chunk handed off, one wake passes one chunk on and yields, so the handler could
    // run before the next read.
    let budget = CsaConfig::default().reads_per_wake;
    for (hand_off, chunks_in_first_wake) in [(None, budget), (Some(10), 1)] {
        let config = CsaConfig::default().read_size(10).hand_off_bytes(hand_off);
        let mut r = FaultRig::new(config);
        r.step();
        let inbound = util::pattern(100, 3);
        r.sock.borrow_mut().send(&inbound);
        r.notify_read();
        r.sched.try_tick();
        assert_eq!(
            r.received.len(),
            chunks_in_first_wake,
            "hand_off_bytes {hand_off:?}"
        );
        r.pump();
        r.collect();
        assert!(
            r.got == inbound,
            "hand_off_bytes {hand_off:?}: bytes lost or reordered"
        );
        assert_eq!(r.reader_requests, 2, "one read notice asked for per drain");
    }
}

#[test]
fn a_handler_that_answers_at_once_runs_inside_the_adapters_poll() {
    // An echo handler between the adapter's outbox and inbox; 100 waiting bytes read ten at a
    // time. One poll of the adapter (the scheduler's one tick polls only what was runnable when
    // it began: the adapter, not the sleeping echo) already writes echoes, because each chunk's
    // handler runs inside it; it writes only some, because a poll has a bounded number of
    // passes. Without hand-offs the echo runs after the adapter's poll, so the tick writes none.
    for hand_off in [None, CsaConfig::default().hand_off_bytes] {
        let config = CsaConfig::default().read_size(10).hand_off_bytes(hand_off);
        let mut r = FaultRig::new(config);
        let outbox = r
            .csa
            .outbox_named::<Bytes>("outbox")
            .expect("the CSA has an outbox");
        outbox.unlink();
        let echo = Echo::new();
        let echo_in = echo.core().find_inbox::<Bytes>("inbox").expect("inbox");
        let echo_out = echo.core().find_outbox::<Bytes>("outbox").expect("outbox");
        outbox.link_to(&echo_in).expect("fresh link");
        echo_out.link_to(&r.input).expect("fresh link");
        r.sched.activate(echo);
        r.step();
        let inbound = util::pattern(100, 5);
        r.sock.borrow_mut().send(&inbound);
        r.notify_read();
        r.sched.try_tick();
        let first = r.wire();
        match hand_off {
            None => assert!(first.is_empty(), "no hand-off: {} bytes", first.len()),
            Some(_) => assert!(
                !first.is_empty() && first.len() < inbound.len() && inbound.starts_with(&first),
                "one poll wrote {} bytes",
                first.len()
            ),
        }
        r.pump();
        assert!(
            r.wire() == inbound,
            "hand_off_bytes {hand_off:?}: echo lost or reordered bytes"
        );
    }
}
