//! Ports `Tests/Python/Axon/test_Ipc.py`: the system messages and their fields (Axon's
//! `Axon.Ipc` and Kamaelia's `Kamaelia.IPC`, kept as one [`Ipc`] enum).
//!
//! Dropped on purpose:
//! * `ipc_Test` ("`ipc` is an object"), and every "constructor requires an argument" case
//!   (`notify`, `status`, `wouldblock`, `errorInformation`): a missing field does not compile.
//! * `newComponent_Test`: components are activated with `axon::spawn` / `Scheduler::activate`, not
//!   by yielding a message to the scheduler.
//! * `wouldblock_Test`: no such message; a full inbox hands the message back ([`axon::NoSpaceInBox`]).
//! * The class hierarchy itself: `socketShutdown` *is a* `producerFinished` and `serverShutdown`
//!   *is a* `shutdownMicroprocess` are kept as predicates and tested below.

use std::io;
use std::net::SocketAddr;

use axon::ipc::{
    CloseReason, ConnectionId, ConnectionInfo, ErrorInformation, NewCsa, Notify, ProducerFinished,
    ServerShutdown, ShutdownCsa, ShutdownMicroprocess, SocketShutdown,
};
use axon::{ComponentId, Ipc};

fn conn() -> ConnectionInfo {
    ConnectionInfo {
        id: ConnectionId(7),
        peer: "10.0.0.2:5000".parse::<SocketAddr>().unwrap(),
        local: "10.0.0.1:80".parse::<SocketAddr>().unwrap(),
    }
}

/// test_producerFinished (defaults to `(None, None)`)
#[test]
fn producer_finished_defaults_to_no_caller_and_no_message() {
    let Ipc::ProducerFinished(pf) = Ipc::producer_finished() else {
        panic!("not a producerFinished");
    };
    assert_eq!(pf, ProducerFinished::default());
    assert_eq!((pf.caller, pf.message), (None, None));
    let with = Ipc::ProducerFinished(ProducerFinished {
        caller: Some(ComponentId(3)),
        message: Some("done".into()),
    });
    assert_eq!(with.caller(), Some(ComponentId(3)));
    assert_eq!(with.to_string(), "producerFinished(Some(\"done\"))");
}

/// test_shutdownMicroprocess (zero or several microprocesses, returned by `microprocesses()`)
#[test]
fn shutdown_microprocess_carries_the_components_meant() {
    let Ipc::ShutdownMicroprocess(none) = Ipc::shutdown_microprocess() else {
        panic!("not a shutdownMicroprocess");
    };
    assert!(none.microprocesses.is_empty() && none.caller.is_none());
    let several = ShutdownMicroprocess {
        caller: Some(ComponentId(1)),
        microprocesses: vec![ComponentId(2), ComponentId(3)],
    };
    assert_eq!(several.microprocesses, [ComponentId(2), ComponentId(3)]);
    let msg = Ipc::ShutdownMicroprocess(several);
    assert_eq!(msg.caller(), Some(ComponentId(1)));
    assert_eq!(msg.to_string(), "shutdownMicroprocess");
}

/// test_notify (stores `.caller` and `.object`)
#[test]
fn notify_stores_caller_and_object() {
    let n = Notify {
        caller: Some(ComponentId(9)),
        object: "payload".into(),
    };
    let msg = Ipc::Notify(n.clone());
    assert_eq!(msg.caller(), Some(ComponentId(9)));
    assert_eq!(msg.to_string(), "notify(payload)");
    let Ipc::Notify(back) = msg else { panic!() };
    assert_eq!(back, n);
}

/// test_status (`status()` returns what it was given)
#[test]
fn status_returns_its_string() {
    let msg = Ipc::Status("all well".into());
    assert!(matches!(&msg, Ipc::Status(s) if s == "all well"));
    assert_eq!(msg.to_string(), "status(all well)");
    assert_eq!(msg.caller(), None);
    assert!(!msg.is_shutdown());
}

/// test_errorInformation (`caller` given; the message is what went wrong)
#[test]
fn error_information_stores_caller_and_message() {
    let msg = Ipc::ErrorInformation(ErrorInformation {
        caller: Some(ComponentId(4)),
        message: "boom".into(),
    });
    assert_eq!(msg.caller(), Some(ComponentId(4)));
    assert_eq!(msg.to_string(), "errorInformation(boom)");
    assert!(!msg.is_shutdown());
}

