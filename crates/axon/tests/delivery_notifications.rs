//! Ports `Tests/Python/Axon/test_Component.py`, `MessageDeliveryNotifications_Test`: which
//! components a delivery and a collection wake.
//!
//! Every case is ported. One adaptation: where Axon's test collects with `d.recv("inbox")` on an
//! inbox `d` forwards to `e` (passthrough 1), Axon redirects the pop to `e`'s storage; here
//! [`Inbox::recv_now`](axon::Inbox::recv_now) reads a box's own storage only (as `dataReady` does
//! in both), so the collection is made from the final inbox `e`, where the message is.

use std::cell::Cell;
use std::rc::Rc;

use axon::{Boxes, Core, FnComponent, Scheduler};

/// A message: Axon's tests send `object()`.
type Token = u32;

/// Axon's `UnpauseDetectionComponent`: pauses forever, counting how often it is woken.
struct Unpauser {
    boxes: Boxes<Token, Token>,
    unpaused: Rc<Cell<u32>>,
}

impl Unpauser {
    fn unpaused(&self) -> u32 {
        self.unpaused.get()
    }

    fn reset(&self) {
        self.unpaused.set(0);
    }
}

/// Axon's `initComponents(qty)`: a fresh scheduler and `qty` activated unpausers.
fn init_components<const N: usize>() -> (Scheduler, [Unpauser; N]) {
    let sched = Scheduler::new();
    let comps = std::array::from_fn(|_| {
        let unpaused = Rc::new(Cell::new(0));
        let u = unpaused.clone();
        let comp = FnComponent::<Token, Token, _>::new("Unpauser", move |b| async move {
            loop {
                b.core.pause().await;
                u.set(u.get() + 1);
            }
        });
        let boxes = Boxes {
            core: comp.core().clone(),
            inbox: comp.boxes().inbox.clone(),
            control: comp.boxes().control.clone(),
            outbox: comp.boxes().outbox.clone(),
            signal: comp.boxes().signal.clone(),
        };
        sched.activate(comp);
        Unpauser { boxes, unpaused }
    });
    (sched, comps)
}

/// Axon's `runForAWhile`.
fn run_for_a_while(sched: &Scheduler) {
    sched.run_until_idle(100);
}

fn core(u: &Unpauser) -> &Core {
    &u.boxes.core
}

fn counts(comps: &[&Unpauser]) -> Vec<u32> {
    comps.iter().map(|c| c.unpaused()).collect()
}

fn reset_all(comps: &[&Unpauser]) {
    comps.iter().for_each(|c| c.reset());
}

/// test_NothingHappensIfNothingHappens
#[test]
fn a_paused_component_stays_paused_if_nothing_happens() {
    let (sched, [a, b]) = init_components();
    core(&a).link(&a.boxes.outbox, &b.boxes.inbox).unwrap();
    core(&b).link(&b.boxes.outbox, &a.boxes.inbox).unwrap();
    assert_eq!(counts(&[&a, &b]), [0, 0]);
    run_for_a_while(&sched);
    assert_eq!(counts(&[&a, &b]), [0, 0]);
    assert!(sched.is_paused(core(&a).id()) && sched.is_paused(core(&b).id()));
}

/// test_ConsumerWokenByDelivery
#[test]
fn a_delivery_wakes_the_consumer() {
    let (sched, [a, b]) = init_components();
    core(&a).link(&a.boxes.outbox, &b.boxes.inbox).unwrap();
    run_for_a_while(&sched);
    a.boxes.outbox.send(1).unwrap();
    assert!(
        !sched.is_paused(core(&b).id()),
        "runnable as soon as the message lands"
    );
    run_for_a_while(&sched);
    assert_eq!(b.unpaused(), 1);
}

/// test_ProducerNotWokenByDelivery
#[test]
fn sending_does_not_wake_the_sender() {
    let (sched, [a, b]) = init_components();
    core(&a).link(&a.boxes.outbox, &b.boxes.inbox).unwrap();
    run_for_a_while(&sched);
    a.boxes.outbox.send(1).unwrap();
    run_for_a_while(&sched);
    assert_eq!(a.unpaused(), 0);
}

