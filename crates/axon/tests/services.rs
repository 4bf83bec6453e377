//! Ports `Tests/Python/Axon/test_CoordinatingAssistantTracker.py`: the service registry and the
//! tracked-value store, which here belong to each [`Scheduler`] instead of a process-wide
//! singleton.
//!
//! Dropped on purpose:
//! * `test_SmokeTest_NoArguments`, `test_SmokeTest_MinArguments` and
//!   `test_SmokeTest_BadParentTracker` (construction with a parent tracker, `BadParentTracker`):
//!   there is no tracker object and no parent chain (Axon never used the parent for lookups). The
//!   replacement, "each scheduler has its own registry", is tested.
//! * `test_registerService_NonComponent` (`BadComponent`): registering takes a `Core`, so a
//!   non-component does not compile.

use axon::{Boxes, Error, FnComponent, Inbox, Scheduler};
use std::cell::RefCell;
use std::rc::Rc;

fn provider() -> Boxes<String, String> {
    Boxes::new("Provider")
}

/// test_registerService_basic, test_retrieveService_basic
#[test]
fn a_registered_service_can_be_retrieved() {
    let sched = Scheduler::new();
    let p = provider();
    sched.register_service("echo", &p.core, "inbox").unwrap();
    let (core, inbox) = sched.service("echo").unwrap();
    assert_eq!(core, p.core);
    assert_eq!(inbox, "inbox");
    assert_eq!(sched.services(), ["echo"]);
    let typed: Inbox<String> = sched.service_inbox("echo").unwrap();
    typed.deliver("hi".into()).unwrap();
    assert_eq!(p.inbox.recv_now().as_deref(), Some("hi"));
}

/// test_registerService_basic (a service is reachable from inside a component)
#[test]
fn a_component_finds_a_service_through_its_scheduler() {
    let sched = Scheduler::new();
    let p = provider();
    sched.register_service("log", &p.core, "inbox").unwrap();
    sched.activate(FnComponent::<(), (), _>::new("Client", |_b| async move {
        let log = Scheduler::current()
            .unwrap()
            .service_inbox::<String>("log")
            .unwrap();
        log.deliver("from client".into()).unwrap();
    }));
    sched.run();
    assert_eq!(p.inbox.recv_now().as_deref(), Some("from client"));
}

/// test_registerService_DuplicateService
#[test]
fn registering_a_taken_name_fails_and_keeps_the_first() {
    let sched = Scheduler::new();
    let (first, second) = (provider(), provider());
    sched.register_service("svc", &first.core, "inbox").unwrap();
    assert_eq!(
        sched.register_service("svc", &second.core, "control"),
        Err(Error::ServiceAlreadyExists("svc".into()))
    );
    assert_eq!(sched.service("svc").unwrap().0, first.core);
    assert_eq!(sched.services(), ["svc"]);
}

/// test_registerService_BadInbox
#[test]
fn registering_a_missing_inbox_fails() {
    let sched = Scheduler::new();
    let p = provider();
    assert_eq!(
        sched.register_service("svc", &p.core, "nope"),
        Err(Error::NoSuchBox {
            component: p.core.name(),
            name: "nope".into()
        })
    );
    assert!(
        sched.register_service("svc", &p.core, "outbox").is_err(),
        "an outbox is not an inbox"
    );
    assert!(sched.services().is_empty());
}

/// test_retrieveService_badService
#[test]
fn retrieving_an_unknown_service_fails() {
    let sched = Scheduler::new();
    assert_eq!(
        sched.service("ghost").unwrap_err(),
        Error::NoSuchService("ghost".into())
    );
    assert!(matches!(
        sched.service_inbox::<String>("ghost"),
        Err(Error::NoSuchService(_))
    ));
}

/// test_retrieveService_basic (the typed form checks the type)
#[test]
fn retrieving_a_service_as_the_wrong_type_fails() {
    let sched = Scheduler::new();
    let p = provider();
    sched.register_service("svc", &p.core, "inbox").unwrap();
    assert!(matches!(
        sched.service_inbox::<u64>("svc"),
        Err(Error::WrongBoxType { .. })
    ));
}

