//! The echo handler on its own, wired to plain boxes: every chunk goes back in order, and a
//! `producerFinished` is passed on only after the last of them, even when it arrives while the
//! echo waits for room downstream (its `control` is looked into only when its delivery flag says
//! something came).

use axon::{Component, Core, Inbox, Ipc, Scheduler};
use bytes::Bytes;
use kamaelia::protocols::Echo;

struct Wired {
    sched: Scheduler,
    /// The echo's `inbox` and `control`.
    to_echo: Inbox<Bytes>,
    to_control: Inbox<Ipc>,
    /// What the echo's `outbox` and `signal` feed.
    echoed: Inbox<Bytes>,
    signalled: Inbox<Ipc>,
    echo: Core,
}

/// An echo whose `outbox` feeds an inbox with room for `room` chunks.
fn wired(room: usize) -> Wired {
    let echo = Echo::new();
    let core = echo.core().clone();
    let sink = Core::new("Sink");
    let echoed: Inbox<Bytes> = sink.inbox("inbox", "echoed chunks");
    echoed.set_size(Some(room));
    let signalled: Inbox<Ipc> = sink.inbox("control", "the echo's signal");
    sink.link(&core.outbox_named::<Bytes>("outbox").unwrap(), &echoed)
        .unwrap();
    sink.link(&core.outbox_named::<Ipc>("signal").unwrap(), &signalled)
        .unwrap();
    let to_echo = core.inbox_named::<Bytes>("inbox").unwrap();
    let to_control = core.inbox_named::<Ipc>("control").unwrap();
    let sched = Scheduler::new();
    sched.activate(echo);
    Wired {
        sched,
        to_echo,
        to_control,
        echoed,
        signalled,
        echo: core,
    }
}

fn chunk(i: usize) -> Bytes {
    Bytes::from(format!("chunk {i}"))
}

#[test]
fn a_finish_that_arrives_while_the_echo_waits_for_room_follows_every_chunk() {
    let w = wired(1);
    for i in 0..5 {
        w.to_echo.deliver(chunk(i)).unwrap();
    }
    w.sched.run_until_idle(100);
    // One chunk out, the echo waiting for room with four more: now the peer finishes.
    assert_eq!(w.echoed.len(), 1);
    w.to_control.deliver(Ipc::producer_finished()).unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        w.sched.run_until_idle(100);
        assert!(
            w.signalled.is_empty() || got.len() == 4,
            "producerFinished passed on with {} of 5 chunks collected",
            got.len()
        );
        got.push(w.echoed.recv_now().expect("a chunk echoed"));
    }
    w.sched.run_until_idle(100);
    assert_eq!(got, (0..5).map(chunk).collect::<Vec<_>>());
    let finished = w.signalled.recv_now().expect("producerFinished passed on");
    assert!(finished.is_producer_finished(), "{finished:?}");
    assert!(w.echoed.is_empty() && w.signalled.is_empty());
    assert!(w.echo.is_finished(), "the echo has ended");
}

#[test]
fn notices_on_control_change_nothing_and_a_shutdown_ends_the_echo_at_once() {
    let w = wired(16);
    w.to_control
        .deliver(Ipc::Status("draining".to_owned()))
        .unwrap();
    w.to_echo.deliver(chunk(1)).unwrap();
    w.sched.run_until_idle(100);
    assert_eq!(w.echoed.recv_now(), Some(chunk(1)), "still echoing");
    assert!(!w.echo.is_finished());
    w.to_control.deliver(Ipc::shutdown_microprocess()).unwrap();
    w.sched.run_until_idle(100);
    assert!(w.echo.is_finished(), "ended");
    assert!(w.signalled.is_empty(), "nothing passed on for a shutdown");
}
