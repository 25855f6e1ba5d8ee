//! Stage 6: put an output on disk atomically.
//!
//! The bytes go to a hidden temporary name in the destination folder, are fsynced,
//! then take their final name in one step, and the folder is fsynced so the new
//! name survives a power cut. A reader of the output folder never sees a partial
//! file; a crash leaves at most a `.upscaled-*.tmp` file, which readers ignore.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Stage, StageError};

/// What to do when the destination name is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collision {
    /// Replace it (the CLI: re-running a command refreshes its outputs).
    Replace,
    /// Never replace; pick `name-1.ext`, `name-2.ext`... (the daemon).
    Rename,
}

/// Writes `bytes` to `dest` atomically and returns the path actually written.
pub fn write_atomic(
    dest: &Path,
    bytes: &[u8],
    collision: Collision,
) -> Result<PathBuf, StageError> {
    let err = |what: &str, e: std::io::Error| {
        StageError::new(Stage::Write, format!("{what} {}: {e}", dest.display()))
    };
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| err("cannot create the folder of", e))?;
    let name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("output");
    let temp = dir.join(format!("{}{name}.tmp", temp_prefix()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)
            .map_err(|e| err("cannot create a temporary file for", e))?;
        file.write_all(bytes).map_err(|e| err("cannot write", e))?;
        file.sync_all().map_err(|e| err("cannot flush", e))?;
        drop(file);
        let final_path = match collision {
            Collision::Replace => {
                fs::rename(&temp, dest).map_err(|e| err("cannot rename into", e))?;
                dest.to_path_buf()
            }
            Collision::Rename => {
                link_to_free_name(&temp, dest).map_err(|e| err("cannot link", e))?
            }
        };
        sync_dir(dir).map_err(|e| err("cannot flush the folder of", e))?;
        Ok(final_path)
    })();
    let _ = fs::remove_file(&temp); // gone already after a rename; cleanup otherwise
    result
}

/// A hard link fails when the name exists, so no existing file is ever replaced,
/// even by a second process racing for the same name.
fn link_to_free_name(temp: &Path, dest: &Path) -> std::io::Result<PathBuf> {
    let stem = dest
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("output");
    let ext = dest.extension().and_then(|s| s.to_str());
    for n in 0..10_000 {
        let candidate = if n == 0 {
            dest.to_path_buf()
        } else {
            let name = match ext {
                Some(ext) => format!("{stem}-{n}.{ext}"),
                None => format!("{stem}-{n}"),
            };
            dest.with_file_name(name)
        };
        match fs::hard_link(temp, &candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free name after 10000 tries"))
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Temporary files carry the host and pid that write them, so a later start
/// can tell its own dead leftovers from a live writer on another host.
fn temp_prefix() -> String {
    format!(".upscaled-{}-{}-", host_name(), std::process::id())
}

pub fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().replace(['-', '/'], "_"))
        .unwrap_or_else(|_| "host".into())
}

/// Removes temporary files left under `dir` by writers on this host that no
/// longer run (a SIGKILL or power cut between create and rename). Returns how many.
pub fn sweep_stale_temps(dir: &Path) -> usize {
    let prefix = format!(".upscaled-{}-", host_name());
    let mut removed = 0;
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            removed += sweep_stale_temps(&path);
            continue;
        }
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if name.ends_with(".tmp") && !alive && fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_mode_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a.webp");
        fs::write(&dest, b"old").unwrap();
        let written = write_atomic(&dest, b"new", Collision::Rename).unwrap();
        assert_eq!(written, dir.path().join("a-1.webp"));
        assert_eq!(fs::read(&dest).unwrap(), b"old");
        assert_eq!(fs::read(&written).unwrap(), b"new");
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn replace_mode_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sub/a.png");
        write_atomic(&dest, b"one", Collision::Replace).unwrap();
        write_atomic(&dest, b"two", Collision::Replace).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"two");
    }
}
