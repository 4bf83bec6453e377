//! The `kamaelia` command: an echo/chat/discard server, a netcat-like client and a TCP relay, each a
//! small graph of components.
//!
//! ```text
//! kamaelia serve   [--listen ADDR] [--protocol echo|chat|discard] [--drain-timeout SECS]
//!                  [--hibernate-after SECS] [--tls-cert PEM --tls-key PEM]
//! kamaelia connect HOST:PORT [--tls [--ca PEM | --insecure]] [--connect-timeout SECS]
//! kamaelia relay   --listen ADDR --to HOST:PORT [--drain-timeout SECS] [--tls-cert PEM --tls-key PEM]
//! ```
//!
//! Servers print exactly one line, `listening on IP:PORT`, to stdout once they accept; logs go to
//! stderr. Bad input gives one `error:` line on stderr and a non-zero exit.

use std::cell::RefCell;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use axon::{Boxes, Core, FnComponent, Inbox, Ipc, Msg, Scheduler};
use clap::{Parser, Subcommand, ValueEnum};
use kamaelia::chassis::{ServerConfig, ServerCore, ServerStats};
use kamaelia::internet::{tls, CsaConfig, TcpClient, TcpClientConfig};
use kamaelia::protocols::{chat, relay, Discard, Echo};
use kamaelia::util::{reader, writer, SignalWatcher};

/// Kamaelia's component networking: servers, clients and relays built from components.
#[derive(Debug, Parser)]
#[command(name = "kamaelia", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a server: one protocol handler per connection.
    Serve {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:1601")]
        listen: String,
        /// The protocol each connection speaks.
        #[arg(long, value_enum, default_value_t = Protocol::Echo)]
        protocol: Protocol,
        /// On SIGINT/SIGTERM, how long open connections may take to finish before they are closed.
        #[arg(long, default_value_t = 10.0, value_name = "SECS")]
        drain_timeout: f64,
        /// Echo and discard: a connection idle this long gives up its adapter and handler and
        /// keeps only its socket until it next becomes readable (0: never). Default 1.
        #[arg(long, value_name = "SECS")]
        hibernate_after: Option<f64>,
        #[command(flatten)]
        tls: ServerTls,
        #[command(flatten)]
        timeouts: Timeouts,
    },
    /// Connect to HOST:PORT: stdin goes to the socket, the socket to stdout.
    Connect {
        /// Where to connect, e.g. 127.0.0.1:1601, [::1]:1601 or localhost:1601.
        target: String,
        /// How long to wait for the connection, per address.
        #[arg(long, default_value_t = 10.0, value_name = "SECS")]
        connect_timeout: f64,
        /// Speak TLS, verifying the server's certificate and name.
        #[arg(long)]
        tls: bool,
        /// Verify the server against the CA certificates in this PEM file instead of the built-in
        /// Mozilla roots.
        #[arg(long, value_name = "PEM", requires = "tls")]
        ca: Option<std::path::PathBuf>,
        /// Accept any server certificate. INSECURE: for testing only.
        #[arg(long, requires = "tls", conflicts_with = "ca")]
        insecure: bool,
    },
    /// A TCP proxy: each accepted connection is relayed to HOST:PORT. A connection whose target
    /// cannot be reached is closed, and logged on stderr ("cannot connect to …").
    Relay {
        /// Address to listen on.
        #[arg(long)]
        listen: String,
        /// Where to relay to: HOST:PORT. A host name is looked up at most once a second, shared by
        /// the connections that need it; its addresses are tried in turn, the one that last
        /// connected first.
        #[arg(long)]
        to: String,
        /// On SIGINT/SIGTERM, how long open connections may take to finish before they are closed.
        #[arg(long, default_value_t = 10.0, value_name = "SECS")]
        drain_timeout: f64,
        #[command(flatten)]
        tls: ServerTls,
        #[command(flatten)]
        timeouts: Timeouts,
    },
}

