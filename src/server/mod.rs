//! Listeners and connection lifecycle: binds the milter addresses (TCP and
//! unix sockets), caps concurrent connections, runs one task per connection
//! inside its own tracing span, and on shutdown stops accepting and lets
//! in-flight messages finish within a grace period. Knows nothing of scoring.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, info_span, warn, Instrument};

use crate::milter::connection::log_end;
use crate::milter::{serve_connection, Filter, ListenAddr, SessionOptions};
use crate::telemetry;

/// A bound listening socket.
pub enum Listener {
    Tcp(TcpListener),
    /// The path is removed again when the listener is dropped.
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Bind one address. A stale unix socket file is replaced; its parent
    /// directory is created. Unix sockets are made accessible to the MTA's
    /// user (mode 0666).
    pub async fn bind(addr: &ListenAddr) -> io::Result<Listener> {
        match addr {
            ListenAddr::Tcp(sock) => TcpListener::bind(sock).await.map(Listener::Tcp),
            ListenAddr::Unix(path) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                if path.exists() {
                    std::fs::remove_file(path)?;
                }
                let listener = UnixListener::bind(path)?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
                Ok(Listener::Unix(listener, path.clone()))
            }
        }
    }

    /// The address actually bound (with the real port for `:0`).
    pub fn local_addr(&self) -> ListenAddr {
        match self {
            Listener::Tcp(l) => {
                ListenAddr::Tcp(l.local_addr().expect("bound socket has an address"))
            }
            Listener::Unix(_, path) => ListenAddr::Unix(path.clone()),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Runs listeners until shutdown.
pub struct Server<F> {
    listeners: Vec<Listener>,
    filter: Arc<F>,
    options: Arc<SessionOptions>,
    max_connections: usize,
    grace: Duration,
    allow_from: Arc<Vec<ipnet::IpNet>>,
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

impl<F: Filter> Server<F> {
    pub fn new(
        listeners: Vec<Listener>,
        filter: Arc<F>,
        options: SessionOptions,
        max_connections: usize,
        grace: Duration,
    ) -> Server<F> {
        Server {
            listeners,
            filter,
            options: Arc::new(options),
            max_connections,
            grace,
            allow_from: Arc::new(Vec::new()),
        }
    }

    /// Serve TCP peers in these networks only (empty: every peer). On a
    /// shared host every local process can reach loopback: a unix socket
    /// in a directory only Postfix's group can open is the stronger guard.
    pub fn with_allow_from(mut self, nets: Vec<ipnet::IpNet>) -> Server<F> {
        self.allow_from = Arc::new(nets);
        self
    }

    /// Accept connections until `shutdown` is cancelled, then drain.
    pub async fn run(self, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        let permits = Arc::new(Semaphore::new(self.max_connections));
        let connections = shutdown.child_token();
        let mut accept_loops = Vec::new();
        for listener in self.listeners {
            info!(listen = %listener.local_addr(), "milter listening");
            let ctx = AcceptContext {
                allow_from: self.allow_from.clone(),
                filter: self.filter.clone(),
                options: self.options.clone(),
                permits: permits.clone(),
                tracker: tracker.clone(),
                connections: connections.clone(),
            };
            let stop = shutdown.clone();
            accept_loops.push(tokio::spawn(async move {
                ctx.accept_loop(listener, stop).await;
            }));
        }
        shutdown.cancelled().await;
        for l in accept_loops {
            let _ = l.await;
        }
        tracker.close();
        let in_flight = tracker.len();
        if in_flight > 0 {
            info!(in_flight, grace = ?self.grace, "draining connections");
        }
        if tokio::time::timeout(self.grace, tracker.wait())
            .await
            .is_err()
        {
            warn!(
                left = tracker.len(),
                "grace period over; closing remaining connections"
            );
        }
    }
}

struct AcceptContext<F> {
    allow_from: Arc<Vec<ipnet::IpNet>>,
    filter: Arc<F>,
    options: Arc<SessionOptions>,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
    connections: CancellationToken,
}

impl<F: Filter> AcceptContext<F> {
    async fn accept_loop(&self, listener: Listener, stop: CancellationToken) {
        loop {
            let accepted = tokio::select! {
                a = accept(&listener) => a,
                _ = stop.cancelled() => return,
            };
            if let Ok((_, peer, Some(ip))) = &accepted {
                if !self.allow_from.is_empty()
                    && !self
                        .allow_from
                        .iter()
                        .any(|n| n.contains(&ip.to_canonical()))
                {
                    warn!(peer = %peer, "milter connection refused: peer not in [milter] allow_from");
                    telemetry::REFUSED_PEERS.incr();
                    continue;
                }
            }
            // A slot is taken only for a peer that is served.
            let permit = tokio::select! {
                p = self.permits.clone().acquire_owned() => p.expect("semaphore is never closed"),
                _ = stop.cancelled() => return,
            };
            match accepted {
                Ok((stream, peer, _)) => {
                    let id = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
                    telemetry::CONNECTIONS.incr();
                    let span = info_span!("conn", id, peer = %peer);
                    let filter = self.filter.clone();
                    let options = self.options.clone();
                    let token = self.connections.clone();
                    self.tracker.spawn(
                        async move {
                            let result = match stream {
                                Stream::Tcp(s) => serve_connection(s, filter, options, token).await,
                                Stream::Unix(s) => {
                                    serve_connection(s, filter, options, token).await
                                }
                            };
                            log_end(&result);
                            drop(permit);
                        }
                        .instrument(span),
                    );
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// The next connection, its peer for the log and, over TCP, its address.
async fn accept(listener: &Listener) -> io::Result<(Stream, String, Option<std::net::IpAddr>)> {
    match listener {
        Listener::Tcp(l) => {
            let (s, peer) = l.accept().await?;
            let _ = s.set_nodelay(true);
            Ok((Stream::Tcp(s), peer.to_string(), Some(peer.ip())))
        }
        Listener::Unix(l, path) => {
            let (s, _) = l.accept().await?;
            Ok((Stream::Unix(s), format!("unix:{}", path.display()), None))
        }
    }
}
