//! The systemd units (the daemon's and the cluster worker's) pass
//! `systemd-analyze verify` and rate 2.0 or better in `systemd-analyze
//! security` (skipped, saying so, where systemd-analyze is not installed).

mod common;

use std::path::Path;
use std::process::Command;

const UNITS: &[&str] = &["upscaled.service", "upscaled-worker.service"];

fn unit_with_real_binary(dir: &Path, unit: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("systemd")
            .join(unit),
    )
    .unwrap()
    .replace("/usr/local/bin/upscaled", env!("CARGO_BIN_EXE_upscaled"))
    // The worker's settings file, made for the check.
    .replace(
        "/etc/upscaled/worker.env",
        &dir.join("worker.env").display().to_string(),
    );
    std::fs::write(
        dir.join("worker.env"),
        "UPSCALED_NATS=nats://127.0.0.1:4222\n",
    )
    .unwrap();
    let path = dir.join(unit);
    std::fs::write(&path, text).unwrap();
    path
}

fn have_systemd_analyze() -> bool {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        eprintln!("SKIPPED: systemd-analyze is not installed");
    }
    found
}

#[test]
fn unit_verifies_cleanly() {
    if !have_systemd_analyze() {
        return;
    }
    for name in UNITS {
        let dir = tempfile::tempdir().unwrap();
        let unit = unit_with_real_binary(dir.path(), name);
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        // verify complains about unrelated units on some hosts; only ours counts.
        let ours: Vec<&str> = text.lines().filter(|l| l.contains(name)).collect();
        assert!(out.status.success() && ours.is_empty(), "{name}: {text}");
    }
}

#[test]
fn unit_exposure_is_two_or_better() {
    if !have_systemd_analyze() {
        return;
    }
    for name in UNITS {
        let dir = tempfile::tempdir().unwrap();
        let unit = unit_with_real_binary(dir.path(), name);
        exposure_is_two_or_better(&unit);
    }
}

fn exposure_is_two_or_better(unit: &Path) {
    let score = common::systemd_exposure(unit).expect("systemd-analyze was found");
    assert!(score <= 2.0, "{}: exposure {score}", unit.display());
}