/// Per-connection timeouts for servers. 0 turns one off.
#[derive(Debug, clap::Args)]
struct Timeouts {
    /// Close a connection after this many seconds with no byte either way.
    #[arg(long, default_value_t = 300.0, value_name = "SECS")]
    idle_timeout: f64,
    /// Close a connection whose peer stops reading while we have data for it, after this long.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    write_stall_timeout: f64,
    /// Slow-loris guard: once a peer sends anything in a window of this many seconds, it must send
    /// at least --read-min-bytes in it (off by default).
    #[arg(long, default_value_t = 0.0, value_name = "SECS")]
    read_timeout: f64,
    /// See --read-timeout.
    #[arg(long, default_value_t = 64, value_name = "BYTES")]
    read_min_bytes: usize,
    /// Close a connection whose TLS handshake takes longer than this.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    tls_handshake_timeout: f64,
}

impl Timeouts {
    /// Sets the timeouts on every connection of `config`.
    fn apply(&self, config: ServerConfig) -> Result<ServerConfig> {
        let opt = |s: f64, flag: &str| -> Result<Option<Duration>> {
            let d = seconds(s, flag)?;
            Ok((!d.is_zero()).then_some(d))
        };
        let csa = CsaConfig::default()
            .idle_timeout(opt(self.idle_timeout, "--idle-timeout")?)
            .write_stall_timeout(opt(self.write_stall_timeout, "--write-stall-timeout")?)
            .read_timeout(
                opt(self.read_timeout, "--read-timeout")?,
                self.read_min_bytes,
            )
            .tls_handshake_timeout(seconds(
                self.tls_handshake_timeout,
                "--tls-handshake-timeout",
            )?);
        let tcp = config.tcp.clone().csa(csa);
        Ok(config.tcp(tcp))
    }
}

