//! `ThreadedComponent`: the intent of Kamaelia's `Tests/Python/Axon/test_ThreadedComponent.py`
//! (reference §11.1), plus panics in the thread and a check that the scheduler does not spin.
//!
//! Kamaelia's tests step the scheduler by hand (`s.next()`) and talk to the thread through
//! `Queue.Queue`s; here `try_tick` steps it and `std::sync::mpsc` channels stand in for the queues.
//! Where Kamaelia slowed the thread down with sleeps so the scheduler could keep up, these tests
//! run the thread in lockstep with the test instead, so every count is exact.
//!
//! Not ported:
//! * `test_linksafe` (the thread calling `link`/`unlink`): the thread cannot reach the postoffice
//!   at all — `Core` and the boxes are `!Send`, and a body that captures one does not compile (a
//!   `compile_fail` doctest on `ThreadedComponent` shows it). The race it checked cannot happen.
//! * `threadedadaptivecommscomponent`'s `addInbox`/`addOutbox` from the thread: boxes are typed and
//!   live on the scheduler's thread, and the thread sees exactly the four default boxes through
//!   `ThreadContext`. Only the adaptive variant's construction tests carry over, and they are the
//!   same as `threadedcomponent`'s (see `construction_*`).

use std::sync::mpsc;
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use axon::{
    Component, Core, FnComponent, Inbox, Ipc, Msg, NoSpaceInBox, Outbox, Scheduler,
    ThreadedComponent,
};

/// Runs `n` scheduler cycles without blocking (Kamaelia's `s.next()` in a loop).
fn step(sched: &Scheduler, n: usize) {
    for _ in 0..n {
        sched.try_tick();
    }
}

/// A test-side sink: an inbox on a component that is never activated (Kamaelia's
/// `DoesNothingComponent` / `RecvFrom`).
fn sink<T: 'static>(name: &'static str) -> Inbox<T> {
    Core::new("DoesNothing").inbox(name, "collects what the test checks")
}

// ---------------------------------------------------------------------------------------------
// Construction (test_smoketest_init, test_smoketest_args, test_smoketest_oneargs; the same three
// for threadedadaptivecommscomponent)

#[test]
fn construction_has_the_four_default_boxes() {
    let t = ThreadedComponent::<(), ()>::new("Threaded", |_ctx| {});
    let names = |boxes: Vec<(String, String)>| -> Vec<String> {
        boxes.into_iter().map(|(name, _)| name).collect()
    };
    assert_eq!(names(t.core().inboxes()), ["inbox", "control"]);
    assert_eq!(names(t.core().outboxes()), ["outbox", "signal"]);
    assert!(t.core().name().starts_with("Threaded_"));
    assert!(!t.core().is_activated());
}

#[test]
fn construction_accepts_no_arguments_and_defaults_the_queue_length() {
    let t = ThreadedComponent::<u8, u8>::new("Threaded", |_ctx| {});
    assert_eq!(
        t.queue_len(),
        ThreadedComponent::<u8, u8>::DEFAULT_QUEUE_LEN
    );
}

#[test]
fn construction_accepts_one_argument_the_queue_length() {
    // Kamaelia's `threadedcomponent(10)`: the one positional argument is `queuelengths`.
    let t = ThreadedComponent::<u8, u8>::with_queue_len("Threaded", 10, |_ctx| {});
    assert_eq!(t.queue_len(), 10);
    let zero = ThreadedComponent::<u8, u8>::with_queue_len("Threaded", 0, |_ctx| {});
    assert_eq!(
        zero.queue_len(),
        1,
        "a zero length would let nothing through"
    );
}

// ---------------------------------------------------------------------------------------------
// test_localprocessterminates, test_threadisseparate, test_flow_in, test_flow_out

#[test]
fn localprocessterminates_when_the_thread_ends() {
    let t = ThreadedComponent::<(), ()>::new("Test", |_ctx| {});
    let sched = Scheduler::new();
    let core = sched.activate(t);
    sched.run(); // returns only once the shim has ended
    assert!(core.is_finished());
    assert!(sched.is_empty());
}

