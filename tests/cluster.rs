//! Cluster mode (issue 16) against a real `nats-server -js` on 127.0.0.1:
//! a coordinator (`upscaled run` with `cluster:`) and `upscaled worker`
//! processes, each test with its own server, port and JetStream store. The
//! checks: every file is done exactly once (no lost source, no second or
//! numbered output, no temp file left) through worker kills, coordinator
//! kills and a server restart; outputs are identical to local mode's; a job
//! whose model no worker serves waits; a worker's garbage is refused.
//!
//! Every process the tests start is killed when the test ends, passing or
//! not, and their logs are printed when a check fails. With
//! `CLUSTER_TEST_KEEP=1` the temp folders (logs in `logs/`) are kept.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use common::*;

/// The model every job needing an upscale is pinned to (a 2x for 48–64 px
/// sources into a 96 px box), so which worker serves what is predictable.
const MODEL: &str = "spanx2_ch48";
const COORDINATOR: &str = "coord-test";
const STREAM: &str = "UPSCALED";

/// The folder's rules, the same in cluster and in local mode.
const RULES: &str = "    width: 96\n    height: 96\n    fit: contain\n    formats: [webp, png]\n    settle: 300ms\n    smart:\n      model: spanx2_ch48\n";
const FORMATS: [&str; 2] = ["webp", "png"];
const SIDE: u32 = 96;

fn nats_server() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/usr/local/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

/// The `nats-server` binary, or SKIPPED and out of the test.
macro_rules! need_nats {
    () => {
        match nats_server() {
            Some(p) => p,
            None => {
                eprintln!("SKIPPED: nats-server not installed (apt-get install nats-server)");
                return;
            }
        }
    };
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `text` without ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// A tiny deterministic generator for the kill schedule.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// One test's world: a temp folder, a NATS server, and every process
/// started, by name; each process's stdout and stderr go to
/// `logs/<name>.log` (appended across restarts). Dropping it kills them all.
struct Cluster {
    nats_bin: PathBuf,
    port: u16,
    root: PathBuf,
    started: Instant,
    procs: BTreeMap<String, Child>,
    starts: BTreeMap<String, u32>,
    /// Kept (and its path printed) when `CLUSTER_TEST_KEEP` is set.
    dir: Option<tempfile::TempDir>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.procs.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::env::var_os("CLUSTER_TEST_KEEP").is_some()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("kept: {}", dir.keep().display());
        }
    }
}

