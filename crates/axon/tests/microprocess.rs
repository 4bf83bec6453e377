//! Ports `Tests/Python/Axon/test_Microprocess.py` (`MicroProcess_Test`).
//!
//! Here a microprocess is a component's `main` future, stepped by the scheduler; its identity is
//! its [`Core`].
//!
//! Dropped on purpose:
//! * `test__closeDownMicroprocess`: it checks that a stub returns 0. There is no close-down hook
//!   returning a knock-on value here; what finishing does (parents woken, linkages removed) is
//!   tested in `tests/component.rs`.
//! * The "scheduler class" half of `test_setSchedulerClass` and
//!   `test_activate_afterCallingSetSchedulerClass`: there are no scheduler classes. Their intent,
//!   "a component runs on the scheduler chosen for it", is kept: the scheduler it was activated on,
//!   the running one for `spawn`, and a scheduler built with a custom OS wait uses that wait.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::future::{poll_fn, Future};
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axon::{Component, Core, Driver, Error, FnComponent, Scheduler, ThreadParker, Unpark};

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

/// Sets a flag when dropped: shows that a component's future (its state) was dropped.
struct DropFlag(Rc<Cell<bool>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// A component built on a given core, with a given main: lets a test reuse a core.
struct OnCore<F> {
    core: Core,
    main: F,
}

impl<F, Fut> Component for OnCore<F>
where
    F: FnOnce() -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    fn core(&self) -> &Core {
        &self.core
    }

    fn main(self) -> impl Future<Output = ()> + 'static {
        (self.main)()
    }
}

/// test_SmokeTest_NoArguments
#[test]
fn every_component_gets_a_unique_id_and_name() {
    let cores: Vec<Core> = (0..200)
        .map(|i| Core::new(if i % 2 == 0 { "Even" } else { "Odd" }))
        .collect();
    let ids: HashSet<_> = cores.iter().map(Core::id).collect();
    let names: HashSet<_> = cores.iter().map(Core::name).collect();
    assert_eq!(ids.len(), cores.len());
    assert_eq!(names.len(), cores.len());
    for c in &cores {
        assert_eq!(c.name(), format!("{}_{}", c.kind(), c.id().0));
        assert!(!c.is_activated() && !c.is_finished() && !c.is_paused());
    }
}

/// test_activate_basicActivatation
#[test]
fn activate_registers_the_component_with_that_scheduler_and_runs_it_next_cycle() {
    let sched = Scheduler::new();
    let other = Scheduler::new();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let comp = FnComponent::<(), (), _>::new("Activated", move |_b| async move {
        r.set(true);
    });
    let core = comp.core().clone();
    assert!(!core.is_activated());
    assert_eq!(sched.activate(comp), core, "activate hands back the core");
    assert!(core.is_activated());
    assert_eq!(sched.components(), [core.id()]);
    assert!(other.components().is_empty());
    assert!(!ran.get(), "activation takes effect on the next cycle");
    assert!(!other.try_tick());
    assert!(!ran.get());
    assert!(sched.try_tick());
    assert!(ran.get());
    assert!(core.is_finished());
}

/// test_activate_basicActivatation (activation is once only)
#[test]
fn a_core_is_activated_at_most_once() {
    let first = Scheduler::new();
    let second = Scheduler::new();
    let core = Core::new("Once");
    let runs = Rc::new(RefCell::new(Vec::new()));
    let (r1, r2, r3) = (runs.clone(), runs.clone(), runs.clone());
    first.activate(OnCore {
        core: core.clone(),
        main: move || async move {
            r1.borrow_mut().push("first");
            yield_now().await;
        },
    });
    second.activate(OnCore {
        core: core.clone(),
        main: move || async move { r2.borrow_mut().push("second") },
    });
    first.activate(OnCore {
        core: core.clone(),
        main: move || async move { r3.borrow_mut().push("again") },
    });
    assert!(second.components().is_empty());
    assert_eq!(first.components(), [core.id()]);
    second.run();
    first.run();
    assert_eq!(*runs.borrow(), ["first"]);
    assert!(core.is_finished());
}

/// test_setSchedulerClass, test_activate_afterCallingSetSchedulerClass
#[test]
fn spawn_activates_on_the_running_scheduler() {
    assert_eq!(
        axon::spawn(FnComponent::<(), (), _>::new("Orphan", |_b| async {})).unwrap_err(),
        Error::NoScheduler
    );
    let sched = Scheduler::new();
    let child_ran = Rc::new(Cell::new(false));
    let c = child_ran.clone();
    let child_core = Rc::new(RefCell::new(None));
    let cc = child_core.clone();
    sched.activate(FnComponent::<(), (), _>::new(
        "Spawner",
        move |_b| async move {
            let child =
                FnComponent::<(), (), _>::new("Child", move |_b| async move { c.set(true) });
            *cc.borrow_mut() = Some(axon::spawn(child).unwrap());
        },
    ));
    sched.try_tick();
    let child = child_core.borrow().clone().unwrap();
    assert_eq!(sched.components(), [child.id()]);
    sched.run();
    assert!(child_ran.get());
    assert!(child.is_finished());
}

/// A driver that records every wait it is asked for, then parks like the default.
struct RecordingDriver {
    inner: ThreadParker,
    waits: Rc<RefCell<Vec<Option<Duration>>>>,
}

