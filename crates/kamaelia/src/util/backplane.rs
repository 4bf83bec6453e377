//! [`Backplane`]: named publish/subscribe (Kamaelia's `Kamaelia.Util.Backplane`).

use std::fmt;

use axon::{Component, ComponentId, Core, Inbox, Ipc, Scheduler};
use bytes::Bytes;

/// What a [`Backplane`]'s `inbox` takes.
#[derive(Debug)]
#[non_exhaustive]
pub enum BackplaneMsg {
    /// Deliver every message published by others to `data`; tell `control` if it falls behind.
    Subscribe {
        /// The subscriber (its messages are not echoed back to it).
        id: ComponentId,
        /// Where published messages go. Give it a size limit: when it is full, the subscriber is
        /// dropped and told so.
        data: Inbox<Bytes>,
        /// Gets `shutdownMicroprocess` if the subscriber is dropped for falling behind.
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
}

impl BackplaneHandle {
    /// Sends a message to the backplane.
    pub fn send(&self, msg: BackplaneMsg) {
        // The backplane's inbox is unbounded.
        let _ = self.inbox.deliver(msg);
    }
}

struct Subscriber {
    id: ComponentId,
    data: Inbox<Bytes>,
    control: Inbox<Ipc>,
}

/// Named publish/subscribe: every message published reaches every other subscriber (Kamaelia's
/// `Backplane` with `PublishTo` / `SubscribeTo`).
///
/// Subscribers that cannot keep up do not slow the others: a delivery to a full subscriber inbox
/// drops that subscriber and sends `shutdownMicroprocess` to its `control`.
///
/// # Inboxes
///
/// * `inbox` — [`BackplaneMsg`]: subscribe, unsubscribe, publish.
/// * `control` — `shutdownMicroprocess` stops it.
///
/// # Outboxes
///
/// None: deliveries go straight to the subscribers' inboxes.
///
/// # Shutdown
///
/// A daemon: it lives as long as the program has other work, or until `shutdownMicroprocess`.
pub struct Backplane {
    core: Core,
    inbox: Inbox<BackplaneMsg>,
    control: Inbox<Ipc>,
}

impl Backplane {
    /// A new backplane.
    pub fn new() -> Self {
        let core = Core::new("Backplane");
        core.set_daemon(true);
        Self {
            inbox: core.inbox("inbox", "subscribe / unsubscribe / publish"),
            control: core.inbox("control", "shutdownMicroprocess stops it"),
            core,
        }
    }

    /// A handle for sending to this backplane.
    pub fn handle(&self) -> BackplaneHandle {
        BackplaneHandle {
            inbox: self.inbox.clone(),
        }
    }

    /// The backplane called `name` on `sched`, started if there is none (registered as the
    /// service `backplane:NAME`).
    pub fn named(sched: &Scheduler, name: &str) -> BackplaneHandle {
        let service = format!("backplane:{name}");
        if let Ok(inbox) = sched.service_inbox::<BackplaneMsg>(&service) {
            return BackplaneHandle { inbox };
        }
        let bp = Self::new();
        let handle = bp.handle();
        let _ = sched.register_service(&service, &bp.core, "inbox");
        sched.activate(bp);
        handle
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
            while let Some(msg) = self.inbox.recv_now() {
                match msg {
                    BackplaneMsg::Subscribe { id, data, control } => {
                        subs.push(Subscriber { id, data, control });
                    }
                    BackplaneMsg::Unsubscribe { id } => subs.retain(|s| s.id != id),
                    BackplaneMsg::Publish { from, data } => {
                        subs.retain(|s| {
                            if s.id == from {
                                return true;
                            }
                            match s.data.deliver(data.clone()) {
                                Ok(()) => true,
                                Err(_) => {
                                    tracing::info!(subscriber = %s.id, "backplane subscriber fell behind; dropping it");
                                    let _ = s.control.deliver(Ipc::shutdown_microprocess());
                                    false
                                }
                            }
                        });
                    }
                }
            }
            self.core.pause_for_delivery().await;
        }
    }
}