impl Cluster {
    fn new(nats_bin: PathBuf) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        fs::create_dir_all(root.join("logs")).unwrap();
        fs::create_dir_all(root.join("in")).unwrap();
        let mut c = Cluster {
            nats_bin,
            port: free_port(),
            root,
            started: Instant::now(),
            procs: BTreeMap::new(),
            starts: BTreeMap::new(),
            dir: Some(dir),
        };
        c.start_nats();
        c
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.root.join(sub)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.root.join("logs").join(format!("{name}.log"))
    }

    /// A process's log, colour codes taken out.
    fn log(&self, name: &str) -> String {
        strip_ansi(&fs::read_to_string(self.log_path(name)).unwrap_or_default())
    }

    /// The last lines of every process's log, for a failure message.
    fn logs(&self) -> String {
        let mut out = String::new();
        for e in fs::read_dir(self.root.join("logs")).unwrap().flatten() {
            let text = strip_ansi(&fs::read_to_string(e.path()).unwrap_or_default());
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(60);
            out += &format!(
                "\n===== {} ({} lines, last {}) =====\n{}\n",
                e.file_name().to_string_lossy(),
                lines.len(),
                lines.len() - from,
                lines[from..].join("\n")
            );
        }
        out
    }

    #[track_caller]
    fn ensure(&self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            panic!("{}\n--- logs ---{}", what(), self.logs());
        }
    }

    fn spawn(&mut self, name: &str, mut cmd: Command) {
        assert!(!self.procs.contains_key(name), "{name} is already running");
        let n = {
            let n = self.starts.entry(name.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))
            .unwrap();
        writeln!(
            log,
            "----- start #{n} at {:.1} s -----",
            self.started.elapsed().as_secs_f64()
        )
        .unwrap();
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        self.procs.insert(name.to_string(), child);
    }

    fn start_nats(&mut self) {
        let mut cmd = Command::new(&self.nats_bin);
        cmd.args([
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-sd",
        ])
        .arg(self.root.join("js"));
        self.spawn("nats", cmd);
        let addr = format!("127.0.0.1:{}", self.port);
        let up = wait_until(Duration::from_secs(20), || {
            TcpStream::connect(&addr).is_ok()
        });
        self.ensure(up, || format!("nats-server never listened on {addr}"));
    }

    fn start_coordinator(&mut self, config: &Path) {
        let mut cmd = bin();
        cmd.args(["run", "--config"]).arg(config);
        self.spawn("coordinator", cmd);
    }

    fn start_worker(&mut self, name: &str, extra: &[&str]) {
        let mut cmd = bin();
        cmd.args(["worker", "--nats", &self.url(), "--name", name])
            .args(extra);
        self.spawn(name, cmd);
    }

    /// SIGKILL, and reaped.
    fn kill(&mut self, name: &str) {
        let mut child = self
            .procs
            .remove(name)
            .unwrap_or_else(|| panic!("{name} is not running"));
        let _ = child.kill();
        child.wait().unwrap();
    }

    /// SIGTERM; waits up to 30 s for the exit.
    fn stop(&mut self, name: &str) -> ExitStatus {
        let mut child = self
            .procs
            .remove(name)
            .unwrap_or_else(|| panic!("{name} is not running"));
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{name} did not exit within 30 s of SIGTERM\n--- logs ---{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop_ok(&mut self, name: &str) {
        let status = self.stop(name);
        self.ensure(status.success(), || {
            format!("{name} exited with {status} on SIGTERM")
        });
    }

    /// Has `name` exited by itself? (It should not have.)
    fn exited(&mut self, name: &str) -> Option<ExitStatus> {
        self.procs.get_mut(name)?.try_wait().unwrap()
    }

    #[track_caller]
    fn still_running(&mut self, names: &[&str]) {
        for name in names {
            if let Some(status) = self.exited(name) {
                panic!(
                    "{name} exited by itself with {status}\n--- logs ---{}",
                    self.logs()
                );
            }
        }
    }

    /// The coordinator's config: hot folder `in` → `out`, done/failed beside.
    fn cluster_config(&self, cluster_extra: &str) -> PathBuf {
        let config = self.path("cluster.yaml");
        fs::write(
            &config,
            format!(
                "cluster:\n  nats: {}\n  name: {COORDINATOR}\n  stream: {STREAM}\n  bucket: upscaled\n  workers: 0\n{cluster_extra}folders:\n  - path: in\n    output: out\n    done: done\n    failed: failed\n{RULES}",
                self.url()
            ),
        )
        .unwrap();
        config
    }

    /// The same rules in local mode, on `<prefix>/in` → `<prefix>/out`.
    fn local_config(&self, prefix: &str) -> PathBuf {
        fs::create_dir_all(self.path(&format!("{prefix}/in"))).unwrap();
        let config = self.path(&format!("{prefix}.yaml"));
        fs::write(
            &config,
            format!(
                "folders:\n  - path: {prefix}/in\n    output: {prefix}/out\n    done: {prefix}/done\n    failed: {prefix}/failed\n{RULES}"
            ),
        )
        .unwrap();
        config
    }
}

/// Source photos: crops of the scikit-image samples, 48–64 px wide, PNG and
/// JPEG, each different. Names `img000.png`, `img001.jpg`, ...
fn sources(count: usize) -> Vec<(String, Vec<u8>)> {
    let dir = samples();
    let photos: Vec<image::RgbImage> = ["coffee.png", "astronaut.png", "chelsea.png"]
        .iter()
        .map(|n| load_rgb(&dir.join(n)))
        .collect();
    (0..count)
        .map(|i| {
            let photo = &photos[i % photos.len()];
            let w = 48 + (i % 5) as u32 * 4;
            let h = 40 + (i % 3) as u32 * 8;
            let x = (i as u32 * 37) % (photo.width() - w);
            let y = (i as u32 * 23) % (photo.height() - h);
            let crop = image::imageops::crop_imm(photo, x, y, w, h).to_image();
            let (ext, format) = if i % 2 == 0 {
                ("png", image::ImageFormat::Png)
            } else {
                ("jpg", image::ImageFormat::Jpeg)
            };
            (format!("img{i:03}.{ext}"), encode(&crop, format))
        })
        .collect()
}

fn encode(img: &image::RgbImage, format: image::ImageFormat) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, format).unwrap();
    bytes.into_inner()
}

