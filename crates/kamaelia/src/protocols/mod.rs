//! Protocol handlers for [`ServerCore`](crate::chassis::ServerCore): [`Echo`], [`Discard`],
//! [`chat`] (line chat through a [`Backplane`](crate::util::Backplane)) and [`relay`].
//!
//! A protocol handler is a component with `inbox: Inbox<Bytes>` (bytes from the peer),
//! `outbox: Outbox<Bytes>` (bytes to the peer), `control: Inbox<Ipc>` (the peer finished sending,
//! or the connection ended) and `signal: Outbox<Ipc>` (`producerFinished` to close our side after
//! what was sent, `shutdownMicroprocess` to close at once).

pub mod chat;
mod echo;
pub mod relay;

pub use echo::{Discard, Echo};
