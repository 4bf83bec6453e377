//! [`SignalWatcher`]: POSIX signals as messages, delivered by the selector on the scheduler's own
//! thread.

use std::fmt;
use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axon::ipc::{ErrorInformation, SelectorRequest};
use axon::{Component, Core, Inbox, Ipc, Outbox};
use mio::net::UnixStream;
use mio::Token;
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::SignalOnly;
use signal_hook::SigId;

use crate::internet::{Readiness, SelectorHandle, SelectorMsg};

/// The signals that ask for a graceful shutdown.
const SHUTDOWN: [i32; 2] = [SIGINT, SIGTERM];

/// What a second shutdown signal says as it ends the process.
const SECOND_SIGNAL: &str = "second signal: exiting now\n";

/// Turns SIGINT and SIGTERM into a graceful shutdown and SIGUSR1 into a report request, as
/// messages. A second SIGINT or SIGTERM exits the process at once.
///
/// The signal handlers only write a byte to a socket pair (signal-hook's self-pipe); the selector
/// reports it readable like any socket, and the watcher turns what arrived into messages. No
/// thread is started: a process with one thread has cheaper `malloc`, `free` and system calls in
/// glibc (no locks, no cancellation points to arm), which a server pays on every connection.
///
/// # Inboxes
///
/// * `control` — `shutdownMicroprocess` ends the watcher.
/// * `ReadReady` — readiness notices for the self-pipe, from the selector.
///
/// # Outboxes
///
/// * `outbox` — `producerFinished` on the first SIGINT or SIGTERM (link it to a server's
///   `control` for a graceful shutdown).
/// * `signal` — `status("SIGUSR1")` for each SIGUSR1 (signals that arrive together count once);
///   `errorInformation` if the self-pipe cannot be registered with the selector.
/// * `_selectorSignal` — requests to the selector.
///
/// # Shutdown
///
/// The watcher is a daemon: the scheduler's `run` returns once only daemons are left. It ends on
/// `shutdownMicroprocess`. While it exists (made, not yet dropped), a second SIGINT or SIGTERM ends
/// the process with status 128 + the signal's number (saying `second signal: exiting now` on
/// standard error), from inside the signal handler, so it works even if the scheduler is stuck.
/// Dropping the watcher unregisters its handlers; the signals are then ignored, not given back
/// their default action.
///
/// # Example
///
/// ```
/// use kamaelia::chassis::{ServerConfig, ServerCore};
/// use kamaelia::protocols::Echo;
/// use kamaelia::util::SignalWatcher;
///
/// let sched = axon::Scheduler::new();
/// let server = ServerCore::new(
///     "127.0.0.1:0".parse()?,
///     |_| Box::new(Echo::new()),
///     ServerConfig::default(),
/// )?;
/// let watcher = SignalWatcher::new()?;
/// // SIGINT or SIGTERM: the server stops accepting and drains its connections.
/// axon::link(watcher.outbox(), server.control())?;
/// sched.activate(watcher);
/// sched.activate(server);
/// // sched.run() serves until a signal.
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SignalWatcher {
    core: Core,
    control: Inbox<Ipc>,
    ready: Inbox<Readiness>,
    outbox: Outbox<Ipc>,
    signal: Outbox<Ipc>,
    selector_signal: Outbox<SelectorMsg>,
    delivery: SignalDelivery<UnixStream, SignalOnly>,
    /// The handlers behind "a second shutdown signal exits at once".
    exit_on_second: Vec<SigId>,
}

