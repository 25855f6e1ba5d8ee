//! Stage 6: put an output on disk atomically.
//!
//! The bytes go to a hidden temporary name in the destination folder, are fsynced,
//! then take their final name in one step, and the folder is fsynced so the new
//! name survives a power cut. A reader of the output folder never sees a partial
//! file; a crash leaves at most a `.upscaled-*.tmp` file, which readers ignore.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::durable::{self, Dir};
use crate::error::{Stage, StageError};

/// What to do when the destination name is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collision {
    /// Replace it (the daemon's own state, models and caches).
    Replace,
    /// Never replace; pick `name-1.ext`, `name-2.ext`... (every output).
    Rename,
}

/// Writes `bytes` to `dest` atomically and returns the path actually written.
/// The folder is created if needed; the work itself is `durable`'s.
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
    let name = dest.file_name().unwrap_or(OsStr::new("output"));
    let folder = Dir::open_trusted(dir).map_err(|e| err("cannot create the folder of", e))?;
    let tag = durable::temp_tag();
    match collision {
        Collision::Replace => {
            folder
                .write_replace(name, bytes, &tag)
                .map_err(|e| err("cannot write", e))?;
            Ok(dest.to_path_buf())
        }
        Collision::Rename => {
            let (placed, _) = durable::first_free(name, |n| folder.write_new(n, bytes, &tag))
                .map_err(|e| err("cannot write", e))?;
            Ok(dir.join(placed))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

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