/// Written under a hidden name (never taken), then renamed into place.
fn drop_file(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let temp = path.with_file_name(format!(
        ".dropping-{}",
        path.file_name().unwrap().to_string_lossy()
    ));
    fs::write(&temp, bytes).unwrap();
    fs::rename(&temp, path).unwrap();
}

/// Every file under `dir`, as paths relative to it.
fn names_in(dir: &Path) -> BTreeSet<String> {
    files_under(dir)
        .iter()
        .map(|p| p.strip_prefix(dir).unwrap().to_string_lossy().into_owned())
        .collect()
}

/// Sources in `dir` (a done/ or failed/ folder): reason files left out.
fn sources_in(dir: &Path) -> BTreeSet<String> {
    names_in(dir)
        .into_iter()
        .filter(|n| !n.ends_with(".error.txt"))
        .collect()
}

fn sha256(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn stem(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(s, _)| s)
}

/// The outputs the folder's rules promise for these sources.
fn expected_outputs<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    names
        .into_iter()
        .flat_map(|n| FORMATS.iter().map(move |f| format!("{}.{f}", stem(n))))
        .collect()
}

/// Everything in `failed/`, reasons included, for a message.
fn failed_report(dir: &Path) -> String {
    let mut out = String::new();
    for p in files_under(dir) {
        out += &format!("{}\n", p.display());
        if p.to_string_lossy().ends_with(".error.txt") {
            out += &fs::read_to_string(&p).unwrap_or_default();
        }
    }
    out
}

fn diff(what: &str, got: &BTreeSet<String>, want: &BTreeSet<String>) -> String {
    let missing: Vec<&String> = want.difference(got).collect();
    let extra: Vec<&String> = got.difference(want).collect();
    format!(
        "{what}: {} files, {} expected; missing {missing:?}; extra {extra:?}",
        got.len(),
        want.len()
    )
}

/// The end state of a folder set `<prefix>in`, `<prefix>out`, `<prefix>done`,
/// `<prefix>failed` after `files` were dropped and all finished: each source
/// in done/ once with its bytes, nothing failed, nothing left in the hot
/// folder or claimed, exactly the planned outputs (no `-1`, no temp file),
/// each a whole image in the 96 px box.
fn check_exactly_once(c: &Cluster, prefix: &str, files: &[(String, Vec<u8>)]) {
    let dir = |sub: &str| c.path(&format!("{prefix}{sub}"));
    let failed = names_in(&dir("failed"));
    c.ensure(failed.is_empty(), || {
        format!("failed/ is not empty:\n{}", failed_report(&dir("failed")))
    });
    let want: BTreeSet<String> = files.iter().map(|(n, _)| n.clone()).collect();
    let done = names_in(&dir("done"));
    c.ensure(done == want, || diff("done/", &done, &want));
    for (name, bytes) in files {
        let got = fs::read(dir("done").join(name)).unwrap();
        c.ensure(&got == bytes, || {
            format!("done/{name} is not the source that was dropped")
        });
    }
    // The hot folder keeps only the daemon's state folder, and it holds no
    // claimed source any more.
    let left: Vec<String> = names_in(&dir("in"))
        .into_iter()
        .filter(|n| !n.starts_with(".upscaled/"))
        .collect();
    c.ensure(left.is_empty(), || {
        format!("left in the hot folder: {left:?}")
    });
    let claimed: Vec<String> = names_in(&dir("in/.upscaled"))
        .into_iter()
        .filter(|n| n.ends_with(".src"))
        .collect();
    c.ensure(claimed.is_empty(), || {
        format!("still claimed after all were done: {claimed:?}")
    });
    let outs = names_in(&dir("out"));
    let want_outs = expected_outputs(want.iter().map(String::as_str));
    c.ensure(outs == want_outs, || diff("out/", &outs, &want_outs));
    for name in &outs {
        let path = dir("out").join(name);
        let img = image::open(&path);
        c.ensure(img.is_ok(), || {
            format!("out/{name} is not a whole image: {:?}", img.as_ref().err())
        });
        let img = img.unwrap();
        let (w, h) = (img.width(), img.height());
        c.ensure(w.max(h) == SIDE && w.min(h) > 0, || {
            format!("out/{name} is {w}x{h}, not in the {SIDE} px box")
        });
    }
}