#[test]
fn threadisseparate_main_runs_on_another_os_thread() {
    let t = ThreadedComponent::<(), (ThreadId, Option<String>)>::new("Test", |ctx| {
        let me = thread::current();
        ctx.send((me.id(), me.name().map(str::to_owned)));
    });
    let seen = sink("inbox");
    t.boxes().outbox.link_to(&seen).unwrap();
    let name = t.core().name();

    let sched = Scheduler::new();
    sched.activate(t);
    sched.run();
    let (id, thread_name) = seen.recv_now().expect("the thread reported");
    assert_ne!(id, thread::current().id());
    assert_eq!(
        thread_name,
        Some(name),
        "the thread is named after its component"
    );
}

#[test]
fn flow_in_thread_receives_what_arrives_on_inbox() {
    let (rec_tx, rec_rx) = mpsc::channel();
    let r = ThreadedComponent::<String, ()>::new("ThreadedReceiver", move |ctx| {
        let msg = ctx.recv();
        let _ = rec_tx.send((msg, ctx.data_ready()));
    });
    // Kamaelia's OneShotTo: a component that sends one message to the receiver's inbox.
    let one_shot = FnComponent::<(), String, _>::new("OneShotTo", |b| async move {
        let _ = b.outbox.send("hello!".to_owned());
    });
    one_shot.boxes().outbox.link_to(&r.boxes().inbox).unwrap();

    let sched = Scheduler::new();
    sched.activate(r);
    sched.activate(one_shot);
    sched.run();
    assert_eq!(
        rec_rx.try_recv().unwrap(),
        (Some("hello!".to_owned()), false)
    );
}

#[test]
fn flow_out_thread_sends_through_outbox() {
    let t = ThreadedComponent::<(), String>::new("ThreadedSender", |ctx| {
        ctx.send("hello there!".to_owned());
    });
    let rec = sink("inbox");
    t.boxes().outbox.link_to(&rec).unwrap();

    let sched = Scheduler::new();
    sched.activate(t);
    sched.run();
    assert_eq!(rec.drain().collect::<Vec<_>>(), ["hello there!"]);
}

// ---------------------------------------------------------------------------------------------
// Queue sizes and noSpaceInBox

/// What Kamaelia's `ThreadedSender` puts on its `feedback` queue after a round of sends.
#[derive(Debug, PartialEq)]
enum Feedback {
    AllSent,
    /// How many went before the out-queue refused one.
    Refused(usize),
}

/// Kamaelia's `ThreadedSender`: waits for a count on `how_many`, tries to send `0..count` without
/// blocking, and reports `AllSent` or how many went before `noSpaceInBox`. A count of 0 ends it.
fn threaded_sender(
    queue_len: usize,
) -> (
    ThreadedComponent<(), usize>,
    mpsc::Sender<usize>,
    mpsc::Receiver<Feedback>,
) {
    let (how_many_tx, how_many) = mpsc::channel::<usize>();
    let (feedback, feedback_rx) = mpsc::channel();
    let t = ThreadedComponent::with_queue_len("ThreadedSender", queue_len, move |ctx| {
        while let Ok(qty) = how_many.recv() {
            if qty == 0 {
                return;
            }
            let result = (0..qty)
                .position(|i| ctx.try_send(i).is_err())
                .map_or(Feedback::AllSent, Feedback::Refused);
            let _ = feedback.send(result);
        }
    });
    (t, how_many_tx, feedback_rx)
}

#[test]
fn there_is_a_default_outgoing_queue_size_of_1000() {
    let (t, how_many, feedback) =
        threaded_sender(ThreadedComponent::<(), usize>::DEFAULT_QUEUE_LEN);
    assert_eq!(t.queue_len(), 1000);
    let sched = Scheduler::new();
    let core = sched.activate(t);
    step(&sched, 10); // starts the thread

    // The scheduler is not stepped while the thread sends, so nothing leaves the out-queue.
    how_many.send(99_999).unwrap();
    assert_eq!(feedback.recv().unwrap(), Feedback::Refused(1000));

    how_many.send(0).unwrap();
    sched.run(); // the unlinked outbox swallows the queued messages
    assert!(core.is_finished());
}

