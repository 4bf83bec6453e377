//! `kamaelia-bench`: the load generator the benchmark matrix (`run.sh`) drives against kamaelia's
//! servers and relays and against the tokio and mio baselines (`tokio-echo`, `mio-echo`,
//! `tokio-relay`, in this crate).
//!
//! ```text
//! kamaelia-bench echo    --addr A -c C -s S --duration SECS [--tls CA.pem] [--server-pid PID]
//! kamaelia-bench stream  --addr A -c C --duration SECS [--tls CA.pem] [--server-pid PID]
//! kamaelia-bench connect --addr A -n N [-c C] [--server-pid PID]
//! kamaelia-bench idle    --addr A -n N --server-pid PID
//! kamaelia-bench gen-cert --dir DIR | free-port | wait-port --addr A
//! ```
//!
//! Each run prints one machine-readable line on stdout, `RESULT mode=... key=value ...`; errors and
//! warnings go to stderr, and the exit status is 1 when the run saw errors or did not pass.
//!
//! The generator only talks to loopback addresses. It is single-threaded by default (one mio
//! event loop, edge-triggered, no allocation per message) so that on a two-core machine the server
//! under test has the other core; `--threads` spreads the connections over more loops. Every loop
//! is bounded in rounds and in time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

mod cert;
mod common;
mod connect;
mod echo;
mod idle;
mod stream;
mod transport;

/// Load generator for kamaelia's benchmark matrix (loopback only).
#[derive(Debug, Parser)]
#[command(name = "kamaelia-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// C connections, one S-byte message in flight each, every echoed byte checked.
    Echo {
        #[command(flatten)]
        target: Target,
        /// Connections.
        #[arg(short = 'c', default_value_t = 64)]
        conns: usize,
        /// Message size in bytes.
        #[arg(short = 's', default_value_t = 4096)]
        size: usize,
        #[command(flatten)]
        timing: Timing,
        #[command(flatten)]
        load: Load,
    },
    /// C connections write and read full duplex for the duration, then half-close; passes only if
    /// every byte came back.
    Stream {
        #[command(flatten)]
        target: Target,
        /// Connections.
        #[arg(short = 'c', default_value_t = 1)]
        conns: usize,
        #[command(flatten)]
        timing: Timing,
        #[command(flatten)]
        load: Load,
    },
    /// N × (connect, one-byte echo, close), C at a time.
    Connect {
        #[command(flatten)]
        target: Target,
        /// Connections in all.
        #[arg(short = 'n', default_value_t = 5000)]
        n: usize,
        /// Connections in flight at once.
        #[arg(short = 'c', default_value_t = 16)]
        concurrency: usize,
        /// Limit for the whole run.
        #[arg(long, default_value_t = 60.0, value_name = "SECS")]
        timeout: f64,
        /// The server's process id: report its CPU time per connection (nanoseconds, from
        /// /proc/PID/task/*/schedstat) and the user-space part of it (/proc/PID/stat's ticks).
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// Hold N idle connections; report the server's resident memory per connection.
    Idle {
        #[command(flatten)]
        target: Target,
        /// Connections to hold.
        #[arg(short = 'n', default_value_t = 10_000)]
        n: usize,
        /// The server's process id (its memory is read from /proc).
        #[arg(long)]
        server_pid: u32,
        /// How long the server may settle after the last connection opened before its memory is
        /// read (kamaelia hibernates connections idle for 1 s and then returns the memory).
        #[arg(long, default_value_t = 3.0, value_name = "SECS")]
        settle: f64,
        /// How long to hold them after measuring.
        #[arg(long, default_value_t = 1.0, value_name = "SECS")]
        hold: f64,
        /// Limit for opening them all.
        #[arg(long, default_value_t = 120.0, value_name = "SECS")]
        timeout: f64,
    },
    /// Write a throwaway CA (ca.pem) and a server certificate for 127.0.0.1/::1/localhost
    /// (cert.pem, key.pem) into DIR.
    GenCert {
        /// Where to write them.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Print a loopback TCP port that is free right now (for servers that cannot bind port 0).
    FreePort,
    /// Wait until something accepts connections on ADDR.
    WaitPort {
        #[command(flatten)]
        target: Target,
        /// How long to wait.
        #[arg(long, default_value_t = 10.0, value_name = "SECS")]
        timeout: f64,
    },
}

#[derive(Debug, clap::Args)]
struct Target {
    /// The server's address: loopback only (`127.0.0.1:PORT`, `[::1]:PORT`, `localhost:PORT`).
    #[arg(long, value_parser = common::loopback)]
    addr: SocketAddr,
}

#[derive(Debug, clap::Args)]
struct Timing {
    /// Length of the measured window.
    #[arg(long, default_value_t = 3.0, value_name = "SECS")]
    duration: f64,
    /// Load before the window opens (connections set up, TLS handshakes, caches warm).
    #[arg(long, default_value_t = 0.5, value_name = "SECS")]
    warmup: f64,
}

#[derive(Debug, clap::Args)]
struct Load {
    /// Speak TLS, trusting the CA certificate(s) in this PEM file.
    #[arg(long, value_name = "CA_PEM")]
    tls: Option<PathBuf>,
    /// The server's process id: report its CPU time per message (nanoseconds, from
    /// /proc/PID/task/*/schedstat) and the user-space part of it (/proc/PID/stat's ticks).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Generator threads (event loops); 1 leaves the other core to the server on a 2-core machine.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(cli.command) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn secs(s: f64, what: &str) -> Result<Duration, common::Error> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| format!("{what} must be a non-negative number of seconds, not {s}").into())
}

fn run(command: Command) -> Result<bool, common::Error> {
    match command {
        Command::Echo {
            target,
            conns,
            size,
            timing,
            load,
        } => echo::run(&echo::EchoArgs {
            addr: target.addr,
            conns,
            size,
            duration: secs(timing.duration, "--duration")?,
            warmup: secs(timing.warmup, "--warmup")?,
            tls: load.tls,
            server_pid: load.server_pid,
            threads: load.threads,
        }),
        Command::Stream {
            target,
            conns,
            timing,
            load,
        } => stream::run(&stream::StreamArgs {
            addr: target.addr,
            conns,
            duration: secs(timing.duration, "--duration")?,
            warmup: secs(timing.warmup, "--warmup")?,
            tls: load.tls,
            server_pid: load.server_pid,
            threads: load.threads,
        }),
        Command::Connect {
            target,
            n,
            concurrency,
            timeout,
            server_pid,
        } => connect::run(&connect::ConnectArgs {
            addr: target.addr,
            n,
            concurrency,
            timeout: secs(timeout, "--timeout")?,
            server_pid,
        }),
        Command::Idle {
            target,
            n,
            server_pid,
            settle,
            hold,
            timeout,
        } => idle::run(&idle::IdleArgs {
            addr: target.addr,
            n,
            server_pid,
            settle: secs(settle, "--settle")?,
            hold: secs(hold, "--hold")?,
            timeout: secs(timeout, "--timeout")?,
        }),
        Command::GenCert { dir } => {
            cert::generate(&dir)?;
            Ok(true)
        }
        Command::FreePort => {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            println!("{}", l.local_addr()?.port());
            Ok(true)
        }
        Command::WaitPort { target, timeout } => {
            let deadline = Instant::now() + secs(timeout, "--timeout")?;
            loop {
                if common::connect(target.addr, Duration::from_millis(200)).is_ok() {
                    return Ok(true);
                }
                if Instant::now() >= deadline {
                    return Err(
                        format!("nothing accepts on {} after {timeout}s", target.addr).into(),
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
