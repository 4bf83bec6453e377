//! `axon::run_handed_off`: the component a hand-off woke runs inside the caller's poll; what it
//! sends back is there when the call returns, and the call says so instead of a wake; one level
//! only; an inline component that ends or panics is finished as any other.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use axon::{Boxes, Component, Core, FnComponent, Inbox, Msg, Outbox, Scheduler};

type Log = Rc<RefCell<Vec<String>>>;

/// Doubles every number, logging each as it goes; ends on anything on `control`. With `panic_on`,
/// panics when it receives that number.
fn doubler(log: &Log, panic_on: Option<u32>) -> (impl Component, Inbox<u32>, Outbox<u32>, Core) {
    let log = log.clone();
    let comp = FnComponent::<u32, u32, _>::new("Doubler", move |b| async move {
        while let Msg::Data(n) = b.next().await {
            assert_ne!(Some(n), panic_on, "told to panic on {n}");
            log.borrow_mut().push(format!("doubler {n}"));
            let _ = b.outbox.send(n * 2);
        }
    });
    let b = comp.boxes();
    let (inbox, outbox, core) = (b.inbox.clone(), b.outbox.clone(), b.core.clone());
    (comp, inbox, outbox, core)
}

/// Sends each number to its outbox after a hand-off and runs the receiver at once, logging
/// whether that woke the asker and what came back before it pauses; then pauses until woken, and
/// counts every wake in `woken`.
struct Asker {
    boxes: Boxes<u32, u32>,
    numbers: Vec<u32>,
    log: Log,
    woken: Rc<Cell<u32>>,
}

impl Asker {
    fn new(numbers: &[u32], log: &Log) -> Self {
        Self {
            boxes: Boxes::new("Asker"),
            numbers: numbers.to_vec(),
            log: log.clone(),
            woken: Rc::default(),
        }
    }
}

impl Component for Asker {
    fn core(&self) -> &Core {
        &self.boxes.core
    }

    async fn main(self) {
        for n in self.numbers {
            assert!(axon::hand_off());
            let _ = self.boxes.outbox.send(n);
            let woken = axon::run_handed_off();
            let back: Vec<_> = self.boxes.inbox.drain().collect();
            self.log
                .borrow_mut()
                .push(format!("asker woken={woken} back={back:?}"));
        }
        loop {
            self.boxes.core.pause().await;
            self.woken.set(self.woken.get() + 1);
            while self.boxes.inbox.recv_now().is_some() {}
        }
    }
}

/// Activates `first` and lets it settle (asleep on its inbox), then `then`, and runs until idle.
fn run_first_then(sched: &Scheduler, first: impl Component, then: impl Component) {
    sched.activate(first);
    sched.run_until_idle(10);
    sched.activate(then);
    sched.run_until_idle(10);
}

fn assert_no_failures(sched: &Scheduler) {
    assert!(sched.failures().is_empty(), "{:?}", sched.failures());
}

fn take(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.borrow_mut())
}

/// Wires an asker in a loop with another component: asker outbox -> other inbox, other outbox ->
/// asker inbox.
fn wire(asker: &Asker, other_inbox: &Inbox<u32>, other_outbox: &Outbox<u32>) {
    asker
        .boxes
        .outbox
        .link_to(other_inbox)
        .expect("fresh boxes");
    other_outbox
        .link_to(&asker.boxes.inbox)
        .expect("fresh boxes");
}

#[test]
fn the_reply_is_back_before_the_caller_pauses_and_leaves_no_wake_behind() {
    let log = Log::default();
    let sched = Scheduler::new();
    let (d, d_inbox, d_outbox, _) = doubler(&log, None);
    let asker = Asker::new(&[1, 2, 3], &log);
    wire(&asker, &d_inbox, &d_outbox);
    let woken = asker.woken.clone();
    run_first_then(&sched, d, asker);
    assert_no_failures(&sched);
    assert_eq!(
        take(&log),
        [
            "doubler 1",
            "asker woken=true back=[2]",
            "doubler 2",
            "asker woken=true back=[4]",
            "doubler 3",
            "asker woken=true back=[6]",
        ]
    );
    // The replies were taken inside the asker's poll: none of them wakes it afterwards.
    assert_eq!(woken.get(), 0);
}