#[test]
fn can_set_outgoing_queue_size() {
    const QSIZE: usize = 20;
    let (t, how_many, feedback) = threaded_sender(QSIZE);
    let sched = Scheduler::new();
    sched.activate(t);
    step(&sched, 10);

    how_many.send(99_999).unwrap();
    assert_eq!(feedback.recv().unwrap(), Feedback::Refused(QSIZE));

    how_many.send(0).unwrap();
    sched.run();
}

#[test]
fn restricted_inbox_size_takes_box_size_plus_queue_size_before_no_space_in_box() {
    const QSIZE: usize = 20;
    const BSIZE: usize = 10;
    // Kamaelia's DoesNothingThread: never reads its inbox (it waits on control only).
    let t = ThreadedComponent::<usize, ()>::with_queue_len("DoesNothingThread", QSIZE, |ctx| {
        let _ = ctx.recv_control();
    });
    t.boxes().inbox.set_size(Some(BSIZE));
    let control = t.boxes().control.clone();
    let d = Core::new("DoesNothingComponent");
    let out: Outbox<usize> = d.outbox("outbox", "into the thread");
    out.link_to(&t.boxes().inbox).unwrap();

    let sched = Scheduler::new();
    let core = sched.activate(t);
    step(&sched, 10);
    for n in 0..QSIZE + BSIZE {
        out.send(n).expect("room in the inbox or the in-queue");
        step(&sched, 10);
    }
    let refused = out.send(QSIZE + BSIZE).unwrap_err();
    assert_eq!(refused.message, QSIZE + BSIZE);
    assert_eq!((refused.len, refused.size), (BSIZE, BSIZE));

    control.deliver(Ipc::shutdown_microprocess()).unwrap();
    sched.run();
    assert!(core.is_finished());
}

#[test]
fn no_space_in_box_exceptions_reach_thread() {
    const QSIZE: usize = 20;
    const BSIZE: usize = 10;
    // Sends 0, 1, 2, … without blocking, one at a time: after each accepted send it waits for the
    // test to let the scheduler move it on (Kamaelia's `slow=0.05`, without the timing).
    let (report_tx, report) = mpsc::channel::<Result<usize, NoSpaceInBox<usize>>>();
    let (go, go_rx) = mpsc::channel::<()>();
    let t = ThreadedComponent::<(), usize>::with_queue_len("ThreadedSender", QSIZE, move |ctx| {
        for i in 0.. {
            let result = ctx.try_send(i).map(|()| i);
            let refused = result.is_err();
            if report_tx.send(result).is_err() || refused || go_rx.recv().is_err() {
                return;
            }
        }
    });
    let d = sink::<usize>("inbox");
    d.set_size(Some(BSIZE));
    t.boxes().outbox.link_to(&d).unwrap();

    let sched = Scheduler::new();
    let core = sched.activate(t);
    step(&sched, 10);
    let refused = loop {
        match report.recv().unwrap() {
            Ok(_) => {
                step(&sched, 3);
                go.send(()).unwrap();
            }
            Err(refused) => break refused,
        }
    };
    assert_eq!(
        refused.message,
        QSIZE + BSIZE,
        "refused the first message that did not fit"
    );
    assert_eq!((refused.len, refused.size), (QSIZE, QSIZE));
    assert_eq!(d.len(), BSIZE);

    // Nothing was dropped or reordered on the way.
    d.set_size(None);
    sched.run();
    assert_eq!(
        d.drain().collect::<Vec<_>>(),
        (0..QSIZE + BSIZE).collect::<Vec<_>>()
    );
    assert!(core.is_finished());
}

