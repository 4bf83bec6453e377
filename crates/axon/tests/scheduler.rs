//! Ports `Tests/Python/Axon/test_Scheduler.py` (`scheduler_Test`).
//!
//! Dropped on purpose:
//! * `test_importsuccess`, `test_SmokeTest_NoArguments`: they check the process-wide singleton
//!   `scheduler.run`. Here schedulers are per thread and explicit; the nearest behaviour,
//!   "the running scheduler is reachable from inside a component", is tested instead.
//! * The timing half of `test_runThreadsSlowmo` (the delay between passes): no timing assertions in
//!   this suite. What remains is that a slowed-down scheduler still runs everything to completion.
//! * The measurement half of `test_runThreadsUsesNonBusyWaitingMode`: the CPU-time check lives in
//!   `tests/idle_cpu.rs`. What remains here is that `run` blocks and is woken from another thread.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::mpsc;
use std::task::Poll;
use std::time::Duration;

use axon::{Component, ComponentId, Core, FnComponent, Scheduler};

/// Gives way once: the component is re-polled on the next cycle (it wakes itself through its
/// waker, so it stays runnable, like an ACTIVE Axon microprocess that yields).
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

/// A component that never ends and counts how often it has been stepped.
fn busy(kind: &'static str) -> (impl Component, Rc<Cell<u32>>) {
    let count = Rc::new(Cell::new(0));
    let c = count.clone();
    let comp = FnComponent::<(), (), _>::new(kind, move |_b| async move {
        loop {
            c.set(c.get() + 1);
            yield_now().await;
        }
    });
    (comp, count)
}

/// A component that pushes `0..steps` into `log` (tagged with `tag`), one per cycle, then ends.
fn stepper(
    tag: &'static str,
    steps: u32,
    log: &Rc<RefCell<Vec<(&'static str, u32)>>>,
) -> impl Component {
    let log = log.clone();
    FnComponent::<(), (), _>::new("Stepper", move |_b| async move {
        for i in 0..steps {
            log.borrow_mut().push((tag, i));
            yield_now().await;
        }
    })
}

/// A component that sleeps in `pause()` until something wakes it, forever, counting wakes.
fn sleeper() -> (impl Component, Core, Rc<Cell<u32>>) {
    let wakes = Rc::new(Cell::new(0));
    let w = wakes.clone();
    let comp = FnComponent::<u32, (), _>::new("Sleeper", move |b| async move {
        loop {
            b.core.pause().await;
            w.set(w.get() + 1);
            b.inbox.drain().for_each(drop);
        }
    });
    let core = comp.core().clone();
    (comp, core, wakes)
}

/// test_importsuccess, test_SmokeTest_NoArguments
#[test]
fn running_scheduler_is_current_only_inside_a_run() {
    assert!(Scheduler::current().is_none());
    let sched = Scheduler::default();
    sched.track_value("marker", 7_u32).unwrap();
    let seen = Rc::new(Cell::new(None));
    let s = seen.clone();
    sched.activate(FnComponent::<(), (), _>::new(
        "Probe",
        move |_b| async move {
            s.set(Scheduler::current().map(|cur| cur.value::<u32>("marker").unwrap()));
        },
    ));
    sched.run();
    assert_eq!(seen.get(), Some(7), "the component saw its own scheduler");
    assert!(Scheduler::current().is_none());
}

/// test_stopsIfNoThreads
#[test]
fn run_returns_at_once_when_nothing_is_activated() {
    let sched = Scheduler::new();
    sched.run();
    assert!(sched.is_empty());
    assert!(!sched.try_tick());
    assert_eq!(sched.run_until_idle(10), 0);
}

/// test_runsMicroprocessToCompletionThenStops
#[test]
fn runs_one_component_to_completion_then_stops() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let sched = Scheduler::new();
    let core = sched.activate(stepper("a", 10, &log));
    sched.run();
    assert!(core.is_finished());
    assert!(sched.is_empty());
    let expected: Vec<_> = (0..10).map(|i| ("a", i)).collect();
    assert_eq!(*log.borrow(), expected);
}