/// test_deRegisterService_basic, test_deRegisterService_badService
#[test]
fn deregistering_removes_the_name_once() {
    let sched = Scheduler::new();
    let p = provider();
    sched.register_service("a", &p.core, "inbox").unwrap();
    sched.register_service("b", &p.core, "control").unwrap();
    sched.deregister_service("a").unwrap();
    assert_eq!(sched.services(), ["b"]);
    assert!(sched.service("a").is_err());
    assert_eq!(
        sched.deregister_service("a"),
        Err(Error::NoSuchService("a".into())),
        "Axon's MultipleServiceDeletion"
    );
    sched.register_service("a", &p.core, "inbox").unwrap();
    assert_eq!(sched.services(), ["a", "b"]);
}

/// test_registerService_basic (the registry is per scheduler)
#[test]
fn each_scheduler_has_its_own_registry() {
    let (s1, s2) = (Scheduler::new(), Scheduler::new());
    let p = provider();
    s1.register_service("svc", &p.core, "inbox").unwrap();
    s1.track_value("v", 1_u8).unwrap();
    assert!(s2.service("svc").is_err());
    assert!(s2.values().is_empty());
    s2.register_service("svc", &p.core, "control").unwrap();
    assert_eq!(s1.service("svc").unwrap().1, "inbox");
    assert_eq!(s2.service("svc").unwrap().1, "control");
}

/// test_trackValue_basic, test_retrieveValue_basic
#[test]
fn a_tracked_value_can_be_read_back() {
    let sched = Scheduler::new();
    sched.track_value("answer", 42_u32).unwrap();
    sched.track_value("name", String::from("axon")).unwrap();
    assert_eq!(sched.value::<u32>("answer"), Ok(42));
    assert_eq!(sched.value::<String>("name").as_deref(), Ok("axon"));
}

/// test_trackValue_twice
#[test]
fn tracking_a_name_twice_fails_and_keeps_the_first() {
    let sched = Scheduler::new();
    sched.track_value("x", 1_i32).unwrap();
    assert_eq!(
        sched.track_value("x", 2_i32),
        Err(Error::NamespaceClash("x".into()))
    );
    assert_eq!(sched.value::<i32>("x"), Ok(1));
}

/// test_updateValue_basic
#[test]
fn update_value_replaces_the_value() {
    let sched = Scheduler::new();
    sched.track_value("x", 1_i32).unwrap();
    sched.update_value("x", 5_i32).unwrap();
    assert_eq!(sched.value::<i32>("x"), Ok(5));
    // The new value may have another type.
    sched.update_value("x", "five").unwrap();
    assert_eq!(sched.value::<&str>("x"), Ok("five"));
}

/// test_updateValue_unknown, test_retrieveValue_unknown
#[test]
fn updating_or_reading_an_untracked_name_fails() {
    let sched = Scheduler::new();
    assert_eq!(
        sched.update_value("ghost", 1_u8),
        Err(Error::UndeclaredValue("ghost".into()))
    );
    assert_eq!(
        sched.value::<u8>("ghost"),
        Err(Error::UndeclaredValue("ghost".into()))
    );
    assert!(sched.values().is_empty(), "a failed update tracks nothing");
}

/// test_retrieveValue_basic (the typed read checks the type)
#[test]
fn reading_a_value_as_the_wrong_type_fails() {
    let sched = Scheduler::new();
    sched.track_value("x", 1_i32).unwrap();
    assert!(matches!(
        sched.value::<u64>("x"),
        Err(Error::WrongValueType { name, .. }) if name == "x"
    ));
}

/// test_informationItemsLogged
#[test]
fn values_lists_every_tracked_name() {
    let sched = Scheduler::new();
    for name in ["c", "a", "b"] {
        sched.track_value(name, ()).unwrap();
    }
    assert_eq!(sched.values(), ["a", "b", "c"]);
    assert!(sched.services().is_empty(), "values are not services");
}

/// test_retrieveService_basic (several clients reach one running provider through the registry)
#[test]
fn clients_reach_a_running_provider_through_the_registry() {
    let sched = Scheduler::new();
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    let server = FnComponent::<String, (), _>::new("Server", move |b| async move {
        for _ in 0..2 {
            let m = b.inbox.recv().await;
            g.borrow_mut().push(m);
        }
    });
    sched
        .register_service("server", server.core(), "inbox")
        .unwrap();
    sched.activate(server);
    for i in 0..2 {
        sched.activate(FnComponent::<(), (), _>::new(
            "Client",
            move |_b| async move {
                let inbox = Scheduler::current()
                    .unwrap()
                    .service_inbox::<String>("server")
                    .unwrap();
                inbox.deliver(format!("client {i}")).unwrap();
            },
        ));
    }
    sched.run();
    assert_eq!(*got.borrow(), ["client 0", "client 1"]);
}