/// TLS for the listening side.
#[derive(Debug, clap::Args)]
struct ServerTls {
    /// Serve TLS with the certificate chain in this PEM file (needs --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) for --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

impl ServerTls {
    /// Adds the TLS server role to `config` when certificate and key were given.
    fn apply(&self, config: ServerConfig) -> Result<ServerConfig> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                let tls = tls::server_config(cert, key)
                    .context("cannot load the TLS certificate or key")?;
                Ok(config.tls(tls::TlsRole::server(tls)))
            }
            _ => Ok(config),
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Protocol {
    Echo,
    Chat,
    Discard,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print and exit 0; usage errors print and exit 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    // A relay says which connections could not reach their target; `connect` says it itself.
    let default_filter = match cli.command {
        Command::Relay { .. } => format!("warn,{}=info", kamaelia::internet::CONNECT_FAILURES),
        _ => "warn".to_owned(),
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KAMAELIA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .init();
    let result = match cli.command {
        Command::Serve {
            listen,
            protocol,
            drain_timeout,
            hibernate_after,
            tls,
            timeouts,
        } => serve(
            &listen,
            protocol,
            seconds(drain_timeout, "--drain-timeout"),
            hibernate_after,
            &tls,
            &timeouts,
        ),
        Command::Connect {
            target,
            connect_timeout,
            tls,
            ca,
            insecure,
        } => {
            let tls = tls.then_some(ClientTls { ca, insecure });
            connect(&target, seconds(connect_timeout, "--connect-timeout"), tls)
        }
        Command::Relay {
            listen,
            to,
            drain_timeout,
            tls,
            timeouts,
        } => relay_cmd(
            &listen,
            &to,
            seconds(drain_timeout, "--drain-timeout"),
            &tls,
            &timeouts,
        ),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn seconds(s: f64, flag: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| anyhow!("{flag} must be a non-negative number of seconds, not {s}"))
}

/// Splits `HOST:PORT` (the host may be `[v6]`).
fn host_port(target: &str) -> Result<(String, u16)> {
    let (host, port) = target
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("invalid address {target:?}: expected HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| anyhow!("invalid address {target:?}: bad port {port:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("invalid address {target:?}: missing host");
    }
    Ok((host.to_owned(), port))
}

/// Resolves a listen address (`IP:PORT` or `HOST:PORT`) to its first socket address.
fn listen_addr(listen: &str) -> Result<SocketAddr> {
    if let Ok(a) = listen.parse::<SocketAddr>() {
        return Ok(a);
    }
    let (host, port) = host_port(listen)?;
    (host.as_str(), port)
        .to_socket_addrs()
        .with_context(|| format!("invalid listen address {listen:?}"))?
        .next()
        .ok_or_else(|| anyhow!("invalid listen address {listen:?}: resolves to nothing"))
}

/// Prints a stats snapshot to stderr: one summary line, then a line per open connection. The
/// snapshot is formatted first and written at once, so its lines are never interleaved with log
/// lines.
fn print_stats(s: &ServerStats) {
    use std::fmt::Write as _;
    let reasons: Vec<String> = s
        .close_reasons
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut out = format!(
        "stats: accepted={} open={} hibernating={} closed={} bytes_in={} bytes_out={} close_reasons=[{}]\n",
        s.accepted,
        s.open.len(),
        s.hibernating,
        s.closed,
        s.bytes_in,
        s.bytes_out,
        reasons.join(" ")
    );
    for c in &s.open {
        let _ = writeln!(
            out,
            "stats: {} age={:.1}s bytes_in={} bytes_out={}",
            c.connection,
            c.age.as_secs_f64(),
            c.bytes_in,
            c.bytes_out
        );
    }
    let _ = std::io::stderr().lock().write_all(out.as_bytes());
}

/// Runs a ServerCore until it is shut down by a signal; reports the drain on stderr.
fn run_server(server: ServerCore, drain: Duration) -> Result<ExitCode> {
    let sched = Scheduler::new();
    let addr = server.local_addr();
    // SIGINT/SIGTERM: a graceful shutdown; a second one exits at once. No thread: see
    // `SignalWatcher`.
    let watcher = SignalWatcher::new().context("cannot install signal handlers")?;
    axon::link(watcher.outbox(), server.control())?;
    let report: Inbox<Ipc> = Core::new("Main").inbox("inbox", "the server's end-of-run report");
    server.signal().link_to(&report)?;
    // SIGUSR1: one stats snapshot, printed to stderr.
    let sample = server.sample_stats().clone();
    let stats = FnComponent::<ServerStats, Ipc, _>::new("StatsPrinter", move |b| async move {
        loop {
            while b.control.recv_now().is_some() {
                let _ = sample.deliver(());
            }
            while let Some(s) = b.inbox.recv_now() {
                print_stats(&s);
            }
            b.core.pause().await;
        }
    });
    stats.core().set_daemon(true);
    axon::link(watcher.signal(), &stats.boxes().control)?;
    axon::link(server.stats(), &stats.boxes().inbox)?;
    sched.activate(watcher);
    sched.activate(stats);
    sched.activate(server);
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, ?drain, "serving");
    sched.run();
    if let Some(Ipc::ProducerFinished(p)) = report.recv_now() {
        if let Some(m) = p.message {
            eprintln!("{m}");
        }
    }
    for f in sched.failures() {
        eprintln!("warning: component {} panicked: {}", f.name, f.message);
    }
    Ok(ExitCode::SUCCESS)
}

/// Hibernation unless turned off; only for protocols that keep no state between messages.
const DEFAULT_HIBERNATE_AFTER: Duration = Duration::from_secs(1);

fn serve(
    listen: &str,
    protocol: Protocol,
    drain: Result<Duration>,
    hibernate_after: Option<f64>,
    tls: &ServerTls,
    timeouts: &Timeouts,
) -> Result<ExitCode> {
    let drain = drain?;
    let addr = listen_addr(listen)?;
    let hibernate = match (protocol, hibernate_after) {
        (Protocol::Chat, Some(s)) if s != 0.0 => {
            bail!("--hibernate-after: chat connections remember their nickname, so they cannot hibernate")
        }
        (Protocol::Chat, _) => None,
        (_, None) => Some(DEFAULT_HIBERNATE_AFTER),
        (_, Some(s)) => {
            let d = seconds(s, "--hibernate-after")?;
            (!d.is_zero()).then_some(d)
        }
    };
    let config = timeouts
        .apply(tls.apply(ServerConfig::default().drain_deadline(drain))?)?
        .hibernate_after(hibernate);
    let server = match protocol {
        Protocol::Echo => ServerCore::new(addr, |_| Box::new(Echo::new()), config),
        Protocol::Discard => ServerCore::new(addr, |_| Box::new(Discard::new()), config),
        Protocol::Chat => ServerCore::new(addr, chat::factory("chat"), config),
    }
    .with_context(|| format!("cannot listen on {addr}"))?;
    run_server(server, drain)
}

fn relay_cmd(
    listen: &str,
    to: &str,
    drain: Result<Duration>,
    tls: &ServerTls,
    timeouts: &Timeouts,
) -> Result<ExitCode> {
    let drain = drain?;
    let addr = listen_addr(listen)?;
    let (host, port) = host_port(to)?;
    let config = timeouts.apply(tls.apply(ServerConfig::default().drain_deadline(drain))?)?;
    let server = ServerCore::new(
        addr,
        relay::factory(&host, port, TcpClientConfig::default()),
        config,
    )
    .with_context(|| format!("cannot listen on {addr}"))?;
    run_server(server, drain)
}

/// What the client's `signal` said about how the connection went.
#[derive(Default)]
struct Outcome {
    error: Option<String>,
}

/// TLS for `connect`.
struct ClientTls {
    ca: Option<std::path::PathBuf>,
    insecure: bool,
}

fn connect(target: &str, timeout: Result<Duration>, tls: Option<ClientTls>) -> Result<ExitCode> {
    let timeout = timeout?;
    let (host, port) = host_port(target)?;
    let mut config = TcpClientConfig::default().connect_timeout(timeout);
    if let Some(t) = tls {
        let client = if t.insecure {
            eprintln!("warning: --insecure: the server's certificate is NOT verified");
            tls::insecure_client_config()
        } else {
            tls::client_config(t.ca.as_deref()).context("cannot load the CA certificates")?
        };
        config = config.tls(tls::TlsRole::client(client, &host)?);
    }
    let sched = Scheduler::new();
    let input = reader(std::io::stdin());
    // Reading stdin must not keep the program alive once the peer has closed.
    input.core().set_daemon(true);
    let client = TcpClient::new(&host, port, config);
    let output = writer(std::io::stdout());
    let outcome = Rc::new(RefCell::new(Outcome::default()));

    // Watches the client's signal: passes end-of-stream on to the writer, keeps the error if any.
    // Once the peer has finished sending, our side finishes too (what is queued is sent, then
    // FIN), so the program ends whether or not stdin has.
    let seen = outcome.clone();
    let target_name = target.to_owned();
    let client_control = client.control().clone();
    let monitor =
        FnComponent::<Ipc, Ipc, _>::new("ConnectMonitor", move |b: Boxes<Ipc, Ipc>| async move {
            loop {
                match b.next().await {
                    Msg::Data(Ipc::SocketShutdown(s)) => {
                        if s.connection.is_none() {
                            seen.borrow_mut().error =
                                Some(format!("cannot connect to {target_name}: {}", s.reason));
                        } else if !s.reason.is_clean() {
                            seen.borrow_mut().error =
                                Some(format!("connection to {target_name} failed: {}", s.reason));
                        }
                        let _ = b.outbox.send(Ipc::producer_finished());
                        return;
                    }
                    Msg::Data(m) if m.is_producer_finished() => {
                        let _ = b.outbox.send(m);
                        let _ = client_control.deliver(Ipc::producer_finished());
                    }
                    Msg::Data(_) => {}
                    Msg::Control(_) => return,
                }
            }
        });
    axon::link(&input.boxes().outbox, client.inbox())?;
    axon::link(&input.boxes().signal, client.control())?;
    axon::link(client.outbox(), &output.boxes().inbox)?;
    axon::link(client.signal(), &monitor.boxes().inbox)?;
    axon::link(&monitor.boxes().outbox, &output.boxes().control)?;
    sched.activate(input);
    sched.activate(client);
    sched.activate(monitor);
    sched.activate(output);
    sched.run();
    let error = outcome.borrow_mut().error.take();
    match error {
        Some(e) => bail!(e),
        None => Ok(ExitCode::SUCCESS),
    }
}
