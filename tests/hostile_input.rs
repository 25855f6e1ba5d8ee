//! Hostile inputs given to the command line (issue 12, "bad input"): each
//! test runs the real binary on temporary folders and fails on the code
//! before the fix. A giant sparse file, a FIFO, missing files, formats we do
//! not decode, multi-frame files, outputs that must not be replaced, and a
//! model with corrupted weights.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn tmp() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().to_path_buf();
    (d, p)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A small real photo, as PNG bytes written without compression (so any
/// re-encode by the pipeline differs from them).
fn photo(path: &Path, side: u32) {
    let img = image::imageops::thumbnail(&load_rgb(&samples().join("coffee.png")), side, side);
    let file = fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), img.width(), img.height());
    enc.set_color(png::ColorType::Rgb);
    enc.set_compression(png::Compression::NoCompression);
    let mut w = enc.write_header().unwrap();
    w.write_image_data(img.as_raw()).unwrap();
}

/// Runs `cmd` to its end, or kills it after `limit` (then panics: a hang).
fn finish_within(mut cmd: Command, limit: Duration, what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting upscaled");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still ran after {limit:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Peak resident memory (VmHWM, KiB) of a child, polled from /proc while it
/// runs; with the exit status and output.
fn peak_memory(mut cmd: Command) -> (Output, u64, usize) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting upscaled");
    let status_file = format!("/proc/{}/status", child.id());
    let (mut peak, mut readings) = (0u64, 0usize);
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        // A zombie's status has no VmHWM line: only live readings count.
        let hwm = fs::read_to_string(&status_file).ok().and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        });
        if let Some(kib) = hwm {
            peak = peak.max(kib);
            readings += 1;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no end");
        std::thread::sleep(Duration::from_millis(2));
    }
    (child.wait_with_output().unwrap(), peak, readings)
}

fn process_json(args: &[&str]) -> (Output, Vec<serde_json::Value>) {
    let mut all = vec!["process", "--json"];
    all.extend_from_slice(args);
    let out = run(&all);
    let reports = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (out, reports)
}

