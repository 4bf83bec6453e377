//! Chassis: components that build and run graphs of other components (Kamaelia's
//! `Kamaelia.Chassis`).
//!
//! * [`Pipeline`] wires its children in a line: each `outbox` to the next `inbox`, each `signal` to
//!   the next `control`.
//! * [`Graphline`] wires named children by an explicit table of linkages.

mod graphline;
mod pipeline;

pub use graphline::Graphline;
pub use pipeline::Pipeline;
