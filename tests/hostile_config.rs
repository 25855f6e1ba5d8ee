//! Configs a careless or hostile administrator could write (issue 12, "bad
//! config"): each must be refused by the real binary's `check-config` with
//! the file, line and key of every error, all at once. Each test fails on
//! the code before the fix, which accepted the file (or stopped at the first
//! type error). The last tests check that a good config still passes and that
//! the output name's placeholders are filled in by the daemon.

mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A temporary folder with an (empty) models folder and a config in it.
struct Case {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
}

impl Case {
    /// `body` after `models: models` (so `folders:` starts on line 2).
    /// Relative paths in the file are relative to the temporary folder.
    fn new(body: &str) -> Case {
        Case::raw(&format!("models: models\n{body}"))
    }

    fn raw(text: &str) -> Case {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        fs::create_dir_all(root.join("models")).unwrap();
        let config = root.join("config.yaml");
        fs::write(&config, text).unwrap();
        Case {
            _dir: dir,
            root,
            config,
        }
    }

    fn check(&self) -> Output {
        bin()
            .args(["check-config", self.config.to_str().unwrap()])
            .output()
            .expect("running upscaled check-config")
    }

    /// Runs check-config; asserts it fails and reports, for each `(line,
    /// key)`, a line `FILE:LINE:COLUMN: KEY: ...`. Returns the report.
    fn refused(&self, expected: &[(usize, &str)]) -> String {
        let out = self.check();
        let text = stderr(&out);
        assert!(
            !out.status.success(),
            "check-config accepted it:\n{}\n{text}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(out.status.code(), Some(1), "{text}");
        let file = self.config.to_str().unwrap();
        for (line, key) in expected {
            let prefix = format!("{file}:{line}:");
            let found = text.lines().any(|l| {
                l.strip_prefix(&prefix).is_some_and(|rest| {
                    // COLUMN: KEY: message
                    rest.split_once(": ").is_some_and(|(col, rest)| {
                        col.parse::<usize>().is_ok() && rest.starts_with(&format!("{key}: "))
                    })
                })
            });
            assert!(found, "no error at line {line} for `{key}` in:\n{text}");
        }
        let n = text.lines().filter(|l| l.starts_with(file)).count() - 1;
        assert_eq!(
            n,
            expected.len(),
            "expected {} errors, got {n}:\n{text}",
            expected.len()
        );
        text
    }

    fn mkdir(&self, sub: &str) -> PathBuf {
        let p = self.root.join(sub);
        fs::create_dir_all(&p).unwrap();
        p
    }
}

/// A folder rule with the given extra lines (each indented 4 spaces).
fn folder(path: &str, output: &str, extra: &[&str]) -> String {
    let mut s = format!("  - path: {path}\n    output: {output}\n    width: 64\n");
    for line in extra {
        s.push_str(&format!("    {line}\n"));
    }
    s
}

#[test]
fn the_same_hot_folder_twice_is_refused() {
    // Written two ways; the daemon died on the second folder's lock.
    let c = Case::new(&format!(
        "folders:\n{}{}",
        folder("in", "out-a", &[]),
        folder("./x/../in/", "out-b", &[])
    ));
    let text = c.refused(&[(6, "folders[1].path")]);
    assert!(
        text.contains("the same hot folder as folders[0] (line 3)"),
        "{text}"
    );
}

#[test]
fn a_symlink_to_the_same_hot_folder_is_the_same_folder() {
    let c = Case::new(&format!(
        "folders:\n{}{}",
        folder("in", "out-a", &[]),
        folder("link", "out-b", &[])
    ));
    c.mkdir("in");
    std::os::unix::fs::symlink(c.root.join("in"), c.root.join("link")).unwrap();
    c.refused(&[(6, "folders[1].path")]);
}

#[test]
fn a_recursive_tree_holding_another_hot_folder_is_refused() {
    let c = Case::new(&format!(
        "folders:\n{}{}",
        folder("in", "out-a", &["recursive: true"]),
        folder("in/sub/deeper", "out-b", &[])
    ));
    // Its done/ and failed/ are in that tree too.
    let text = c.refused(&[
        (6, "folders[0].recursive"),
        (7, "folders[1].done"),
        (7, "folders[1].failed"),
    ]);
    assert!(text.contains("in/sub/deeper, line 7)"), "{text}");
}

#[test]
fn done_or_failed_equal_to_the_hot_folder_is_refused() {
    // `on_success: keep` or not, the file would be taken again forever.
    let c = Case::new(&format!(
        "folders:\n{}{}",
        folder("in", "out-a", &["on_success: keep", "done: in"]),
        folder("in2", "out-b", &["failed: ./in2"])
    ));
    let text = c.refused(&[(7, "folders[0].done"), (11, "folders[1].failed")]);
    assert!(text.contains("is the hot folder itself"), "{text}");
}

#[test]
fn done_or_failed_inside_another_rules_hot_folder_is_refused() {
    let c = Case::new(&format!(
        "folders:\n{}{}",
        folder("a", "out-a", &["done: b/done-of-a", "failed: b"]),
        folder("b", "out-b", &[])
    ));
    let text = c.refused(&[(6, "folders[0].done"), (7, "folders[0].failed")]);
    assert!(
        text.contains("the hot folder of folders[1] (") && text.contains("/b, line 8)"),
        "{text}"
    );
}

#[test]
fn a_default_done_folder_inside_another_rules_hot_folder_is_refused() {
    // `drop/shop`'s own done/ and failed/ are inside `drop`, which another
    // rule watches: fine for `drop/shop`, not for `drop`'s files.
    let c = Case::new(&format!(
        "folders:\n{}{}",
        folder("drop/shop", "out-a", &[]),
        folder("drop", "out-b", &[])
    ));
    let text = c.refused(&[(3, "folders[0].done"), (3, "folders[0].failed")]);
    assert!(text.contains("the default done folder"), "{text}");
    assert!(text.contains("`done:` is not set"), "{text}");
}

#[test]
fn an_output_that_is_the_hot_folder_through_a_symlink_is_refused() {
    let c = Case::new(&format!("folders:\n{}", folder("in", "link", &[])));
    c.mkdir("in");
    std::os::unix::fs::symlink(c.root.join("in"), c.root.join("link")).unwrap();
    c.refused(&[(4, "folders[0].output")]);
}

#[test]
fn two_rules_with_one_output_folder_are_refused() {
    let c = Case::new(&format!(
        "folders:\n{}{}{}",
        folder("a", "out", &[]),
        folder("b", "./out", &[]),
        folder("c", "out/c", &[])
    ));
    let text = c.refused(&[(7, "folders[1].output"), (10, "folders[2].output")]);
    assert!(
        text.contains("the same output folder as folders[0] (line 3)"),
        "{text}"
    );
    assert!(
        text.contains("inside the output folder of folders[0]"),
        "{text}"
    );
}

#[test]
fn a_missing_models_folder_is_refused() {
    let c = Case::raw(&format!(
        "threads: 2\nmodels: no-such-folder\nfolders:\n{}",
        folder("in", "out", &[])
    ));
    let text = c.refused(&[(2, "models")]);
    assert!(text.contains("no-such-folder does not exist"), "{text}");
}

#[test]
fn a_missing_default_models_folder_is_refused() {
    // No `models:`: the default is $UPSCALED_MODELS (else ./models...).
    let c = Case::raw(&format!("folders:\n{}", folder("in", "out", &[])));
    let missing = c.root.join("nowhere");
    let out = bin()
        .args(["check-config", c.config.to_str().unwrap()])
        .env("UPSCALED_MODELS", &missing)
        .output()
        .unwrap();
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let want = format!(
        "{}:1:1: models: `models` is not set, and the default models folder {} does not exist",
        c.config.display(),
        missing.display()
    );
    assert!(text.contains(&want), "{text}");
}

#[test]
fn zero_limits_are_refused() {
    let c = Case::new(&format!(
        "limits:\n  max_side: 0\n  max_megapixels: 0\n  max_alloc_mib: 0\n  max_file_mib: 0\n  seconds_per_file: 0\n  memory_mib: 0\nfolders:\n{}",
        folder("in", "out", &["max_bytes: 0"])
    ));
    c.refused(&[
        (3, "limits.max_side"),
        (4, "limits.max_megapixels"),
        (5, "limits.max_alloc_mib"),
        (6, "limits.max_file_mib"),
        (8, "limits.memory_mib"),
        (13, "folders[0].max_bytes"),
    ]);
}

#[test]
fn zero_retention_and_poll_interval_are_refused() {
    // `settle: 0s` is fine (take files at once); these two are not.
    let c = Case::new(&format!(
        "folders:\n{}",
        folder(
            "in",
            "out",
            &["settle: 0s", "retention: 0s", "poll_interval: 0ms"]
        )
    ));
    c.refused(&[(7, "folders[0].retention"), (8, "folders[0].poll_interval")]);
}

#[test]
fn an_empty_file_is_refused() {
    for text in ["", "\n\n", "# only a comment\n"] {
        let c = Case::raw(text);
        let report = c.refused(&[(1, "folders")]);
        assert!(report.contains("no folder to watch"), "{report}");
    }
}

#[test]
fn a_config_without_folders_is_refused() {
    let c = Case::new("threads: 2\nfolders: []\n");
    c.refused(&[(3, "folders")]);
    let c = Case::new("threads: 2\n");
    c.refused(&[(1, "folders")]);
}

#[test]
fn a_type_error_does_not_hide_the_other_errors() {
    // A string for a number, an unknown key and a bad value: all three.
    let c = Case::new(&format!(
        "folders:\n{}",
        folder(
            "in",
            "out",
            &["height: \"big\"", "widht: 10", "fit: squash"]
        )
    ));
    let text = c.refused(&[
        (6, "folders[0].height"),
        (7, "folders[0].widht"),
        (8, "folders[0].fit"),
    ]);
    assert!(text.contains("must be a whole number"), "{text}");

    // `folders: 3`, then a list where a map belongs, beside other errors.
    let c = Case::new("threads: 0\nlog_format: xml\nfolders: 3\nlimits: [1, 2]\n");
    c.refused(&[
        (2, "threads"),
        (3, "log_format"),
        (4, "folders"),
        (5, "limits"),
    ]);
    let c = Case::new(&format!(
        "folders:\n  - just a string\n{}",
        folder(
            "in",
            "out",
            &["formats: {webp: 1}", "smart: [2]", "quality: 300"]
        )
    ));
    c.refused(&[
        (3, "folders[0]"),
        (7, "folders[1].formats"),
        (8, "folders[1].smart"),
        (9, "folders[1].quality"),
    ]);
}

#[test]
fn output_names_that_leave_the_output_folder_are_refused() {
    // A target's name is `{preset}` in the file name: `../../x-` wrote
    // outside the output folder.
    let c = Case::new(
        "folders:\n  - path: in\n    output: out\n    name: \"{stem}-{preset}.{ext}\"\n    targets:\n      - name: ../../x-\n        width: 10\n      - name: /etc/cron.d/x\n        width: 20\n",
    );
    c.refused(&[
        (7, "folders[0].targets[0].name"),
        (9, "folders[0].targets[1].name"),
    ]);
    for (i, bad) in [
        "../../x-{stem}.{ext}",
        "/tmp/{stem}.{ext}",
        "sub/{stem}.{ext}",
        "{stem}.{nope}.{ext}",
        "{stem}}.{ext}",
        "{stem}.{ext",
        ".{stem}.{ext}",
        "{stem}",
    ]
    .iter()
    .enumerate()
    {
        let c = Case::new(&format!(
            "folders:\n{}",
            folder(&format!("in{i}"), "out", &[&format!("name: {bad:?}")])
        ));
        c.refused(&[(6, "folders[0].name")]);
    }
}

#[test]
fn a_good_config_passes() {
    let c = Case::new(&format!(
        "threads: 2\nlimits:\n  max_side: 20000\n  seconds_per_file: 0\nfolders:\n{}{}  - path: drop/nested\n    output: out/nested-results\n    preset: shopify\n    done: done-nested\n    failed: failed-nested\n",
        folder(
            "drop",
            "out/a",
            &[
                "recursive: false",
                "name: \"{stem}-{width}x{height}.{ext}\"",
                "settle: 0s",
                "retention: 4h",
                "poll_interval: 2s",
                "done: done-a",
                "failed: failed-a",
            ]
        ),
        folder(
            "other",
            "out/b",
            &["formats: [png, webp]", "name: \"{preset}-{stem}.{ext}\""]
        ),
    ));
    let out = c.check();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("OK (3 hot folders)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `{width}` and `{height}` were written literally (`x-{width}x{height}.png`);
/// they are the target box. A 255-byte source name still gets an output,
/// its stem shortened.
#[test]
fn the_daemon_fills_in_width_and_height_and_keeps_long_names_short() {
    let c = Case::new(&format!(
        "folders:\n{}",
        folder(
            "in",
            "out",
            &[
                "height: 32",
                "formats: [png]",
                "name: \"x-{stem}-{width}x{height}.{ext}\"",
                "settle: 200ms",
                "watch: poll",
                "poll_interval: 200ms",
            ]
        )
    ));
    let hot = c.mkdir("in");
    let img = image::RgbImage::from_fn(96, 96, |x, y| image::Rgb([x as u8, y as u8, 128]));
    img.save(hot.join("shoe.png")).unwrap();
    let long = format!("{}.png", "a".repeat(251));
    img.save(hot.join(&long)).unwrap();

    let mut daemon = bin()
        .args(["run", "--config", c.config.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out_dir = c.root.join("out");
    let names = |dir: &Path| -> Vec<Vec<u8>> {
        fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().as_bytes().to_vec())
                    .filter(|n| n.ends_with(b".png"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let started = Instant::now();
    while names(&out_dir).len() < 2 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();
    let mut log = String::new();
    if let Some(mut e) = daemon.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut log);
    }
    let found = names(&out_dir);
    assert!(
        found.iter().any(|n| n == b"x-shoe-64x32.png"),
        "outputs: {:?}\n{log}",
        found
            .iter()
            .map(|n| String::from_utf8_lossy(n))
            .collect::<Vec<_>>()
    );
    let long_out = found
        .iter()
        .find(|n| n.starts_with(b"x-aaaa"))
        .unwrap_or_else(|| panic!("no output for the 255-byte name:\n{log}"));
    assert!(long_out.len() <= 255, "{}", long_out.len());
    assert!(long_out.ends_with(b"-64x32.png"));
}
