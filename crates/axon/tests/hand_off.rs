//! `axon::hand_off`: a component that hands off has the components it wakes run next, ahead of the
//! run queue, up to three in a row; daemons and components that do not hand off keep first come,
//! first served order.

use std::cell::RefCell;
use std::rc::Rc;

use axon::{Component, Core, FnComponent, Inbox, Scheduler};

type Log = Rc<RefCell<Vec<String>>>;

/// Sleeps until its inbox has something, logs `tag` for every message, forever.
fn receiver(tag: &'static str, log: &Log) -> (impl Component, Inbox<u32>, Core) {
    let log = log.clone();
    let comp = FnComponent::<u32, (), _>::new("Receiver", move |b| async move {
        loop {
            b.core.pause().await;
            for _ in b.inbox.drain() {
                log.borrow_mut().push(tag.to_owned());
            }
        }
    });
    let inbox = comp
        .core()
        .find_inbox::<u32>("inbox")
        .expect("FnComponent has an inbox");
    let core = comp.core().clone();
    (comp, inbox, core)
}

/// Delivers one message to each of `to` in order, handing off just before the deliveries whose
/// flag is set, then ends.
fn sender(log: &Log, to: Vec<(Inbox<u32>, bool)>) -> impl Component {
    let log = log.clone();
    FnComponent::<(), (), _>::new("Sender", move |_b| async move {
        log.borrow_mut().push("sender".to_owned());
        for (inbox, hand_off) in to {
            if hand_off {
                assert!(axon::hand_off(), "inside a component that is not a daemon");
            }
            inbox.deliver(1).expect("unbounded inbox");
        }
    })
}

/// Runs `sched` until only its sleeping receivers are left.
fn settle(sched: &Scheduler) {
    sched.run_until_idle(100);
}

fn take(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.borrow_mut())
}

