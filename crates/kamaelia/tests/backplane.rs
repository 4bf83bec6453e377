//! `Backplane`: publish/subscribe with back-pressure. A subscriber that keeps collecting gets every
//! message, in order, however far a burst outruns its inbox; one that collects nothing is dropped
//! after the slow-subscriber timeout and the others go on; what the backplane holds stays bounded
//! whatever the publishers do. The chat handler on top of it keeps a reading client through a
//! burst of lines from another.
//!
//! Nothing here asserts how long anything took: the timeouts are short so that "eventually" comes
//! soon, and every wait is bounded by the helpers' `LIMIT`.

mod util;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use axon::{Component, Core, FnComponent, Inbox, Ipc, Scheduler};
use bytes::Bytes;
use kamaelia::protocols::chat::{ChatHandler, CLIENT_QUEUE};
use kamaelia::util::{Backplane, BackplaneHandle, BackplaneMsg, PUBLISH_QUEUE};

use util::{collector, run, run_until};

/// Message `i` of a test burst.
fn msg(i: usize) -> Bytes {
    Bytes::from(format!("message {i}\n"))
}

/// Messages `0..n`.
fn burst(n: usize) -> Vec<Bytes> {
    (0..n).map(msg).collect()
}

/// What a reader collected, and whether the backplane dropped it.
#[derive(Default)]
struct Heard {
    messages: Vec<Bytes>,
    dropped: bool,
}

/// A subscriber that collects `want` messages through an inbox of `size` (then ends), or ends when
/// the backplane drops it. Subscribed before it runs, so it misses nothing published after.
fn reader(sched: &Scheduler, bp: &BackplaneHandle, size: usize, want: usize) -> Rc<RefCell<Heard>> {
    let heard = Rc::new(RefCell::new(Heard::default()));
    let out = heard.clone();
    let subscription = Rc::new(RefCell::new(None));
    let guard = subscription.clone();
    let r = FnComponent::<Bytes, (), _>::new("Reader", move |b| async move {
        // Unsubscribes when the reader ends.
        let _subscription = guard.borrow_mut().take();
        loop {
            while let Some(m) = b.inbox.recv_now() {
                out.borrow_mut().messages.push(m);
            }
            if out.borrow().messages.len() >= want {
                return;
            }
            if b.control.drain().any(|c| c.is_shutdown_microprocess()) {
                out.borrow_mut().dropped = true;
                return;
            }
            b.core.pause_for_delivery().await;
        }
    });
    r.boxes().inbox.set_size(Some(size));
    // Subscribed now, not when it first runs: the publishers may run first.
    *subscription.borrow_mut() = Some(bp.subscribe(
        r.core().id(),
        r.boxes().inbox.clone(),
        r.boxes().control.clone(),
    ));
    sched.activate(r);
    heard
}

/// A publisher that sends `messages` through an outbox linked to the backplane, waiting for room.
fn publisher(sched: &Scheduler, bp: &BackplaneHandle, messages: Vec<Bytes>) -> Core {
    let p = FnComponent::<(), BackplaneMsg, _>::new("Publisher", move |b| async move {
        let me = b.core.id();
        for data in messages {
            b.outbox
                .send_wait(BackplaneMsg::Publish { from: me, data })
                .await;
        }
    });
    bp.link_publisher(p.core(), &p.boxes().outbox)
        .expect("a new outbox links");
    sched.activate(p)
}

/// A subscriber that never collects: a bare core with an inbox of `size`.
struct Stuck {
    core: Core,
    data: Inbox<Bytes>,
    control: Inbox<Ipc>,
}

fn stuck(size: usize) -> Stuck {
    let core = Core::new("Stuck");
    let data: Inbox<Bytes> = core.inbox("inbox", "never collected");
    data.set_size(Some(size));
    let control = core.inbox("control", "told when dropped");
    Stuck {
        core,
        data,
        control,
    }
}

