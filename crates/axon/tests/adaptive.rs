//! Ports `Tests/Python/Axon/test_AdaptiveCommsComponent.py`: boxes added and removed at run time
//! ([`Core::add_inbox`], [`Core::add_outbox`], [`Core::delete_box`]) and resources tracked against
//! inboxes ([`Core::track_resource`], [`Core::untrack_resource`]).
//!
//! Dropped on purpose:
//! * `test_SmokeTest_Arguments` (construction with arbitrary positional arguments): no such
//!   constructor; [`Boxes::new`] takes the kind only.
//! * `test_trackResourceInformation_validDefaultBoxes`, `..._validDynamicBoxes`,
//!   `..._invalidInboxes`, `..._invalidOutboxes`: only the reduced `trackResource` form exists (a
//!   resource per inbox); a component keeps any richer per-resource bookkeeping in its own state.

use std::cell::RefCell;
use std::rc::Rc;

use axon::{Boxes, Core, Error, FnComponent, Inbox, Outbox, Scheduler};

type B = Boxes<String, String>;

fn adaptive() -> B {
    Boxes::new("Adaptive")
}

fn names(v: Vec<(String, String)>) -> Vec<String> {
    v.into_iter().map(|(n, _)| n).collect()
}

/// test_SmokeTest_NoArguments
#[test]
fn starts_with_just_the_default_boxes() {
    let a = adaptive();
    assert_eq!(names(a.core.inboxes()), ["inbox", "control"]);
    assert_eq!(names(a.core.outboxes()), ["outbox", "signal"]);
    assert!(a.inbox.is_empty() && a.control.is_empty());
    let bare = Core::new("Bare");
    assert!(bare.box_names().is_empty());
}

/// test_addInbox_newName
#[test]
fn add_inbox_with_a_new_name_uses_it() {
    let a = adaptive();
    let (name, inbox): (_, Inbox<u32>) = a.core.add_inbox("name", "added at run time");
    assert_eq!(name, "name");
    assert!(names(a.core.inboxes()).contains(&name));
    assert!(inbox.is_empty());
    assert_eq!(inbox.name(), "name");
    assert_eq!(inbox.description(), "added at run time");
    assert!(a.core.inbox_named::<u32>("name").is_ok());
}

/// test_addInbox_existingName
#[test]
fn add_inbox_with_a_taken_name_adds_a_suffix() {
    let a = adaptive();
    let (first, _): (_, Inbox<u32>) = a.core.add_inbox("name", "");
    let (second, _): (_, Inbox<u32>) = a.core.add_inbox("name", "");
    let (third, _): (_, Inbox<u32>) = a.core.add_inbox("name", "");
    assert_eq!(first, "name");
    assert_ne!(second, "name");
    assert!(second.starts_with("name"));
    assert!(third.starts_with("name") && third != first && third != second);
    let (default_clash, _): (_, Inbox<u32>) = a.core.add_inbox("inbox", "");
    assert_ne!(
        default_clash, "inbox",
        "the default boxes' names are taken too"
    );
}

/// test_addOutbox_newName
#[test]
fn add_outbox_with_a_new_name_uses_it() {
    let a = adaptive();
    let (name, outbox): (_, Outbox<u32>) = a.core.add_outbox("name", "");
    assert_eq!(name, "name");
    assert!(names(a.core.outboxes()).contains(&name));
    assert!(!outbox.is_linked());
    assert!(a.core.outbox_named::<u32>("name").is_ok());
}

/// test_addOutbox_existingName
#[test]
fn add_outbox_with_a_taken_name_adds_a_suffix() {
    let a = adaptive();
    let (first, _): (_, Outbox<u32>) = a.core.add_outbox("name", "");
    let (second, _): (_, Outbox<u32>) = a.core.add_outbox("name", "");
    assert_eq!(first, "name");
    assert_ne!(second, "name");
    assert!(second.starts_with("name"));
    // Inboxes and outboxes share one namespace.
    let (across, _): (_, Inbox<u32>) = a.core.add_inbox("name", "");
    assert!(across.starts_with("name") && across != first && across != second);
}

/// test_InboxModification
#[test]
fn inboxes_can_be_added_and_deleted() {
    let a = adaptive();
    let mut added = Vec::new();
    for _ in 0..4 {
        let before = names(a.core.inboxes());
        let (name, inbox): (_, Inbox<u32>) = a.core.add_inbox("name", "");
        assert!(!before.contains(&name), "a new name each time");
        assert!(names(a.core.inboxes()).contains(&name));
        assert!(inbox.is_empty());
        added.push(name);
    }
    for name in &added {
        a.core.delete_box(name).unwrap();
        assert!(!names(a.core.inboxes()).contains(name));
    }
    assert_eq!(names(a.core.inboxes()), ["inbox", "control"]);
}

/// test_OutboxModification
#[test]
fn outboxes_can_be_added_and_deleted() {
    let a = adaptive();
    let mut added = Vec::new();
    for _ in 0..4 {
        let before = names(a.core.outboxes());
        let (name, _): (_, Outbox<u32>) = a.core.add_outbox("name", "");
        assert!(!before.contains(&name));
        added.push(name);
    }
    for name in &added {
        a.core.delete_box(name).unwrap();
        assert!(!names(a.core.outboxes()).contains(name));
    }
    assert_eq!(names(a.core.outboxes()), ["outbox", "signal"]);
}

