//! The hot folder is hostile: whoever can write it can plant files, swap
//! folders for symlinks, use odd names, and the daemon can be killed at any
//! moment. Each test runs the real `upscaled run` on temporary folders and
//! asserts the safe outcome: nothing outside the configured folders is read,
//! written, moved or deleted, and no source is lost.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
}

/// `root/in` → `root/out` (a 24 px box, WebP), done and failed inside `in`.
fn setup(extra: &str) -> Setup {
    setup_with("folders:\n  - path: in\n    output: out\n", extra)
}

fn setup_with(head: &str, extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let config = root.join("config.yaml");
    fs::write(
        &config,
        format!(
            "{head}    width: 24\n    height: 24\n    fit: contain\n    formats: [webp]\n    settle: 300ms\n{extra}"
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

impl Setup {
    fn start(&self) -> Child {
        self.start_env(&[])
    }

    fn start_env(&self, env: &[(&str, &str)]) -> Child {
        let mut cmd = bin();
        cmd.args(["run", "--config", self.config.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().unwrap()
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.root.join(sub)
    }
}

/// A small real photo crop, PNG bytes; `i` makes each one different.
fn photo(i: u32) -> Vec<u8> {
    let img = load_rgb(&samples().join("coffee.png"));
    let crop = image::imageops::crop_imm(&img, 10 + i * 3, 20 + i, 48, 40).to_image();
    let mut bytes = std::io::Cursor::new(Vec::new());
    crop.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    bytes.into_inner()
}

fn drop_file(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let temp = path.with_file_name(".dropping");
    fs::write(&temp, bytes).unwrap();
    fs::rename(&temp, path).unwrap();
}

fn sources_in(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with(".error.txt"))
        .collect()
}

fn stop(mut child: Child) -> String {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "daemon exited with {status}: {err}");
    err
}

#[allow(dead_code)]
fn kill(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

fn is_root() -> bool {
    fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) == 0
}

/// Files of a dead daemon, as it would have left them (written by a process
/// of the daemon's own user, so trusted): for adoption tests.
fn leave_orphans(s: &Setup, names: &[String]) {
    let area = s.path("in/.upscaled/work/deadhost-1-0");
    fs::create_dir_all(&area).unwrap();
    for dir in [
        s.path("in/.upscaled"),
        s.path("in/.upscaled/work"),
        area.clone(),
    ] {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    }
    for (i, name) in names.iter().enumerate() {
        let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
        fs::write(
            area.join(format!("{i}.job")),
            format!("{{\"rel\":\"{hex}\"}}"),
        )
        .unwrap();
        fs::write(area.join(format!("{i}.src")), photo(i as u32 % 20)).unwrap();
    }
}

#[test]
fn planted_state_and_symlinks_never_reach_outside_the_folders() {
    let s = setup("");
    let victim = s.path("victim");
    fs::create_dir_all(&victim).unwrap();
    fs::write(victim.join("keep.txt"), b"precious").unwrap();
    let secret = victim.join("secret.png");
    fs::write(&secret, photo(1)).unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();

    // A state folder planted by someone else: world-writable (and owned by
    // nobody when we can), with jobs whose plans point at the victim.
    let planted = s.path("in/.upscaled/work/evil-1-0");
    fs::create_dir_all(&planted).unwrap();
    let victim_hex: String = "../victim/keep.txt"
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    fs::write(
        planted.join("1.job"),
        format!("{{\"rel\":\"{victim_hex}\",\"plan\":[[{{\"dir\":\"2e2e\",\"name\":\"{}\",\"ids\":[]}}]]}}",
            "keep.txt".bytes().map(|b| format!("{b:02x}")).collect::<String>()),
    )
    .unwrap();
    std::os::unix::fs::symlink(&secret, planted.join("1.src")).unwrap();
    // The old layout's names too: a plan listing the victim, a symlinked job.
    fs::write(
        planted.join("000000000001~x.png.plan"),
        format!("[[\"{}\"]]", victim.join("keep.txt").display()),
    )
    .unwrap();
    std::os::unix::fs::symlink(&secret, planted.join("000000000001~x.png")).unwrap();
    for dir in [
        s.path("in/.upscaled"),
        s.path("in/.upscaled/work"),
        planted.clone(),
    ] {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        if is_root() {
            std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
        }
    }
    // A symlink to the secret as an input, and done/ swapped for a symlink.
    std::os::unix::fs::symlink(&secret, s.path("in/link.png")).unwrap();
    let rootonly = s.path("rootonly");
    fs::create_dir_all(&rootonly).unwrap();
    std::os::unix::fs::symlink(&rootonly, s.path("in/done")).unwrap();

    let daemon = s.start();
    drop_file(&s.path("in/real.png"), &photo(2));
    assert!(
        wait_until(Duration::from_secs(30), || !sources_in(
            &s.path("in/failed")
        )
        .is_empty()),
        "real.png must end in failed/ (done/ is a symlink it must not follow)"
    );
    std::thread::sleep(Duration::from_secs(1));
    let log = stop(daemon);

    assert_eq!(
        fs::read(victim.join("keep.txt")).unwrap(),
        b"precious",
        "{log}"
    );
    assert_eq!(fs::read(&secret).unwrap(), photo(1));
    assert!(
        files_under(&rootonly).is_empty(),
        "moved into the symlinked done/: {log}"
    );
    let outputs = files_under(&s.path("out"));
    // real.png was rendered, but failed at the move: its output is removed.
    assert!(outputs.is_empty(), "published: {outputs:?}\n{log}");
    let reason = fs::read_to_string(s.path("in/failed/real.png.error.txt")).unwrap();
    assert!(reason.contains("symlink"), "{reason}");
    assert!(
        s.path("in/link.png").is_symlink(),
        "the symlink input is left alone"
    );
    // The planted state was moved aside, not used.
    assert!(log.contains("moved aside"), "{log}");
    let mode = fs::metadata(s.path("in/.upscaled")).unwrap().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn a_symlinked_output_sub_folder_is_not_written_through() {
    let s = setup_with(
        "folders:\n  - path: in\n    output: in/out\n    recursive: true\n",
        "",
    );
    let outside = s.path("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::create_dir_all(s.path("in/out")).unwrap();
    std::os::unix::fs::symlink(&outside, s.path("in/out/sub")).unwrap();
    let daemon = s.start();
    drop_file(&s.path("in/sub/a.png"), &photo(3));
    assert!(wait_until(Duration::from_secs(30), || {
        !sources_in(&s.path("in/failed")).is_empty()
    }));
    let log = stop(daemon);
    assert!(files_under(&outside).is_empty(), "{log}");
    let reason = fs::read_to_string(s.path("in/failed/sub/a.png.error.txt")).unwrap();
    assert!(reason.contains("stage: write"), "{reason}");
}

#[test]
fn the_same_names_dropped_again_after_a_crash_lose_nothing() {
    let s = setup("");
    let names: Vec<String> = (0..6).map(|i| format!("p{i}.png")).collect();
    // A dead daemon left these claimed...
    leave_orphans(&s, &names);
    // ...and the same names are dropped again.
    for (i, n) in names.iter().enumerate() {
        drop_file(&s.path("in").join(n), &photo(10 + i as u32));
    }
    let daemon = s.start();
    assert!(
        wait_until(Duration::from_secs(60), || sources_in(&s.path("in/done"))
            .len()
            == 12),
        "done: {:?}",
        sources_in(&s.path("in/done"))
    );
    stop(daemon);
    // Every one of the 12 sources is there, by content.
    let mut contents: Vec<Vec<u8>> = sources_in(&s.path("in/done"))
        .iter()
        .map(|p| fs::read(p).unwrap())
        .collect();
    contents.sort();
    contents.dedup();
    assert_eq!(contents.len(), 12);
    assert_eq!(files_under(&s.path("out")).len(), 12);
}

#[test]
fn odd_names_are_processed_once_and_reported_once() {
    let s = setup("");
    let daemon = s.start();
    let non_utf8 = OsStr::from_bytes(b"caf\xe9-\xff.png");
    let long = format!("{}.png", "l".repeat(251));
    for name in [
        non_utf8,
        OsStr::new(&long),
        OsStr::new("x.plan"),
        OsStr::new("y.png.plan"),
    ] {
        drop_file(&s.path("in").join(name), &photo(name.len() as u32 % 20));
    }
    assert!(wait_until(Duration::from_secs(30), || {
        sources_in(&s.path("in/done")).len() == 4
    }));
    std::thread::sleep(Duration::from_secs(2));
    let log = stop(daemon);
    let done = s.path("in/done");
    assert!(done.join(non_utf8).is_file(), "the name's bytes are kept");
    assert!(done.join(&long).is_file());
    assert!(done.join("x.plan").is_file() && done.join("y.png.plan").is_file());
    let outs = files_under(&s.path("out"));
    assert_eq!(outs.len(), 4, "{outs:?}");
    assert!(outs.iter().all(|p| p.file_name().unwrap().len() <= 255));
    assert!(log.lines().count() < 40, "log flood:\n{log}");
}

#[test]
fn keep_takes_a_file_once() {
    let s = setup("    on_success: keep\n");
    let daemon = s.start();
    drop_file(&s.path("in/k.png"), &photo(4));
    assert!(wait_until(Duration::from_secs(30), || s
        .path("out/k.webp")
        .is_file()));
    std::thread::sleep(Duration::from_secs(4));
    let log = stop(daemon);
    assert!(s.path("in/k.png").is_file(), "kept in place");
    assert_eq!(files_under(&s.path("out")).len(), 1, "{log}");
    // A restart remembers it too.
    let daemon = s.start();
    std::thread::sleep(Duration::from_secs(3));
    stop(daemon);
    assert_eq!(files_under(&s.path("out")).len(), 1);
}

#[test]
fn retention_deletes_only_what_the_daemon_wrote() {
    // The hot folder sits inside the output, with an unprocessed source.
    let s = setup_with(
        "folders:\n  - path: out/in\n    output: out\n    exclude: ['*.hold']\n    retention: 1s\n",
        "",
    );
    let hot = s.path("out/in");
    fs::create_dir_all(&hot).unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(86_400);
    for path in [s.path("out/index.html"), hot.join("waiting.hold")] {
        fs::write(&path, b"not the daemon's").unwrap();
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let daemon = s.start();
    drop_file(&hot.join("r.png"), &photo(5));
    assert!(wait_until(Duration::from_secs(30), || s
        .path("out/r.webp")
        .is_file()));
    stop(daemon);
    std::thread::sleep(Duration::from_millis(1500));
    // The sweep at start removes the daemon's own old files.
    let daemon = s.start();
    assert!(wait_until(Duration::from_secs(20), || !s
        .path("out/r.webp")
        .exists()
        && !hot.join("done/r.png").exists()));
    let log = stop(daemon);
    assert!(s.path("out/index.html").is_file(), "{log}");
    assert!(hot.join("waiting.hold").is_file(), "{log}");
}

#[test]
fn two_daemons_writing_one_output_never_overwrite() {
    let a = setup("");
    // A second folder with its own config, the same output folder.
    let b_config = a.path("b.yaml");
    fs::write(
        &b_config,
        "folders:\n  - path: in2\n    output: out\n    width: 24\n    height: 24\n    fit: contain\n    formats: [webp]\n    settle: 300ms\n",
    )
    .unwrap();
    let da = a.start();
    let db = bin()
        .args(["run", "--config", b_config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    for i in 0..8 {
        drop_file(&a.path(&format!("in/s{i}.png")), &photo(i));
        drop_file(&a.path(&format!("in2/s{i}.png")), &photo(i + 10));
    }
    assert!(wait_until(Duration::from_secs(60), || {
        sources_in(&a.path("in/done")).len() == 8 && sources_in(&a.path("in2/done")).len() == 8
    }));
    stop(da);
    stop(db);
    let outs = files_under(&a.path("out"));
    assert_eq!(outs.len(), 16, "{outs:?}");
}

#[test]
fn an_idle_daemon_costs_no_cpu() {
    let s = setup("");
    let daemon = s.start();
    std::thread::sleep(Duration::from_secs(3));
    let ticks = |pid: u32| -> u64 {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split(' ').collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    };
    let before = ticks(daemon.id());
    std::thread::sleep(Duration::from_secs(10));
    let used = ticks(daemon.id()) - before;
    stop(daemon);
    eprintln!("idle: {used} CPU ticks (1/100 s) in 10 s");
    assert!(used <= 10, "idle daemon used {used} ticks in 10 s");
}

#[test]
fn ready_comes_before_the_orphans_and_sigterm_leaves_them_claimed() {
    let s = setup("");
    // Jobs of real weight (a 2048² WebP each, by interpolation: no model
    // needed), so that a backlog of 30 cannot finish in the second between
    // READY and SIGTERM however fast the box is at small ones.
    fs::write(
        &s.config,
        "folders:\n  - path: in\n    output: out\n    width: 2048\n    height: 2048\n    fit: contain\n    formats: [webp]\n    settle: 300ms\n    smart:\n      model: none\n",
    )
    .unwrap();
    let names: Vec<String> = (0..30).map(|i| format!("o{i:02}.png")).collect();
    leave_orphans(&s, &names);
    let sock_dir = tempfile::tempdir().unwrap();
    let sock_path = sock_dir.path().join("notify");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = Instant::now();
    let daemon = s.start_env(&[("NOTIFY_SOCKET", sock_path.to_str().unwrap())]);
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).expect("READY within 20 s");
        if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
            break;
        }
    }
    let ready_after = started.elapsed();
    let done_at_ready = sources_in(&s.path("in/done")).len();
    assert!(
        done_at_ready < 30,
        "READY came only after the backlog ({ready_after:?})"
    );
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    stop(daemon);
    let stop_took = t.elapsed();
    let done_at_stop = sources_in(&s.path("in/done")).len();
    assert!(
        done_at_stop < 30,
        "SIGTERM ran the whole backlog ({stop_took:?})"
    );
    // The rest stays claimed and the next start finishes it.
    let daemon = s.start();
    assert!(wait_until(Duration::from_secs(60), || sources_in(
        &s.path("in/done")
    )
    .len()
        == 30));
    stop(daemon);
    eprintln!(
        "READY after {ready_after:?} with {done_at_ready}/30 done; SIGTERM took {stop_took:?} with {done_at_stop}/30 done"
    );
}

#[test]
fn removing_the_state_folder_while_running_recovers() {
    let s = setup("");
    let daemon = s.start();
    drop_file(&s.path("in/first.png"), &photo(6));
    assert!(wait_until(Duration::from_secs(30), || s
        .path("out/first.webp")
        .is_file()));
    fs::remove_dir_all(s.path("in/.upscaled")).unwrap();
    drop_file(&s.path("in/second.png"), &photo(7));
    let ok = wait_until(Duration::from_secs(20), || {
        s.path("out/second.webp").is_file()
    });
    let log = stop(daemon);
    assert!(ok, "stalled after the state folder was removed:\n{log}");
}

#[test]
fn a_huge_sparse_file_fails_fast_without_reading_it() {
    let s = setup("limits:\n  max_file_mib: 64\n");
    let daemon = s.start();
    let f = fs::File::create(s.path("in/.huge")).unwrap();
    f.set_len(3 << 30).unwrap();
    drop(f);
    fs::rename(s.path("in/.huge"), s.path("in/huge.png")).unwrap();
    assert!(wait_until(Duration::from_secs(30), || s
        .path("in/failed/huge.png.error.txt")
        .is_file()));
    let log = stop(daemon);
    let reason = fs::read_to_string(s.path("in/failed/huge.png.error.txt")).unwrap();
    assert!(reason.contains("max_file_mib"), "{reason}\n{log}");
}

/// A small tmpfs, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Option<SmallDisk> {
        fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(at.to_path_buf()))
    }

    /// Fills it up; returns the filler's path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.0.join("filler");
        let mut f = fs::File::create(&filler).unwrap();
        let block = vec![7u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

fn claimed_sources(s: &Setup) -> usize {
    files_under(&s.path("in/.upscaled/work"))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "src"))
        .count()
}

#[test]
fn a_full_disk_keeps_files_claimed_until_there_is_room() {
    let s = setup_with(
        "folders:\n  - path: in\n    output: full/out\n    failed: full/failed\n",
        "",
    );
    let Some(disk) = SmallDisk::mount(&s.path("full"), "256k") else {
        eprintln!(
            "SKIPPED: cannot mount a small tmpfs here (needs root), so the full-disk case did not run"
        );
        return;
    };
    fs::create_dir_all(s.path("full/out")).unwrap();
    fs::create_dir_all(s.path("full/failed")).unwrap();
    let filler = disk.fill();
    let daemon = s.start();
    drop_file(&s.path("in/good.png"), &photo(8));
    drop_file(&s.path("in/bad.png"), b"this is not an image at all");
    assert!(wait_until(Duration::from_secs(20), || claimed_sources(&s)
        == 2
        && {
            std::thread::sleep(Duration::from_secs(2));
            claimed_sources(&s) == 2
        }));
    // Nothing half-written, nothing failed without its reason, nothing lost.
    assert!(files_under(&s.path("full/out")).is_empty());
    assert!(files_under(&s.path("full/failed")).is_empty());
    assert!(sources_in(&s.path("in/done")).is_empty());
    fs::remove_file(filler).unwrap();
    let ok = wait_until(Duration::from_secs(40), || {
        s.path("full/out/good.webp").is_file()
            && s.path("full/failed/bad.png.error.txt").is_file()
            && s.path("full/failed/bad.png").is_file()
    });
    let log = stop(daemon);
    assert!(ok, "not finished once there was room:\n{log}");
    assert!(log.contains("tried again"), "{log}");
    assert_eq!(claimed_sources(&s), 0);
}

#[test]
fn a_planted_hard_link_is_not_published() {
    let s = setup("");
    let victim = s.path("private.png");
    fs::write(&victim, photo(9)).unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
    let daemon = s.start();
    fs::hard_link(&victim, s.path("in/linked.png")).unwrap();
    assert!(wait_until(Duration::from_secs(30), || s
        .path("in/failed/linked.png.error.txt")
        .is_file()));
    let log = stop(daemon);
    assert!(files_under(&s.path("out")).is_empty(), "{log}");
    assert_eq!(fs::read(&victim).unwrap(), photo(9));
    let reason = fs::read_to_string(s.path("in/failed/linked.png.error.txt")).unwrap();
    assert!(reason.contains("hard link"), "{reason}");
}

#[test]
fn files_claimed_by_an_older_version_are_not_lost_on_upgrade() {
    let s = setup("    recursive: true\n");
    // The layout before this version: `<12 digits>~<path>` and its `.plan`.
    let area = s.path("in/.upscaled/work/oldhost-77");
    fs::create_dir_all(&area).unwrap();
    fs::write(area.join("000000000001~sub%2Fold.png"), photo(11)).unwrap();
    fs::write(
        area.join("000000000001~sub%2Fold.png.plan"),
        b"[[\"/etc/passwd\"]]",
    )
    .unwrap();
    fs::write(area.join("000000000002~b.png"), photo(12)).unwrap();
    fs::write(area.join("lock"), b"").unwrap();
    let daemon = s.start();
    let ok = wait_until(Duration::from_secs(30), || {
        s.path("in/done/sub/old.png").is_file() && s.path("in/done/b.png").is_file()
    });
    let log = stop(daemon);
    assert!(ok, "{log}");
    assert_eq!(fs::read(s.path("in/done/sub/old.png")).unwrap(), photo(11));
    assert!(s.path("out/sub/old.webp").is_file());
}

#[test]
fn sighup_with_an_empty_config_keeps_the_running_one() {
    let s = setup("");
    let daemon = s.start();
    std::thread::sleep(Duration::from_millis(800));
    let good = fs::read_to_string(&s.config).unwrap();
    fs::write(&s.config, b"").unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &daemon.id().to_string()])
        .status();
    std::thread::sleep(Duration::from_millis(800));
    drop_file(&s.path("in/after.png"), &photo(13));
    let ok = wait_until(Duration::from_secs(20), || {
        s.path("out/after.webp").is_file()
    });
    fs::write(&s.config, good).unwrap();
    let log = stop(daemon);
    assert!(
        ok,
        "watching stopped after SIGHUP with an empty config:\n{log}"
    );
    assert!(log.contains("reload refused"), "{log}");
}

#[test]
fn a_name_cannot_forge_lines_in_the_reason_file() {
    let s = setup("");
    let daemon = s.start();
    let name = "z\nstage: none\nreason: all good\n.png";
    drop_file(&s.path("in").join(name), b"garbage, not an image");
    let reason_file = s.path("in/failed").join(format!("{name}.error.txt"));
    assert!(wait_until(Duration::from_secs(30), || reason_file.is_file()));
    let log = stop(daemon);
    let reason = fs::read_to_string(&reason_file).unwrap();
    let lines: Vec<&str> = reason.lines().collect();
    assert_eq!(lines.len(), 4, "{reason}");
    assert!(lines[1].starts_with("stage: decode"), "{reason}");
    assert!(!log.contains("\nstage: none"), "{log}");
}
