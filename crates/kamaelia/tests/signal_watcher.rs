//! `SignalWatcher`: real signals, raised in this process, come out as messages through the
//! selector, with no thread started for them.
//!
//! One test in this file: the signals go to the whole process. SIGTERM is raised once only (a
//! second would end the test process, as it is meant to end a server).

mod util;

use axon::{Ipc, Scheduler};
use kamaelia::util::SignalWatcher;
use signal_hook::consts::{SIGTERM, SIGUSR1};
use signal_hook::low_level::raise;
use util::{collector, kinds, run_until, settle, take_all};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

/// What each message on `signal` says: a status's text, or the kind of anything else.
fn reports(signal: &axon::Inbox<Ipc>) -> Vec<String> {
    take_all(signal)
        .into_iter()
        .map(|m| match m {
            Ipc::Status(s) => s,
            other => kinds(&[other])[0].to_owned(),
        })
        .collect()
}

#[test]
fn sigusr1_asks_for_a_report_and_sigterm_for_a_shutdown() {
    let sched = Scheduler::new();
    let before = threads();
    let watcher = SignalWatcher::new().expect("signal handlers");
    let outbox = collector::<Ipc>("outbox");
    let signal = collector::<Ipc>("signal");
    watcher.outbox().link_to(&outbox).unwrap();
    watcher.signal().link_to(&signal).unwrap();
    let control = watcher.control().clone();

    // Raised before the watcher runs: kept, and reported when it starts.
    raise(SIGUSR1).unwrap();
    sched.activate(watcher);
    run_until(&sched, "the first report", || signal.data_ready());
    assert_eq!(reports(&signal), ["SIGUSR1"]);
    assert!(outbox.is_empty());

    raise(SIGUSR1).unwrap();
    run_until(&sched, "the second report", || signal.data_ready());
    assert_eq!(reports(&signal), ["SIGUSR1"]);

    raise(SIGTERM).unwrap();
    run_until(&sched, "the shutdown request", || outbox.data_ready());
    assert_eq!(kinds(&take_all(&outbox)), ["producerFinished"]);

    // Still watching after the shutdown request, on this thread alone.
    raise(SIGUSR1).unwrap();
    run_until(&sched, "a report after the shutdown", || {
        signal.data_ready()
    });
    assert_eq!(reports(&signal), ["SIGUSR1"]);
    assert_eq!(threads(), before, "no thread was started");

    control.deliver(Ipc::shutdown_microprocess()).unwrap();
    settle(&sched);
    assert!(outbox.is_empty() && signal.is_empty());
    // Only daemons are left (the watcher, if it still ran, and the selector): `run` returns.
    util::run(&sched);
}
