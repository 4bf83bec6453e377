//! Kamaelia's component networking in Rust.
//!
//! Networking is made of [`axon`] components: a [`Selector`](internet::Selector) delivers socket
//! readiness as messages, a [`ConnectedSocketAdapter`](internet::ConnectedSocketAdapter) wraps one
//! connection (bytes on `inbox` go to the wire, bytes from the wire come out of `outbox`),
//! [`TcpClient`](internet::TcpClient) and [`TcpServer`](internet::TcpServer) make them, and
//! [`ServerCore`](chassis::ServerCore) runs one protocol-handler component per connection.
//!
//! # Example: an echo server and a client, in one scheduler
//!
//! ```
//! use std::net::SocketAddr;
//! use axon::{Boxes, Core, Ipc, Msg, Scheduler};
//! use bytes::Bytes;
//! use kamaelia::chassis::{ServerConfig, ServerCore};
//! use kamaelia::internet::{TcpClient, TcpClientConfig};
//! use kamaelia::protocols::Echo;
//!
//! let sched = Scheduler::new();
//! let server = ServerCore::new(
//!     "127.0.0.1:0".parse::<SocketAddr>()?,
//!     |_conn| Box::new(Echo::new()),
//!     ServerConfig::default(),
//! )?;
//! let port = server.local_addr().port();
//! let server_control = server.control().clone();
//!
//! let client = TcpClient::new("127.0.0.1", port, TcpClientConfig::default());
//! let received = Core::new("Test").inbox::<Bytes>("inbox", "echoed bytes");
//! client.outbox().link_to(&received)?;
//! client.inbox().deliver(Bytes::from_static(b"hello")).unwrap();
//! client.control().deliver(Ipc::producer_finished()).unwrap(); // half-close after sending
//!
//! // Stop the server once the client has finished.
//! let stopper = axon::FnComponent::<(), (), _>::new("Stopper", move |b: Boxes<(), ()>| async move {
//!     while !matches!(b.next().await, Msg::Control(Ipc::SocketShutdown(_))) {}
//!     let _ = server_control.deliver(Ipc::shutdown_microprocess());
//! });
//! client.signal().link_to(&stopper.boxes().control)?;
//!
//! sched.activate(server);
//! sched.activate(client);
//! sched.activate(stopper);
//! sched.run();
//! let echoed: Vec<u8> = received.drain().flat_map(|b| b.to_vec()).collect();
//! assert_eq!(echoed, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)] // allowed in `sys` alone
#![deny(missing_docs, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]

pub mod chassis;
pub mod internet;
pub mod protocols;
mod sys;
pub mod util;

pub use axon;
pub use bytes;