/// test_runsMicroprocessesAllToCompletionThenStops
#[test]
fn keeps_running_until_every_component_has_finished() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let sched = Scheduler::new();
    let short = sched.activate(stepper("short", 1, &log));
    let mid = sched.activate(stepper("mid", 4, &log));
    let long = sched.activate(stepper("long", 7, &log));
    // A stepper of n steps is polled n + 1 times (the last poll returns), once per cycle.
    let lives = [(&short, 2), (&mid, 5), (&long, 8)];
    for cycle in 1..=8 {
        assert!(sched.try_tick(), "cycle {cycle} polled something");
        let mut alive: Vec<ComponentId> = lives
            .iter()
            .filter(|(_, polls)| *polls > cycle)
            .map(|(c, _)| c.id())
            .collect();
        alive.sort();
        assert_eq!(sched.components(), alive, "after cycle {cycle}");
        for (core, polls) in lives {
            assert_eq!(core.is_finished(), polls <= cycle, "after cycle {cycle}");
        }
    }
    assert!(sched.is_empty());
    assert!(!sched.try_tick());
    assert_eq!(log.borrow().len(), 1 + 4 + 7);

    // The same through `run`: it returns only once all of them have ended.
    let log = Rc::new(RefCell::new(Vec::new()));
    let sched = Scheduler::new();
    let cores: Vec<Core> = [3, 9, 1]
        .into_iter()
        .map(|n| sched.activate(stepper("x", n, &log)))
        .collect();
    sched.run();
    assert!(cores.iter().all(Core::is_finished));
    assert_eq!(log.borrow().len(), 3 + 9 + 1);
}

/// test_pausedMicroprocessDoesNotGetCalled
#[test]
fn paused_component_is_not_polled() {
    let sched = Scheduler::new();
    let (comp, count) = busy("Busy");
    let core = sched.activate(comp);
    sched.run_until_idle(3);
    assert_eq!(count.get(), 3);
    sched.pause(core.id());
    assert!(sched.is_paused(core.id()));
    assert!(core.is_paused());
    sched.run_until_idle(10);
    assert_eq!(count.get(), 3, "a paused component is not stepped");
    assert!(!core.is_finished());
}

/// test_oneMicroprocessPausesOthersContinueToRun
#[test]
fn pausing_one_component_leaves_the_others_running() {
    let sched = Scheduler::new();
    let (a, a_count) = busy("A");
    let (b, b_count) = busy("B");
    let a = sched.activate(a);
    sched.activate(b);
    sched.try_tick();
    sched.pause(a.id());
    for _ in 0..5 {
        assert!(sched.try_tick());
    }
    assert_eq!(a_count.get(), 1);
    assert_eq!(b_count.get(), 6);
}

/// test_pausedMicroprocessCanBeWoken
#[test]
fn paused_component_can_be_woken() {
    let sched = Scheduler::new();
    let (comp, count) = busy("Busy");
    let core = sched.activate(comp);
    sched.try_tick();
    sched.pause(core.id());
    sched.run_until_idle(5);
    assert_eq!(count.get(), 1);
    sched.wake(core.id());
    assert!(!sched.is_paused(core.id()));
    sched.try_tick();
    assert_eq!(count.get(), 2);
    sched.try_tick();
    assert_eq!(count.get(), 3, "once woken it keeps running");
}

/// test_wakingPausedMicroprocessDoesntWakeOthers
#[test]
fn waking_one_paused_component_leaves_the_others_asleep() {
    let sched = Scheduler::new();
    let (a, a_count) = busy("A");
    let (b, b_count) = busy("B");
    let (a, b) = (sched.activate(a), sched.activate(b));
    sched.try_tick();
    sched.pause(a.id());
    sched.pause(b.id());
    sched.wake(b.id());
    for _ in 0..4 {
        sched.try_tick();
    }
    assert!(sched.is_paused(a.id()));
    assert!(!sched.is_paused(b.id()));
    assert_eq!(a_count.get(), 1);
    assert_eq!(b_count.get(), 5);

    // The same for components sleeping on their inboxes.
    let (s1, s1_core, s1_wakes) = sleeper();
    let (s2, s2_core, s2_wakes) = sleeper();
    sched.activate(s1);
    sched.activate(s2);
    sched.try_tick();
    sched.wake(s1_core.id());
    sched.try_tick();
    assert_eq!((s1_wakes.get(), s2_wakes.get()), (1, 0));
    assert!(sched.is_paused(s1_core.id()));
    assert!(sched.is_paused(s2_core.id()));
}

/// test_wakingAlreadyAwakeMicroprocessHasNoEffect
#[test]
fn waking_a_runnable_component_or_pausing_a_paused_one_changes_nothing() {
    let sched = Scheduler::new();
    let (comp, count) = busy("Busy");
    let core = sched.activate(comp);
    sched.try_tick();
    sched.wake(core.id());
    sched.wake(core.id());
    sched.try_tick();
    assert_eq!(count.get(), 2, "still stepped exactly once per cycle");

    sched.pause(core.id());
    sched.pause(core.id());
    sched.run_until_idle(5);
    assert_eq!(count.get(), 2);
    sched.wake(core.id()); // one wake undoes any number of pauses
    sched.try_tick();
    assert_eq!(count.get(), 3);
    assert!(!sched.is_paused(core.id()));
}

