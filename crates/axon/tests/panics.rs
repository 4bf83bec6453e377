//! Fixed behaviour for two Kamaelia scheduler bugs (behaviour spec §10, item 12), which have no
//! upstream test:
//!
//! * an exception in one component propagated out of `runThreads` and ended the program
//!   (`immortalise` had no effect): here the component is stopped and reported, the rest carry on;
//! * an outside `stop()` on a running component made the whole py3 scheduler exit silently: here
//!   only that component ends.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;

use axon::{Component, Core, FnComponent, Inbox, Ipc, Msg, Scheduler};

const ROUNDS: u64 = 50;

async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}

struct DropFlag(Rc<Cell<bool>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// Two components playing ping-pong for `ROUNDS` rounds, then ending normally. Returns their
/// cores and the log of replies Ping received.
fn ping_pong(sched: &Scheduler) -> (Core, Core, Rc<RefCell<Vec<u64>>>) {
    let replies = Rc::new(RefCell::new(Vec::new()));
    let r = replies.clone();
    let ping = FnComponent::<u64, u64, _>::new("Ping", move |b| async move {
        for n in 0..ROUNDS {
            b.outbox.send_wait(n).await;
            let reply = b.inbox.recv().await;
            r.borrow_mut().push(reply);
        }
        let _ = b.signal.send(Ipc::producer_finished());
    });
    let pong = FnComponent::<u64, u64, _>::new("Pong", |b| async move {
        while let Msg::Data(n) = b.next().await {
            b.outbox.send_wait(n * 2).await;
        }
    });
    ping.core()
        .link(&ping.boxes().outbox, &pong.boxes().inbox)
        .unwrap();
    ping.core()
        .link(&pong.boxes().outbox, &ping.boxes().inbox)
        .unwrap();
    ping.core()
        .link(&ping.boxes().signal, &pong.boxes().control)
        .unwrap();
    let ping = sched.activate(ping);
    let pong = sched.activate(pong);
    (ping, pong, replies)
}

fn assert_ping_pong_finished(ping: &Core, pong: &Core, replies: &RefCell<Vec<u64>>) {
    assert!(ping.is_finished() && pong.is_finished());
    let expected: Vec<u64> = (0..ROUNDS).map(|n| n * 2).collect();
    assert_eq!(*replies.borrow(), expected, "every round was played");
}

/// A component that works for a few steps, then panics.
fn boom(state_dropped: &Rc<Cell<bool>>) -> impl Component {
    let d = state_dropped.clone();
    FnComponent::<(), (), _>::new("Boom", move |_b| async move {
        let _state = DropFlag(d);
        for _ in 0..3 {
            yield_now().await;
        }
        panic!("kaboom in the middle of the run");
    })
}

/// Kamaelia §10.12: an exception in one component ends the whole program.
#[test]
fn a_panicking_component_is_stopped_and_reported_while_the_others_finish() {
    let sched = Scheduler::new();
    let (ping, pong, replies) = ping_pong(&sched);

    let dropped = Rc::new(Cell::new(false));
    let boom = boom(&dropped);
    let collector = Core::new("Collector");
    let errors: Inbox<Ipc> = collector.inbox("errors", "what the failed component signalled");
    // Recorded in Boom's own postoffice, so it is removed when Boom ends: the report must go out
    // before that.
    let signal_link = boom
        .core()
        .link(&boom.core().outbox_named::<Ipc>("signal").unwrap(), &errors)
        .unwrap();
    let parent_wakes = Rc::new(Cell::new(0));
    let w = parent_wakes.clone();
    let boom_core = boom.core().clone();
    let parent = FnComponent::<(), (), _>::new("Parent", move |b| async move {
        while !boom_core.is_finished() {
            b.core.pause().await;
            w.set(w.get() + 1);
        }
    });
    parent.core().add_child(boom.core());
    let boom = sched.activate(boom);
    let parent = sched.activate(parent);

    sched.run(); // returns: the panic did not escape

    assert!(boom.is_finished());
    assert!(dropped.get(), "the panicked component's state was dropped");
    assert!(!signal_link.is_live(), "its linkages were removed");
    assert!(
        parent.is_finished() && parent_wakes.get() >= 1,
        "its parent was woken"
    );

    let failures = sched.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].id, boom.id());
    assert_eq!(failures[0].name, boom.name());
    assert_eq!(failures[0].message, "kaboom in the middle of the run");

    match errors.recv_now() {
        Some(Ipc::ErrorInformation(info)) => {
            assert_eq!(info.caller, Some(boom.id()));
            assert!(
                info.message.contains("kaboom in the middle of the run"),
                "{}",
                info.message
            );
            assert!(info.message.contains(&boom.name()), "{}", info.message);
        }
        other => panic!("expected errorInformation on signal, got {other:?}"),
    }
    assert!(errors.recv_now().is_none(), "reported once");

    assert_ping_pong_finished(&ping, &pong, &replies);
}