#[test]
fn a_burst_far_beyond_the_inbox_reaches_a_reading_subscriber_whole_and_in_order() {
    const N: usize = 20_000;
    let sched = Scheduler::new();
    let bp = Backplane::named(&sched, "burst");
    let small = reader(&sched, &bp, 4, N);
    let large = reader(&sched, &bp, 1024, N);
    publisher(&sched, &bp, burst(N));
    run(&sched);
    for (name, heard) in [("inbox of 4", small), ("inbox of 1024", large)] {
        let heard = heard.borrow();
        assert!(!heard.dropped, "the reader with an {name} was dropped");
        assert!(
            heard.messages == burst(N),
            "the reader with an {name} got {} messages, not the {N} in order",
            heard.messages.len()
        );
    }
}

#[test]
fn messages_published_in_one_go_beyond_the_inbox_all_arrive() {
    // The shape of the chat failure: many publishes land in the backplane before the subscriber
    // gets to run once.
    const N: usize = 5_000;
    let sched = Scheduler::new();
    let bp = Backplane::named(&sched, "one go");
    let heard = reader(&sched, &bp, 16, N);
    let from = Core::new("Publisher").id();
    let mut todo = burst(N).into_iter().peekable();
    run_until(&sched, "every message published", || {
        while let Some(data) = todo.peek() {
            let data = data.clone();
            if bp.send(BackplaneMsg::Publish { from, data }).is_err() {
                return false;
            }
            todo.next();
        }
        true
    });
    run(&sched);
    let heard = heard.borrow();
    assert!(!heard.dropped, "the reader was dropped");
    assert!(
        heard.messages == burst(N),
        "the reader got {} messages, not the {N} in order",
        heard.messages.len()
    );
}

#[test]
fn a_subscriber_that_never_collects_is_dropped_after_the_timeout_and_the_others_get_everything() {
    const N: usize = 2_000;
    const STUCK: usize = 4;
    let sched = Scheduler::new();
    let bp = Backplane::named_with(&sched, "stuck", || {
        Backplane::new().with_slow_subscriber_timeout(Duration::from_millis(100))
    });
    let s = stuck(STUCK);
    let _subscription = bp.subscribe(s.core.id(), s.data.clone(), s.control.clone());
    let first = reader(&sched, &bp, 8, N);
    let second = reader(&sched, &bp, 256, N);
    publisher(&sched, &bp, burst(N));
    run(&sched);

    assert!(
        s.control.drain().any(|c| c.is_shutdown_microprocess()),
        "the stuck subscriber was not told it was dropped"
    );
    assert_eq!(
        s.data.drain().collect::<Vec<_>>(),
        burst(STUCK),
        "the stuck subscriber's inbox holds what fitted before it was dropped"
    );
    for heard in [first, second] {
        let heard = heard.borrow();
        assert!(!heard.dropped, "a reading subscriber was dropped");
        assert!(
            heard.messages == burst(N),
            "a reading subscriber got {} messages, not the {N} in order",
            heard.messages.len()
        );
    }
}

#[test]
fn unsubscribing_a_stuck_subscriber_lets_the_others_go_on_at_once() {
    const N: usize = 1_000;
    let sched = Scheduler::new();
    // A timeout no test waits for: only the unsubscription can unblock the backplane.
    let bp = Backplane::named_with(&sched, "unsubscribe", || {
        Backplane::new().with_slow_subscriber_timeout(Duration::from_secs(3600))
    });
    let s = stuck(2);
    let subscription = bp.subscribe(s.core.id(), s.data.clone(), s.control.clone());
    let heard = reader(&sched, &bp, 8, N);
    publisher(&sched, &bp, burst(N));
    run_until(&sched, "the stuck subscriber full", || s.data.len() == 2);
    sched.run_until_idle(1_000);
    assert!(
        heard.borrow().messages.len() < N,
        "the backplane went on past a full subscriber"
    );

    drop(subscription);
    run(&sched);
    assert!(
        s.control.is_empty(),
        "an unsubscribed subscriber was told it was dropped"
    );
    let heard = heard.borrow();
    assert!(
        heard.messages == burst(N),
        "the reader got {} messages, not the {N} in order",
        heard.messages.len()
    );
}

