//! Boxes declared with a component and made on first use ([`BoxDecl`]): listed like the rest,
//! made by their owner or by a lookup that can use them, and by no other lookup.

use std::cell::Cell;
use std::rc::Rc;

use axon::{BoxDecl, Component, Core, Error, Inbox, Outbox, Scheduler};

static LATER: &[BoxDecl] = &[
    BoxDecl::inbox::<u32>("requests", "made on first use"),
    BoxDecl::outbox::<String>("answers", "made on first use"),
];

fn component() -> (Core, Inbox<u32>, Outbox<u32>) {
    let core = Core::new("Lazy");
    let inbox = core.inbox("inbox", "made at once");
    let outbox = core.outbox("outbox", "made at once");
    core.declare_boxes(&LATER);
    (core, inbox, outbox)
}

fn names(v: Vec<(String, String)>) -> Vec<String> {
    v.into_iter().map(|(n, _)| n).collect()
}

#[test]
fn declared_boxes_are_listed_after_the_made_ones_until_made() {
    let (core, _inbox, _outbox) = component();
    assert_eq!(core.box_names(), ["inbox", "outbox", "requests", "answers"]);
    assert_eq!(names(core.inboxes()), ["inbox", "requests"]);
    assert_eq!(names(core.outboxes()), ["outbox", "answers"]);
    assert!(core.has_box("requests") && core.has_box("answers"));
    assert!(!core.declared_is_made(0) && !core.declared_is_made(1));
    // Made by its owner: now in the order made, still listed once.
    let answers: Outbox<String> = core.declared_outbox(1);
    assert!(core.declared_is_made(1));
    assert_eq!(core.box_names(), ["inbox", "outbox", "answers", "requests"]);
    assert!(!answers.is_linked());
}

#[test]
fn lookups_that_cannot_use_a_declared_box_do_not_make_it() {
    let (core, _inbox, _outbox) = component();
    assert!(core.find_outbox::<u32>("requests").is_none(), "an inbox");
    assert!(core.find_inbox::<String>("requests").is_none(), "of u32");
    assert!(matches!(
        core.outbox_named::<u32>("requests"),
        Err(Error::WrongBoxType { .. })
    ));
    assert!(matches!(
        core.inbox_named::<u64>("requests"),
        Err(Error::WrongBoxType { .. })
    ));
    assert!(matches!(
        core.inbox_named::<u32>("nothing"),
        Err(Error::NoSuchBox { .. })
    ));
    assert!(!core.declared_is_made(0), "none of those made it");
    // One that can use it makes it, once: the owner then gets the same box.
    let found = core.find_inbox::<u32>("requests").expect("an inbox of u32");
    assert!(core.declared_is_made(0));
    found.deliver(7).unwrap();
    let own: Inbox<u32> = core.declared_inbox(0);
    assert_eq!(own.recv_now(), Some(7));
    assert_eq!(core.box_names(), ["inbox", "outbox", "requests", "answers"]);
}

#[test]
fn linking_by_name_makes_the_box_and_deliveries_past_the_first_boxes_are_flagged() {
    let (core, inbox, _outbox) = component();
    let client = Core::new("Client");
    let ask: Outbox<u32> = client.outbox("outbox", "requests");
    let answers: Inbox<String> = client.inbox("inbox", "answers");
    client
        .link_named((&client, "outbox"), (&core, "requests"))
        .unwrap();
    client
        .link_named((&core, "answers"), (&client, "inbox"))
        .unwrap();

    inbox.deliver(1).unwrap();
    assert!(!core.take_deliveries().any_after(2), "a box made at once");
    ask.send(41).unwrap();
    let delivered = core.take_deliveries();
    assert!(delivered.any_after(2), "a box made later");
    let requests: Inbox<u32> = core.declared_inbox(0);
    assert!(requests.delivered_in(delivered));
    assert_eq!(requests.recv_now(), Some(41));
    core.declared_outbox::<String>(1).send("42".into()).unwrap();
    assert_eq!(answers.recv_now().as_deref(), Some("42"));
}

#[test]
fn a_declared_box_deleted_before_it_is_made_is_gone_for_lookups() {
    let (core, _inbox, _outbox) = component();
    core.delete_box("requests").unwrap();
    assert!(!core.has_box("requests"));
    assert!(core.find_inbox::<u32>("requests").is_none());
    assert!(matches!(
        core.delete_box("requests"),
        Err(Error::NoSuchBox { .. })
    ));
    assert_eq!(core.box_names(), ["inbox", "outbox", "answers"]);
}

/// Waits on its declared `requests` inbox and records what came.
struct Worker {
    core: Core,
    seen: Rc<Cell<Option<u32>>>,
}

impl Component for Worker {
    fn core(&self) -> &Core {
        &self.core
    }

    async fn main(self) {
        let requests: Inbox<u32> = self.core.declared_inbox(0);
        self.seen.set(Some(requests.recv().await));
    }
}

#[test]
fn a_declared_box_made_by_name_wakes_its_owner_like_any_other() {
    let sched = Scheduler::new();
    let (core, _inbox, _outbox) = component();
    let seen = Rc::new(Cell::new(None));
    let worker = Worker {
        core: core.clone(),
        seen: seen.clone(),
    };
    sched.activate(worker);
    sched.run_until_idle(10);
    assert_eq!(seen.get(), None, "waiting");
    let from_outside: Inbox<u32> = core.inbox_named("requests").unwrap();
    from_outside.deliver(5).unwrap();
    sched.run_until_idle(10);
    assert_eq!(seen.get(), Some(5));
}