/// test_deleteInbox_invalidInbox, test_deleteOutbox_invalidOutbox
#[test]
fn deleting_a_box_that_does_not_exist_fails() {
    let a = adaptive();
    let missing = |name: &str| Error::NoSuchBox {
        component: a.core.name(),
        name: name.into(),
    };
    assert_eq!(
        a.core.delete_box("NonExistantInbox"),
        Err(missing("NonExistantInbox"))
    );
    let (name, _): (_, Inbox<u32>) = a.core.add_inbox("dynamic", "");
    a.core.delete_box(&name).unwrap();
    assert_eq!(
        a.core.delete_box(&name),
        Err(missing("dynamic")),
        "already deleted"
    );
    assert!(matches!(
        a.core.inbox_named::<u32>(&name),
        Err(Error::NoSuchBox { .. })
    ));
}

/// test_deleteInbox_validInbox, test_deleteOutbox_validOutbox
#[test]
fn a_default_box_can_be_deleted_too() {
    for victim in ["inbox", "control", "outbox", "signal"] {
        let a = adaptive();
        a.core.delete_box(victim).unwrap();
        let left = a.core.box_names();
        assert_eq!(left.len(), 3);
        assert!(!left.iter().any(|n| n == victim), "{victim} deleted");
    }
}

/// test_deleteInbox_validInbox (deleting a box cuts the links to and from it)
#[test]
fn deleting_a_box_cuts_its_links() {
    let a = adaptive();
    let (producer, consumer) = (adaptive(), adaptive());
    let (inbox_name, inbox): (_, Inbox<String>) = a.core.add_inbox("client", "");
    let (outbox_name, outbox): (_, Outbox<String>) = a.core.add_outbox("client", "");
    let into = axon::link(&producer.outbox, &inbox).unwrap();
    let out_of = axon::link(&outbox, &consumer.inbox).unwrap();
    producer.outbox.send("before".into()).unwrap();
    assert_eq!(inbox.recv_now().as_deref(), Some("before"));

    a.core.delete_box(&inbox_name).unwrap();
    a.core.delete_box(&outbox_name).unwrap();
    assert!(!into.is_live() && !out_of.is_live());
    assert!(!producer.outbox.is_linked());
    producer.outbox.send("after".into()).unwrap();
    outbox.send("after".into()).unwrap();
    assert!(inbox.is_empty() && consumer.inbox.is_empty());
    // The producer's outbox is free to be linked again.
    producer.outbox.link_to(&consumer.inbox).unwrap();
}

/// test_addInbox_newName (an inbox added while running wakes its component on delivery)
#[test]
fn an_inbox_added_at_run_time_wakes_its_component() {
    let sched = Scheduler::new();
    let got = Rc::new(RefCell::new(Vec::new()));
    let handed_out = Rc::new(RefCell::new(None));
    let (g, h) = (got.clone(), handed_out.clone());
    let server = FnComponent::<(), (), _>::new("Server", move |b| async move {
        let (name, client): (_, Inbox<String>) = b.core.add_inbox("client", "one client");
        b.core
            .track_resource(format!("resource for {name}"), &name)
            .unwrap();
        *h.borrow_mut() = Some(client.clone());
        let msg = client.recv().await;
        let resource: String = b.core.untrack_resource(&name).unwrap();
        g.borrow_mut().push(format!("{msg} via {resource}"));
        b.core.delete_box(&name).unwrap();
    });
    let server = sched.activate(server);
    sched.run_until_idle(10);
    assert!(sched.is_paused(server.id()));
    let client = handed_out.borrow_mut().take().unwrap();
    client.deliver("hello".into()).unwrap();
    assert!(!sched.is_paused(server.id()));
    sched.run();
    assert_eq!(*got.borrow(), ["hello via resource for client"]);
    assert!(!server.box_names().contains(&"client".to_owned()));
}

/// test_trackResource_validDefaultInbox
#[test]
fn a_resource_can_be_tracked_against_a_default_inbox() {
    let a = adaptive();
    a.core.track_resource("resource", "inbox").unwrap();
    assert_eq!(a.core.untrack_resource::<&str>("inbox"), Some("resource"));
    assert_eq!(
        a.core.untrack_resource::<&str>("inbox"),
        None,
        "no longer tracked"
    );
}

/// test_trackResource_validDynamicInbox
#[test]
fn a_resource_can_be_tracked_against_a_dynamic_inbox() {
    let a = adaptive();
    let (name, _): (_, Inbox<u8>) = a.core.add_inbox("dynamic", "");
    let (other, _): (_, Inbox<u8>) = a.core.add_inbox("dynamic", "");
    a.core.track_resource(String::from("first"), &name).unwrap();
    a.core
        .track_resource(String::from("second"), &other)
        .unwrap();
    assert_eq!(
        a.core.untrack_resource::<String>(&other).as_deref(),
        Some("second")
    );
    assert_eq!(
        a.core.untrack_resource::<String>(&name).as_deref(),
        Some("first")
    );
}

/// test_trackResource_validDynamicInbox (retracking replaces; the type is checked on the way out)
#[test]
fn a_tracked_resource_is_replaced_by_a_new_one_and_typed() {
    let a = adaptive();
    a.core.track_resource(1_u32, "inbox").unwrap();
    a.core.track_resource(2_u32, "inbox").unwrap();
    assert_eq!(a.core.untrack_resource::<u64>("inbox"), None, "wrong type");
    assert_eq!(a.core.untrack_resource::<u32>("inbox"), Some(2));
    assert_eq!(a.core.untrack_resource::<u32>("inbox"), None);
}

/// test_trackResource_invalidInbox
#[test]
fn tracking_against_a_missing_inbox_fails() {
    let a = adaptive();
    let (name, _): (_, Inbox<u8>) = a.core.add_inbox("name", "");
    let missing = format!("{name}-not-there");
    assert_eq!(
        a.core.track_resource("resource", &missing),
        Err(Error::NoSuchBox {
            component: a.core.name(),
            name: missing.clone()
        })
    );
    assert_eq!(a.core.untrack_resource::<&str>(&missing), None);
}
