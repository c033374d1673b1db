//! Serving the router on a bound listener: plain HTTP, or HTTPS with
//! rustls (and client certificates, whose [`axum_server::tls::TlsInfo`] the
//! extractors read), HTTP/1.1 and HTTP/2 alike, with timeouts against slow
//! and idle clients, bounded connections ([`super::connections`]) and a
//! graceful stop.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use hyper_util::{rt::TokioExecutor, server::conn::auto::Builder};
use tokio::net::TcpListener;

use super::{
    AppState,
    connections::{Gate, Throttle, raise_descriptor_limit},
};
use crate::config::Limits;

/// A bound, not yet serving HTTP server.
pub struct Server {
    listener: TcpListener,
    router: Router,
    /// HTTPS (`[tls]`); plain HTTP without it.
    tls: Option<RustlsConfig>,
    limits: Limits,
}

impl Server {
    /// The application ([`super::router`]) on `state`, to serve on
    /// `listener`, over TLS when `tls` is given.
    pub fn new(
        listener: TcpListener,
        state: AppState,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Server {
        Server {
            listener,
            limits: state.config.limits.clone(),
            router: super::router(state),
            tls: tls.map(RustlsConfig::from_config),
        }
    }

    /// The address actually bound (the port is chosen when `listen` says 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serve until `stopped` completes; then stop accepting and give
    /// requests in flight (each bounded by `request_timeout`) time to
    /// finish. When this returns, the router (and with it every handle on
    /// the shared state) is gone.
    pub async fn serve_until(
        self,
        stopped: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let handle = axum_server::Handle::new();
        tokio::spawn({
            let handle = handle.clone();
            let grace = self.limits.request_timeout + Duration::from_secs(1);
            async move {
                stopped.await;
                handle.graceful_shutdown(Some(grace));
            }
        });
        let app = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let listener = self.listener.into_std()?;
        // A connection that takes longer than this to send a request's
        // headers (slow-loris), or to complete its TLS handshake and first
        // request, is closed.
        let timeout = self.limits.header_read_timeout;
        let gate = Gate::new(
            &self.limits,
            raise_descriptor_limit(self.limits.max_connections),
        );
        match self.tls {
            None => {
                let mut server = axum_server::from_tcp(listener)?
                    .acceptor(gate)
                    .handle(handle)
                    .accept_error_handler(log_accept_errors());
                configure(server.http_builder(), &self.limits);
                server.first_request_timeout(timeout).serve(app).await
            }
            Some(tls) => {
                let mut server = axum_server::from_tcp_rustls(listener, tls)?
                    .map(|acceptor| acceptor.handshake_timeout(timeout).acceptor(gate))
                    .handle(handle)
                    .accept_error_handler(log_accept_errors());
                configure(server.http_builder(), &self.limits);
                server.first_request_timeout(timeout).serve(app).await
            }
        }
    }
}

/// The protocol limits: HTTP/1.1's header deadline; HTTP/2's streams per
/// connection and keep-alive pings, whose deadline closes a connection
/// whose client has gone (or is in the middle of a header block, when it
/// may send nothing else).
fn configure(builder: &mut Builder<TokioExecutor>, limits: &Limits) {
    builder
        .http1()
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .keep_alive_interval(limits.http2_keep_alive_interval)
        .keep_alive_timeout(limits.http2_keep_alive_timeout);
}

/// Failures to accept a connection (out of descriptors above all), logged
/// at most once a second. A TLS handshake that fails, or a connection
/// over the limits (logged where it is refused), is the client's affair:
/// debug only.
fn log_accept_errors() -> impl Fn(Option<&SocketAddr>, &std::io::Error) + Send + Sync + 'static {
    let throttle = Throttle::default();
    move |client, error| match client {
        None => {
            if let Some(more) = throttle.allow() {
                tracing::error!(%error, failed_since_last_logged = more, "cannot accept connections");
            }
        }
        Some(client) => tracing::debug!(%client, %error, "connection not accepted"),
    }
}