/// Sleeping receivers, one per `(tag, daemon, hand off before its delivery)`, are activated; a
/// sender then delivers to each in order. Returns the order in which everything ran.
fn order_of_runs(receivers: &[(&'static str, bool, bool)]) -> Vec<String> {
    let log = Log::default();
    let sched = Scheduler::new();
    let mut deliveries = Vec::new();
    for &(tag, daemon, hand_off) in receivers {
        let (r, inbox, core) = receiver(tag, &log);
        core.set_daemon(daemon);
        sched.activate(r);
        deliveries.push((inbox, hand_off));
    }
    settle(&sched);
    sched.activate(sender(&log, deliveries));
    settle(&sched);
    take(&log)
}

#[test]
fn without_a_hand_off_woken_components_run_in_the_order_they_were_woken() {
    let order = order_of_runs(&[("a", false, false), ("b", false, false)]);
    assert_eq!(order, ["sender", "a", "b"]);
}

#[test]
fn the_component_woken_after_a_hand_off_runs_first() {
    let order = order_of_runs(&[("a", false, false), ("b", false, true)]);
    assert_eq!(order, ["sender", "b", "a"]);
}

#[test]
fn of_two_components_woken_after_a_hand_off_the_later_runs_first() {
    // The slot holds one: the later wake takes it, the earlier goes to the back of the queue.
    let order = order_of_runs(&[("a", false, false), ("b", false, true), ("c", false, true)]);
    assert_eq!(order, ["sender", "c", "a", "b"]);
}

#[test]
fn a_daemon_woken_after_a_hand_off_keeps_its_place() {
    let order = order_of_runs(&[("a", false, false), ("daemon", true, true)]);
    assert_eq!(order, ["sender", "a", "daemon"]);
}

#[test]
fn hand_off_outside_a_component_or_in_a_daemon_has_no_effect() {
    assert!(!axon::hand_off());
    let answers = Rc::new(RefCell::new(Vec::new()));
    let a = answers.clone();
    let daemon = FnComponent::<(), (), _>::new("Daemon", move |_b| async move {
        a.borrow_mut().push(axon::hand_off());
    });
    daemon.core().set_daemon(true);
    let a = answers.clone();
    let plain = FnComponent::<(), (), _>::new("Plain", move |_b| async move {
        a.borrow_mut().push(axon::hand_off());
    });
    let sched = Scheduler::new();
    sched.activate(daemon);
    sched.activate(plain);
    sched.run_until_idle(10);
    assert_eq!(*answers.borrow(), [false, true]);
}

#[test]
fn a_hand_off_brings_forward_a_component_that_is_already_queued() {
    // `other` and `yielder` take turns; the sender's hand-off to `yielder`, queued behind `other`,
    // makes it run before `other`'s next turn.
    let log = Log::default();
    let sched = Scheduler::new();
    let l = log.clone();
    let other = FnComponent::<(), (), _>::new("Other", move |_b| async move {
        for i in 0..3 {
            l.borrow_mut().push(format!("other{i}"));
            axon::yield_now().await;
        }
    });
    let l = log.clone();
    let yielder = FnComponent::<u32, (), _>::new("Yielder", move |b| async move {
        for i in 0..3 {
            let got = b.inbox.drain().count();
            l.borrow_mut().push(format!("yielder{i}:{got}"));
            axon::yield_now().await;
        }
    });
    let y_in = yielder.core().find_inbox::<u32>("inbox").expect("inbox");
    sched.activate(other);
    sched.activate(yielder);
    sched.activate(sender(&log, vec![(y_in, true)]));
    sched.run_until_idle(100);
    let log = take(&log);
    assert_eq!(log[..4], ["other0", "yielder0:0", "sender", "yielder1:1"]);
    assert!(log.contains(&"other2".to_owned()) && log.contains(&"yielder2:0".to_owned()));
}

#[test]
fn hand_offs_in_a_ring_let_the_rest_of_the_queue_run_after_three() {
    // Five components pass a token round a ring, each handing off to the next; a bystander that
    // is always runnable must still get turns.
    const HOPS: u32 = 40;
    let log = Log::default();
    let sched = Scheduler::new();
    let mut inboxes = Vec::new();
    let mut relays = Vec::new();
    for i in 0..5 {
        let l = log.clone();
        let next: Rc<RefCell<Option<Inbox<u32>>>> = Rc::default();
        let n = next.clone();
        let relay = FnComponent::<u32, (), _>::new("Relay", move |b| async move {
            loop {
                b.core.pause().await;
                while let Some(hop) = b.inbox.recv_now() {
                    l.borrow_mut().push(format!("r{i}"));
                    if hop < HOPS {
                        axon::hand_off();
                        if let Some(next) = n.borrow().as_ref() {
                            next.deliver(hop + 1).expect("unbounded inbox");
                        }
                    }
                }
            }
        });
        inboxes.push(relay.core().find_inbox::<u32>("inbox").expect("inbox"));
        relays.push((relay, next));
    }
    for (i, (relay, next)) in relays.into_iter().enumerate() {
        *next.borrow_mut() = Some(inboxes[(i + 1) % 5].clone());
        sched.activate(relay);
    }
    settle(&sched);
    let l = log.clone();
    let bystander = FnComponent::<(), (), _>::new("Bystander", move |_b| async move {
        for _ in 0..HOPS {
            l.borrow_mut().push("bystander".to_owned());
            axon::yield_now().await;
        }
    });
    sched.activate(bystander);
    sched.activate(sender(&log, vec![(inboxes[0].clone(), true)]));
    settle(&sched);
    let log = take(&log);
    let hops = log.iter().filter(|t| t.starts_with('r')).count();
    assert_eq!(
        hops, HOPS as usize,
        "every hop ran (the sender sends hop 1): {log:?}"
    );
    // At most three runs from the slot, plus the one the queue gave the turn to.
    let longest = log
        .split(|t| !t.starts_with('r'))
        .map(<[String]>::len)
        .max()
        .unwrap_or(0);
    assert!(
        longest <= 4,
        "the bystander waited {longest} relay runs: {log:?}"
    );
    assert!(longest >= 3, "the ring handed off: {log:?}");
}
