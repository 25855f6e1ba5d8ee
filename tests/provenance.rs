//! Provenance: an output a neural network contributed pixels to carries the
//! IPTC DigitalSourceType for AI-edited media in XMP, in every output format,
//! read back by exiftool; an output no network touched carries none.
//! `metadata: keep` writes the sRGB profile the pixels are in.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const FORMATS: [&str; 4] = ["png", "webp", "avif", "jpeg"];

fn exiftool() -> Option<&'static str> {
    let found = Command::new("exiftool")
        .arg("-ver")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!(
            "SKIPPED (exiftool part): exiftool is not installed (Debian: libimage-exiftool-perl; \
             `make setup` installs it as root); only the byte-level checks ran"
        );
    }
    found.then_some("exiftool")
}

/// A 96 px crop of a real photo, so that a 4x model runs for a 384 px target.
fn small_photo(dir: &Path) -> PathBuf {
    let photo = load_rgb(&samples().join("astronaut.png"));
    let crop = image::imageops::crop_imm(&photo, 160, 60, 96, 96).to_image();
    let path = dir.join("astronaut crop.png");
    crop.save(&path).unwrap();
    path
}

fn process(input: &Path, out: &Path, extra: &[&str]) -> Vec<PathBuf> {
    let mut args = vec!["process", "-o", out.to_str().unwrap()];
    for f in FORMATS {
        args.extend(["--format", f]);
    }
    args.extend_from_slice(extra);
    args.push(input.to_str().unwrap());
    let result = run(&args);
    assert!(result.status.success(), "{}", stderr(&result));
    let mut files = files_under(out);
    files.sort();
    assert_eq!(files.len(), FORMATS.len(), "{files:?}");
    files
}

/// exiftool's view of one tag (`-TAG` in its `-s3` short form), or None.
fn tag(tool: &str, file: &Path, name: &str) -> Option<String> {
    let out = Command::new(tool)
        .args(["-s3", &format!("-{name}")])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "exiftool on {}", file.display());
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn a_models_output_says_it_was_ai_edited_in_every_format() {
    models(&["spanx4_ch48"]);
    let dir = tempfile::tempdir().unwrap();
    let input = small_photo(dir.path());
    let out = dir.path().join("out");
    let files = process(&input, &out, &["--model", "spanx4_ch48", "--width", "384"]);
    let tool = exiftool();
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            contains(&bytes, "compositeWithTrainedAlgorithmicMedia"),
            "{} has no provenance packet",
            f.display()
        );
        let Some(tool) = tool else { continue };
        assert_eq!(
            tag(tool, f, "XMP-iptcExt:DigitalSourceType").as_deref(),
            Some(
                "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
            ),
            "{}",
            f.display()
        );
        let creator = tag(tool, f, "XMP-xmp:CreatorTool").unwrap_or_default();
        assert!(
            creator.contains("spanx4_ch48") && creator.contains("4x"),
            "{creator}"
        );
        // The rewritten containers still hold the image exiftool expects.
        assert_eq!(
            tag(tool, f, "ImageSize").as_deref(),
            Some("384x384"),
            "{}",
            f.display()
        );
        let warning = tag(tool, f, "Warning");
        assert!(warning.is_none(), "{}: {warning:?}", f.display());
    }
    // The decoders we ship read every format we tagged (AVIF: avifdec when present).
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e != "avif"))
    {
        let img = image::open(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!((img.width(), img.height()), (384, 384));
    }
    let avif = files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e == "avif"))
        .unwrap();
    if let Ok(o) = Command::new("avifdec")
        .arg(avif)
        .arg(dir.path().join("back.png"))
        .output()
    {
        assert!(
            o.status.success(),
            "avifdec: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            load_rgb(&dir.path().join("back.png")).dimensions(),
            (384, 384)
        );
    }
}

#[test]
fn no_model_no_label() {
    let dir = tempfile::tempdir().unwrap();
    let input = small_photo(dir.path());
    let tool = exiftool();
    // The no-invention mode, interpolation only (--scale 1), and a target
    // smaller than the source.
    for (i, extra) in [
        ["--model", "none", "--width", "384"],
        ["--scale", "1", "--width", "384"],
        ["--scale", "auto", "--width", "64"],
    ]
    .iter()
    .enumerate()
    {
        let out = dir.path().join(format!("out{i}"));
        for f in process(&input, &out, extra) {
            let bytes = std::fs::read(&f).unwrap();
            assert!(!contains(&bytes, "DigitalSourceType"), "{}", f.display());
            if let Some(tool) = tool {
                assert_eq!(tag(tool, &f, "XMP-iptcExt:DigitalSourceType"), None);
            }
        }
    }
}

#[test]
fn metadata_keep_writes_the_srgb_profile() {
    let Some(tool) = exiftool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = small_photo(dir.path());
    let out = dir.path().join("out");
    for f in process(
        &input,
        &out,
        &["--scale", "1", "--width", "128", "--metadata", "keep"],
    ) {
        let is_png = f.extension().is_some_and(|e| e == "png");
        let profile = if is_png {
            tag(tool, &f, "PNG:SRGBRendering")
        } else {
            tag(tool, &f, "ICC_Profile:ProfileDescription")
        };
        let avif = f.extension().is_some_and(|e| e == "avif");
        if avif {
            // AVIF says sRGB in its colour box (nclx), not with a profile.
            continue;
        }
        assert!(profile.is_some(), "{} names no colour space", f.display());
        if !is_png {
            assert!(profile.unwrap().contains("sRGB"), "{}", f.display());
        }
    }
}
