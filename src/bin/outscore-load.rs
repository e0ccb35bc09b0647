//! Load generator for the milter protocol layer: N concurrent connections
//! send messages exactly as Postfix does and the end-of-message latency is
//! measured. By default it starts an in-process server with a filter that
//! accepts everything, so the numbers are the protocol layer's alone; with
//! `--addr` it drives a running daemon instead.
//!
//! ```text
//! outscore-load --connections 16 --messages 200000 --size 5000
//! outscore-load --connections 8 --rate 1000 --seconds 10
//! outscore-load --addr 127.0.0.1:7522 --connections 4 --messages 2000
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use outscore::envelope::Envelope;
use outscore::milter::client::{
    MilterClient, Submission, POSTFIX_ACTIONS, POSTFIX_PROTOCOL, POSTFIX_VERSION,
};
use outscore::milter::{Filter, FilterError, Message, SessionOptions};
use outscore::server::{Listener, Server};
use outscore::smtp::{Decision, EomVerdict};

#[derive(Parser)]
#[command(about = "Milter load generator: messages/s and end-of-message latency")]
struct Args {
    /// Drive a running milter at this address instead of an in-process one.
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// Concurrent milter connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Messages in total (ignored with --rate).
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 5_000)]
    size: usize,
    /// Send at this many messages/s in total (open loop) instead of as fast as possible.
    #[arg(long)]
    rate: Option<u64>,
    /// Duration of a --rate run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

/// Accepts everything: the protocol layer's cost alone.
struct AcceptAll;

impl Filter for AcceptAll {
    async fn mail(&self, _: &Envelope) -> Decision {
        Decision::Continue
    }
    async fn rcpt(&self, _: &Envelope, _: &str) -> Decision {
        Decision::Continue
    }
    async fn end_of_message(&self, _: Envelope, _: Message) -> Result<EomVerdict, FilterError> {
        Ok(EomVerdict::accept())
    }
}

fn message(size: usize) -> Submission {
    let line = "The quarterly figures are attached; let me know if anything looks off.\r\n";
    let body: String = line.repeat(size / line.len() + 1)[..size].to_string();
    Submission {
        mail_from: "<alice@customer.example>".into(),
        rcpts: vec!["<bob@remote.example>".into()],
        mail_macros: vec![("{auth_authen}".into(), "alice@customer.example".into())],
        headers: vec![
            ("From".into(), "Alice <alice@customer.example>".into()),
            ("To".into(), "bob@remote.example".into()),
            ("Subject".into(), "Quarterly figures".into()),
            ("Message-ID".into(), "<load@customer.example>".into()),
            ("Date".into(), "Sun, 22 Nov 2026 10:00:00 +0000".into()),
        ],
        body: Bytes::from(body),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let shutdown = CancellationToken::new();
    let addr = match args.addr {
        Some(a) => a,
        None => {
            let listener = Listener::bind(&"inet:127.0.0.1:0".parse()?).await?;
            let outscore::milter::ListenAddr::Tcp(a) = listener.local_addr() else {
                unreachable!()
            };
            let server = Server::new(
                vec![listener],
                Arc::new(AcceptAll),
                SessionOptions::default(),
                4096,
                Duration::from_secs(5),
            );
            let token = shutdown.clone();
            tokio::spawn(async move { server.run(token).await });
            a
        }
    };
    let submission = Arc::new(message(args.size));
    let per_conn = args.messages.div_ceil(args.connections);
    let deadline = args
        .rate
        .map(|_| Instant::now() + Duration::from_secs(args.seconds));
    let interval = args
        .rate
        .map(|r| Duration::from_secs_f64(args.connections as f64 / r as f64));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let submission = submission.clone();
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let mut c = MilterClient::new(stream);
            c.negotiate(POSTFIX_VERSION, POSTFIX_ACTIONS, POSTFIX_PROTOCOL)
                .await?;
            c.connect("client.example", "192.0.2.10", "client.example")
                .await?;
            let mut latencies = Vec::with_capacity(per_conn);
            let mut ticker = interval.map(tokio::time::interval);
            loop {
                match (deadline, &mut ticker) {
                    (Some(d), Some(t)) => {
                        if Instant::now() >= d {
                            break;
                        }
                        t.tick().await;
                    }
                    _ if latencies.len() >= per_conn => break,
                    _ => {}
                }
                let t0 = Instant::now();
                c.send_message(&submission).await?;
                latencies.push(t0.elapsed());
            }
            c.quit().await?;
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    let mps = all.len() as f64 / elapsed.as_secs_f64();
    println!(
        "messages={} connections={} size={}B elapsed={:.2}s rate={:.0} msg/s throughput={:.1} MB/s p50={:?} p99={:?} max={:?}",
        all.len(),
        args.connections,
        args.size,
        elapsed.as_secs_f64(),
        mps,
        mps * args.size as f64 / 1e6,
        pct(0.50),
        pct(0.99),
        all[all.len() - 1],
    );
    Ok(())
}