impl SignalWatcher {
    /// Installs the signal handlers and makes the watcher. Signals that arrive before it runs are
    /// kept and reported when it starts.
    ///
    /// # Errors
    ///
    /// The OS error if the socket pair cannot be made or a handler cannot be installed.
    pub fn new() -> io::Result<Self> {
        let (read, write) = UnixStream::pair()?;
        let delivery =
            SignalDelivery::with_pipe(read, write, SignalOnly, SHUTDOWN.iter().chain(&[SIGUSR1]))?;
        // The first shutdown signal sets `seen`; one arriving with it set exits. Registered in
        // this order, the exit check runs before the flag is set.
        let seen = Arc::new(AtomicBool::new(false));
        let mut exit_on_second = Vec::with_capacity(2 * SHUTDOWN.len());
        for sig in SHUTDOWN {
            let registered =
                crate::sys::exit_on_signal_if(sig, 128 + sig, SECOND_SIGNAL, Arc::clone(&seen))
                    .and_then(|exit| {
                        exit_on_second.push(exit);
                        signal_hook::flag::register(sig, Arc::clone(&seen))
                    });
            match registered {
                Ok(id) => exit_on_second.push(id),
                Err(e) => {
                    for id in exit_on_second {
                        signal_hook::low_level::unregister(id);
                    }
                    return Err(e);
                }
            }
        }
        let core = Core::new("SignalWatcher");
        core.set_daemon(true);
        Ok(Self {
            control: core.inbox("control", "shutdownMicroprocess ends the watcher"),
            ready: core.inbox("ReadReady", "readiness notices for the self-pipe"),
            outbox: core.outbox("outbox", "producerFinished on the first SIGINT or SIGTERM"),
            signal: core.outbox("signal", "status(\"SIGUSR1\") for each SIGUSR1"),
            selector_signal: core.outbox("_selectorSignal", "requests to the selector"),
            core,
            delivery,
            exit_on_second,
        })
    }

    /// `outbox`: `producerFinished` on the first SIGINT or SIGTERM.
    pub fn outbox(&self) -> &Outbox<Ipc> {
        &self.outbox
    }

    /// `signal`: `status("SIGUSR1")` for each SIGUSR1.
    pub fn signal(&self) -> &Outbox<Ipc> {
        &self.signal
    }

    /// `control`: `shutdownMicroprocess`.
    pub fn control(&self) -> &Inbox<Ipc> {
        &self.control
    }

    /// Sends a message for each signal that arrived since the last look: `producerFinished` for
    /// the first shutdown signal only (`shutdown_sent` remembers it).
    fn report(&mut self, shutdown_sent: &mut bool) {
        for sig in self.delivery.pending() {
            if sig == SIGUSR1 {
                let _ = self.signal.send(Ipc::Status("SIGUSR1".to_owned()));
            } else if !*shutdown_sent {
                *shutdown_sent = true;
                let _ = self.outbox.send(Ipc::producer_finished());
            }
        }
    }

    /// Registers the self-pipe with the selector.
    fn register(&mut self) -> io::Result<(SelectorHandle, Token)> {
        let selector = SelectorHandle::current()?;
        let token = selector.register(self.delivery.get_read_mut())?;
        self.core
            .link(&self.selector_signal, selector.notify())
            .map_err(io::Error::other)?;
        Ok((selector, token))
    }
}

impl Drop for SignalWatcher {
    fn drop(&mut self) {
        for id in self.exit_on_second.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

impl fmt::Debug for SignalWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignalWatcher")
            .field("core", &self.core)
            .finish()
    }
}

impl Component for SignalWatcher {
    fn core(&self) -> &Core {
        &self.core
    }

    async fn main(mut self) {
        let (selector, token) = match self.register() {
            Ok(r) => r,
            Err(e) => {
                let _ = self.signal.send(Ipc::ErrorInformation(ErrorInformation {
                    caller: Some(self.core.id()),
                    message: format!("SignalWatcher: cannot watch the self-pipe: {e}"),
                }));
                return;
            }
        };
        let mut shutdown_sent = false;
        // Signals that came before the watcher ran are looked at on the first pass.
        let mut readable = true;
        loop {
            while let Some(c) = self.control.recv_now() {
                if c.is_shutdown_microprocess() {
                    let _ = selector.deregister(self.delivery.get_read_mut(), token);
                    return;
                }
            }
            while self.ready.recv_now().is_some() {
                readable = true;
            }
            if readable {
                readable = false;
                // The next notice: a byte written after the drain below raises a new edge, which
                // the selector keeps until this request reaches it, if need be.
                let _ = self.selector_signal.send(SelectorRequest::NewReader {
                    caller: self.core.id(),
                    reply: self.ready.clone(),
                    selectable: token,
                });
                self.report(&mut shutdown_sent);
            }
            self.core.pause_for_delivery().await;
        }
    }
}