#[test]
fn what_the_backplane_holds_stays_bounded_whatever_publishers_send() {
    const STUCK: usize = 4;
    let sched = Scheduler::new();
    let bp = Backplane::named_with(&sched, "bounded", || {
        Backplane::new().with_slow_subscriber_timeout(Duration::from_secs(3600))
    });
    let (core, _) = sched
        .service("backplane:bounded")
        .expect("the backplane is a service");
    let queue: Inbox<BackplaneMsg> = core.inbox_named("inbox").expect("its inbox");
    let s = stuck(STUCK);
    let _subscription = bp.subscribe(s.core.id(), s.data.clone(), s.control.clone());
    let from = Core::new("Publisher").id();

    // Publish as fast as the backplane takes it, many times over: it takes a publish queue, what
    // fits in the stuck subscriber's inbox, and the one message it holds for it; then nothing.
    let mut taken = 0usize;
    for round in 0..20 {
        for i in 0..10_000 {
            let data = msg(round * 10_000 + i);
            if bp.send(BackplaneMsg::Publish { from, data }).is_err() {
                break;
            }
            taken += 1;
        }
        sched.run_until_idle(1_000);
        assert!(
            queue.len() <= PUBLISH_QUEUE,
            "{} publishes wait in the backplane",
            queue.len()
        );
    }
    assert_eq!(
        taken,
        PUBLISH_QUEUE + STUCK + 1,
        "publishes taken with one subscriber stuck"
    );
    assert_eq!(s.data.len(), STUCK);
    assert!(
        s.control.is_empty(),
        "the stuck subscriber was dropped early"
    );
}

#[test]
fn a_chat_client_that_reads_keeps_up_with_a_burst_of_lines_from_another() {
    // Ten times a client's queue of lines, arriving at one handler all at once: the other
    // handler's client reads (an unbounded collector), so it must get every line.
    const LINES: usize = 10 * CLIENT_QUEUE;
    let sched = Scheduler::new();
    let bp = Backplane::named(&sched, "chat");
    let talker = ChatHandler::new(bp.clone());
    let talker_in: Inbox<Bytes> = talker.core().inbox_named("inbox").expect("inbox");
    let listener = ChatHandler::new(bp.clone());
    let heard = collector::<Bytes>("what the listening client gets");
    let listener_signal = collector::<Ipc>("the listening handler's signal");
    listener
        .core()
        .outbox_named::<Bytes>("outbox")
        .expect("outbox")
        .link_to(&heard)
        .expect("link");
    listener
        .core()
        .outbox_named::<Ipc>("signal")
        .expect("signal")
        .link_to(&listener_signal)
        .expect("link");
    let talker_core = sched.activate(talker);
    let listener_core = sched.activate(listener);
    // Both subscribe when they first run.
    sched.run_until_idle(100);

    let text: Vec<u8> = (0..LINES)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect();
    for piece in text.chunks(64 * 1024) {
        talker_in
            .deliver(Bytes::copy_from_slice(piece))
            .expect("the handler's inbox has no limit outside a server");
    }
    let mut got = Vec::new();
    run_until(&sched, "every line at the listening client", || {
        got.extend(heard.drain().flat_map(|b| b.to_vec()));
        got.len() >= text.len() || !listener_signal.is_empty()
    });
    assert!(
        listener_signal.is_empty(),
        "the listening handler was told to stop: {:?}",
        listener_signal.drain().collect::<Vec<_>>()
    );
    assert!(
        got == text,
        "the listening client got other bytes than were sent"
    );
    assert!(!listener_core.is_finished() && !talker_core.is_finished());
}
