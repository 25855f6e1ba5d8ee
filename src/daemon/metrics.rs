//! Counters for the log, `STATUS=` and the optional Prometheus endpoint
//! (`/metrics`, `/healthz`) on a loopback address.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub done: AtomicU64,
    pub failed: AtomicU64,
    pub queued: AtomicU64,
    pub in_progress: AtomicU64,
    /// Sum of milliseconds per stage name, and count of jobs.
    stage_ms: Mutex<Vec<(String, f64, u64)>>,
}

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
        out
    }
}

/// Serves `/metrics` and `/healthz` on `addr` from a background thread.
pub fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(&stream);
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let (status, body) = match path {
                    "/metrics" => ("200 OK", metrics.render()),
                    "/healthz" => ("200 OK", "ok\n".to_string()),
                    _ => ("404 Not Found", "not found\n".to_string()),
                };
                let mut stream = &stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        })?;
    Ok(())
}