/// test_wakingOrPausingNonActivatedMicroprocessHasoEffect
#[test]
fn waking_or_pausing_a_component_that_was_never_activated_does_nothing() {
    let sched = Scheduler::new();
    let (comp, count) = busy("Busy");
    let core = comp.core().clone();
    sched.pause(core.id());
    sched.wake(core.id());
    assert!(sched.components().is_empty());
    assert!(!core.is_activated());
    assert!(!core.is_paused());
    assert!(!sched.try_tick());
    assert_eq!(count.get(), 0);

    // The pause requested before activation did not stick.
    sched.activate(comp);
    sched.try_tick();
    sched.try_tick();
    assert_eq!(count.get(), 2);
}

/// test_listAllThreadsMethodListsAllMicroprocesses
#[test]
fn components_lists_every_activated_unfinished_component_paused_or_not() {
    let sched = Scheduler::new();
    let log = Rc::new(RefCell::new(Vec::new()));
    let (a, _) = busy("A");
    let (b, _) = busy("B");
    let (s, s_core, _) = sleeper();
    let never_activated = Core::new("Idle");
    let a = sched.activate(a);
    let b = sched.activate(b);
    sched.activate(s);
    let done = sched.activate(stepper("done", 0, &log));
    sched.try_tick();
    sched.pause(a.id());
    assert!(done.is_finished());
    let mut expected = vec![a.id(), b.id(), s_core.id()];
    expected.sort();
    assert_eq!(sched.components(), expected);
    assert_eq!(sched.len(), 3);
    assert!(!sched.components().contains(&never_activated.id()));
}

/// test_isThreadPausedWorks
#[test]
fn is_paused_tells_paused_from_runnable_components() {
    let sched = Scheduler::new();
    let (comp, _) = busy("Busy");
    let busy = sched.activate(comp);
    let (s, s_core, _) = sleeper();
    sched.activate(s);
    assert!(!sched.is_paused(busy.id()), "activated means runnable");
    assert!(!sched.is_paused(s_core.id()));
    sched.try_tick();
    assert!(!sched.is_paused(busy.id()));
    assert!(sched.is_paused(s_core.id()), "waiting in pause()");
    assert!(s_core.is_paused());
    sched.pause(busy.id());
    assert!(sched.is_paused(busy.id()));
    s_core
        .inbox_named::<u32>("inbox")
        .unwrap()
        .deliver(1)
        .unwrap();
    assert!(!sched.is_paused(s_core.id()), "a delivery made it runnable");
    assert!(!s_core.is_paused());
}

/// test_isThreadPausedNotRecognised
#[test]
fn is_paused_is_true_for_a_component_the_scheduler_does_not_know() {
    let sched = Scheduler::new();
    let other = Scheduler::new();
    let (comp, _) = busy("Elsewhere");
    let elsewhere = other.activate(comp);
    let log = Rc::new(RefCell::new(Vec::new()));
    let done = sched.activate(stepper("done", 0, &log));
    sched.try_tick();
    assert!(done.is_finished());
    assert!(sched.is_paused(done.id()), "finished");
    assert!(
        sched.is_paused(elsewhere.id()),
        "activated on another scheduler"
    );
    assert!(!other.is_paused(elsewhere.id()));
    assert!(sched.is_paused(Core::new("Never").id()), "never activated");
    assert!(sched.is_paused(ComponentId(u64::MAX)), "no such component");
}

/// test_pauseThenTerminateTerminates
#[test]
fn component_that_pauses_itself_and_then_ends_terminates_cleanly() {
    let sched = Scheduler::new();
    let reached_end = Rc::new(Cell::new(false));
    let r = reached_end.clone();
    let core = sched.activate(FnComponent::<(), (), _>::new(
        "PauseThenEnd",
        move |b| async move {
            yield_now().await;
            Scheduler::current().unwrap().pause(b.core.id());
            r.set(true);
        },
    ));
    sched.run();
    assert!(reached_end.get());
    assert!(core.is_finished());
    assert!(sched.is_empty());
}

