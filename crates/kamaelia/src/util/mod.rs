//! Utility components (Kamaelia's `Kamaelia.Util`): the publish/subscribe [`Backplane`],
//! threaded byte-stream [`reader`] and [`writer`] for the console or any blocking stream, and the
//! [`SignalWatcher`] that turns SIGINT, SIGTERM and SIGUSR1 into messages.

mod backplane;
mod console;
mod signal_watcher;

pub use backplane::{
    Backplane, BackplaneHandle, BackplaneMsg, Subscription, DEFAULT_SLOW_SUBSCRIBER_TIMEOUT,
    PUBLISH_QUEUE,
};
pub use console::{reader, writer};
pub use signal_watcher::SignalWatcher;
