//! The metrics endpoint: HTTP/1.1 on a listener of its own, on the
//! server's tokio runtime. `GET /metrics` (or `HEAD`) answers the
//! Prometheus text format; any other path is 404, another method 405.
//!
//! A scraper must never slow requests down, nor hold memory without bound:
//! - each connection is a task of its own, so one that never reads only
//!   stalls itself;
//! - encoding runs on the blocking pool: reading the cache's and RocksDB's
//!   figures takes locks that request handling uses;
//! - at most [`MAX_CONNECTIONS`] connections are served at once (more are
//!   closed at once), a connection must send its request headers within
//!   [`HEADER_TIMEOUT`] and is closed after [`CONNECTION_LIFETIME`],
//!   whatever it does.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::prometheus_text::CONTENT_TYPE as PROMETHEUS_TEXT;
use prometheus_client::registry::Registry;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Where the metrics are served.
pub const PATH: &str = "/metrics";
/// Metrics connections served at once; Prometheus uses one per server.
pub const MAX_CONNECTIONS: usize = 16;
/// Time a connection has to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection is closed after this long, busy or not (a scraper simply
/// connects again).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Serves `registry` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, registry: Registry) {
    let registry = Arc::new(registry);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: back off, as the
                // TCP transport does.
                log::warn!("metrics accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            log::debug!("{MAX_CONNECTIONS} metrics connections open: closing the one from {peer}");
            continue;
        };
        let registry = registry.clone();
        let connection = http.serve_connection(
            TokioIo::new(stream),
            service_fn(move |req| respond(req, registry.clone())),
        );
        tokio::spawn(async move {
            match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                Ok(Err(e)) => log::debug!("metrics connection from {peer}: {e}"),
                Err(_) => log::debug!("metrics connection from {peer} closed after its lifetime"),
                Ok(Ok(())) => {}
            }
            drop(slot);
        });
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn respond(
    req: Request<Incoming>,
    registry: Arc<Registry>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != PATH {
        return Ok(plain(
            StatusCode::NOT_FOUND,
            "not found: the metrics are at /metrics\n",
        ));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served\n",
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(response);
    }
    let text = tokio::task::spawn_blocking(move || super::encode(&registry)).await;
    Ok(match text {
        Ok(Ok(text)) => {
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT));
            response
        }
        Ok(Err(e)) => {
            log::error!("encoding the metrics failed: {e}");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n")
        }
        Err(e) => {
            log::error!("encoding the metrics failed: {e}");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n")
        }
    })
}
