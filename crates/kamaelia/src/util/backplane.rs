//! [`Backplane`]: named publish/subscribe (Kamaelia's `Kamaelia.Util.Backplane`).

use std::fmt;
use std::time::{Duration, Instant};

use axon::{
    Component, ComponentId, Core, Error, Inbox, Ipc, Linkage, NoSpaceInBox, Outbox, Scheduler,
};
use bytes::Bytes;

/// How long a [`Backplane`] waits for a subscriber with a full inbox to collect something before
/// it drops that subscriber, unless [`Backplane::with_slow_subscriber_timeout`] says otherwise.
pub const DEFAULT_SLOW_SUBSCRIBER_TIMEOUT: Duration = Duration::from_secs(10);

/// How many publishes a [`Backplane`]'s `inbox` holds: more are refused until it takes some, so a
/// publisher faster than the slowest subscriber waits instead of growing the backplane.
pub const PUBLISH_QUEUE: usize = 64;

/// What a [`Backplane`] takes, on `inbox` (publishes, and subscriptions in order with them) or
/// `subscriptions` (subscribe / unsubscribe, taken even while the backplane waits for a slow
/// subscriber). [`BackplaneHandle::send`] picks the right one.
#[derive(Debug)]
#[non_exhaustive]
pub enum BackplaneMsg {
    /// Deliver every message published by others to `data`; tell `control` if the subscriber is
    /// dropped. Subscribing again with the same `id` replaces the earlier subscription.
    Subscribe {
        /// The subscriber (its messages are not echoed back to it).
        id: ComponentId,
        /// Where published messages go. Give it a size limit: when it is full, the backplane holds
        /// the message (and takes no further publishes) until the subscriber collects one; a
        /// subscriber that collects nothing for the slow-subscriber timeout is dropped.
        data: Inbox<Bytes>,
        /// Gets `shutdownMicroprocess` if the subscriber is dropped for not collecting.
        control: Inbox<Ipc>,
    },
    /// Stop delivering to `id`.
    Unsubscribe {
        /// The subscriber.
        id: ComponentId,
    },
    /// Deliver `data` to every subscriber but `from`.
    Publish {
        /// The publisher.
        from: ComponentId,
        /// The message.
        data: Bytes,
    },
}

/// A handle to a running [`Backplane`]: where to send [`BackplaneMsg`]s.
#[derive(Clone, Debug)]
pub struct BackplaneHandle {
    inbox: Inbox<BackplaneMsg>,
    subscriptions: Inbox<BackplaneMsg>,
}

impl BackplaneHandle {
    /// The handle of the backplane whose core is `core`.
    fn of(core: &Core) -> Result<Self, Error> {
        Ok(Self {
            inbox: core.inbox_named("inbox")?,
            subscriptions: core.inbox_named("subscriptions")?,
        })
    }

    /// Sends a message to the backplane without waiting: a subscribe or unsubscribe is always
    /// taken; a publish only while the backplane's publish queue ([`PUBLISH_QUEUE`]) has room. A
    /// component that publishes a lot should rather [link an outbox](Self::link_publisher), so that
    /// it is woken when there is room again.
    ///
    /// # Errors
    ///
    /// [`NoSpaceInBox`], with the message, if it is a publish and the queue is full.
    pub fn send(&self, msg: BackplaneMsg) -> Result<(), NoSpaceInBox<BackplaneMsg>> {
        match msg {
            BackplaneMsg::Publish { .. } => self.inbox.deliver(msg),
            // The subscriptions inbox has no size limit: it grows only with the subscribers.
            _ => self.subscriptions.deliver(msg),
        }
    }

    /// Subscribes `id` (see [`BackplaneMsg::Subscribe`]); the subscription ends when the returned
    /// guard is dropped, so a subscriber that is stopped from outside is unsubscribed too.
    pub fn subscribe(
        &self,
        id: ComponentId,
        data: Inbox<Bytes>,
        control: Inbox<Ipc>,
    ) -> Subscription {
        let _ = self.send(BackplaneMsg::Subscribe { id, data, control });
        Subscription {
            subscriptions: self.subscriptions.clone(),
            id,
        }
    }

