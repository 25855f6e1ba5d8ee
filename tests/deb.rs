//! `make deb`'s package, built by scripts/build_deb.sh with cargo-deb from
//! the release binary: its control data, conffiles, maintainer scripts and
//! files; then, extracted (never installed on this host), the packaged
//! binary's `check-config` on the packaged config, the packaged unit's
//! systemd rating, the man page and completions. Skipped, saying so, where
//! cargo-deb, dpkg-deb or the release binary is missing (`make test`
//! provides all three).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn release_binary() -> Option<PathBuf> {
    let path = std::env::var_os("UPSCALED_RELEASE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // target/debug/upscaled -> target/release/upscaled
            Path::new(env!("CARGO_BIN_EXE_upscaled"))
                .parent()
                .and_then(Path::parent)
                .unwrap()
                .join("release/upscaled")
        });
    path.is_file().then_some(path)
}

fn cargo_deb() -> Option<PathBuf> {
    let cache = std::env::var_os("UPSCALED_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache"));
    std::env::var_os("UPSCALED_CARGO_DEB")
        .map(PathBuf::from)
        .into_iter()
        .chain([cache.join("tools/bin/cargo-deb")])
        .find(|p| p.is_file())
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    ok(
        Command::new("dpkg-deb")
            .args(args)
            .arg(deb)
            .output()
            .unwrap(),
        &format!("dpkg-deb {args:?}"),
    )
}

/// The control member `name` (conffiles, postinst...) of the package.
fn control_file(deb: &Path, name: &str) -> String {
    ok(
        Command::new("dpkg-deb")
            .arg("--info")
            .arg(deb)
            .arg(name)
            .output()
            .unwrap(),
        &format!("dpkg-deb --info {name}"),
    )
}

