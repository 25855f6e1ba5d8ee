//! The systemd unit passes `systemd-analyze verify` and rates 2.0 or better
//! in `systemd-analyze security` (skipped, saying so, where systemd-analyze is
//! not installed).

use std::path::Path;
use std::process::Command;

fn unit_with_real_binary(dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/upscaled.service"
    ))
    .unwrap()
    .replace("/usr/local/bin/upscaled", env!("CARGO_BIN_EXE_upscaled"));
    let path = dir.join("upscaled.service");
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
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_with_real_binary(dir.path());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    // verify complains about unrelated units on some hosts; only ours counts.
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("upscaled.service"))
        .collect();
    assert!(out.status.success() && ours.is_empty(), "{text}");
}

#[test]
fn unit_exposure_is_two_or_better() {
    if !have_systemd_analyze() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_with_real_binary(dir.path());
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no score in: {text}"));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unreadable score line: {line}"));
    eprintln!("systemd-analyze security: {score}");
    assert!(score <= 2.0, "{line}");
}
