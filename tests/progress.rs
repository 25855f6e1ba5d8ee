//! A long model run shows a bar of tiles with an ETA on a terminal (run under
//! a pseudo-terminal by util-linux `script`), and nothing but the log line
//! when stderr is not a terminal.

mod common;

use std::process::Command;

use common::*;

#[test]
fn tiles_show_progress_on_a_terminal_only() {
    models(&["spanx4_ch48"]);
    let dir = tempfile::tempdir().unwrap();
    let photo = samples().join("coffee.png");
    let args = |out: &str| {
        format!(
            "{} process --model spanx4_ch48 --tile 96 --scale 4 --format png -o {} {}",
            env!("CARGO_BIN_EXE_upscaled"),
            dir.path().join(out).display(),
            photo.display()
        )
    };
    let piped = Command::new("sh")
        .args(["-c", &args("piped")])
        .output()
        .unwrap();
    assert!(piped.status.success(), "{}", stderr(&piped));
    let text = stderr(&piped);
    assert!(text.contains("done 600x400"), "{text}");
    assert!(!text.contains("tiles"), "a bar off a terminal: {text}");

    let has_script = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_script {
        eprintln!("SKIPPED (terminal part): util-linux `script` is not installed");
        return;
    }
    let tty = Command::new("script")
        .args(["-qec", &args("tty"), "/dev/null"])
        .output()
        .unwrap();
    assert!(
        tty.status.success(),
        "{}",
        String::from_utf8_lossy(&tty.stdout)
    );
    let screen = String::from_utf8_lossy(&tty.stdout);
    // 600x400 in 96 px tiles: 7 columns by 5 rows.
    for want in [
        "spanx4_ch48",
        "/35 tiles",
        "left",
        "35/35 tiles",
        "done 600x400",
    ] {
        assert!(
            screen.contains(want),
            "{want:?} missing from the terminal:\n{screen}"
        );
    }
}