#[test]
fn taking_from_destination_allows_more_to_be_delivered() {
    const QSIZE: usize = 20;
    const BSIZE: usize = 10;
    let (t, how_many, feedback) = threaded_sender(QSIZE);
    let d = sink::<usize>("inbox");
    d.set_size(Some(BSIZE));
    t.boxes().outbox.link_to(&d).unwrap();

    let sched = Scheduler::new();
    let core = sched.activate(t);
    step(&sched, 10);

    // The scheduler is idle while the thread sends: it fills its out-queue.
    how_many.send(QSIZE + BSIZE + 10).unwrap();
    assert_eq!(feedback.recv().unwrap(), Feedback::Refused(QSIZE));

    // Flush them through to the destination's inbox; the thread fills the freed slots.
    step(&sched, BSIZE * 5);
    assert_eq!(d.len(), BSIZE);
    how_many.send(QSIZE + BSIZE + 10).unwrap();
    assert_eq!(feedback.recv().unwrap(), Feedback::Refused(BSIZE));

    // Collect some; the shim, woken by the collections, moves as many on.
    let collected: Vec<usize> = (0..BSIZE / 2).map(|_| d.recv_now().unwrap()).collect();
    step(&sched, 50);
    assert_eq!(d.len(), BSIZE);
    how_many.send(QSIZE + BSIZE + 10).unwrap();
    assert_eq!(feedback.recv().unwrap(), Feedback::Refused(collected.len()));

    // Everything arrives, in order: rounds of 20, 10 and 5 sends.
    how_many.send(0).unwrap();
    d.set_size(None);
    sched.run();
    let all: Vec<usize> = collected.into_iter().chain(d.drain()).collect();
    let expected: Vec<usize> = (0..QSIZE).chain(0..BSIZE).chain(0..BSIZE / 2).collect();
    assert_eq!(all, expected);
    assert!(core.is_finished());
}

// ---------------------------------------------------------------------------------------------
// Termination

#[test]
fn localprocessterminates_if_in_queue_full() {
    let t = ThreadedComponent::<u32, ()>::with_queue_len("Test", 5, |ctx| {
        // Waits for control, never reading the inbox.
        let _ = ctx.recv_control();
    });
    let inbox = t.boxes().inbox.clone();
    for n in 0..10 {
        inbox.deliver(n).unwrap(); // more than the in-queue can hold
    }
    t.boxes().control.deliver(Ipc::producer_finished()).unwrap();

    let sched = Scheduler::new();
    let core = sched.activate(t);
    sched.run(); // control got past the clogged inbox queue; the thread ended; so did the shim
    assert!(core.is_finished());
    assert_eq!(
        inbox.drain().collect::<Vec<_>>(),
        [5, 6, 7, 8, 9],
        "what did not fit stays in the box"
    );
}

#[test]
fn localprocessterminates_only_if_outqueue_flushed() {
    let (count_tx, count_rx) = mpsc::channel();
    let t = ThreadedComponent::<(), usize>::with_queue_len("Test", 5, move |ctx| {
        let mut count = 0;
        while ctx.try_send(count).is_ok() {
            count += 1;
        }
        // The out-queue is clearly full now, so end quickly.
        let _ = count_tx.send(count);
    });
    let r = sink::<usize>("inbox");
    r.set_size(Some(1));
    t.boxes().outbox.link_to(&r).unwrap();

    let sched = Scheduler::new();
    let core = sched.activate(t);
    step(&sched, 1);
    let count = count_rx.recv().unwrap();
    for _ in 0..20 {
        thread::sleep(Duration::from_millis(1)); // let the thread finish, as Kamaelia did
        step(&sched, 1);
    }
    assert!(
        !core.is_finished(),
        "the shim waits until its out-queue is flushed"
    );
    assert!(r.data_ready(), "data waits at the receiver's inbox");

    // Relax the limit and collect one: the collection wakes the shim, which flushes the rest.
    r.set_size(Some(999));
    let mut received = vec![r.recv_now().unwrap()];
    sched.run();
    received.extend(r.drain());
    assert_eq!(received, (0..count).collect::<Vec<_>>());
    assert!(core.is_finished());
}

#[test]
fn stopping_the_component_releases_a_blocked_thread() {
    let (tx, rx) = mpsc::channel();
    let t = ThreadedComponent::<u32, u32>::new("Blocked", move |ctx| {
        let got = ctx.recv(); // nothing ever arrives
        ctx.send(1); // dropped: the component has stopped
        let _ = tx.send((got, ctx.is_stopped()));
    });
    let sched = Scheduler::new();
    let core = sched.activate(t);
    step(&sched, 3);
    sched.stop(core.id());
    assert_eq!(rx.recv().unwrap(), (None, true));
    assert!(core.is_finished());
}