/// test_runThreadsSlowmo
#[test]
fn slowed_down_scheduler_still_runs_everything_to_completion() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let sched = Scheduler::new();
    sched.set_slowmo(Duration::from_millis(1));
    let a = sched.activate(stepper("a", 3, &log));
    let b = sched.activate(stepper("b", 2, &log));
    sched.run();
    assert!(a.is_finished() && b.is_finished());
    assert_eq!(
        *log.borrow(),
        [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2)],
        "one step of each per pass, in activation order"
    );
}

/// test_directUsageOfMainDoesntBlock
#[test]
fn try_tick_does_not_block_when_every_component_is_asleep() {
    let sched = Scheduler::new();
    let (s, s_core, _) = sleeper();
    sched.activate(s);
    // Asleep for a minute: a blocking tick would hang the test.
    let napper = sched.activate(FnComponent::<(), (), _>::new("Napper", |_b| async move {
        axon::sleep(Duration::from_secs(60)).await;
    }));
    assert!(sched.try_tick());
    assert!(!sched.try_tick());
    assert_eq!(sched.run_until_idle(100), 0);
    assert!(sched.is_paused(s_core.id()) && sched.is_paused(napper.id()));
    assert_eq!(sched.len(), 2);
}

/// test_directUsageOfMainDoesntBlock (a wake from another thread between ticks is picked up and
/// reported)
#[test]
fn try_tick_polls_a_component_woken_from_another_thread() {
    let sched = Scheduler::new();
    let (tx, rx) = mpsc::channel();
    let polls = Rc::new(Cell::new(0));
    let p = polls.clone();
    sched.activate(FnComponent::<(), (), _>::new("Remote", move |_b| {
        poll_fn(move |cx| {
            p.set(p.get() + 1);
            tx.send(cx.waker().clone()).unwrap();
            Poll::<()>::Pending
        })
    }));
    assert!(sched.try_tick());
    assert!(!sched.try_tick());
    let waker = rx.recv().unwrap();
    std::thread::spawn(move || waker.wake()).join().unwrap();
    assert!(sched.try_tick(), "the remotely woken component was polled");
    assert_eq!(polls.get(), 2);
    assert!(!sched.try_tick());
}

/// test_runThreadsUsesNonBusyWaitingMode
#[test]
fn run_blocks_while_all_are_asleep_and_is_woken_from_another_thread() {
    let sched = Scheduler::new();
    let (tx, rx) = mpsc::channel::<std::task::Waker>();
    let waker_thread = std::thread::spawn(move || {
        let waker = rx.recv().unwrap();
        waker.wake();
    });
    let mut sent = false;
    let core = sched.activate(FnComponent::<(), (), _>::new("WaitsForThread", move |_b| {
        poll_fn(move |cx| {
            if sent {
                return Poll::Ready(());
            }
            sent = true;
            tx.send(cx.waker().clone()).unwrap();
            Poll::Pending
        })
    }));
    sched.run();
    waker_thread.join().unwrap();
    assert!(core.is_finished());
}

/// test_directUsageOfMainDoesntBlock (a timer that expired between ticks is fired and its component
/// polled; `run_until_idle` does not stop while a component is runnable)
#[test]
fn try_tick_polls_a_component_whose_timer_expired_between_ticks() {
    let sched = Scheduler::new();
    let woke = Rc::new(Cell::new(false));
    let w = woke.clone();
    let core = sched.activate(FnComponent::<(), (), _>::new(
        "Napper",
        move |_b| async move {
            axon::sleep(Duration::from_millis(1)).await;
            w.set(true);
        },
    ));
    assert!(sched.try_tick());
    assert!(!sched.try_tick());
    std::thread::sleep(Duration::from_millis(5)); // the deadline is now in the past
    assert_eq!(sched.run_until_idle(10), 1);
    assert!(woke.get());
    assert!(core.is_finished());
}

/// test_wakingAlreadyAwakeMicroprocessHasNoEffect (a pause and a wake between two cycles leave the
/// component stepped once per cycle, not twice)
#[test]
fn pausing_then_waking_between_cycles_still_steps_once_per_cycle() {
    let sched = Scheduler::new();
    let count = Rc::new(Cell::new(0));
    let c = count.clone();
    // `axon::yield_now` re-queues the component on this scheduler straight away.
    let busy = FnComponent::<(), (), _>::new("Busy", move |_b| async move {
        loop {
            c.set(c.get() + 1);
            axon::yield_now().await;
        }
    });
    let core = sched.activate(busy);
    sched.try_tick();
    assert_eq!(count.get(), 1);
    for round in 2..6 {
        sched.pause(core.id());
        sched.wake(core.id());
        sched.try_tick();
        assert_eq!(count.get(), round, "one step per cycle");
    }
}
