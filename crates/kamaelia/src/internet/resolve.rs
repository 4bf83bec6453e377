//! Turning a [`TcpClient`](super::TcpClient)'s host into addresses without blocking the scheduler,
//! once for many clients.
//!
//! A literal address needs no lookup. A name is looked up on a helper thread (the system's
//! resolver blocks). The clients of one [`ClientTemplate`](super::ClientTemplate) share a
//! [`LookupCache`]: clients that need the name while a lookup runs wait for that one, its answer
//! serves later clients for the template's time to live, and the address that last connected is
//! tried first. A relay to `localhost` so costs one lookup a second, not a thread per connection.

use std::cell::RefCell;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// How a name becomes addresses: a function run on a helper thread, given the host and port.
///
/// The default is the system's resolver (`getaddrinfo`, through [`ToSocketAddrs`]).
///
/// # Examples
///
/// A fixed table, for a name the system does not know:
///
/// ```
/// use std::io;
/// use std::net::SocketAddr;
/// use kamaelia::internet::{ClientTemplate, NameResolver, TcpClientConfig};
///
/// let table = NameResolver::new(|host, port| match host {
///     "backend" => Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))]),
///     _ => Err(io::Error::new(io::ErrorKind::NotFound, format!("unknown host {host}"))),
/// });
/// let template = ClientTemplate::new("backend", 8080, TcpClientConfig::default().resolver(table));
/// # drop(template.client());
/// ```
#[derive(Clone)]
pub struct NameResolver(Arc<ResolveFn>);

type ResolveFn = dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync;

impl NameResolver {
    /// A resolver that calls `f` (on a helper thread) for each lookup.
    pub fn new(
        f: impl Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(f))
    }

    /// The system's resolver.
    pub fn system() -> Self {
        Self::new(|host, port| (host, port).to_socket_addrs().map(Iterator::collect))
    }
}

impl Default for NameResolver {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for NameResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NameResolver")
    }
}

/// `host:port` as an address when `host` is an IPv4 or IPv6 literal (with or without brackets).
pub(crate) fn literal(host: &str, port: u16) -> Option<SocketAddr> {
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, port))
}

/// What one lookup on the helper thread gives: the addresses, or the error (shared by every
/// client that waited for it).
type Answer = Result<Vec<SocketAddr>, Arc<io::Error>>;

/// A lookup running on a helper thread: its answer once there, and the clients waiting for it.
#[derive(Default)]
struct Pending {
    slot: Mutex<PendingSlot>,
}

#[derive(Default)]
struct PendingSlot {
    /// The answer, and when it came.
    answer: Option<(Answer, Instant)>,
    waiting: Vec<Waker>,
}

impl Pending {
    /// Whether the answer came, longer than `ttl` ago: no client took it up (each that waited
    /// gave up), and it is too old to serve.
    fn stale(&self, ttl: Duration) -> bool {
        let slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        slot.answer
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() >= ttl)
    }
}

enum State {
    /// Nothing looked up yet, or the last lookup failed (failures are not kept).
    Empty,
    /// A lookup is running; clients that need the name wait for it. The address that last
    /// connected, from the answer before, stays preferred if the new answer has it.
    Running(Arc<Pending>, Option<SocketAddr>),
    /// The last answer, when it came, and the address that last connected.
    Known {
        addrs: Rc<[SocketAddr]>,
        at: Instant,
        preferred: Option<SocketAddr>,
    },
}

/// One template's lookups: shared by its clients (see the [module](self)).
pub(crate) struct LookupCache {
    state: RefCell<State>,
}

impl fmt::Debug for LookupCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &*self.state.borrow() {
            State::Empty => "empty",
            State::Running(..) => "looking up",
            State::Known { .. } => "known",
        };
        f.debug_struct("LookupCache")
            .field("state", &state)
            .finish()
    }
}

impl LookupCache {
    pub(crate) fn new() -> Self {
        Self {
            state: RefCell::new(State::Empty),
        }
    }