/// Kamaelia §10.12: a panic with a formatted message, and one without `signal`, are reported too.
#[test]
fn a_panic_is_reported_even_without_a_signal_outbox() {
    let sched = Scheduler::new();
    let bare = Core::new("Bare");
    struct Bare(Core);
    impl Component for Bare {
        fn core(&self) -> &Core {
            &self.0
        }
        async fn main(self) {
            let n = 7;
            panic!("bad value {n}");
        }
    }
    let bare = sched.activate(Bare(bare));
    let (ping, pong, replies) = ping_pong(&sched);
    sched.run();
    let failures = sched.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(
        (failures[0].id, failures[0].message.as_str()),
        (bare.id(), "bad value 7")
    );
    assert_ping_pong_finished(&ping, &pong, &replies);
}

/// Kamaelia §10.12: an outside `stop()` on a running component ends the whole scheduler.
#[test]
fn stopping_a_runnable_component_from_outside_leaves_the_others_running() {
    let sched = Scheduler::new();
    let (ping, pong, replies) = ping_pong(&sched);
    let dropped = Rc::new(Cell::new(false));
    let steps = Rc::new(Cell::new(0));
    let (d, s) = (dropped.clone(), steps.clone());
    let victim = sched.activate(FnComponent::<(), (), _>::new(
        "Victim",
        move |_b| async move {
            let _state = DropFlag(d);
            loop {
                s.set(s.get() + 1);
                yield_now().await;
            }
        },
    ));
    sched.run_until_idle(3);
    assert!(!sched.is_paused(victim.id()), "runnable when stopped");
    sched.stop(victim.id());
    assert!(victim.is_finished() && dropped.get());
    let steps_at_stop = steps.get();

    sched.run(); // returns once Ping and Pong are done: the stop did not end the scheduler early
    assert_eq!(steps.get(), steps_at_stop);
    assert_ping_pong_finished(&ping, &pong, &replies);
    assert!(sched.failures().is_empty(), "a stop is not a failure");
}

/// Kamaelia §10.12, from inside the run: one component stops another while everything runs.
#[test]
fn a_component_stopping_another_during_the_run_does_not_stop_the_scheduler() {
    let sched = Scheduler::new();
    let (ping, pong, replies) = ping_pong(&sched);
    let dropped = Rc::new(Cell::new(false));
    let d = dropped.clone();
    let victim = sched.activate(FnComponent::<(), (), _>::new(
        "Victim",
        move |_b| async move {
            let _state = DropFlag(d);
            loop {
                yield_now().await;
            }
        },
    ));
    let victim_id = victim.id();
    let stopper = sched.activate(FnComponent::<(), (), _>::new(
        "Stopper",
        move |_b| async move {
            for _ in 0..5 {
                yield_now().await;
            }
            Scheduler::current().unwrap().stop(victim_id);
            for _ in 0..5 {
                yield_now().await;
            }
        },
    ));
    sched.run();
    assert!(victim.is_finished() && dropped.get());
    assert!(stopper.is_finished());
    assert_ping_pong_finished(&ping, &pong, &replies);
    assert!(sched.is_empty());
    assert!(sched.failures().is_empty());
}