/// Kamaelia.IPC hierarchy: `socketShutdown` is a `producerFinished`, `serverShutdown` a
/// `shutdownMicroprocess`.
#[test]
fn subclasses_are_kinds_of_their_parents() {
    let pf = Ipc::producer_finished();
    let sm = Ipc::shutdown_microprocess();
    let ss = Ipc::SocketShutdown(SocketShutdown {
        caller: Some(ComponentId(5)),
        connection: Some(conn()),
        reason: CloseReason::Eof,
    });
    let srv = Ipc::ServerShutdown(ServerShutdown::default());
    assert!(pf.is_producer_finished() && !pf.is_shutdown_microprocess() && pf.is_shutdown());
    assert!(ss.is_producer_finished() && !ss.is_shutdown_microprocess() && ss.is_shutdown());
    assert!(sm.is_shutdown_microprocess() && !sm.is_producer_finished() && sm.is_shutdown());
    assert!(srv.is_shutdown_microprocess() && !srv.is_producer_finished() && srv.is_shutdown());
    assert_eq!(ss.caller(), Some(ComponentId(5)));
    assert_eq!(
        ss.to_string(),
        "socketShutdown(conn#7 10.0.0.1:80 <- 10.0.0.2:5000: peer closed)"
    );
    for other in [
        Ipc::Status(String::new()),
        Ipc::Notify(Notify {
            caller: None,
            object: String::new(),
        }),
    ] {
        assert!(!other.is_producer_finished() && !other.is_shutdown_microprocess());
    }
}

/// Kamaelia.IPC `newCSA(caller, CSA, sock)` and `shutdownCSA(caller, CSA)`: every field is real.
#[test]
fn csa_lifecycle_messages_carry_caller_adapter_and_connection() {
    let new = Ipc::NewCsa(NewCsa {
        caller: ComponentId(1),
        csa: ComponentId(2),
        connection: conn(),
    });
    assert_eq!(new.caller(), Some(ComponentId(1)));
    assert_eq!(
        new.to_string(),
        "newCSA(#2 conn#7 10.0.0.1:80 <- 10.0.0.2:5000)"
    );
    assert!(!new.is_shutdown());
    let gone = Ipc::ShutdownCsa(ShutdownCsa {
        caller: ComponentId(2),
        csa: ComponentId(2),
        connection: Some(conn()),
        reason: Some(CloseReason::ProducerFinished),
    });
    assert_eq!(gone.caller(), Some(ComponentId(2)));
    assert_eq!(gone.to_string(), "shutdownCSA(#2)");
    assert!(
        !gone.is_shutdown(),
        "a notice to the server, not a shutdown request"
    );
}

/// Kamaelia's `howDied`, as a typed reason: clean endings, and I/O errors compared by kind.
#[test]
fn close_reasons_say_whether_the_end_was_clean() {
    assert!(CloseReason::Eof.is_clean());
    assert!(CloseReason::ProducerFinished.is_clean());
    assert!(CloseReason::Shutdown.is_clean());
    assert!(!CloseReason::Aborted.is_clean());
    assert!(!CloseReason::Timeout("idle").is_clean());
    let reset = CloseReason::io(io::Error::from(io::ErrorKind::ConnectionReset));
    assert!(!reset.is_clean());
    assert_eq!(
        reset,
        CloseReason::io(io::Error::new(io::ErrorKind::ConnectionReset, "other text"))
    );
    assert_ne!(
        reset,
        CloseReason::io(io::Error::from(io::ErrorKind::BrokenPipe))
    );
    assert_ne!(
        CloseReason::Timeout("idle"),
        CloseReason::Timeout("connect")
    );
    assert_eq!(CloseReason::Timeout("idle").to_string(), "idle timeout");
    assert_eq!(
        CloseReason::Other("x".into()),
        CloseReason::Other("x".into())
    );
    assert_ne!(CloseReason::Eof, CloseReason::Shutdown);
}

/// System messages cross threads (a threaded component's control box, another scheduler).
#[test]
fn messages_are_send_and_clone() {
    fn is_send_clone<T: Send + Clone + 'static>() {}
    is_send_clone::<Ipc>();
    is_send_clone::<CloseReason>();
    let msg = Ipc::Status("across".into());
    let back = std::thread::spawn(move || msg).join().unwrap();
    assert_eq!(back.to_string(), "status(across)");
}