#[test]
fn recv_timeout_gives_up_and_next_sees_data_before_control() {
    let (tx, rx) = mpsc::channel();
    let t = ThreadedComponent::<u32, ()>::new("Waiter", move |ctx| {
        let _ = tx.send(ctx.recv_timeout(Duration::from_millis(1)));
        let mut seen = Vec::new();
        while let Some(msg) = ctx.next() {
            let end = matches!(msg, Msg::Control(_));
            seen.push(msg);
            if end {
                break;
            }
        }
        let _ = tx.send(Some(seen.len() as u32));
        let _ = tx.send(ctx.try_recv().or(ctx.try_recv_control().map(|_| 99)));
    });
    let inbox = t.boxes().inbox.clone();
    let control = t.boxes().control.clone();
    let sched = Scheduler::new();
    sched.activate(t);
    step(&sched, 3);
    assert_eq!(rx.recv().unwrap(), None, "nothing arrived in time");
    inbox.deliver(1).unwrap();
    inbox.deliver(2).unwrap();
    control.deliver(Ipc::producer_finished()).unwrap();
    sched.run();
    assert_eq!(
        rx.recv().unwrap(),
        Some(3),
        "two data messages, then control"
    );
    assert_eq!(rx.recv().unwrap(), None, "all taken");
}

#[test]
fn next_sees_data_left_in_a_clogged_inbox_before_control() {
    // The in-queue holds 2; 5 data messages and a producerFinished wait in the boxes. The shim
    // moves control past the clogged inbox, but `next` still hands out all the data first.
    let t = ThreadedComponent::<u32, u32>::with_queue_len("Drainer", 2, |ctx| {
        while let Some(Msg::Data(n)) = ctx.next() {
            ctx.send(n);
        }
    });
    for n in 0..5 {
        t.boxes().inbox.deliver(n).unwrap();
    }
    t.boxes().control.deliver(Ipc::producer_finished()).unwrap();
    let out = sink::<u32>("inbox");
    t.boxes().outbox.link_to(&out).unwrap();

    let sched = Scheduler::new();
    sched.activate(t);
    sched.run();
    assert_eq!(out.drain().collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
}

// ---------------------------------------------------------------------------------------------
// Beyond Kamaelia: panics and idling

#[test]
fn a_panic_in_the_thread_is_reported_on_signal_and_the_scheduler_goes_on() {
    let t = ThreadedComponent::<(), Ipc>::new("Panicker", |ctx| {
        ctx.send(Ipc::Status("before".to_owned()));
        panic!("boom");
    });
    let id = t.core().id();
    // A watcher on the same scheduler reads both of the panicker's outboxes on its control and
    // forwards what it sees until the error arrives: it keeps running after the panic.
    let watcher = FnComponent::<(), Ipc, _>::new("Watcher", |b| async move {
        loop {
            let msg = b.control.recv().await;
            let last = matches!(msg, Ipc::ErrorInformation(_));
            let _ = b.outbox.send(msg);
            if last {
                return;
            }
        }
    });
    t.boxes().outbox.link_to(&watcher.boxes().control).unwrap();
    t.boxes().signal.link_to(&watcher.boxes().control).unwrap();
    let seen = sink::<Ipc>("inbox");
    watcher.boxes().outbox.link_to(&seen).unwrap();

    let sched = Scheduler::new();
    let panicker = sched.activate(t);
    let watcher = sched.activate(watcher);
    sched.run();
    assert!(panicker.is_finished() && watcher.is_finished());

    let seen: Vec<Ipc> = seen.drain().collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        matches!(&seen[0], Ipc::Status(s) if s == "before"),
        "what the thread sent first is flushed first: {seen:?}"
    );
    match &seen[1] {
        Ipc::ErrorInformation(e) => {
            assert_eq!(e.caller, Some(id));
            assert!(
                e.message.contains("panicked in its thread: boom"),
                "{}",
                e.message
            );
        }
        other => panic!("expected errorInformation, got {other:?}"),
    }
}

/// CPU time this thread has used, in nanoseconds (the first field of its schedstat).
fn thread_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("Linux schedstat");
    stat.split_whitespace()
        .next()
        .and_then(|ns| ns.parse().ok())
        .expect("schedstat starts with CPU time in ns")
}

