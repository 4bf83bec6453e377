//! Swapping the scheduler's OS wait ([`Scheduler::set_driver`]) must not lose a wake that another
//! thread sent through the old driver's unparker. This is what a networking selector does when it
//! starts: a component that started a helper thread (a name resolver, say) in the same cycle was
//! never woken, and the program hung in `epoll_wait`.

use std::future::poll_fn;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::task::Poll;
use std::time::Duration;

use axon::{Core, Driver, FnComponent, Scheduler, Unpark};

/// How long the test driver waits for an unpark before it gives up and records that it would
/// have slept forever.
const CAP: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Gate {
    unparked: Mutex<bool>,
    cond: Condvar,
    /// A `park(None)` that no unpark ended.
    stuck: Mutex<bool>,
}

/// A driver that parks on a condition variable; `park(None)` gives up after [`CAP`] and records it.
struct TestDriver(Arc<Gate>);

struct TestUnpark(Arc<Gate>);

impl Unpark for TestUnpark {
    fn unpark(&self) {
        *self.0.unparked.lock().unwrap() = true;
        self.0.cond.notify_all();
    }
}

impl Driver for TestDriver {
    fn park(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let gate = &self.0;
        let mut unparked = gate.unparked.lock().unwrap();
        let wait = timeout.unwrap_or(CAP);
        if !*unparked && !wait.is_zero() {
            let (u, result) = gate
                .cond
                .wait_timeout_while(unparked, wait, |u| !*u)
                .unwrap();
            unparked = u;
            if result.timed_out() && timeout.is_none() {
                *gate.stuck.lock().unwrap() = true;
            }
        }
        *unparked = false;
        Ok(())
    }

    fn unparker(&self) -> Arc<dyn Unpark> {
        Arc::new(TestUnpark(self.0.clone()))
    }
}

#[test]
fn a_wake_sent_just_before_the_driver_is_swapped_is_not_lost() {
    let sched = Scheduler::new();
    // Polled first: wakes itself from another thread (through the default driver's unparker, as
    // the swap has not happened yet), then waits for that wake.
    let waiter = FnComponent::<(), (), _>::new("Waiter", |_b| async move {
        let mut woken = false;
        poll_fn(|cx| {
            if woken {
                return Poll::Ready(());
            }
            woken = true;
            let waker = cx.waker().clone();
            std::thread::spawn(move || waker.wake()).join().unwrap();
            Poll::Pending
        })
        .await;
    });
    // Polled second, in the same cycle: installs a new driver, as a selector does.
    let gate = Arc::new(Gate::default());
    let driver = TestDriver(gate.clone());
    let swapper = FnComponent::<(), (), _>::new("Swapper", move |_b| async move {
        Scheduler::current().unwrap().set_driver(Box::new(driver));
    });
    let waiter: Core = sched.activate(waiter);
    sched.activate(swapper);
    sched.run();
    assert!(waiter.is_finished());
    assert!(
        !*gate.stuck.lock().unwrap(),
        "the wake was lost: the scheduler parked with nothing to end the wait"
    );
}