impl Driver for RecordingDriver {
    fn park(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.waits.borrow_mut().push(timeout);
        self.inner.park(timeout)
    }

    fn unparker(&self) -> Arc<dyn Unpark> {
        self.inner.unparker()
    }
}

/// test_setSchedulerClass, test_activate_afterCallingSetSchedulerClass (the scheduler's OS wait
/// is chosen at construction, or replaced later)
#[test]
fn scheduler_waits_in_the_driver_it_was_given() {
    let waits = Rc::new(RefCell::new(Vec::new()));
    let sched = Scheduler::with_driver(Box::new(RecordingDriver {
        inner: ThreadParker::new(),
        waits: waits.clone(),
    }));
    sched.activate(FnComponent::<(), (), _>::new("Napper", |_b| async move {
        axon::sleep(Duration::from_millis(2)).await;
    }));
    sched.run();
    let w = waits.borrow().clone();
    assert!(
        w.iter()
            .any(|t| t.is_some_and(|d| !d.is_zero() && d <= Duration::from_millis(2))),
        "the scheduler waited in the driver, bounded by the timer: {w:?}"
    );
    assert!(
        !w.contains(&None),
        "never waited forever with a timer armed"
    );

    let replaced = Rc::new(RefCell::new(Vec::new()));
    sched.set_driver(Box::new(RecordingDriver {
        inner: ThreadParker::new(),
        waits: replaced.clone(),
    }));
    sched.activate(FnComponent::<(), (), _>::new("Napper", |_b| async move {
        axon::sleep(Duration::from_millis(1)).await;
    }));
    let before = waits.borrow().len();
    sched.run();
    assert_eq!(
        waits.borrow().len(),
        before,
        "the old driver is no longer used"
    );
    assert!(!replaced.borrow().is_empty());
}

/// test_overriddenMainWorksWithNext, test_Next
#[test]
fn main_is_stepped_one_await_at_a_time_then_ends() {
    let sched = Scheduler::new();
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    let core = sched.activate(FnComponent::<(), (), _>::new(
        "Steps",
        move |_b| async move {
            for v in [10, 20, 30] {
                l.borrow_mut().push(v);
                yield_now().await;
            }
        },
    ));
    for expected in [&[10][..], &[10, 20], &[10, 20, 30]] {
        assert!(sched.try_tick());
        assert_eq!(*log.borrow(), expected);
        assert!(!core.is_finished());
    }
    assert!(sched.try_tick());
    assert!(core.is_finished(), "the step after the last value ends it");
    assert!(!sched.try_tick());
    assert_eq!(*log.borrow(), [10, 20, 30]);
}

/// test_Stop
#[test]
fn stopped_component_is_finished_and_never_polled_again() {
    let sched = Scheduler::new();
    let steps = Rc::new(Cell::new(0));
    let dropped = Rc::new(Cell::new(false));
    let (s, d) = (steps.clone(), dropped.clone());
    let core = sched.activate(FnComponent::<(), (), _>::new(
        "Victim",
        move |_b| async move {
            let _guard = DropFlag(d);
            loop {
                s.set(s.get() + 1);
                yield_now().await;
            }
        },
    ));
    sched.run_until_idle(3);
    assert_eq!(steps.get(), 3);
    sched.stop(core.id());
    assert!(core.is_finished());
    assert!(!core.is_paused());
    assert!(dropped.get(), "its state was dropped");
    assert!(sched.components().is_empty());
    assert!(
        sched.is_paused(core.id()),
        "no longer known to the scheduler"
    );
    sched.wake(core.id());
    sched.stop(core.id());
    assert!(!sched.try_tick(), "nothing left to poll");
    assert_eq!(sched.run_until_idle(5), 0);
    assert_eq!(steps.get(), 3, "not stepped after the stop");
    assert!(sched.failures().is_empty(), "a stop is not a failure");
    sched.run();
}

/// test_Stop (a component that stops itself ends at its next yield)
#[test]
fn component_that_stops_itself_ends_after_its_current_step() {
    let sched = Scheduler::new();
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    let core = sched.activate(FnComponent::<(), (), _>::new(
        "SelfStop",
        move |b| async move {
            l.borrow_mut().push("before");
            yield_now().await;
            Scheduler::current().unwrap().stop(b.core.id());
            l.borrow_mut().push("after stop, same step");
            yield_now().await;
            l.borrow_mut().push("never");
        },
    ));
    sched.run();
    assert!(core.is_finished());
    assert_eq!(*log.borrow(), ["before", "after stop, same step"]);
}

/// test_pause
#[test]
fn paused_component_is_not_runnable_until_woken() {
    let sched = Scheduler::new();
    let steps = Rc::new(Cell::new(0));
    let s = steps.clone();
    let core = sched.activate(FnComponent::<(), (), _>::new(
        "Pausable",
        move |_b| async move {
            loop {
                s.set(s.get() + 1);
                yield_now().await;
            }
        },
    ));
    sched.try_tick();
    assert!(!core.is_paused());
    sched.pause(core.id());
    assert!(core.is_paused());
    assert!(sched.is_paused(core.id()));
    sched.run_until_idle(3);
    assert_eq!(steps.get(), 1);
    sched.wake(core.id());
    assert!(!core.is_paused());
    assert!(!sched.is_paused(core.id()));
    sched.try_tick();
    assert_eq!(steps.get(), 2);
}