#[test]
fn scheduler_does_not_spin_while_the_thread_works() {
    const WORK: Duration = Duration::from_millis(300);
    let t = ThreadedComponent::<(), u32>::new("Sleeper", |ctx| {
        thread::sleep(WORK);
        ctx.send(1);
    });
    let out = sink::<u32>("inbox");
    t.boxes().outbox.link_to(&out).unwrap();
    let sched = Scheduler::new();
    sched.activate(t);

    let started = Instant::now();
    let cpu_before = thread_cpu_ns();
    sched.run();
    let cpu = Duration::from_nanos(thread_cpu_ns() - cpu_before);
    assert!(
        started.elapsed() >= WORK,
        "run returned before the thread finished"
    );
    assert_eq!(out.recv_now(), Some(1));
    assert!(
        cpu < Duration::from_millis(50),
        "the scheduler thread used {cpu:?} of CPU while the thread slept for {WORK:?}"
    );
}

#[test]
fn threaded_components_fit_in_a_pipeline() {
    let double = ThreadedComponent::<u64, u64>::new("Double", |ctx| {
        while let Some(msg) = ctx.next() {
            match msg {
                Msg::Data(n) => ctx.send(n * 2),
                Msg::Control(c) => return ctx.send_signal(c),
            }
        }
    });
    let p = axon::pipeline![double].unwrap();
    let out = sink::<u64>("inbox");
    let sig = sink::<Ipc>("signal");
    p.core()
        .outbox_named::<u64>("outbox")
        .unwrap()
        .link_to(&out)
        .unwrap();
    p.core()
        .outbox_named::<Ipc>("signal")
        .unwrap()
        .link_to(&sig)
        .unwrap();
    let input = p.core().inbox_named::<u64>("inbox").unwrap();
    for n in 1..=3 {
        input.deliver(n).unwrap();
    }
    p.core()
        .inbox_named::<Ipc>("control")
        .unwrap()
        .deliver(Ipc::producer_finished())
        .unwrap();

    let sched = Scheduler::new();
    sched.activate(p);
    sched.run();
    assert_eq!(out.drain().collect::<Vec<_>>(), [2, 4, 6]);
    assert!(sig.recv_now().is_some_and(|s| s.is_producer_finished()));
}

#[test]
fn many_messages_through_short_queues_arrive_in_order() {
    // Back-pressure both ways, every queue one slot from full: a lost wake would hang here.
    const N: u64 = 20_000;
    let echo = ThreadedComponent::<u64, u64>::with_queue_len("Echo", 4, |ctx| {
        while let Some(Msg::Data(n)) = ctx.next() {
            ctx.send(n);
        }
    });
    let producer = FnComponent::<(), u64, _>::new("Producer", |b| async move {
        for n in 0..N {
            b.outbox.send_wait(n).await;
        }
        let _ = b.signal.send(Ipc::producer_finished());
    });
    let consumer = FnComponent::<u64, bool, _>::new("Consumer", |b| async move {
        let mut expected = 0;
        while expected < N {
            let n = b.inbox.recv().await;
            if n != expected {
                break;
            }
            expected += 1;
        }
        let _ = b.outbox.send(expected == N);
    });
    echo.boxes().inbox.set_size(Some(2));
    consumer.boxes().inbox.set_size(Some(2));
    producer
        .boxes()
        .outbox
        .link_to(&echo.boxes().inbox)
        .unwrap();
    producer
        .boxes()
        .signal
        .link_to(&echo.boxes().control)
        .unwrap();
    echo.boxes()
        .outbox
        .link_to(&consumer.boxes().inbox)
        .unwrap();
    let verdict = sink::<bool>("inbox");
    consumer.boxes().outbox.link_to(&verdict).unwrap();

    let sched = Scheduler::new();
    sched.activate(producer);
    sched.activate(echo);
    sched.activate(consumer);
    sched.run();
    assert_eq!(verdict.recv_now(), Some(true));
}

#[allow(dead_code)]
fn _threaded_component_is_a_component() {
    fn is_component<C: Component>() {}
    is_component::<ThreadedComponent<u8, String>>();
    fn is_send<T: Send>() {}
    is_send::<axon::ThreadContext<u8, String>>();
}