/// test_ProducerWokenByCollection
#[test]
fn a_collection_wakes_the_producer() {
    let (sched, [a, b]) = init_components();
    core(&a).link(&a.boxes.outbox, &b.boxes.inbox).unwrap();
    run_for_a_while(&sched);
    a.boxes.outbox.send(1).unwrap();
    run_for_a_while(&sched);
    assert_eq!(a.unpaused(), 0);
    assert_eq!(b.boxes.inbox.recv_now(), Some(1));
    run_for_a_while(&sched);
    assert_eq!(a.unpaused(), 1);
    assert_eq!(b.unpaused(), 1, "only the delivery woke the consumer");
}

/// test_ChainOnlyFinalDestinationNotified
#[test]
fn along_a_chain_only_the_final_inbox_owner_is_woken_by_a_delivery() {
    let (sched, [a, b, c, d]) = init_components();
    core(&a).link(&a.boxes.outbox, &b.boxes.inbox).unwrap();
    core(&b).link(&b.boxes.inbox, &c.boxes.inbox).unwrap();
    core(&c).link(&c.boxes.inbox, &d.boxes.inbox).unwrap();
    run_for_a_while(&sched);
    reset_all(&[&a, &b, &c, &d]);
    a.boxes.outbox.send(1).unwrap();
    run_for_a_while(&sched);
    assert_eq!(counts(&[&a, &b, &c, &d]), [0, 0, 0, 1]);
    assert_eq!(d.boxes.inbox.len(), 1);
}

/// test_ChainOnlyOutboxHoldersNotified
#[test]
fn along_a_chain_only_outbox_owners_are_woken_by_a_collection() {
    let (sched, [a, b, c, d]) = init_components();
    core(&a).link(&a.boxes.outbox, &b.boxes.inbox).unwrap();
    core(&b).link(&b.boxes.inbox, &c.boxes.inbox).unwrap();
    core(&c).link(&c.boxes.inbox, &d.boxes.inbox).unwrap();
    run_for_a_while(&sched);
    a.boxes.outbox.send(1).unwrap();
    run_for_a_while(&sched);
    reset_all(&[&a, &b, &c, &d]);
    assert_eq!(d.boxes.inbox.recv_now(), Some(1));
    run_for_a_while(&sched);
    assert_eq!(counts(&[&a, &b, &c, &d]), [1, 0, 0, 0]);
}

/// Axon's five-component chain: a.outbox → b.outbox → c.outbox → d.inbox → e.inbox, each link
/// made by its source's owner. Returns the linkages L1..L4.
fn outbox_chain(
    a: &Unpauser,
    b: &Unpauser,
    c: &Unpauser,
    d: &Unpauser,
    e: &Unpauser,
) -> [axon::Linkage; 4] {
    [
        core(a).link(&a.boxes.outbox, &b.boxes.outbox).unwrap(),
        core(b).link(&b.boxes.outbox, &c.boxes.outbox).unwrap(),
        core(c).link(&c.boxes.outbox, &d.boxes.inbox).unwrap(),
        core(d).link(&d.boxes.inbox, &e.boxes.inbox).unwrap(),
    ]
}

/// test_AllOutboxOwnersNotified
#[test]
fn every_outbox_owner_in_the_chain_is_woken_by_a_collection() {
    let (sched, [a, b, c, d, e]) = init_components();
    outbox_chain(&a, &b, &c, &d, &e);
    run_for_a_while(&sched);
    a.boxes.outbox.send(1).unwrap();
    run_for_a_while(&sched);
    assert_eq!(counts(&[&a, &b, &c, &d, &e]), [0, 0, 0, 0, 1]);
    reset_all(&[&a, &b, &c, &d, &e]);
    assert_eq!(e.boxes.inbox.recv_now(), Some(1));
    run_for_a_while(&sched);
    assert_eq!(counts(&[&a, &b, &c, &d, &e]), [1, 1, 1, 0, 0]);
}

