//! Timers: [`sleep`], [`sleep_until`] and [`timeout`], driven by the scheduler's timer heap.
//!
//! A sleeping component costs nothing: the scheduler blocks in its driver until the earliest
//! deadline, then wakes the component that set it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::scheduler::{current_now, with_current, TimerKey};

/// Waits for `duration`. Must be awaited inside a component running on a scheduler.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// use axon::{FnComponent, Scheduler};
///
/// let sched = Scheduler::new();
/// let started = Instant::now();
/// sched.activate(FnComponent::<(), (), _>::new("Napper", |_b| async move {
///     axon::sleep(Duration::from_millis(5)).await;
/// }));
/// sched.run();
/// assert!(started.elapsed() >= Duration::from_millis(5));
/// ```
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(Instant::now() + duration)
}

/// The current scheduler's clock: the time it read when this scheduler cycle began or its last
/// wait for the OS returned, so never ahead of the real time and behind it by at most the work of
/// one cycle. Components that stamp every message (activity clocks for timeouts) read this instead
/// of the system clock. Outside a scheduler it is [`Instant::now`].
///
/// ```
/// let before = std::time::Instant::now();
/// assert!(axon::now() >= before);
/// ```
#[inline]
pub fn now() -> Instant {
    current_now().unwrap_or_else(Instant::now)
}

/// Waits until `deadline`. Must be awaited inside a component running on a scheduler.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        armed: None,
    }
}

/// The future returned by [`sleep`] and [`sleep_until`].
///
/// # Panics
///
/// Polling it outside a component running on an axon scheduler panics: there is no timer heap to
/// wake it.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    /// The scheduler timer, once armed; removed again when the sleep is reset or dropped.
    armed: Option<TimerKey>,
}

impl Sleep {
    /// When the sleep ends.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Moves the deadline (the timer is re-armed on the next poll).
    pub fn reset(&mut self, deadline: Instant) {
        self.disarm();
        self.deadline = deadline;
    }

    fn disarm(&mut self) {
        if let Some(key) = self.armed.take() {
            with_current(|s| {
                if let Some(s) = s {
                    s.remove_timer(key);
                }
            });
        }
    }
}

impl Future for Sleep {
    type Output = ();

    #[inline]
    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        // Once armed, the scheduler's clock decides (no clock read per poll): a deadline it has
        // not seen pass yet is left to the timer, which fires in the cycle that sees it. The first
        // poll reads the real clock, so a deadline already past is never waited for.
        if now() >= self.deadline {
            return Poll::Ready(());
        }
        if self.armed.is_none() {
            if Instant::now() >= self.deadline {
                return Poll::Ready(());
            }
            let deadline = self.deadline;
            let key = with_current(|s| s.and_then(|s| s.add_timer(deadline)));
            assert!(
                key.is_some(),
                "axon::sleep polled outside a component running on an axon scheduler"
            );
            self.armed = key;
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.disarm();
    }
}

/// Runs `future`, giving up after `duration`.
///
/// # Errors
///
/// [`Elapsed`] if the time ran out first; `future` is dropped.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    let mut future = std::pin::pin!(future);
    let mut timer = sleep(duration);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(&mut timer).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed(()))),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// The error of [`timeout`]: the time ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

/// Lets every other runnable component run before this one continues: the component goes to the
/// back of the run queue. Use it to bound the work done per wake-up.
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future returned by [`yield_now`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        if !with_current(|s| s.is_some_and(|s| s.wake_current())) {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}
