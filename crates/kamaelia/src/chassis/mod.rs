//! Chassis (Kamaelia's `Kamaelia.Chassis`): [`ServerCore`] and [`simple_server`] for servers, and
//! axon's [`Pipeline`] and [`Graphline`] re-exported for wiring everything else.

mod server_core;

pub use axon::{Graphline, Pipeline};
pub use server_core::{
    simple_server, ProtocolFactory, ServerConfig, ServerCore, ServerStats, DRAINING,
};
