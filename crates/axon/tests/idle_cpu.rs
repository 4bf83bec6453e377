//! Ports the intent of `test_Scheduler.test_runThreadsUsesNonBusyWaitingMode`, and the fix for the
//! busy loops of behaviour spec §10 item 4: a scheduler with nothing to do blocks in the OS and
//! uses (almost) no CPU while it waits.
//!
//! Linux only: the scheduler thread's CPU time is read from `/proc/thread-self/schedstat`.
#![cfg(target_os = "linux")]

use std::time::{Duration, Instant};

use axon::{FnComponent, Scheduler};

/// CPU time this thread has used, in nanoseconds (first field of `schedstat`).
fn thread_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("read /proc/thread-self/schedstat");
    stat.split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("unexpected schedstat contents: {stat:?}"))
}

/// test_runThreadsUsesNonBusyWaitingMode
#[test]
fn a_scheduler_waiting_on_a_sleeping_component_uses_almost_no_cpu() {
    const NAP: Duration = Duration::from_millis(500);
    let sched = Scheduler::new();
    let core = sched.activate(FnComponent::<(), (), _>::new("Napper", |_b| async move {
        axon::sleep(NAP).await;
    }));

    let cpu_before = thread_cpu_ns();
    let started = Instant::now();
    sched.run();
    let wall = started.elapsed();
    let cpu = Duration::from_nanos(thread_cpu_ns() - cpu_before);

    assert!(core.is_finished());
    assert!(wall >= NAP, "sanity: it really waited ({wall:?})");
    assert!(
        cpu < Duration::from_millis(50),
        "the scheduler used {cpu:?} of CPU over a {wall:?} wait: it should block, not spin"
    );
}
