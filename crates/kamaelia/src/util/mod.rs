//! Utility components (Kamaelia's `Kamaelia.Util`): the publish/subscribe [`Backplane`], and
//! threaded byte-stream [`reader`] and [`writer`] for the console or any blocking stream.

mod backplane;
mod console;

pub use backplane::{
    Backplane, BackplaneHandle, BackplaneMsg, Subscription, DEFAULT_SLOW_SUBSCRIBER_TIMEOUT,
    PUBLISH_QUEUE,
};
pub use console::{reader, writer};