fn output_paths(report: &serde_json::Value) -> Vec<PathBuf> {
    report["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| PathBuf::from(o["path"].as_str().unwrap()))
        .collect()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

// 1. Bounded reading.

#[test]
fn a_sparse_3_gb_file_is_refused_before_it_is_read() {
    let (_d, dir) = tmp();
    let huge = dir.join("huge.png");
    fs::File::create(&huge).unwrap().set_len(3 << 30).unwrap();
    // Real photos after it keep the process alive long enough to be watched;
    // VmHWM is the high-water mark of the whole run, the 3 GB read included.
    let mut inputs = vec![huge.clone()];
    for i in 0..4 {
        let p = dir.join(format!("photo{i}.png"));
        photo(&p, 256);
        inputs.push(p);
    }
    let out_dir = dir.join("out");
    let mut cmd = bin();
    cmd.args([
        "process",
        "--scale",
        "1",
        "--format",
        "png",
        "-o",
        s(&out_dir),
    ]);
    cmd.args(&inputs);
    let (out, peak_kib, readings) = peak_memory(cmd);
    assert!(readings > 0, "the process was never seen running");
    eprintln!(
        "peak resident memory: {} MiB ({readings} readings)",
        peak_kib / 1024
    );
    assert!(
        peak_kib < 512 * 1024,
        "peak memory {} MiB: the file was read before its size was checked",
        peak_kib / 1024
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("huge.png") && l.contains("failed"))
        .unwrap_or_else(|| panic!("no failure naming huge.png: {err}"));
    assert!(line.contains("read failed"), "{line}");
    assert!(
        line.contains("3072 MiB, over the limit of 256 MiB (limits.max_file_mib)"),
        "{line}"
    );
    // The other files of the run went through.
    assert_eq!(names_in(&out_dir).len(), 4, "{err}");
}

// 2. Non-regular files.

#[test]
fn a_fifo_or_a_folder_is_refused_by_every_command_without_hanging() {
    let (_d, dir) = tmp();
    let fifo = dir.join("pipe.png");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let folder = dir.join("folder.png");
    fs::create_dir(&folder).unwrap();
    let out = dir.join("out");
    let sheet = dir.join("sheet.png");
    for (input, what) in [(&fifo, "a FIFO"), (&folder, "a folder")] {
        for args in [
            vec!["process", "--format", "png", "-o", s(&out), s(input)],
            vec!["classify", s(input)],
            vec!["explain", s(input)],
            vec!["compare", s(input), "-o", s(&sheet)],
        ] {
            let mut cmd = bin();
            cmd.args(&args);
            let run = finish_within(cmd, Duration::from_secs(30), &args.join(" "));
            let err = stderr(&run);
            assert!(!run.status.success(), "{args:?}: {err}");
            assert!(!err.contains("panicked"), "{err}");
            assert!(
                err.contains(&format!("{} is {what}", input.display()))
                    && err.contains("not a regular file"),
                "{args:?}: {err}"
            );
            assert!(err.contains("read failed"), "{args:?}: {err}");
        }
    }
    assert!(!sheet.exists());
    assert!(names_in(&out).is_empty());
}

// 3. Missing files named.

#[test]
fn explain_and_compare_name_a_missing_file_and_the_stage() {
    let (_d, dir) = tmp();
    let missing = dir.join("no-such-photo.jpg");
    for args in [
        vec!["explain", s(&missing)],
        vec!["compare", s(&missing), "-o", "/nonexistent/sheet.png"],
        vec!["classify", s(&missing)],
    ] {
        let out = run(&args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            err.contains(&format!("{}: read failed: cannot open", missing.display())),
            "{args:?}: {err}"
        );
        assert!(err.contains("No such file"), "{args:?}: {err}");
    }
}

// 4. Formats named.

#[test]
fn broken_heic_avif_and_jpeg_xl_fail_with_the_format_named() {
    let (_d, dir) = tmp();
    // A real AVIF, written by the pipeline itself, decodes; cut in half, it
    // fails like the header-only HEIC and JPEG XL files below.
    let src = dir.join("src.png");
    photo(&src, 64);
    let avif_out = dir.join("avif");
    let made = run(&[
        "process",
        "--scale",
        "1",
        "--format",
        "avif",
        "-o",
        s(&avif_out),
        s(&src),
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    let avif = fs::read(avif_out.join("src.avif")).unwrap();
    let back = run(&[
        "process",
        "--format",
        "png",
        "-o",
        s(&dir.join("back")),
        s(&avif_out.join("src.avif")),
    ]);
    if cfg!(feature = "heif") {
        assert!(back.status.success(), "{}", stderr(&back));
    } else {
        assert!(
            stderr(&back).contains("needs the `heif` feature"),
            "{}",
            stderr(&back)
        );
    }
    // ISO-BMFF headers as an iPhone and libheif write them, then data.
    let ftyp = |major: &[u8], compatible: &[&[u8]]| {
        let mut b = Vec::new();
        b.extend(((16 + 4 * compatible.len()) as u32).to_be_bytes());
        b.extend(b"ftyp");
        b.extend(major);
        b.extend([0, 0, 0, 0]);
        for c in compatible {
            b.extend(*c);
        }
        b.extend([0u8; 64]);
        b
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "iphone.heic",
            ftyp(b"heic", &[b"mif1", b"heic"]),
            "HEIC/HEIF (e.g. iPhone photos)",
        ),
        (
            "libheif.heif",
            ftyp(b"mif1", &[b"heic", b"miaf"]),
            "HEIC/HEIF (e.g. iPhone photos)",
        ),
        ("cut.avif", avif[..avif.len() / 2].to_vec(), "AVIF"),
        (
            "code.jxl",
            [&[0xffu8, 0x0a][..], &[0u8; 64]].concat(),
            "JPEG XL",
        ),
        (
            "boxed.jxl",
            [&b"\0\0\0\x0cJXL \r\n\x87\n"[..], &[0u8; 64]].concat(),
            "JPEG XL",
        ),
    ];
    for (name, bytes, said) in cases {
        let path = dir.join(name);
        fs::write(&path, bytes).unwrap();
        let out = run(&[
            "process",
            "--format",
            "png",
            "-o",
            s(&dir.join("out")),
            s(&path),
        ]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains("decode failed: ") && err.contains(said),
            "{name}: {err}"
        );
        assert!(!err.contains("panic"), "{name}: {err}");
    }
}

// 5. Multi-frame.

/// A classic little-endian TIFF of 8-bit grey pages, built by hand.
fn grey_tiff(pages: usize, side: u32) -> Vec<u8> {
    let mut b = b"II*\0".to_vec();
    b.extend(8u32.to_le_bytes());
    let pixels = (side * side) as usize;
    let ifd_len = 2 + 9 * 12 + 4;
    for page in 0..pages {
        let ifd_at = b.len();
        let data_at = ifd_at + ifd_len;
        let next = if page + 1 < pages {
            (data_at + pixels) as u32
        } else {
            0
        };
        let entries: [(u16, u16, u32); 9] = [
            (256, 4, side),           // ImageWidth
            (257, 4, side),           // ImageLength
            (258, 3, 8),              // BitsPerSample
            (259, 3, 1),              // Compression: none
            (262, 3, 1),              // Photometric: black is zero
            (273, 4, data_at as u32), // StripOffsets
            (277, 3, 1),              // SamplesPerPixel
            (278, 4, side),           // RowsPerStrip
            (279, 4, pixels as u32),  // StripByteCounts
        ];
        b.extend((entries.len() as u16).to_le_bytes());
        for (tag, kind, value) in entries {
            b.extend(tag.to_le_bytes());
            b.extend(kind.to_le_bytes());
            b.extend(1u32.to_le_bytes());
            if kind == 3 {
                b.extend((value as u16).to_le_bytes());
                b.extend([0, 0]);
            } else {
                b.extend(value.to_le_bytes());
            }
        }
        b.extend(next.to_le_bytes());
        assert_eq!(b.len(), data_at);
        b.extend((0..pixels).map(|i| ((i as u32 * 7 + page as u32 * 90) % 256) as u8));
    }
    b
}

/// An animated PNG (APNG) written by the png crate.
fn apng(frames: u32, side: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut enc = png::Encoder::new(&mut bytes, side, side);
    enc.set_color(png::ColorType::Rgb);
    enc.set_animated(frames, 0).unwrap();
    enc.set_frame_delay(1, 10).unwrap();
    let mut w = enc.write_header().unwrap();
    for f in 0..frames {
        let data: Vec<u8> = (0..side * side * 3)
            .map(|i| ((i * 5 + f * 70) % 256) as u8)
            .collect();
        w.write_image_data(&data).unwrap();
    }
    w.finish().unwrap();
    bytes
}

#[test]
fn multi_page_tiff_and_apng_warn_that_only_the_first_frame_is_used() {
    let (_d, dir) = tmp();
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        (
            "pages.tiff",
            grey_tiff(2, 32),
            Some("multi-page TIFF (2 pages): only the first page is used"),
        ),
        ("single.tiff", grey_tiff(1, 32), None),
        (
            "moving.png",
            apng(3, 32),
            Some("animated PNG (APNG, 3 frames): only the first frame is used"),
        ),
    ];
    for (name, bytes, warning) in cases {
        let path = dir.join(name);
        fs::write(&path, bytes).unwrap();
        let out_dir = dir.join(format!("out-{name}"));
        let (out, reports) = process_json(&[
            "--scale",
            "1",
            "--format",
            "png",
            "-o",
            s(&out_dir),
            s(&path),
        ]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let warnings: Vec<&str> = reports[0]["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap())
            .collect();
        match warning {
            Some(w) => {
                assert!(warnings.contains(&w), "{name}: {warnings:?}");
                // And the log line says it too.
                assert!(stderr(&out).contains(w), "{name}");
            }
            None => assert!(warnings.is_empty(), "{name}: {warnings:?}"),
        }
        let img = image::open(&output_paths(&reports[0])[0]).unwrap();
        assert_eq!((img.width(), img.height()), (32, 32));
    }
}

// 6. `process` never overwrites a file it did not create in this run.

#[test]
fn process_never_overwrites_its_own_input() {
    let (_d, dir) = tmp();
    let input = dir.join("x.png");
    photo(&input, 64);
    let before = fs::read(&input).unwrap();
    let (out, reports) =
        process_json(&["--scale", "1", "--format", "png", "-o", s(&dir), s(&input)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read(&input).unwrap(), before, "the input was replaced");
    let written = output_paths(&reports[0]);
    assert_eq!(written, vec![dir.join("x-1.png")]);
    assert!(image::open(&written[0]).is_ok());
}

#[test]
fn inputs_with_one_stem_get_one_output_each() {
    let (_d, dir) = tmp();
    for sub in ["a", "b"] {
        fs::create_dir(dir.join(sub)).unwrap();
    }
    let (a, b) = (dir.join("a/x.png"), dir.join("b/x.png"));
    photo(&a, 40);
    photo(&b, 56);
    // x.png and x.jpg: one stem, two formats of input.
    let jpg = dir.join("a/x.jpg");
    image::open(&a).unwrap().save(&jpg).unwrap();
    let out_dir = dir.join("out");
    let (out, reports) = process_json(&[
        "--scale",
        "1",
        "--format",
        "png",
        "-o",
        s(&out_dir),
        s(&a),
        s(&b),
        s(&jpg),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(names_in(&out_dir), ["x-1.png", "x-2.png", "x.png"]);
    // Each report names its own output, and each output is its input's.
    let sides: Vec<u32> = reports
        .iter()
        .map(|r| {
            let paths = output_paths(r);
            assert_eq!(paths.len(), 1);
            image::open(&paths[0]).unwrap().width()
        })
        .collect();
    let want: Vec<u32> = [&a, &b, &jpg]
        .iter()
        .map(|p| image::open(p).unwrap().width())
        .collect();
    assert_eq!(sides, want);
}

#[test]
fn an_existing_unrelated_output_is_left_alone() {
    let (_d, dir) = tmp();
    let input = dir.join("x.png");
    photo(&input, 48);
    let out_dir = dir.join("out");
    fs::create_dir(&out_dir).unwrap();
    fs::write(out_dir.join("x.png"), b"someone else's file").unwrap();
    let (out, reports) = process_json(&[
        "--scale",
        "1",
        "--format",
        "png",
        "-o",
        s(&out_dir),
        s(&input),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fs::read(out_dir.join("x.png")).unwrap(),
        b"someone else's file"
    );
    assert_eq!(output_paths(&reports[0]), vec![out_dir.join("x-1.png")]);
    // The log line names the path actually written.
    assert!(stderr(&out).contains("x-1.png"), "{}", stderr(&out));
}

// 7. Broken models.

/// A models folder holding `name`, a copy of an installed model with the
/// weights and biases of every convolution overwritten by `value`, and the
/// installed ONNX Runtime.
fn corrupted_model(models: &Path, base: &str, name: &str, value: f32) {
    use prost::Message;
    use upscaled::models::onnx::ModelProto;
    let installed = upscaled::models::models_dir();
    let bytes = fs::read(installed.join(format!("{base}.onnx"))).unwrap();
    let mut model = ModelProto::decode(bytes.as_slice()).unwrap();
    let graph = model.graph.as_mut().unwrap();
    let weights: std::collections::HashSet<String> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Conv")
        .flat_map(|n| n.input.iter().skip(1).cloned())
        .collect();
    let mut overwritten = 0;
    for t in &mut graph.initializer {
        if weights.contains(&t.name) && t.data_type == 1 {
            let n = t.raw_data.len() / 4;
            t.raw_data = value.to_le_bytes().repeat(n);
            overwritten += 1;
        }
    }
    assert!(overwritten > 0, "no convolution weights found in {base}");
    fs::create_dir_all(models.join("runtime")).unwrap();
    let runtime = models.join("runtime/libonnxruntime.so");
    if !runtime.exists() {
        std::os::unix::fs::symlink(installed.join("runtime/libonnxruntime.so"), runtime).unwrap();
    }
    fs::write(models.join(format!("{name}.onnx")), model.encode_to_vec()).unwrap();
    fs::write(
        models.join(format!("{name}.yaml")),
        "scale: 2\nkind: fidelity\ngood_for: [photo]\nlicence: test\n",
    )
    .unwrap();
}

#[test]
fn a_model_with_corrupted_weights_fails_the_file_with_the_reason() {
    models(&["spanx2_ch48"]);
    let (_d, dir) = tmp();
    let models = dir.join("models");
    corrupted_model(&models, "spanx2_ch48", "broken-nan", f32::NAN);
    corrupted_model(&models, "spanx2_ch48", "broken-zero", 0.0);
    let input = dir.join("photo.png");
    photo(&input, 64);
    for (name, reason) in [
        (
            "broken-nan",
            "model broken-nan produced NaN or infinite output",
        ),
        ("broken-zero", "model broken-zero produced a constant image"),
    ] {
        let out_dir = dir.join(format!("out-{name}"));
        let out = bin()
            .env("UPSCALED_MODELS", &models)
            .args([
                "process", "--model", name, "--scale", "2", "--format", "png",
            ])
            .args(["-o", s(&out_dir), s(&input)])
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        let line = err
            .lines()
            .find(|l| l.contains("photo.png") && l.contains("upscale failed"))
            .unwrap_or_else(|| panic!("{name}: no upscale failure: {err}"));
        assert!(line.contains(reason), "{line}");
        assert!(
            names_in(&out_dir).is_empty(),
            "{name}: an output was written"
        );
    }
    // The same photo through the intact model is fine (the check is not
    // what fails).
    let out_dir = dir.join("out-intact");
    let out = run(&[
        "process",
        "--model",
        "spanx2_ch48",
        "--format",
        "png",
        "-o",
        s(&out_dir),
        s(&input),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}
