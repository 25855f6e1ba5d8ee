//! Counters for the log, `STATUS=` and the optional Prometheus endpoint
//! (`/metrics`, `/healthz`) on a loopback address.
//!
//! The endpoint is `hyper` (HTTP/1 only) on a one-thread tokio runtime of its
//! own, beside the thread-based daemon. Every client may be hostile, so: the
//! request head is bounded ([`MAX_HEAD`]), a body is never read, the head must
//! arrive within [`HEAD_TIMEOUT`] (this also closes idle keep-alive
//! connections, since hyper starts that timer whenever it waits for a head), a
//! connection lives at most [`CONNECTION_LIFETIME`], each connection is its
//! own task, and past [`MAX_CONNECTIONS`] a new connection is closed at once.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

#[derive(Default)]
pub struct Metrics {
    pub done: AtomicU64,
    pub failed: AtomicU64,
    pub queued: AtomicU64,
    pub in_progress: AtomicU64,
    /// Sum of milliseconds per stage name, and count of jobs.
    stage_ms: Mutex<Vec<(String, f64, u64)>>,
    /// More lines from elsewhere (cluster mode's queue and workers).
    sources: Mutex<Vec<MetricSource>>,
}

pub type MetricSource = Box<dyn Fn() -> String + Send + Sync>;

impl Metrics {
    pub fn record_stages(&self, stages: &[(String, f64)]) {
        let mut all = self.stage_ms.lock().unwrap_or_else(|p| p.into_inner());
        for (stage, ms) in stages {
            match all.iter_mut().find(|(s, _, _)| s == stage) {
                Some(entry) => {
                    entry.1 += ms;
                    entry.2 += 1;
                }
                None => all.push((stage.clone(), *ms, 1)),
            }
        }
    }

    pub fn add_source(&self, source: MetricSource) {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(source);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, kind: &str, v: u64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            ));
        };
        counter(
            &mut out,
            "upscaled_files_done_total",
            "Files processed successfully.",
            "counter",
            self.done.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "upscaled_files_failed_total",
            "Files moved to failed/.",
            "counter",
            self.failed.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "upscaled_queue_depth",
            "Files claimed and waiting for a worker.",
            "gauge",
            self.queued.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "upscaled_in_progress",
            "Files being processed.",
            "gauge",
            self.in_progress.load(Ordering::Relaxed),
        );
        out.push_str("# HELP upscaled_stage_seconds_total Time spent per pipeline stage.\n# TYPE upscaled_stage_seconds_total counter\n");
        let stages = self.stage_ms.lock().unwrap_or_else(|p| p.into_inner());
        for (stage, ms, _) in stages.iter() {
            out.push_str(&format!(
                "upscaled_stage_seconds_total{{stage=\"{stage}\"}} {:.3}\n",
                ms / 1e3
            ));
        }
        drop(stages);
        for source in self
            .sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            out.push_str(&source());
        }
        out
    }
}

/// The most bytes hyper buffers for one request head (line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// How long a client has to send a whole request head, counted from when the
/// server starts waiting for it (a new or an idle keep-alive connection).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest any one connection is kept, whatever it does.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Connections served at once; more are closed as soon as accepted.
pub const MAX_CONNECTIONS: usize = 64;

/// Binds `addr` now (so a port in use is an error at start, naming the
/// address) and serves `/metrics` and `/healthz` from a background thread.
pub fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let named = |stage: &str, e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("metrics server on {addr}: {stage}: {e}"))
    };
    let std_listener = std::net::TcpListener::bind(addr).map_err(|e| named("binding", e))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| named("setting the socket non-blocking", e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| named("starting its runtime", e))?;
    let listener = {
        let _context = runtime.enter();
        tokio::net::TcpListener::from_std(std_listener)
            .map_err(|e| named("registering the socket", e))?
    };
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || runtime.block_on(accept_loop(listener, metrics)))
        .map_err(|e| named("starting its thread", e))?;
    Ok(())
}

async fn accept_loop(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .keep_alive(true);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "metrics server: accepting a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "metrics server: too many connections, closing this one");
            drop(stream);
            continue;
        };
        let metrics = metrics.clone();
        let connection = http.serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn(move |request| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(respond(&request, &metrics)) }
            }),
        );
        tokio::spawn(async move {
            match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics server: connection"),
                Err(_) => tracing::debug!(%peer, "metrics server: connection past its lifetime"),
            }
            drop(slot);
        });
    }
}

/// The response to one request; its body (if any) is never read.
fn respond(request: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        response
    };
    if request.method() != Method::GET {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".into(),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    match request.uri().path() {
        "/metrics" => text(StatusCode::OK, metrics.render()),
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}