/// Waits until every one of `count` sources is in done/ or failed/.
fn wait_finished(c: &mut Cluster, prefix: &str, count: usize, limit: Duration, alive: &[&str]) {
    let done = c.path(&format!("{prefix}done"));
    let failed = c.path(&format!("{prefix}failed"));
    let start = Instant::now();
    let ok = loop {
        let n = sources_in(&done).len() + sources_in(&failed).len();
        if n >= count {
            break true;
        }
        if start.elapsed() > limit {
            break false;
        }
        c.still_running(alive);
        std::thread::sleep(Duration::from_millis(200));
    };
    c.ensure(ok, || {
        format!(
            "after {limit:?}: {} in done/, {} in failed/, {count} dropped",
            sources_in(&done).len(),
            sources_in(&failed).len()
        )
    });
}

/// Lines of `log` that report `name` done (the daemon's "done ... source ->
/// .../done/NAME" line).
fn done_lines(log: &str, name: &str) -> usize {
    let to = format!("done/{name}");
    log.lines()
        .filter(|l| l.contains(" done ") && l.contains(&to))
        .count()
}

fn output_hashes(dir: &Path) -> BTreeMap<String, String> {
    names_in(dir)
        .into_iter()
        .map(|n| {
            let h = sha256(&dir.join(&n));
            (n, h)
        })
        .collect()
}

#[test]
fn two_workers_do_each_file_exactly_once() {
    let nats = need_nats!();
    models(&[MODEL]);
    let files = sources(200);
    let mut c = Cluster::new(nats);
    let config = c.cluster_config("  max_in_flight: 8\n  ack_wait: 10s\n");
    c.start_coordinator(&config);
    c.start_worker("w-alpha", &[]);
    c.start_worker("w-beta", &[]);

    // Both workers show in `cluster status`.
    let url = c.url();
    let mut status = String::new();
    let listed = wait_until(Duration::from_secs(60), || {
        let out = run(&["cluster", "status", "--nats", &url, "--stream", STREAM]);
        status = format!(
            "exit {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        out.status.success() && {
            let stdout = String::from_utf8_lossy(&out.stdout);
            stdout.contains("w-alpha") && stdout.contains("w-beta")
        }
    });
    c.ensure(listed, || {
        format!("`upscaled cluster status` never listed w-alpha and w-beta; last:\n{status}")
    });

    let t = Instant::now();
    for (name, bytes) in &files {
        drop_file(&c.path("in").join(name), bytes);
    }
    wait_finished(
        &mut c,
        "",
        files.len(),
        Duration::from_secs(240),
        &["nats", "coordinator", "w-alpha", "w-beta"],
    );
    let cluster_took = t.elapsed();
    // Late duplicates would show after the last file.
    std::thread::sleep(Duration::from_secs(2));
    check_exactly_once(&c, "", &files);
    c.stop_ok("w-alpha");
    c.stop_ok("w-beta");
    c.stop_ok("coordinator");

    let log = c.log("coordinator");
    for (name, _) in &files {
        let n = done_lines(&log, name);
        c.ensure(n == 1, || {
            format!("the coordinator logged {name} done {n} times, not once")
        });
    }
    // Both workers took part.
    let by_worker: Vec<usize> = ["w-alpha", "w-beta"]
        .iter()
        .map(|w| {
            let on = format!(" on worker {w}:");
            log.lines()
                .filter(|l| l.contains(" done ") && l.contains(&on))
                .count()
        })
        .collect();
    c.ensure(by_worker.iter().all(|&n| n > 0), || {
        format!("files done by w-alpha, w-beta: {by_worker:?}")
    });

    // The same files through local mode: the same bytes out.
    let config = c.local_config("local");
    let mut cmd = bin();
    cmd.args(["run", "--config"]).arg(&config);
    c.spawn("local", cmd);
    let t = Instant::now();
    for (name, bytes) in &files {
        drop_file(&c.path("local/in").join(name), bytes);
    }
    wait_finished(
        &mut c,
        "local/",
        files.len(),
        Duration::from_secs(240),
        &["local"],
    );
    let local_took = t.elapsed();
    check_exactly_once(&c, "local/", &files);
    c.stop_ok("local");
    let cluster = output_hashes(&c.path("out"));
    let local = output_hashes(&c.path("local/out"));
    let differ: Vec<&String> = cluster
        .iter()
        .filter(|(n, h)| local.get(*n) != Some(h))
        .map(|(n, _)| n)
        .collect();
    c.ensure(differ.is_empty(), || {
        format!(
            "{} of {} outputs differ from local mode's: {differ:?}",
            differ.len(),
            cluster.len()
        )
    });
    eprintln!(
        "200 files: cluster (2 workers: {by_worker:?}) {cluster_took:?}, local mode {local_took:?}; {} outputs identical",
        cluster.len()
    );
}

