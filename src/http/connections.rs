//! The connections the server holds: how many at once, in total and per
//! client address, and how long one may sit idle. Each connection holds a
//! file descriptor and buffers whatever protocol it speaks, and hyper
//! closes none of them on its own: an HTTP/2 connection, or an HTTP/1.1 one
//! between requests, stays open for as long as the client likes.
//!
//! [`Gate`] is an `axum_server` acceptor (beneath TLS, on the TCP stream):
//! a connection over either bound is closed as it arrives, and every
//! connection it lets in is closed once no request has been in progress on
//! it for `idle_timeout`. Requests in progress are counted by wrapping the
//! connection's service; the idle clock runs in the stream's reads (a
//! connection with nothing to read and nothing in progress for that long
//! gets a read error, on which hyper closes it). Reads do not reset the
//! clock: a client that answers HTTP/2 pings, or sends half a header
//! block, is still idle.
//!
//! The descriptor limit is raised to its hard limit at start-up
//! ([`raise_descriptor_limit`]), and `max_connections` is lowered to fit
//! within it, so that running out of descriptors (and every new client
//! timing out, with nothing logged) cannot happen before the bound does.

use std::{
    collections::HashMap,
    future::{Future, Ready},
    io,
    net::IpAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum_server::accept::Accept;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    time::{Instant, Sleep},
};

use crate::config::Limits;

/// Descriptors kept for everything but client connections: the database
/// pool, outbound deliveries, mapping files, logs.
const RESERVED_DESCRIPTORS: u64 = 256;

/// Raise the process's open-file soft limit to its hard limit (systemd's
/// default soft limit is 1,024), and return the number of client
/// connections that fits: `wanted`, or fewer when the limit is lower.
pub fn raise_descriptor_limit(wanted: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot read or raise the open-file limit");
            return wanted;
        }
    };
    let fits =
        usize::try_from(limit.saturating_sub(RESERVED_DESCRIPTORS).max(1)).unwrap_or(usize::MAX);
    if fits < wanted {
        tracing::warn!(
            open_file_limit = limit,
            max_connections = fits,
            configured = wanted,
            "the open-file limit is too low for limits.max_connections; serving fewer"
        );
        fits
    } else {
        wanted
    }
}

/// The acceptor that bounds and times out connections.
#[derive(Clone)]
pub struct Gate {
    shared: Arc<Shared>,
}

struct Shared {
    max_connections: usize,
    max_per_client: usize,
    idle_timeout: Duration,
    open: Mutex<Open>,
    refusals: Throttle,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

impl Gate {
    /// At most `max_connections` (as [`raise_descriptor_limit`] allows)
    /// and `limits.max_connections_per_client` per address, each closed
    /// after `limits.idle_timeout` idle.
    pub fn new(limits: &Limits, max_connections: usize) -> Gate {
        Gate {
            shared: Arc::new(Shared {
                max_connections,
                max_per_client: limits.max_connections_per_client,
                idle_timeout: limits.idle_timeout,
                open: Mutex::new(Open::default()),
                refusals: Throttle::default(),
            }),
        }
    }

    /// A place for one more connection from `client`, or `None` when a
    /// bound is reached.
    fn admit(&self, client: IpAddr) -> Option<Place> {
        let mut open = self.shared.open.lock().unwrap_or_else(|e| e.into_inner());
        let from_client = open.by_client.get(&client).copied().unwrap_or(0);
        if open.total >= self.shared.max_connections || from_client >= self.shared.max_per_client {
            return None;
        }
        open.total += 1;
        open.by_client.insert(client, from_client + 1);
        Some(Place {
            shared: self.shared.clone(),
            client,
        })
    }
}

/// One connection's place, given back when the connection closes.
struct Place {
    shared: Arc<Shared>,
    client: IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self.shared.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(count) = open.by_client.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.by_client.remove(&self.client);
            }
        }
    }
}

impl<S> Accept<TcpStream, S> for Gate {
    type Stream = Watched<TcpStream>;
    type Service = Counted<S>;
    type Future = Ready<io::Result<(Watched<TcpStream>, Counted<S>)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        std::future::ready(self.watch(stream, service))
    }
}

impl Gate {
    fn watch<S>(
        &self,
        stream: TcpStream,
        service: S,
    ) -> io::Result<(Watched<TcpStream>, Counted<S>)> {
        let client = stream.peer_addr()?.ip();
        let Some(place) = self.admit(client) else {
            // Closed by dropping it. Logged at most once a second: a flood
            // must not become a flood of log lines.
            if let Some(more) = self.shared.refusals.allow() {
                tracing::warn!(
                    %client,
                    refused_since_last_logged = more,
                    "connection refused: limits.max_connections or limits.max_connections_per_client reached"
                );
            }
            return Err(io::Error::other("connection limit reached"));
        };
        let activity = Arc::new(Activity {
            in_progress: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        });
        Ok((
            Watched {
                inner: stream,
                activity: activity.clone(),
                idle_timeout: self.shared.idle_timeout,
                timer: Box::pin(tokio::time::sleep(self.shared.idle_timeout)),
                _place: place,
            },
            Counted {
                inner: service,
                activity,
            },
        ))
    }
}

/// Requests in progress on one connection, and since when none has been.
struct Activity {
    in_progress: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    /// When the connection falls idle for good, or `None` while a request
    /// is in progress.
    fn idle_deadline(&self, idle_timeout: Duration) -> Option<Instant> {
        if self.in_progress.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(*self.idle_since.lock().unwrap_or_else(|e| e.into_inner()) + idle_timeout)
    }
}

/// One request in progress (until dropped: answered, or abandoned by a
/// client that reset its stream).
struct InProgress(Arc<Activity>);

impl InProgress {
    fn begin(activity: &Arc<Activity>) -> InProgress {
        activity.in_progress.fetch_add(1, Ordering::SeqCst);
        InProgress(activity.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.in_progress.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection's service, counting the requests in progress.
#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S, R> tower::Service<R> for Counted<S>
where
    S: tower::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let in_progress = InProgress::begin(&self.activity);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            drop(in_progress);
            answer
        })
    }
}

/// A connection's stream, failing its reads once the connection has been
/// idle for `idle_timeout` (hyper then closes it).
pub struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
    idle_timeout: Duration,
    timer: Pin<Box<Sleep>>,
    _place: Place,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(read) = Pin::new(&mut this.inner).poll_read(cx, buf) {
            return Poll::Ready(read);
        }
        // Nothing to read: wake again when the connection would fall idle
        // (or, while a request is in progress, to look again later).
        loop {
            let now = Instant::now();
            let deadline = match this.activity.idle_deadline(this.idle_timeout) {
                Some(deadline) if deadline <= now => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connection idle for limits.idle_timeout",
                    )));
                }
                Some(deadline) => deadline,
                None => now + this.idle_timeout,
            };
            if this.timer.deadline() != deadline {
                this.timer.as_mut().reset(deadline);
            }
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// At most one log line a second for a repeated event, with a count of
/// those not logged.
#[derive(Default)]
pub struct Throttle {
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    /// `Some(events not logged since the last)` when this one may be
    /// logged.
    pub fn allow(&self) -> Option<u64> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.0 {
            Some(last) if now.duration_since(last) < Duration::from_secs(1) => {
                state.1 += 1;
                None
            }
            _ => {
                let skipped = state.1;
                *state = (Some(now), 0);
                Some(skipped)
            }
        }
    }
}