/// test_LinkBrokenNoNotify
#[test]
fn owners_cut_off_from_the_chain_before_the_collection_are_not_woken() {
    let (sched, [a, b, c, d, e]) = init_components();
    let [_, l2, _, _] = outbox_chain(&a, &b, &c, &d, &e);
    run_for_a_while(&sched);
    a.boxes.outbox.send(1).unwrap();
    run_for_a_while(&sched);
    core(&b).unlink(&l2);
    run_for_a_while(&sched);
    reset_all(&[&a, &b, &c, &d, &e]);
    assert_eq!(e.boxes.inbox.recv_now(), Some(1));
    run_for_a_while(&sched);
    assert_eq!(counts(&[&a, &b, &c, &d, &e]), [0, 0, 1, 0, 0]);
}

/// test_LinkReestablishedNotify
#[test]
fn owners_relinked_into_the_chain_before_the_collection_are_woken() {
    let (sched, [a, b, c, d, e]) = init_components();
    let [_, l2, _, _] = outbox_chain(&a, &b, &c, &d, &e);
    run_for_a_while(&sched);
    a.boxes.outbox.send(1).unwrap();
    run_for_a_while(&sched);
    core(&b).unlink(&l2);
    run_for_a_while(&sched);
    core(&b).link(&b.boxes.outbox, &c.boxes.outbox).unwrap();
    run_for_a_while(&sched);
    reset_all(&[&a, &b, &c, &d, &e]);
    assert_eq!(e.boxes.inbox.recv_now(), Some(1));
    run_for_a_while(&sched);
    assert_eq!(counts(&[&a, &b, &c, &d, &e]), [1, 1, 1, 0, 0]);
}

/// test_LinkNewlyEestablishedNotify
#[test]
fn an_outbox_linked_in_after_the_send_is_woken_by_the_collection_too() {
    let (sched, [a, b, c, d, e, f]) = init_components();
    outbox_chain(&a, &b, &c, &d, &e);
    run_for_a_while(&sched);
    a.boxes.outbox.send(1).unwrap();
    run_for_a_while(&sched);
    core(&f).link(&f.boxes.outbox, &c.boxes.outbox).unwrap();
    run_for_a_while(&sched);
    reset_all(&[&a, &b, &c, &d, &e, &f]);
    assert_eq!(e.boxes.inbox.recv_now(), Some(1));
    run_for_a_while(&sched);
    assert_eq!(counts(&[&a, &b, &c, &d, &e, &f]), [1, 1, 1, 0, 0, 1]);
}

/// test_ProducerWokenByCollection (a producer waiting for room in a full inbox is woken by the
/// collection that makes room, and then delivers)
#[test]
fn a_producer_waiting_for_room_is_woken_by_the_collection() {
    let sched = Scheduler::new();
    let sink = Boxes::<Token, ()>::new("Sink");
    sink.inbox.set_size(Some(1));
    let sent = Rc::new(Cell::new(0));
    let s = sent.clone();
    let producer = FnComponent::<(), Token, _>::new("Producer", move |b| async move {
        for n in 0..3 {
            b.outbox.send_wait(n).await;
            s.set(s.get() + 1);
        }
    });
    producer
        .core()
        .link(&producer.boxes().outbox, &sink.inbox)
        .unwrap();
    let producer = sched.activate(producer);
    run_for_a_while(&sched);
    assert_eq!(sent.get(), 1);
    assert!(
        sched.is_paused(producer.id()),
        "waiting for room, not spinning"
    );
    assert_eq!(sink.inbox.recv_now(), Some(0));
    run_for_a_while(&sched);
    assert_eq!(sent.get(), 2);
    assert_eq!(sink.inbox.recv_now(), Some(1));
    run_for_a_while(&sched);
    assert_eq!(sink.inbox.recv_now(), Some(2));
    run_for_a_while(&sched);
    assert!(producer.is_finished());
}