#[test]
fn kills_lose_and_duplicate_nothing() {
    let nats = need_nats!();
    models(&[MODEL]);
    // Dropped as the workers need them, so each kill finds a backlog; all
    // are in by the end.
    let files = sources(96);
    let mut c = Cluster::new(nats);
    // Many attempts allowed: a file may be under several of the kills.
    let config = c.cluster_config("  max_in_flight: 8\n  ack_wait: 3s\n  max_deliver: 50\n");
    let slow = ["--inject", "slow:400"];
    let workers = ["w-1", "w-2"];
    c.start_coordinator(&config);
    for w in workers {
        c.start_worker(w, &slow);
    }
    let mut dropped = 0;
    // Unfinished files (dropped, not yet in done/ or failed/).
    let unfinished = |c: &Cluster, dropped: usize| {
        dropped - sources_in(&c.path("done")).len() - sources_in(&c.path("failed")).len()
    };
    let mut top_up = |c: &Cluster, backlog: usize| {
        while dropped < files.len() && unfinished(c, dropped) < backlog {
            let (name, bytes) = &files[dropped];
            drop_file(&c.path("in").join(name), bytes);
            dropped += 1;
        }
        dropped
    };
    top_up(&c, 12);
    std::thread::sleep(Duration::from_millis(1500));

    // 10 worker kills (W), 5 coordinator kills (C), one server restart (N),
    // files still arriving between them.
    let plan = "WWCWNWCWWCWCWWCW";
    let mut rng = Lcg(16);
    let mut next_worker = 0;
    let mut backlog_at_kills = Vec::new();
    for event in plan.chars() {
        // Enough queued that both workers are inside a job (400 ms each)
        // when one is killed; past a restarted process's start-up.
        top_up(&c, 10);
        std::thread::sleep(Duration::from_millis(600 + rng.below(600)));
        match event {
            'W' => {
                let w = workers[next_worker % 2];
                next_worker += 1;
                c.still_running(&[w]);
                backlog_at_kills.push(unfinished(&c, top_up(&c, 0)));
                c.kill(w);
                c.start_worker(w, &slow);
            }
            'C' => {
                c.still_running(&["coordinator"]);
                c.kill("coordinator");
                std::thread::sleep(Duration::from_millis(rng.below(500)));
                c.start_coordinator(&config);
            }
            'N' => {
                // A clean restart: same port, same JetStream store.
                c.stop("nats");
                std::thread::sleep(Duration::from_millis(500));
                c.start_nats();
            }
            _ => unreachable!(),
        }
    }
    let dropped_during_kills = top_up(&c, 0);
    top_up(&c, usize::MAX);
    let mut alive = vec!["nats", "coordinator"];
    alive.extend(workers);
    wait_finished(&mut c, "", files.len(), Duration::from_secs(180), &alive);
    // A redelivered job's late result must not add anything: wait past
    // ack_wait, then look.
    std::thread::sleep(Duration::from_secs(4));
    check_exactly_once(&c, "", &files);
    // The kills were mid-run: every worker kill found files waiting, so
    // the workers were busy (the test's own set-up, checked).
    c.ensure(backlog_at_kills.iter().all(|&n| n >= 4), || {
        format!("a worker was killed with little queued: unfinished at kills {backlog_at_kills:?}")
    });
    let log = c.log("coordinator");
    c.ensure(!log.contains("panicked"), || {
        "a panic in the coordinator's log".into()
    });
    for w in workers {
        c.ensure(!c.log(w).contains("panicked"), || {
            format!("a panic in {w}'s log")
        });
    }
    // No file was finished twice (a duplicate result after a restart).
    for (name, _) in &files {
        let n = done_lines(&log, name);
        c.ensure(n <= 1, || format!("{name} was logged done {n} times"));
    }
    // Jobs whose first try was killed wait out ack_wait (3 s) before they
    // are run again: they show as slow in the done lines.
    let slow_jobs = log
        .lines()
        .filter(|l| l.contains(" done "))
        .filter_map(|l| l.rsplit_once("seconds=")?.1.trim().parse::<f64>().ok())
        .filter(|&s| s >= 3.0)
        .count();
    eprintln!(
        "{dropped_during_kills} files dropped during the kills; unfinished at the worker kills: {backlog_at_kills:?}; {slow_jobs} files took over ack_wait"
    );

    // Each output is its own source's upscale (not another job's bytes
    // under its name): closer to its source than to any other of that size.
    let decoded: Vec<(String, image::RgbImage)> = files
        .iter()
        .map(|(n, b)| (n.clone(), image::load_from_memory(b).unwrap().to_rgb8()))
        .collect();
    for (name, src) in &decoded {
        for f in FORMATS {
            let out = load_rgb(&c.path("out").join(format!("{}.{f}", stem(name))));
            let back = image::imageops::resize(
                &out,
                src.width(),
                src.height(),
                image::imageops::FilterType::Triangle,
            );
            let own = psnr_rgb(&back, src);
            let closest_other = decoded
                .iter()
                .filter(|(n, o)| n != name && o.dimensions() == src.dimensions())
                .map(|(n, o)| (psnr_rgb(&back, o), n))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            c.ensure(own > 20.0, || {
                format!(
                    "out/{}.{f} is not {name}'s upscale: PSNR {own:.1} dB",
                    stem(name)
                )
            });
            if let Some((other, other_name)) = closest_other {
                c.ensure(own > other, || {
                    format!(
                        "out/{}.{f} looks more like {other_name} ({other:.1} dB) than {name} ({own:.1} dB)",
                        stem(name)
                    )
                });
            }
        }
    }
    eprintln!(
        "coordinator started {} times, workers {} and {} times, nats {} times",
        c.starts["coordinator"], c.starts["w-1"], c.starts["w-2"], c.starts["nats"]
    );
}