    /// The addresses to try for `host:port`, in order: the one that last connected first, then
    /// the others in the resolver's order. A literal is its own address; a name's answer is
    /// reused while younger than `ttl`, and otherwise looked up with `resolver` on a helper
    /// thread, one lookup for all the clients that ask meanwhile.
    ///
    /// # Errors
    ///
    /// The resolver's error (each waiting client gets its kind and message), or `NotFound` when
    /// the name resolves to no address.
    pub(crate) async fn addresses(
        &self,
        host: &str,
        port: u16,
        ttl: Duration,
        resolver: &NameResolver,
    ) -> io::Result<Vec<SocketAddr>> {
        if let Some(addr) = literal(host, port) {
            return Ok(vec![addr]);
        }
        let pending = {
            let mut state = self.state.borrow_mut();
            match &*state {
                State::Known {
                    addrs,
                    at,
                    preferred,
                } if at.elapsed() < ttl => return Ok(in_order(addrs, *preferred)),
                State::Running(pending, _) if !pending.stale(ttl) => pending.clone(),
                // Nothing known, an answer too old, or one nobody took up in time: look up again,
                // keeping the address that last connected.
                State::Empty => start_lookup(&mut state, None, host, port, resolver)?,
                State::Known { preferred, .. } | State::Running(_, preferred) => {
                    let preferred = *preferred;
                    start_lookup(&mut state, preferred, host, port, resolver)?
                }
            }
        };
        let (answer, at) = wait(&pending).await;
        let mut state = self.state.borrow_mut();
        // The first client to see the answer stores it (a newer lookup may have replaced it).
        let stored = match &*state {
            State::Running(p, preferred) if Arc::ptr_eq(p, &pending) => Some(match &answer {
                Ok(addrs) => State::Known {
                    addrs: addrs.as_slice().into(),
                    at,
                    preferred: *preferred,
                },
                Err(_) => State::Empty,
            }),
            _ => None,
        };
        if let Some(stored) = stored {
            *state = stored;
        }
        match answer {
            Ok(addrs) if addrs.is_empty() => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} resolves to no address"),
            )),
            Ok(addrs) => {
                let preferred = match &*state {
                    State::Known { preferred, .. } => *preferred,
                    _ => None,
                };
                Ok(in_order(&addrs, preferred))
            }
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        }
    }

    /// The address of the last answer, if it had just one and is younger than `ttl`.
    pub(crate) fn single(&self, ttl: Duration) -> Option<SocketAddr> {
        match &*self.state.borrow() {
            State::Known { addrs, at, .. } if addrs.len() == 1 && at.elapsed() < ttl => {
                Some(addrs[0])
            }
            _ => None,
        }
    }

    /// `addr` connected: later clients try it first, while the answer it came from is kept (and
    /// in the answer of a lookup running now, if that has it).
    pub(crate) fn connected(&self, addr: SocketAddr) {
        match &mut *self.state.borrow_mut() {
            State::Known {
                addrs, preferred, ..
            } if addrs.contains(&addr) => *preferred = Some(addr),
            State::Running(_, preferred) => *preferred = Some(addr),
            _ => {}
        }
    }
}

/// `addrs` with `preferred` (if among them) moved to the front.
fn in_order(addrs: &[SocketAddr], preferred: Option<SocketAddr>) -> Vec<SocketAddr> {
    let mut out = Vec::with_capacity(addrs.len());
    out.extend(preferred.filter(|p| addrs.contains(p)));
    out.extend(addrs.iter().filter(|a| Some(**a) != preferred));
    out
}

/// Starts a lookup and makes it `state`'s, with `preferred` kept for its answer.
fn start_lookup(
    state: &mut State,
    preferred: Option<SocketAddr>,
    host: &str,
    port: u16,
    resolver: &NameResolver,
) -> io::Result<Arc<Pending>> {
    let pending = start(host, port, resolver)?;
    *state = State::Running(pending.clone(), preferred);
    Ok(pending)
}

/// Starts a lookup of `host:port` on a helper thread.
fn start(host: &str, port: u16, resolver: &NameResolver) -> io::Result<Arc<Pending>> {
    let pending = Arc::new(Pending::default());
    let (name, out, resolver) = (host.to_owned(), pending.clone(), resolver.clone());
    std::thread::Builder::new()
        .name("kamaelia-resolve".into())
        .spawn(move || {
            let answer = (resolver.0)(&name, port).map_err(Arc::new);
            let waiting = {
                let mut slot = out.slot.lock().unwrap_or_else(PoisonError::into_inner);
                slot.answer = Some((answer, Instant::now()));
                std::mem::take(&mut slot.waiting)
            };
            waiting.into_iter().for_each(Waker::wake);
        })
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start looking up {host}: {e}")))?;
    Ok(pending)
}

/// Waits for `pending`'s answer, and when it came.
async fn wait(pending: &Pending) -> (Answer, Instant) {
    poll_fn(|cx| {
        let mut slot = pending.slot.lock().unwrap_or_else(PoisonError::into_inner);
        match &slot.answer {
            Some(answer) => Poll::Ready(answer.clone()),
            None => {
                if !slot.waiting.iter().any(|w| w.will_wake(cx.waker())) {
                    slot.waiting.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("a socket address")
    }

    #[test]
    fn the_address_that_connected_goes_first_and_the_rest_keep_their_order() {
        let all = [addr("[::1]:7"), addr("127.0.0.1:7"), addr("10.0.0.1:7")];
        assert_eq!(in_order(&all, None), all);
        assert_eq!(
            in_order(&all, Some(all[1])),
            [all[1], all[0], all[2]],
            "the one that connected first"
        );
        assert_eq!(
            in_order(&all, Some(addr("192.0.2.1:7"))),
            all,
            "an address not in the answer is ignored"
        );
    }

    #[test]
    fn literals_are_addresses_and_names_are_not() {
        assert_eq!(literal("127.0.0.1", 80), Some(addr("127.0.0.1:80")));
        assert_eq!(literal("[::1]", 80), Some(addr("[::1]:80")));
        assert_eq!(literal("::1", 80), Some(addr("[::1]:80")));
        assert_eq!(literal("localhost", 80), None);
    }
}