    /// Links `outbox`, owned by the component `core`, to the backplane's `inbox`, recording the
    /// linkage in `core`'s postoffice (so it is removed when that component ends). Sends of
    /// [`BackplaneMsg::Publish`] on it are refused while the publish queue is full, and a
    /// collection by the backplane wakes the component from [`Core::pause`] or
    /// [`Outbox::send_wait`]: back-pressure reaches the publisher.
    ///
    /// # Errors
    ///
    /// As [`Core::link`]: [`Error::BoxAlreadyLinked`] if `outbox` already feeds a box.
    pub fn link_publisher(
        &self,
        core: &Core,
        outbox: &Outbox<BackplaneMsg>,
    ) -> Result<Linkage, Error> {
        core.link(outbox, &self.inbox)
    }
}

/// A subscription made by [`BackplaneHandle::subscribe`]: dropping it unsubscribes.
#[derive(Debug)]
#[must_use = "dropping the subscription unsubscribes at once"]
pub struct Subscription {
    subscriptions: Inbox<BackplaneMsg>,
    id: ComponentId,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self
            .subscriptions
            .deliver(BackplaneMsg::Unsubscribe { id: self.id });
    }
}

/// One subscriber, as the backplane sees it.
struct Subscriber {
    id: ComponentId,
    /// The name of `out` among the backplane's boxes.
    box_name: String,
    /// A backplane outbox linked to the subscriber's data inbox: being a producer of that inbox
    /// is what lets the subscriber's collections wake the backplane.
    out: Outbox<Bytes>,
    control: Inbox<Ipc>,
    /// The message its full inbox refused, and when the first refusal since its last collection
    /// happened.
    held: Option<(Bytes, Instant)>,
}

/// Named publish/subscribe: every message published reaches every other subscriber, in order
/// (Kamaelia's `Backplane` with `PublishTo` / `SubscribeTo`).
///
/// A subscriber that keeps collecting is never dropped, however fast the publishers are: when its
/// inbox is full the backplane waits for it, and back-pressure goes to the publishers. Only a
/// subscriber that collects nothing for the slow-subscriber timeout
/// ([`DEFAULT_SLOW_SUBSCRIBER_TIMEOUT`], or [`Backplane::with_slow_subscriber_timeout`]) is dropped
/// and sent `shutdownMicroprocess` on its `control`.
///
/// # Examples
///
/// ```
/// use axon::{Core, Inbox, Ipc, Scheduler};
/// use bytes::Bytes;
/// use kamaelia::util::{Backplane, BackplaneMsg};
///
/// let sched = Scheduler::new();
/// let backplane = Backplane::named(&sched, "news");
/// // A subscriber (here a bare core, read by hand) with room for 16 messages.
/// let reader = Core::new("Reader");
/// let heard: Inbox<Bytes> = reader.inbox("inbox", "published news");
/// heard.set_size(Some(16));
/// let dropped: Inbox<Ipc> = reader.inbox("control", "told if dropped");
/// let subscription = backplane.subscribe(reader.id(), heard.clone(), dropped.clone());
///
/// let writer = Core::new("Writer").id();
/// let news = Bytes::from_static(b"hello\n");
/// backplane.send(BackplaneMsg::Publish { from: writer, data: news.clone() }).unwrap();
/// sched.run_until_idle(100);
/// assert_eq!(heard.recv_now(), Some(news));
/// assert!(dropped.is_empty());
/// drop(subscription); // unsubscribes
/// ```
///
/// # Inboxes
///
/// * `inbox` — [`BackplaneMsg`]: publishes (at most [`PUBLISH_QUEUE`] waiting; more are refused),
///   and subscribe / unsubscribe in order with them.
/// * `subscriptions` — [`BackplaneMsg`]: subscribe / unsubscribe, taken at once even while the
///   backplane waits for a slow subscriber. No size limit.
/// * `control` — `shutdownMicroprocess` stops it.
///
/// # Outboxes
///
/// One per subscriber, added when it subscribes and removed when it goes, linked to its data
/// inbox.
///
/// # How it works
///
/// A publish is delivered to every subscriber but the publisher. A subscriber whose inbox is full
/// gets the message held for it; while any message is held the backplane takes no more publishes
/// from `inbox`, which fills, so publishers linked with [`BackplaneHandle::link_publisher`] stop
/// (a chat handler then stops reading its connection, and TCP flow control reaches the client).
/// Each collection by a held subscriber wakes the backplane, which passes the held message on;
/// a subscriber that has refused a message for the whole timeout without collecting anything
/// is dropped, and the others go on. What the backplane holds is bounded: its publish queue, and
/// one message per subscriber (the same bytes, shared).
///
/// # Shutdown
///
/// A daemon: it lives as long as the program has other work, or until `shutdownMicroprocess`.
/// Held messages are then dropped; subscribers are not told.
///
/// # See also
///
/// [`chat`](crate::protocols::chat), which runs a chat room on one.
pub struct Backplane {
    core: Core,
    inbox: Inbox<BackplaneMsg>,
    subscriptions: Inbox<BackplaneMsg>,
    control: Inbox<Ipc>,
    slow_subscriber_timeout: Duration,
}