#[test]
fn worker_without_the_model_leaves_the_job_waiting() {
    let nats = need_nats!();
    models(&[MODEL]);
    let small = sources(1).remove(0).1;
    // Bigger than the box: resized down, no model.
    let big = {
        let photo = load_rgb(&samples().join("chelsea.png"));
        let crop = image::imageops::crop_imm(&photo, 40, 30, 160, 120).to_image();
        encode(&crop, image::ImageFormat::Png)
    };
    let mut c = Cluster::new(nats);
    let config = c.cluster_config("  ack_wait: 4s\n  max_deliver: 2\n");
    c.start_coordinator(&config);
    c.start_worker("w-none", &["--only-models", "none"]);
    let dropped = Instant::now();
    drop_file(&c.path("in/needs-model.png"), &small);
    drop_file(&c.path("in/big-enough.png"), &big);

    let big_done = wait_until(Duration::from_secs(90), || {
        c.path("done/big-enough.png").is_file()
            && c.path("out/big-enough.webp").is_file()
            && c.path("out/big-enough.png").is_file()
    });
    c.ensure(big_done, || {
        "big-enough.png (no model needed) was not done by the `--only-models none` worker".into()
    });
    let reported = wait_until(Duration::from_secs(30), || {
        c.log("coordinator").contains("no worker serves")
    });
    c.ensure(reported, || {
        "the coordinator never logged `no worker serves` for needs-model.png".into()
    });
    let log = c.log("coordinator");
    let line = log
        .lines()
        .find(|l| l.contains("no worker serves"))
        .unwrap();
    c.ensure(line.contains(MODEL), || {
        format!("the report does not name the model {MODEL}: {line}")
    });
    // It waits: past several ack waits and max_deliver, it is neither done
    // nor failed, nor rerouted to a worker without its model.
    let hold = Duration::from_secs(14);
    if let Some(rest) = hold.checked_sub(dropped.elapsed()) {
        std::thread::sleep(rest);
    }
    c.still_running(&["nats", "coordinator", "w-none"]);
    c.ensure(!c.path("done/needs-model.png").exists(), || {
        "needs-model.png was done with no worker serving its model".into()
    });
    let failed = names_in(&c.path("failed"));
    c.ensure(failed.is_empty(), || {
        format!(
            "a waiting job was failed:\n{}",
            failed_report(&c.path("failed"))
        )
    });
    let outs = names_in(&c.path("out"));
    let want = expected_outputs(["big-enough.png"]);
    c.ensure(outs == want, || diff("out/ while waiting", &outs, &want));

    c.start_worker("w-full", &[]);
    let done = wait_until(Duration::from_secs(60), || {
        c.path("done/needs-model.png").is_file()
    });
    c.ensure(done, || {
        "needs-model.png was not done after a worker with its model started".into()
    });
    std::thread::sleep(Duration::from_secs(1));
    let outs = names_in(&c.path("out"));
    let want = expected_outputs(["big-enough.png", "needs-model.png"]);
    c.ensure(outs == want, || diff("out/", &outs, &want));
    let failed = names_in(&c.path("failed"));
    c.ensure(failed.is_empty(), || failed_report(&c.path("failed")));
    c.stop_ok("w-full");
    c.stop_ok("w-none");
    c.stop_ok("coordinator");
    // The waiting job was run by the worker that has the model.
    let log = c.log("coordinator");
    let n = done_lines(&log, "needs-model.png");
    c.ensure(n == 1, || format!("needs-model.png logged done {n} times"));
}

