//! The no-invention mode (`--model none`, a folder's `smart: {model: none}`):
//! no neural network may run, so these jobs get a models folder with nothing
//! in it and an ONNX Runtime that is a planted garbage file; they must still
//! produce their full-size outputs, by interpolation alone, without the AI
//! label, and say so.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// A command of the binary that cannot reach any model or runtime.
fn without_models(dir: &Path) -> Command {
    let models = dir.join("no-models");
    fs::create_dir_all(&models).unwrap();
    let runtime = dir.join("libonnxruntime.so");
    fs::write(&runtime, b"not a shared library").unwrap();
    let mut cmd = bin();
    cmd.env("UPSCALED_MODELS", &models)
        .env("ORT_DYLIB_PATH", &runtime);
    cmd
}

/// A 120x90 crop of a real photo: Shopify's 2048 box is 17x away.
fn small_photo(dir: &Path) -> std::path::PathBuf {
    let photo = load_rgb(&samples().join("coffee.png"));
    let crop = image::imageops::crop_imm(&photo, 200, 150, 120, 90).to_image();
    let path = dir.join("small photo.png");
    crop.save(&path).unwrap();
    path
}

fn has_ai_label(bytes: &[u8]) -> bool {
    bytes
        .windows(b"DigitalSourceType".len())
        .any(|w| w == b"DigitalSourceType")
}

#[test]
fn the_command_line_interpolates_to_the_full_box_without_any_model() {
    let dir = tempfile::tempdir().unwrap();
    let input = small_photo(dir.path());
    let out_dir = dir.path().join("out");
    let out = without_models(dir.path())
        .args([
            "process", "--model", "none", "--preset", "shopify", "--json",
        ])
        .arg("-o")
        .arg(&out_dir)
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(report["model_scale"], 1, "{report}");
    assert!(report["class"].is_null(), "not classified: {report}");
    assert!(
        report["upscaler"].as_str().unwrap().contains("model: none"),
        "{report}"
    );
    // 17x, far past the 2x interpolation allowed after a model: the whole
    // box is filled all the same (Shopify pads to 2048x2048).
    let written = out_dir.join("small photo.webp");
    let bytes = fs::read(&written).unwrap();
    let decoded = image::load_from_memory(&bytes).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (2048, 2048));
    assert!(!has_ai_label(&bytes), "no model ran, so no AI label");
    let log = stderr(&out);
    assert!(log.contains("model: none"), "the log says how: {log}");
    assert!(
        !log.contains("no super-resolution model installed"),
        "{log}"
    );
}

#[test]
fn model_none_refuses_a_model_scale_and_explain_says_what_it_does() {
    let dir = tempfile::tempdir().unwrap();
    let input = small_photo(dir.path());
    let out = without_models(dir.path())
        .args([
            "process", "--model", "none", "--scale", "4", "--width", "500",
        ])
        .arg("-o")
        .arg(dir.path().join("out"))
        .arg(&input)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--scale: with --model none"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("out").exists() || files_under(&dir.path().join("out")).is_empty());

    let out = without_models(dir.path())
        .args(["explain", "--model", "none", "--preset", "amazon-main"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("not classified"), "{text}");
    assert!(text.contains("no model (--model none)"), "{text}");
}

#[test]
fn a_model_none_folder_processes_with_no_models_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("in")).unwrap();
    let config = root.join("config.yaml");
    fs::write(
        &config,
        "folders:\n  - path: in\n    output: out\n    preset: amazon-main\n    settle: 300ms\n    smart:\n      model: none\n",
    )
    .unwrap();
    let check = without_models(root)
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));

    let mut daemon = without_models(root)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = small_photo(root);
    fs::rename(&input, root.join("in/small photo.png")).unwrap();
    let out = root.join("out/small photo.jpg");
    let done = wait_until(Duration::from_secs(60), || out.is_file());
    // SAFETY: a signal to our own child process.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let status = daemon.wait().unwrap();
    let log = {
        use std::io::Read;
        let mut s = String::new();
        daemon
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    };
    assert!(done, "no output within 60 s; log:\n{log}");
    assert!(
        status.success(),
        "the daemon stops cleanly on SIGTERM: {status}; {log}"
    );
    let bytes = fs::read(&out).unwrap();
    let decoded = image::load_from_memory(&bytes).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (2000, 2000));
    assert!(!has_ai_label(&bytes));
    assert!(root.join("in/done/small photo.png").is_file(), "{log}");
    assert!(
        !root.join("in/failed").exists() || files_under(&root.join("in/failed")).is_empty(),
        "{log}"
    );
}