impl Backplane {
    /// A new backplane, with the [`DEFAULT_SLOW_SUBSCRIBER_TIMEOUT`].
    pub fn new() -> Self {
        let core = Core::new("Backplane");
        core.set_daemon(true);
        let inbox = core.inbox(
            "inbox",
            "publish (subscribe / unsubscribe in order with them)",
        );
        inbox.set_size(Some(PUBLISH_QUEUE));
        Self {
            inbox,
            subscriptions: core.inbox("subscriptions", "subscribe / unsubscribe, taken at once"),
            control: core.inbox("control", "shutdownMicroprocess stops it"),
            core,
            slow_subscriber_timeout: DEFAULT_SLOW_SUBSCRIBER_TIMEOUT,
        }
    }

    /// Sets how long a subscriber with a full inbox may go without collecting anything before it
    /// is dropped.
    pub fn with_slow_subscriber_timeout(mut self, timeout: Duration) -> Self {
        self.slow_subscriber_timeout = timeout;
        self
    }

    /// A handle for sending to this backplane.
    pub fn handle(&self) -> BackplaneHandle {
        BackplaneHandle {
            inbox: self.inbox.clone(),
            subscriptions: self.subscriptions.clone(),
        }
    }

    /// The backplane called `name` on `sched`, started if there is none (registered as the
    /// service `backplane:NAME`).
    pub fn named(sched: &Scheduler, name: &str) -> BackplaneHandle {
        Self::named_with(sched, name, Self::new)
    }

    /// Like [`Backplane::named`], with `make` building the backplane if there is none yet (to set
    /// its timeout, for instance).
    pub fn named_with(
        sched: &Scheduler,
        name: &str,
        make: impl FnOnce() -> Self,
    ) -> BackplaneHandle {
        let service = format!("backplane:{name}");
        if let Some(handle) = sched
            .service(&service)
            .ok()
            .and_then(|(core, _)| BackplaneHandle::of(&core).ok())
        {
            return handle;
        }
        let bp = make();
        let handle = bp.handle();
        let _ = sched.register_service(&service, &bp.core, "inbox");
        sched.activate(bp);
        handle
    }

    /// Applies a subscribe or unsubscribe.
    fn apply(&self, subs: &mut Vec<Subscriber>, msg: BackplaneMsg) {
        match msg {
            BackplaneMsg::Subscribe { id, data, control } => {
                self.remove(subs, id);
                // Named after the subscriber, which is subscribed once: no search for a free name.
                let (box_name, out) = self
                    .core
                    .add_outbox::<Bytes>(&format!("subscriber{id}"), "to one subscriber");
                match axon::link(&out, &data) {
                    Ok(_) => subs.push(Subscriber {
                        id,
                        box_name,
                        out,
                        control,
                        held: None,
                    }),
                    Err(e) => {
                        // Unreachable: a new outbox feeds nothing and cannot close a cycle.
                        tracing::error!(subscriber = %id, error = %e, "cannot subscribe");
                        let _ = self.core.delete_box(&box_name);
                    }
                }
            }
            BackplaneMsg::Unsubscribe { id } => self.remove(subs, id),
            BackplaneMsg::Publish { .. } => {}
        }
    }

