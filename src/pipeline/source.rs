//! Before decode: an input's bytes, read within `limits.max_file_mib`.
//!
//! Whoever drops a file can drop anything: a FIFO that never ends, a folder, a
//! device, a sparse file of terabytes, a file that is still growing. Only a
//! regular file is read; its size is checked on the open handle (fstat, so it
//! is the file actually opened, not a name that may have been swapped since)
//! before a byte is read; and the read stops one byte past the limit, so a file
//! that grows meanwhile is refused too instead of filling the memory.

use std::fs::{File, Metadata};
use std::io::Read;
use std::path::Path;

use crate::error::{Stage, StageError};
use crate::pipeline::decode::DecodeLimits;

const MIB: u64 = 1024 * 1024;

/// `limits.max_file_mib` in bytes: the `max_bytes` the readers below take.
pub fn max_bytes(limits: &DecodeLimits) -> u64 {
    limits.max_file_mib.saturating_mul(MIB)
}

/// Reads the whole of an input the caller has already opened.
///
/// - `file`: a fresh handle (read from its current position, normally 0). The
///   daemon opens it itself (relative to its work folder, `O_NOFOLLOW`, and
///   `O_NONBLOCK` so that opening a FIFO does not wait for a writer).
/// - `shown`: the path the error messages name (the name the user knows).
/// - `max_bytes`: the limit, usually [`max_bytes`]`(&spec.limits)`.
///
/// Errors are `Stage::Read` and name `shown`: not a regular file (FIFO,
/// folder, device, socket), over the limit by its size before reading, grown
/// past the limit while being read, or an I/O error.
pub fn read_open_file(file: &File, shown: &Path, max_bytes: u64) -> Result<Vec<u8>, StageError> {
    let meta = file.metadata().map_err(|e| {
        StageError::new(
            Stage::Read,
            format!("cannot examine {}: {e}", shown.display()),
        )
    })?;
    check_regular(&meta, shown)?;
    if meta.len() > max_bytes {
        return Err(StageError::new(
            Stage::Read,
            format!(
                "{} is {}, over the limit of {} (limits.max_file_mib)",
                shown.display(),
                size_text(meta.len()),
                size_text(max_bytes)
            ),
        ));
    }
    // The size was within the limit; the bounded reader keeps it so if the
    // file grows (or lied) while it is read.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| {
            StageError::new(Stage::Read, format!("cannot read {}: {e}", shown.display()))
        })?;
    if bytes.len() as u64 > max_bytes {
        return Err(StageError::new(
            Stage::Read,
            format!(
                "{} grew past the limit of {} (limits.max_file_mib) while it was read",
                shown.display(),
                size_text(max_bytes)
            ),
        ));
    }
    Ok(bytes)
}

/// Opens `path` (following symlinks: the command line's own paths) without
/// waiting on a FIFO, then reads it as [`read_open_file`] does.
pub fn open_and_read(path: &Path, max_bytes: u64) -> Result<Vec<u8>, StageError> {
    let cannot = |e: std::io::Error| {
        StageError::new(Stage::Read, format!("cannot open {}: {e}", path.display()))
    };
    // A clear message before opening; the fstat in read_open_file is the
    // check that counts (the name may change in between).
    check_regular(&std::fs::metadata(path).map_err(cannot)?, path)?;
    let file = open_nonblocking(path).map_err(cannot)?;
    read_open_file(&file, path, max_bytes)
}

fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)
}

/// `O_NONBLOCK`: opening a FIFO does not wait for a writer.
const O_NONBLOCK: i32 = rustix::fs::OFlags::NONBLOCK.bits() as i32;

fn check_regular(meta: &Metadata, shown: &Path) -> Result<(), StageError> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_file() {
        return Ok(());
    }
    let what = if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_dir() {
        "a folder"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a special file"
    };
    Err(StageError::new(
        Stage::Read,
        format!(
            "{} is {what}, not a regular file; only regular files are read",
            shown.display()
        ),
    ))
}

fn size_text(bytes: u64) -> String {
    if (bytes >= MIB && bytes.is_multiple_of(MIB)) || bytes >= 16 * MIB {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_within_the_limit_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(open_and_read(&path, 10).unwrap(), b"0123456789");
        let e = open_and_read(&path, 9).unwrap_err();
        assert_eq!(e.stage, Stage::Read);
        assert!(e.cause.contains("a.png is 10 bytes"), "{}", e.cause);
        assert!(e.cause.contains("limits.max_file_mib"), "{}", e.cause);
    }

    #[test]
    fn a_sparse_giant_is_refused_by_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.png");
        File::create(&path).unwrap().set_len(3 << 30).unwrap();
        let e = open_and_read(&path, max_bytes(&DecodeLimits::default())).unwrap_err();
        assert!(
            e.cause.contains("3072 MiB, over the limit of 256 MiB"),
            "{}",
            e.cause
        );
    }

    #[test]
    fn reading_stops_past_the_limit_whatever_the_size_said() {
        // /proc files say 0 bytes and hold more: as a file that grows after
        // the fstat, only the bounded read stops it.
        let path = Path::new("/proc/self/status");
        let file = File::open(path).unwrap();
        assert_eq!(file.metadata().unwrap().len(), 0);
        let e = read_open_file(&file, path, 100).unwrap_err();
        assert!(
            e.cause.contains("grew past the limit of 100 bytes"),
            "{}",
            e.cause
        );
    }

    #[test]
    fn folders_and_fifos_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let e = open_and_read(dir.path(), 1 << 20).unwrap_err();
        assert!(e.cause.contains("a folder"), "{}", e.cause);
        let fifo = dir.path().join("pipe.png");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let e = open_and_read(&fifo, 1 << 20).unwrap_err();
            assert!(e.cause.contains("FIFO"), "{}", e.cause);
            // The handle path: opened without blocking, refused by fstat.
            let file = open_nonblocking(&fifo).unwrap();
            let e = read_open_file(&file, &fifo, 1 << 20).unwrap_err();
            assert!(e.cause.contains("pipe.png is a FIFO"), "{}", e.cause);
        }
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = open_and_read(Path::new("/nonexistent/x.png"), 1).unwrap_err();
        assert_eq!(e.stage, Stage::Read);
        assert!(e.cause.contains("/nonexistent/x.png"), "{}", e.cause);
    }
}