#[test]
fn a_delivery_after_the_inline_run_still_wakes_the_caller() {
    let log = Log::default();
    let sched = Scheduler::new();
    let (d, d_inbox, d_outbox, _) = doubler(&log, None);
    let asker = Asker::new(&[5], &log);
    wire(&asker, &d_inbox, &d_outbox);
    let (woken, asker_inbox) = (asker.woken.clone(), asker.boxes.inbox.clone());
    run_first_then(&sched, d, asker);
    assert_eq!(take(&log), ["doubler 5", "asker woken=true back=[10]"]);
    asker_inbox.deliver(7).expect("unbounded inbox");
    sched.run_until_idle(10);
    assert_eq!(woken.get(), 1);
}

#[test]
fn a_component_run_inline_that_sends_nothing_back_leaves_the_caller_unwoken() {
    let log = Log::default();
    let sched = Scheduler::new();
    let l = log.clone();
    let sink = FnComponent::<u32, u32, _>::new("Sink", move |b| async move {
        while let Msg::Data(n) = b.next().await {
            l.borrow_mut().push(format!("sink {n}"));
        }
    });
    let asker = Asker::new(&[3], &log);
    asker
        .boxes
        .outbox
        .link_to(&sink.boxes().inbox)
        .expect("fresh boxes");
    run_first_then(&sched, sink, asker);
    assert_no_failures(&sched);
    // The sink ran inside the asker's poll, before it logged.
    assert_eq!(take(&log), ["sink 3", "asker woken=false back=[]"]);
}

#[test]
fn without_a_hand_off_or_a_woken_component_nothing_runs() {
    let log = Log::default();
    let sched = Scheduler::new();
    let (d, d_inbox, _, _) = doubler(&log, None);
    sched.activate(d);
    sched.run_until_idle(10);
    let l = log.clone();
    let plain = FnComponent::<(), (), _>::new("Plain", move |_b| async move {
        // No hand-off: the doubler is woken the ordinary way and runs after this component.
        d_inbox.deliver(4).expect("unbounded inbox");
        let first = axon::run_handed_off();
        // A hand-off that woke nothing: nothing to run either.
        assert!(axon::hand_off());
        let second = axon::run_handed_off();
        l.borrow_mut().push(format!("plain {first} {second}"));
    });
    sched.activate(plain);
    sched.run_until_idle(10);
    assert_no_failures(&sched);
    assert_eq!(take(&log), ["plain false false", "doubler 4"]);
}

#[test]
fn a_component_run_inline_cannot_run_another_inline() {
    let log = Log::default();
    let sched = Scheduler::new();
    // The third component: logs what it gets.
    let l = log.clone();
    let third = FnComponent::<u32, (), _>::new("Third", move |b| async move {
        while let Msg::Data(n) = b.next().await {
            l.borrow_mut().push(format!("third {n}"));
        }
    });
    let third_inbox = third.boxes().inbox.clone();
    // The middle component: run inline by the asker, it hands off to the third and tries to run
    // it inline too, then replies to the asker.
    let l = log.clone();
    let middle = FnComponent::<u32, u32, _>::new("Middle", move |b| async move {
        while let Msg::Data(n) = b.next().await {
            assert!(axon::hand_off());
            third_inbox.deliver(n).expect("unbounded inbox");
            let woken = axon::run_handed_off();
            l.borrow_mut().push(format!("middle woken={woken}"));
            let _ = b.outbox.send(n + 1);
        }
    });
    let asker = Asker::new(&[9], &log);
    wire(&asker, &middle.boxes().inbox, &middle.boxes().outbox);
    sched.activate(third);
    run_first_then(&sched, middle, asker);
    assert_no_failures(&sched);
    // The third runs after the asker's poll, first in line (the middle's hand-off still counts).
    assert_eq!(
        take(&log),
        [
            "middle woken=false",
            "asker woken=true back=[10]",
            "third 9"
        ]
    );
}

#[test]
fn a_component_that_panics_inline_is_finished_and_the_caller_goes_on() {
    let log = Log::default();
    let sched = Scheduler::new();
    let (d, d_inbox, d_outbox, d_core) = doubler(&log, Some(2));
    let asker = Asker::new(&[1, 2, 3], &log);
    wire(&asker, &d_inbox, &d_outbox);
    let asker_core = asker.core().clone();
    run_first_then(&sched, d, asker);
    let failures = sched.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].id, d_core.id());
    assert!(failures[0].message.contains("told to panic on 2"));
    assert!(d_core.is_finished());
    // The doubler's linkages went with it: the third number goes nowhere, and nothing runs.
    assert_eq!(
        take(&log),
        [
            "doubler 1",
            "asker woken=true back=[2]",
            "asker woken=false back=[]",
            "asker woken=false back=[]",
        ]
    );
    assert!(!asker_core.is_finished());
}
