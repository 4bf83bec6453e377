//! `tokio-relay`: the tokio baseline for `kamaelia relay` — a TCP proxy written the way a typical
//! tokio user writes one: accept, connect upstream, `copy_bidirectional` in a task per connection.
//! It runs on a current-thread runtime, like kamaelia's single scheduler, so both get one core.
//!
//! ```text
//! tokio-relay --listen 127.0.0.1:0 --to 127.0.0.1:PORT
//! ```
//!
//! Prints `listening on IP:PORT` on stdout once it accepts. Stop it with SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use tokio::net::{TcpListener, TcpStream};

/// The tokio relay baseline.
#[derive(Debug, Parser)]
#[command(name = "tokio-relay", about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where to relay each connection to.
    #[arg(long)]
    to: SocketAddr,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), Error> {
    let listener = TcpListener::bind(args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (mut inbound, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        let to = args.to;
        tokio::spawn(async move {
            let _ = inbound.set_nodelay(true);
            let mut outbound = match TcpStream::connect(to).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("connect {to}: {e}");
                    return;
                }
            };
            let _ = outbound.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        });
    }
}