/// `pause_for_collection(outbox)`: a collection from the box that outbox feeds wakes the
/// component; collections from what its other outboxes feed do not.
#[test]
fn pausing_for_one_outbox_is_woken_only_by_collections_from_its_consumer() {
    let (sched, [b, c]) = init_components();
    let woken = Rc::new(Cell::new(0u32));
    let w = woken.clone();
    let a = FnComponent::<Token, Token, _>::new("OneOutbox", move |boxes| async move {
        loop {
            boxes.core.pause_for_collection(&boxes.outbox).await;
            w.set(w.get() + 1);
        }
    });
    let a_core = a.core().clone();
    let (out, sig) = (a.boxes().outbox.clone(), a.boxes().signal.clone());
    sched.activate(a);
    a_core.link(&out, &b.boxes.inbox).unwrap();
    a_core.link(&sig, &c.boxes.control).unwrap();
    run_for_a_while(&sched);
    out.send(1).unwrap();
    sig.send(axon::Ipc::producer_finished()).unwrap();
    run_for_a_while(&sched);
    woken.set(0);
    assert!(c.boxes.control.recv_now().is_some());
    run_for_a_while(&sched);
    assert_eq!(woken.get(), 0, "a collection from what `signal` feeds");
    assert_eq!(b.boxes.inbox.recv_now(), Some(1));
    run_for_a_while(&sched);
    assert_eq!(woken.get(), 1, "a collection from what `outbox` feeds");
}

/// `Core::take_deliveries` names every inbox a message reached since the last take, however it
/// got there: a send through a linked outbox, a passthrough chain into a child's inbox, messages
/// an outbox held that moved on when it was linked, and boxes past the 64th (which share a flag,
/// so may be named without a delivery, never missed).
#[test]
fn deliveries_name_every_inbox_a_message_reached_since_the_last_take() {
    let parent = Core::new("Parent");
    let child = Core::new("Child");
    let producer = Core::new("Producer");
    let p_in: axon::Inbox<Token> = parent.inbox("inbox", "");
    let p_ctl: axon::Inbox<Token> = parent.inbox("control", "");
    let c_in: axon::Inbox<Token> = child.inbox("inbox", "");
    let c_ctl: axon::Inbox<Token> = child.inbox("control", "");
    let out: axon::Outbox<Token> = producer.outbox("outbox", "");
    let many: Vec<axon::Inbox<Token>> = (0..70)
        .map(|i| child.add_inbox::<Token>(&format!("extra{i}"), "").1)
        .collect();

    assert_eq!(child.take_deliveries(), axon::Deliveries::default());

    // Passthrough: parent.inbox -> child.inbox; the child is the one delivered to.
    axon::link(&p_in, &c_in).unwrap();
    p_in.deliver(1).unwrap();
    let d = child.take_deliveries();
    assert!(c_in.delivered_in(d));
    assert!(!c_ctl.delivered_in(d));
    assert!(
        !p_in.delivered_in(parent.take_deliveries()),
        "nothing stays in the parent's box"
    );

    // Through a linked outbox into the parent's control.
    axon::link(&out, &p_ctl).unwrap();
    out.send(2).unwrap();
    let d = parent.take_deliveries();
    assert!(p_ctl.delivered_in(d));
    assert!(!p_ctl.delivered_in(parent.take_deliveries()), "taken once");

    // The 70th added box shares the last flag with the others past the 64th.
    many[69].deliver(3).unwrap();
    let d = child.take_deliveries();
    assert!(many[69].delivered_in(d));
    // The child's boxes: inbox, control, then extra0.. at positions 2..; 63 on share the flag.
    assert!(
        many[62].delivered_in(d),
        "shares the flag: named without a delivery"
    );
    assert!(
        !many[60].delivered_in(d),
        "position 62 has a flag of its own"
    );
    assert!(!c_in.delivered_in(d) && !c_ctl.delivered_in(d));

    // Messages waiting in a box that is then linked onwards move to the new final box.
    let (_, waiting) = parent.add_inbox::<Token>("waiting", "");
    waiting.deliver(4).unwrap();
    parent.take_deliveries();
    axon::link(&waiting, &c_ctl).unwrap();
    let d = child.take_deliveries();
    assert!(c_ctl.delivered_in(d) && !c_in.delivered_in(d));
    assert_eq!(c_ctl.recv_now(), Some(4));

    assert_eq!(c_in.recv_now(), Some(1));
    assert_eq!(p_ctl.recv_now(), Some(2));
    assert_eq!(many[69].recv_now(), Some(3));
}
