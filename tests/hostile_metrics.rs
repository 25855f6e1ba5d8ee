//! The metrics endpoint under hostile clients, on the real daemon: an idle
//! connection, a huge request with no newline, many clients at once, and a
//! slow-loris client. Everything stays on 127.0.0.1; every loop is bounded by
//! a count and a time.

mod common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::*;

/// A daemon with one hot folder (no model) and the metrics endpoint on a
/// free loopback port. Killed when dropped.
struct Daemon {
    _dir: tempfile::TempDir,
    log: PathBuf,
    addr: SocketAddr,
    child: Child,
}

impl Daemon {
    fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // A free port: bind to port 0, note the port, release it.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = root.join("config.yaml");
        fs::write(
            &config,
            format!(
                "folders:\n  - path: in\n    output: out\n    width: 24\n    height: 24\n    fit: contain\n    formats: [png]\n    done: done\n    failed: failed\nmetrics: 127.0.0.1:{port}\n"
            ),
        )
        .unwrap();
        fs::create_dir_all(root.join("in")).unwrap();
        let log = root.join("daemon.log");
        let child = bin()
            .args(["run", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut daemon = Daemon {
            _dir: dir,
            log,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
        };
        daemon.wait_ready();
        daemon
    }

    /// Waits (at most 60 s) until `/healthz` answers.
    fn wait_ready(&mut self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the daemon exited ({status}): {}", self.log());
            }
            if get(self.addr, "/healthz", Duration::from_secs(2))
                .is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("/healthz never answered: {}", self.log());
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Resident memory in KiB, from /proc/PID/status.
    fn rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("no VmRSS line")
    }

    fn healthz_within(&self, limit: Duration) {
        let start = Instant::now();
        let response = get(self.addr, "/healthz", limit)
            .unwrap_or_else(|e| panic!("/healthz did not answer within {limit:?}: {e}"));
        assert!(
            response.starts_with("HTTP/1.1 200") && response.ends_with("ok\n"),
            "{response}"
        );
        assert!(start.elapsed() <= limit + Duration::from_millis(200));
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connect(addr: SocketAddr, limit: Duration) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, limit)?;
    stream.set_read_timeout(Some(limit))?;
    stream.set_write_timeout(Some(limit))?;
    Ok(stream)
}

/// Reads a whole `Connection: close` response, at most 1 MiB and `limit`.
fn read_response(stream: &mut TcpStream, limit: Duration) -> std::io::Result<String> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while out.len() < 1 << 20 {
        let left = limit
            .checked_sub(start.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| std::io::Error::new(ErrorKind::TimedOut, "response too slow"))?;
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf)? {
            0 => break,
            n => out.extend_from_slice(&buf[..n]),
        }
    }
    if out.is_empty() {
        return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "no response"));
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `GET path` on a fresh connection; the whole exchange within `limit`.
fn get(addr: SocketAddr, path: &str, limit: Duration) -> std::io::Result<String> {
    let start = Instant::now();
    let mut stream = connect(addr, limit)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    read_response(&mut stream, limit.saturating_sub(start.elapsed()))
}