#[test]
fn garbage_results_are_refused() {
    let nats = need_nats!();
    models(&[MODEL]);
    let small = sources(1).remove(0).1;
    let big = {
        let photo = load_rgb(&samples().join("coffee.png"));
        let crop = image::imageops::crop_imm(&photo, 100, 60, 160, 120).to_image();
        encode(&crop, image::ImageFormat::Png)
    };
    let mut c = Cluster::new(nats);
    let config = c.cluster_config("  ack_wait: 4s\n  max_deliver: 2\n");
    c.start_coordinator(&config);
    c.start_worker("w-garbage", &["--inject", "garbage"]);
    // One job with a model and one without: both results are checked.
    drop_file(&c.path("in/g.png"), &small);
    drop_file(&c.path("in/g-big.png"), &big);
    let failed = wait_until(Duration::from_secs(120), || {
        ["g.png", "g-big.png"].iter().all(|n| {
            c.path("failed").join(n).is_file()
                && c.path("failed").join(format!("{n}.error.txt")).is_file()
        })
    });
    c.ensure(failed, || {
        format!(
            "g.png and g-big.png did not both end in failed/; failed/: {:?}, done/: {:?}, out/: {:?}",
            names_in(&c.path("failed")),
            names_in(&c.path("done")),
            names_in(&c.path("out"))
        )
    });
    std::thread::sleep(Duration::from_secs(1));
    c.still_running(&["nats", "coordinator", "w-garbage"]);
    for n in ["g.png", "g-big.png"] {
        let reason = fs::read_to_string(c.path("failed").join(format!("{n}.error.txt"))).unwrap();
        c.ensure(reason.contains("w-garbage"), || {
            format!("{n}'s reason does not name the worker that tried it:\n{reason}")
        });
        let got = fs::read(c.path("failed").join(n)).unwrap();
        let want = if n == "g.png" { &small } else { &big };
        c.ensure(&got == want, || format!("failed/{n} is not the source"));
    }
    let outs = names_in(&c.path("out"));
    c.ensure(outs.is_empty(), || format!("garbage was written: {outs:?}"));
    let done = names_in(&c.path("done"));
    c.ensure(done.is_empty(), || format!("done/ holds {done:?}"));
    let log = c.log("coordinator");
    c.ensure(log.contains("refused"), || {
        "the coordinator never logged `refused`".into()
    });
    c.stop_ok("w-garbage");
    c.stop_ok("coordinator");
}
