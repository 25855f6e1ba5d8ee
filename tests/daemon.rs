//! The daemon, run as the real binary on temporary folders: many files at
//! once (corrupt, slow, nested), SIGKILL at random points, two daemons on one
//! folder, polling, SIGTERM, and a bad config.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A hot folder set-up: `root/in`, `root/out`, `root/done`, `root/failed`.
struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
}

impl Setup {
    fn new(extra: &str) -> Self {
        Self::with_box(24, extra)
    }

    fn with_box(side: u32, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let config = root.join("config.yaml");
        // Targets smaller than the sources: resize and encode only, no model,
        // so the test measures the daemon rather than inference.
        fs::write(
            &config,
            format!(
                "folders:\n  - path: in\n    output: out\n    width: {side}\n    height: {side}\n    fit: contain\n    formats: [webp, png]\n    settle: 500ms\n    done: done\n    failed: failed\n    recursive: true\n{extra}"
            ),
        )
        .unwrap();
        fs::create_dir_all(root.join("in")).unwrap();
        Setup {
            _dir: dir,
            root,
            config,
        }
    }

    fn start(&self) -> Child {
        bin()
            .args(["run", "--config", self.config.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.root.join(sub)
    }
}

/// Real photo crops, each different, as PNG and JPEG bytes.
fn fixtures(count: usize) -> Vec<(String, Vec<u8>)> {
    sized_fixtures(count, 48, 40)
}

fn sized_fixtures(count: usize, w: u32, h: u32) -> Vec<(String, Vec<u8>)> {
    let photo = load_rgb(&samples().join("coffee.png"));
    (0..count)
        .map(|i| {
            let x = (i * 7) as u32 % (photo.width() - w - 5);
            let y = (i * 3) as u32 % (photo.height() - h);
            let crop = image::imageops::crop_imm(&photo, x, y, w + (i % 5) as u32, h).to_image();
            let mut bytes = std::io::Cursor::new(Vec::new());
            let (ext, format) = if i % 2 == 0 {
                ("png", image::ImageFormat::Png)
            } else {
                ("jpg", image::ImageFormat::Jpeg)
            };
            crop.write_to(&mut bytes, format).unwrap();
            (format!("img{i:03}.{ext}"), bytes.into_inner())
        })
        .collect()
}

/// Relative paths of finished sources in done/ and failed/ (no .error.txt).
fn finished(s: &Setup) -> (Vec<String>, Vec<String>) {
    let list = |sub: &str| {
        files_under(&s.path(sub))
            .into_iter()
            .filter(|p| !p.to_string_lossy().ends_with(".error.txt"))
            .map(|p| p.strip_prefix(s.path(sub)).unwrap().display().to_string())
            .collect::<Vec<_>>()
    };
    (list("done"), list("failed"))
}

fn signal(child: &Child, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn stop(mut child: Child) -> String {
    signal(&child, "-TERM");
    let status = child.wait().unwrap();
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "daemon exit {status}: {err}");
    err
}

/// Every input is in done/ or failed/ exactly once; every done input has
/// both outputs and nothing else exists in out/ (no -1 copies, no temp files).
fn check_end_state(s: &Setup, expected: &HashMap<String, bool>) {
    let (done, failed) = finished(s);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for name in done.iter().chain(&failed) {
        *seen.entry(name.clone()).or_default() += 1;
    }
    for (name, &good) in expected {
        assert_eq!(
            seen.get(name),
            Some(&1),
            "{name} must end exactly once in done/failed"
        );
        let in_done = done.contains(name);
        assert_eq!(
            in_done,
            good,
            "{name}: expected {}",
            if good { "done" } else { "failed" }
        );
        if !good {
            assert!(
                s.path("failed").join(format!("{name}.error.txt")).is_file(),
                "{name}: no reason file"
            );
        }
    }
    assert_eq!(seen.len(), expected.len(), "unexpected files: {seen:?}");
    let outputs: Vec<String> = files_under(&s.path("out"))
        .into_iter()
        .map(|p| p.strip_prefix(s.path("out")).unwrap().display().to_string())
        .collect();
    let mut wanted = Vec::new();
    for name in &done {
        let stem = Path::new(name).with_extension("");
        for ext in ["webp", "png"] {
            wanted.push(format!("{}.{ext}", stem.display()));
        }
    }
    wanted.sort();
    let mut got = outputs.clone();
    got.sort();
    assert_eq!(got, wanted, "outputs must be exactly two per done input");
    for o in &outputs {
        let bytes = fs::read(s.path("out").join(o)).unwrap();
        image::load_from_memory(&bytes).unwrap_or_else(|e| panic!("{o} is not a whole image: {e}"));
    }
    // The inbox is empty apart from our own state folder.
    let left: Vec<PathBuf> = files_under(&s.path("in"))
        .into_iter()
        .filter(|p| !p.starts_with(s.path("in/.upscaled")))
        .collect();
    assert!(left.is_empty(), "left in the inbox: {left:?}");
}

#[test]
fn three_hundred_files_at_once_each_end_exactly_once() {
    let s = Setup::new("");
    let daemon = s.start();
    let started = Instant::now();
    let mut expected = HashMap::new();
    for (i, (name, bytes)) in fixtures(270).into_iter().enumerate() {
        let rel = if i % 3 == 0 {
            format!("sub{}/{name}", i % 4)
        } else {
            name
        };
        let path = s.path("in").join(&rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, &bytes).unwrap();
        expected.insert(rel, true);
    }
    // Corrupt ones: truncated, text named .jpg, empty.
    let good = fixtures(1).remove(0).1;
    for i in 0..10 {
        fs::write(
            s.path("in").join(format!("cut{i}.png")),
            &good[..good.len() / 3],
        )
        .unwrap();
        fs::write(
            s.path("in").join(format!("text{i}.jpg")),
            b"this is not an image",
        )
        .unwrap();
        fs::write(s.path("in").join(format!("empty{i}.png")), b"").unwrap();
        expected.insert(format!("cut{i}.png"), false);
        expected.insert(format!("text{i}.jpg"), false);
        expected.insert(format!("empty{i}.png"), false);
    }
    // Slow writers: chunks 300 ms apart, longer than the settle time in total.
    let slow: Vec<_> = fixtures(12)
        .into_iter()
        .skip(2)
        .enumerate()
        .map(|(i, (_, bytes))| {
            let path = s.path("in").join(format!("slow{i}.png"));
            // Whole images once written (decode sniffs the bytes, not the name).
            expected.insert(format!("slow{i}.png"), true);
            std::thread::spawn(move || {
                let mut f = fs::File::create(&path).unwrap();
                for chunk in bytes.chunks(bytes.len() / 4 + 1) {
                    f.write_all(chunk).unwrap();
                    f.flush().unwrap();
                    std::thread::sleep(Duration::from_millis(300));
                }
            })
        })
        .collect();
    for t in slow {
        t.join().unwrap();
    }
    let total = expected.len();
    assert_eq!(total, 310);
    assert!(
        wait_until(Duration::from_secs(240), || {
            let (d, f) = finished(&s);
            d.len() + f.len() >= total
        }),
        "not all files finished: {:?}",
        finished(&s)
    );
    let elapsed = started.elapsed();
    stop(daemon);
    check_end_state(&s, &expected);
    eprintln!("{total} files in {:.1} s", elapsed.as_secs_f64());
}

#[test]
fn sigkill_twenty_times_loses_nothing_and_duplicates_nothing() {
    // Bigger work per file (a 360 px box, PNG + WebP) so kills land mid-job.
    let s = Setup::with_box(360, "");
    let mut expected = HashMap::new();
    for (name, bytes) in sized_fixtures(120, 420, 390) {
        fs::write(s.path("in").join(&name), &bytes).unwrap();
        expected.insert(name, true);
    }
    fs::write(s.path("in").join("broken.jpg"), b"\xff\xd8\xff garbage").unwrap();
    expected.insert("broken.jpg".into(), false);
    let mut rng = 0x2545_f491_u64;
    let started = Instant::now();
    let (mut kills, mut kills_mid_work) = (0, 0);
    for _ in 0..20 {
        let mut daemon = s.start();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(300 + rng % 700));
        daemon.kill().unwrap(); // SIGKILL
        daemon.wait().unwrap();
        kills += 1;
        let (d, f) = finished(&s);
        if d.len() + f.len() < expected.len() {
            kills_mid_work += 1;
        }
    }
    assert!(
        kills_mid_work >= 15,
        "only {kills_mid_work} kills hit a working daemon"
    );
    let daemon = s.start();
    assert!(wait_until(Duration::from_secs(180), || {
        let (d, f) = finished(&s);
        d.len() + f.len() >= expected.len()
    }));
    // Give a moment for anything wrongly duplicated to show up.
    std::thread::sleep(Duration::from_secs(1));
    stop(daemon);
    check_end_state(&s, &expected);
    let leftover_work: Vec<_> = files_under(&s.path("in/.upscaled/work"))
        .into_iter()
        .filter(|p| p.file_name().unwrap() != "lock")
        .collect();
    assert!(
        leftover_work.is_empty(),
        "work folder not drained: {leftover_work:?}"
    );
    eprintln!(
        "{} files, {kills} SIGKILLs ({kills_mid_work} while files were left), {:.1} s",
        expected.len(),
        started.elapsed().as_secs_f64()
    );
}

/// A daemon killed between creating a record's temp file and renaming it
/// leaves that temp beside its jobs. The next daemon re-runs the jobs and,
/// once they are done, removes the dead area with the temp in it, even when
/// it is stopped long before its periodic sweep.
/// Two hot folders busy at once. Each folder's work area numbers its jobs
/// from 1 under the same owner; a job of one folder once hid the job of the
/// same number in the other, which then sat claimed until a restart. Here
/// the slow folder's job 1 (a large AVIF) is still running when the other
/// folder claims its own job 1.
#[test]
fn a_job_in_one_folder_never_hides_the_same_numbered_job_in_another() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let config = root.join("config.yaml");
    fs::write(
        &config,
        "folders:\n  - path: slow\n    output: out-slow\n    width: 1600\n    height: 1600\n    formats: [avif]\n    settle: 200ms\n  - path: fast\n    output: out-fast\n    width: 24\n    height: 24\n    formats: [png]\n    settle: 200ms\n",
    )
    .unwrap();
    for sub in ["slow", "fast"] {
        fs::create_dir_all(root.join(sub)).unwrap();
    }
    let daemon = bin()
        .args(["run", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let photo = load_rgb(&samples().join("coffee.png"));
    let big = image::imageops::resize(&photo, 1600, 1067, image::imageops::FilterType::Triangle);
    big.save(root.join("slow/big.png")).unwrap();
    let claimed = wait_until(Duration::from_secs(20), || {
        files_under(&root.join("slow/.upscaled"))
            .iter()
            .any(|p| p.to_string_lossy().ends_with("/1.src"))
    });
    assert!(claimed, "the slow file was never claimed");
    for (name, bytes) in fixtures(3) {
        fs::write(root.join("fast").join(name), bytes).unwrap();
    }
    let count = |sub: &str| files_under(&root.join(sub)).len();
    let all = wait_until(Duration::from_secs(60), || {
        count("out-fast") == 3 && count("out-slow") == 1
    });
    let log = stop(daemon);
    assert!(
        all,
        "outputs: {} of 3 fast, {} of 1 slow; left claimed: {:?}\n{log}",
        count("out-fast"),
        count("out-slow"),
        files_under(&root.join("fast/.upscaled"))
    );
    assert_eq!(count("fast/done"), 3, "{log}");
}

#[test]
fn a_dead_daemons_work_area_goes_with_its_temp_files() {
    let s = Setup::new("");
    let dead = s.path("in/.upscaled/work/deadhost-4242-0123456789abc");
    fs::create_dir_all(&dead).unwrap();
    fs::write(dead.join("lock"), b"").unwrap();
    fs::write(
        dead.join(".upscaled-deadhost-4242-0123456789abc-1-0.tmp"),
        b"{",
    )
    .unwrap();
    let (name, bytes) = fixtures(1).remove(0);
    let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    fs::write(
        dead.join("2.job"),
        format!("{{\"rel\":\"{hex}\",\"plan\":[]}}"),
    )
    .unwrap();
    fs::write(dead.join("2.src"), &bytes).unwrap();
    let daemon = s.start();
    assert!(
        wait_until(Duration::from_secs(60), || finished(&s).0.len() == 1),
        "the dead daemon's job was not re-run: {:?}",
        finished(&s)
    );
    std::thread::sleep(Duration::from_millis(500));
    let err = stop(daemon);
    assert_eq!(finished(&s).0, vec![name], "{err}");
    assert!(
        !dead.exists(),
        "dead area left behind: {:?}",
        files_under(&dead)
    );
}

#[test]
fn two_daemons_on_one_folder_process_each_file_once() {
    let s = Setup::new("");
    let (a, b) = (s.start(), s.start());
    std::thread::sleep(Duration::from_millis(500));
    let mut expected = HashMap::new();
    for (name, bytes) in fixtures(100) {
        fs::write(s.path("in").join(&name), &bytes).unwrap();
        expected.insert(name, true);
    }
    assert!(wait_until(Duration::from_secs(120), || {
        let (d, f) = finished(&s);
        d.len() + f.len() >= expected.len()
    }));
    std::thread::sleep(Duration::from_secs(1));
    stop(a);
    stop(b);
    check_end_state(&s, &expected);
}

#[test]
fn polling_mode_picks_files_up_without_events() {
    let s = Setup::new("    watch: poll\n    poll_interval: 300ms\n");
    let daemon = s.start();
    std::thread::sleep(Duration::from_millis(300));
    let mut expected = HashMap::new();
    for (name, bytes) in fixtures(5) {
        fs::write(s.path("in").join(&name), &bytes).unwrap();
        expected.insert(name, true);
    }
    assert!(wait_until(Duration::from_secs(30), || finished(&s).0.len() == 5));
    stop(daemon);
    check_end_state(&s, &expected);
}

#[test]
fn sigterm_exits_zero_and_a_bad_config_refuses_to_start() {
    let s = Setup::new("");
    let daemon = s.start();
    std::thread::sleep(Duration::from_millis(500));
    let log = stop(daemon);
    assert!(!log.contains("ERROR"), "{log}");

    let bad = s.path("bad.yaml");
    fs::write(
        &bad,
        "folders:\n  - path: in\n    output: out\n    widht: 100\n    fit: squash\n    settle: soon\n",
    )
    .unwrap();
    let out = run(&["run", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out).replace(bad.to_str().unwrap(), "bad.yaml");
    // Snapshot: every error, with line, column, key path and a hint.
    assert_eq!(
        text,
        "bad.yaml: 3 errors in the configuration\n\
         bad.yaml:4:5: folders[0].widht: unknown key `widht`; did you mean `width`?\n\
         bad.yaml:5:5: folders[0].fit: must be contain, cover or pad, not \"squash\"\n\
         bad.yaml:6:5: folders[0].settle: not a duration: \"soon\" (write e.g. 500ms, 1s, 2m, 4h)\n"
    );
}

/// A notify socket nobody reads fills after ten datagrams; the daemon once
/// blocked on the next STATUS and then ignored SIGTERM for good.
#[test]
fn a_notify_socket_nobody_reads_never_stops_the_daemon() {
    let s = Setup::new("");
    let socket_path = s.path("notify.sock");
    let _socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    let daemon = bin()
        .args(["run", "--config", s.config.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let files = fixtures(40);
    for (name, bytes) in &files {
        fs::write(s.path("in").join(name), bytes).unwrap();
    }
    // Every file means a STATUS or two: far more than the queue holds.
    let all = wait_until(Duration::from_secs(60), || {
        finished(&s).0.len() == files.len()
    });
    let done = finished(&s).0.len();
    let mut daemon = daemon;
    signal(&daemon, "-TERM");
    let exited = wait_until(Duration::from_secs(10), || {
        daemon.try_wait().unwrap().is_some()
    });
    if !exited {
        let _ = daemon.kill();
    }
    let status = daemon.wait().unwrap();
    assert!(all, "the daemon stalled with {done} of 40 done");
    assert!(
        exited && status.success(),
        "SIGTERM did not stop it: {status}"
    );
}

#[test]
fn tells_systemd_it_is_ready_and_how_busy_it_is() {
    let s = Setup::new("");
    let socket_path = s.path("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let daemon = bin()
        .args(["run", "--config", s.config.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut messages = Vec::new();
    let mut buf = [0u8; 512];
    while !messages.iter().any(|m: &String| m.starts_with("STATUS=")) {
        let n = socket
            .recv(&mut buf)
            .expect("no notification from the daemon");
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    stop(daemon);
    assert_eq!(messages[0], "READY=1", "{messages:?}");
    assert!(messages.iter().any(|m| m.contains("done")), "{messages:?}");
}

/// `limits.seconds_per_file`: a file whose 4x upscale runs past the limit is
/// stopped between rows of tiles and goes to failed/ with a reason naming
/// the limit; the daemon keeps running.
#[test]
fn a_file_past_its_time_limit_fails_with_the_reason() {
    models(&["spanx4_ch48"]);
    // 1600x1000 to a 6400 px box: a 4x model over three rows of five tiles,
    // a row taking about 4 s on two cores, so the limit passes inside the
    // upscale while decoding and classifying stay well within it.
    let s = Setup::with_box(
        6400,
        "    smart:\n      model: spanx4_ch48\nlimits:\n  seconds_per_file: 2\n",
    );
    let photo = image::imageops::resize(
        &load_rgb(&samples().join("coffee.png")),
        1600,
        1000,
        image::imageops::FilterType::Triangle,
    );
    let mut daemon = s.start();
    photo.save(s.path("in").join("big.png")).unwrap();
    // The file itself, not just anything in failed/: the reason's temp file
    // shows there for a moment before the reason and then the file arrive.
    assert!(
        wait_until(Duration::from_secs(120), || s
            .path("failed")
            .join("big.png")
            .is_file()),
        "big.png did not fail: {:?}",
        finished(&s)
    );
    let reason = fs::read_to_string(s.path("failed").join("big.png.error.txt")).unwrap();
    assert!(
        reason.contains("stage: upscale\nreason: stopped: the file took longer than its 2 s limit (limits.seconds_per_file)"),
        "{reason}"
    );
    assert!(files_under(&s.path("out")).is_empty());
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon exited");
    let log = stop(daemon);
    assert!(log.contains("seconds_per_file"), "{log}");
}