/// Whether the server has closed (or reset) `stream`, waiting at most `wait`.
fn closed_by_server(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    // Bounded: a server may send a short error response before closing.
    for _ in 0..16 {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
    false
}

/// One client that connects and sends nothing must not block anyone else,
/// and is itself closed after the header timeout.
#[test]
fn an_idle_connection_blocks_no_one_and_is_closed() {
    let daemon = Daemon::start();
    let mut idle = connect(daemon.addr, Duration::from_secs(5)).unwrap();
    // Let the server accept it (and, if it is sequential, start waiting on it).
    std::thread::sleep(Duration::from_millis(300));
    daemon.healthz_within(Duration::from_secs(2));
    assert!(
        closed_by_server(&mut idle, Duration::from_secs(15)),
        "an idle connection was still open 15 s later"
    );
    daemon.healthz_within(Duration::from_secs(2));
}

/// 100 MB with no newline: the server stops reading early, closes the
/// connection, and its memory does not grow with the request.
#[test]
fn a_huge_request_without_a_newline_is_cut_off_and_not_buffered() {
    let daemon = Daemon::start();
    let before = daemon.rss_kib();
    let mut stream = connect(daemon.addr, Duration::from_secs(10)).unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let total: usize = 100 * 1000 * 1000;
    let start = Instant::now();
    let mut sent = 0usize;
    let mut refused = false;
    while sent < total && start.elapsed() < Duration::from_secs(120) {
        match stream.write(&chunk[..chunk.len().min(total - sent)]) {
            Ok(0) => {
                refused = true;
                break;
            }
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                refused = true;
                break;
            }
        }
    }
    // Give a server that buffers it all a moment to show it.
    std::thread::sleep(Duration::from_millis(500));
    let after = daemon.rss_kib();
    let closed = refused || closed_by_server(&mut stream, Duration::from_secs(5));
    drop(stream);
    assert!(
        after < before + 50 * 1024,
        "resident memory grew from {before} KiB to {after} KiB on a {sent}-byte request"
    );
    assert!(
        closed,
        "the server read all {sent} bytes without closing the connection"
    );
    assert!(
        sent < 20 * 1000 * 1000,
        "the server took {sent} bytes before closing the connection"
    );
    daemon.healthz_within(Duration::from_secs(2));
}

/// 20 clients connected at once, sending in the reverse order of connecting:
/// each gets /metrics within 1 s of asking, whoever else is connected.
#[test]
fn twenty_concurrent_clients_all_get_metrics() {
    let daemon = Daemon::start();
    let clients = 20;
    let barrier = Arc::new(Barrier::new(clients));
    let addr = daemon.addr;
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let barrier = barrier.clone();
            // Connect in order, so a sequential server is waiting on client 0.
            std::thread::sleep(Duration::from_millis(20));
            let stream = connect(addr, Duration::from_secs(5));
            std::thread::spawn(move || -> Result<Duration, String> {
                barrier.wait();
                let mut stream = stream.map_err(|e| format!("client {i}: connect: {e}"))?;
                std::thread::sleep(Duration::from_millis(100 * (clients - 1 - i) as u64));
                let asked = Instant::now();
                write!(
                    stream,
                    "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                )
                .map_err(|e| format!("client {i}: send: {e}"))?;
                let response = read_response(&mut stream, Duration::from_secs(3))
                    .map_err(|e| format!("client {i}: {e}"))?;
                if !response.starts_with("HTTP/1.1 200")
                    || !response.contains("upscaled_files_done_total")
                {
                    return Err(format!("client {i}: {response}"));
                }
                Ok(asked.elapsed())
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let problems: Vec<String> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match r {
            Err(e) => Some(e.clone()),
            Ok(d) if *d > Duration::from_secs(1) => {
                Some(format!("client {i}: answered after {d:?}"))
            }
            Ok(_) => None,
        })
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
}

/// A client sending its head a byte a second is cut off by the header
/// timeout, long before it would finish, and blocks no one meanwhile.
#[test]
fn a_slow_loris_client_is_cut_off_by_the_header_timeout() {
    let daemon = Daemon::start();
    let mut stream = connect(daemon.addr, Duration::from_secs(5)).unwrap();
    let head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaa\r\n\r\n";
    let start = Instant::now();
    let mut cut_after = None;
    for (sent, byte) in head.iter().enumerate().take(20) {
        if stream.write_all(&[*byte]).is_err() {
            cut_after = Some(sent);
            break;
        }
        if sent == 2 {
            daemon.healthz_within(Duration::from_secs(2));
        }
        // The one-second pace: wait for the server to close us meanwhile.
        if closed_by_server(&mut stream, Duration::from_secs(1)) {
            cut_after = Some(sent + 1);
            break;
        }
    }
    let elapsed = start.elapsed();
    let Some(sent) = cut_after else {
        panic!("a client sending a byte a second was still connected after {elapsed:?}");
    };
    assert!(
        elapsed < Duration::from_secs(12),
        "cut off only after {elapsed:?} ({sent} bytes)"
    );
    daemon.healthz_within(Duration::from_secs(2));
}