#[test]
fn the_package_installs_a_working_daemon() {
    let (Some(bin), Some(cargo_deb)) = (release_binary(), cargo_deb()) else {
        eprintln!(
            "SKIPPED: the Debian package test needs the release binary and cargo-deb (`make test` provides both)"
        );
        return;
    };
    if Command::new("dpkg-deb").arg("--version").output().is_err() {
        eprintln!("SKIPPED: dpkg-deb is not installed");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let out_dir = work.path().join("out");
    ok(
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build_deb.sh"))
            .arg(&cargo_deb)
            .arg(&bin)
            .arg(&out_dir)
            // Faster compression: the test reads the package, nobody ships it.
            .arg("--fast")
            .output()
            .unwrap(),
        "scripts/build_deb.sh",
    );
    let debs: Vec<PathBuf> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "one package expected: {debs:?}");
    let deb = &debs[0];

    // Control data: name, version, dependencies found from the binary's
    // libraries (libc at least), adduser for the postinst.
    let control = control_file(deb, "control");
    assert!(control.contains("Package: upscaled"), "{control}");
    assert!(
        control.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))),
        "{control}"
    );
    let depends = control
        .lines()
        .find(|l| l.starts_with("Depends:"))
        .unwrap_or_else(|| panic!("no Depends: {control}"));
    assert!(depends.contains("adduser"), "{depends}");
    // The library dependencies come from dpkg-shlibdeps (dpkg-dev, which
    // `make` installs where it can).
    if Command::new("dpkg-shlibdeps")
        .arg("--help")
        .output()
        .is_ok()
    {
        assert!(depends.contains("libc6"), "{depends}");
    } else {
        eprintln!("SKIPPED: library dependencies (dpkg-shlibdeps is not installed)");
    }

    // The config files are conffiles (kept over upgrades).
    let conffiles = control_file(deb, "conffiles");
    for file in ["/etc/upscaled/config.yaml", "/etc/upscaled/worker.env"] {
        assert!(
            conffiles.lines().any(|l| l == file),
            "{file} in: {conffiles}"
        );
    }

    // The system user is made on configure, the unit registered but not
    // started (models are fetched first), and purge removes the state.
    let postinst = control_file(deb, "postinst");
    assert!(postinst.contains("adduser --system --group"), "{postinst}");
    assert!(postinst.contains("upscaled models fetch"), "{postinst}");
    assert!(
        postinst.contains("deb-systemd-helper") && postinst.contains("upscaled.service"),
        "{postinst}"
    );
    assert!(!postinst.contains("#DEBHELPER#"), "{postinst}");
    let postrm = control_file(deb, "postrm");
    assert!(postrm.contains("/var/lib/upscaled"), "{postrm}");
    for script in [&postinst, &postrm] {
        let check = Command::new("sh")
            .args(["-n", "-c", script.as_str()])
            .status()
            .unwrap();
        assert!(check.success(), "shell syntax: {script}");
    }

    // Files.
    let listing = dpkg_deb(&["--contents"], deb);
    let has = |path: &str| {
        listing
            .lines()
            .any(|l| l.ends_with(&format!(" ./{path}")) || l.contains(&format!(" ./{path} ->")))
    };
    for path in [
        "usr/bin/upscaled",
        "etc/upscaled/config.yaml",
        "etc/upscaled/worker.env",
        "usr/share/man/man1/upscaled.1.gz",
        "usr/share/man/man1/upscaled-run.1.gz",
        "usr/share/man/man1/upscaled-check-config.1.gz",
        "usr/share/bash-completion/completions/upscaled",
        "usr/share/zsh/vendor-completions/_upscaled",
        "usr/share/fish/vendor_completions.d/upscaled.fish",
        "usr/share/doc/upscaled/README.md",
        "usr/share/doc/upscaled/docs/cluster.md",
        "usr/share/doc/upscaled/copyright",
    ] {
        assert!(has(path), "{path} missing from the package:\n{listing}");
    }
    let unit_dir = ["lib/systemd/system", "usr/lib/systemd/system"]
        .into_iter()
        .find(|d| has(&format!("{d}/upscaled.service")))
        .unwrap_or_else(|| panic!("no upscaled.service in:\n{listing}"));
    assert!(
        has(&format!("{unit_dir}/upscaled-worker.service")),
        "{listing}"
    );

    // Extracted, the package's own binary accepts the package's own config.
    let root = work.path().join("root");
    ok(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb)
            .arg(&root)
            .output()
            .unwrap(),
        "dpkg-deb -x",
    );
    let packaged = root.join("usr/bin/upscaled");
    let config = root.join("etc/upscaled/config.yaml");
    let checked = ok(
        Command::new(&packaged)
            .arg("check-config")
            .arg(&config)
            .output()
            .unwrap(),
        "the packaged binary's check-config on the packaged config",
    );
    assert!(checked.contains("OK (2 hot folders)"), "{checked}");
    let version = ok(
        Command::new(&packaged).arg("--version").output().unwrap(),
        "upscaled --version",
    );
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");

    // The packaged units run /usr/bin/upscaled as the package's user.
    for name in ["upscaled.service", "upscaled-worker.service"] {
        let unit = std::fs::read_to_string(root.join(unit_dir).join(name)).unwrap();
        assert!(
            unit.contains("ExecStart=/usr/bin/upscaled "),
            "{name}: {unit}"
        );
        assert!(unit.contains("\nUser=upscaled\n"), "{name}: {unit}");
        assert!(
            !unit.contains("DynamicUser") && !unit.contains("/usr/local/"),
            "{name}: {unit}"
        );
        // Still as tight as the checkout's unit (tests/systemd.rs).
        let for_check = work.path().join(name);
        std::fs::write(
            &for_check,
            unit.replace("/usr/bin/upscaled", &packaged.display().to_string()),
        )
        .unwrap();
        match common::systemd_exposure(&for_check) {
            Some(score) => assert!(score <= 2.0, "{name}: exposure {score}"),
            None => eprintln!("SKIPPED: {name}'s rating (systemd-analyze is not installed)"),
        }
    }

    // The man page and completions come from the clap definitions.
    let man = ok(
        Command::new("gzip")
            .arg("-dc")
            .arg(root.join("usr/share/man/man1/upscaled-process.1.gz"))
            .output()
            .unwrap(),
        "gzip -dc",
    );
    assert!(
        man.contains(".TH upscaled-process 1") && man.contains("\\-\\-preset"),
        "{man}"
    );
    let bash = std::fs::read_to_string(root.join("usr/share/bash-completion/completions/upscaled"))
        .unwrap();
    for word in ["check-config", "process", "--preset"] {
        assert!(bash.contains(word), "{word} not in the bash completion");
    }
}