    /// Forgets subscriber `id`, if it is one.
    fn remove(&self, subs: &mut Vec<Subscriber>, id: ComponentId) {
        if let Some(i) = subs.iter().position(|s| s.id == id) {
            let gone = subs.swap_remove(i);
            // Deleting the box cuts its link to the subscriber's inbox.
            let _ = self.core.delete_box(&gone.box_name);
        }
    }

    /// Delivers `data` to every subscriber but `from`, holding it for those that are full.
    /// Returns whether any is.
    fn publish(subs: &mut [Subscriber], from: ComponentId, data: &Bytes, now: Instant) -> bool {
        let mut blocked = false;
        for s in subs.iter_mut().filter(|s| s.id != from) {
            if let Err(full) = s.out.send(data.clone()) {
                s.held = Some((full.message, now));
                blocked = true;
            }
        }
        blocked
    }

    /// Passes held messages on to subscribers that collected since; drops those that have not
    /// collected anything for the timeout. Returns whether any message is still held.
    fn retry_held(&self, subs: &mut Vec<Subscriber>, now: Instant) -> bool {
        let mut blocked = false;
        subs.retain_mut(|s| {
            let Some((msg, since)) = s.held.take() else {
                return true;
            };
            match s.out.send(msg) {
                Ok(()) => true,
                Err(full) if now.duration_since(since) < self.slow_subscriber_timeout => {
                    s.held = Some((full.message, since));
                    blocked = true;
                    true
                }
                Err(_) => {
                    tracing::info!(
                        subscriber = %s.id,
                        timeout = ?self.slow_subscriber_timeout,
                        "backplane subscriber collected nothing for the timeout; dropping it"
                    );
                    let _ = s.control.deliver(Ipc::shutdown_microprocess());
                    let _ = self.core.delete_box(&s.box_name);
                    false
                }
            }
        });
        blocked
    }
}

impl Default for Backplane {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Backplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backplane")
            .field("core", &self.core)
            .field("slow_subscriber_timeout", &self.slow_subscriber_timeout)
            .finish()
    }
}

impl Component for Backplane {
    fn core(&self) -> &Core {
        &self.core
    }

    async fn main(self) {
        let mut subs: Vec<Subscriber> = Vec::new();
        loop {
            if self.control.drain().any(|c| c.is_shutdown_microprocess()) {
                return;
            }
            for msg in self.subscriptions.drain() {
                self.apply(&mut subs, msg);
            }
            let now = Instant::now();
            let mut blocked = self.retry_held(&mut subs, now);
            // Publishes wait in `inbox` (bounded) while any subscriber has a message held: the
            // order each subscriber sees stays the publish order.
            while !blocked {
                let Some(msg) = self.inbox.recv_now() else {
                    break;
                };
                match msg {
                    BackplaneMsg::Publish { from, data } => {
                        blocked = Self::publish(&mut subs, from, &data, now);
                    }
                    other => self.apply(&mut subs, other),
                }
            }
            let oldest = subs
                .iter()
                .filter_map(|s| s.held.as_ref())
                .map(|h| h.1)
                .min();
            match oldest {
                // Woken by a collection from any subscriber's inbox (its outbox here feeds it), a
                // delivery, or the first deadline.
                Some(since) => {
                    let left =
                        (since + self.slow_subscriber_timeout).saturating_duration_since(now);
                    let _ = axon::timeout(left, self.core.pause()).await;
                }
                None => self.core.pause_for_delivery().await,
            }
        }
    }
}
