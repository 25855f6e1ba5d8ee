//! Durable, non-replacing file operations, relative to opened directories.
//!
//! Everything under a hot folder can be planted, swapped for a symlink or
//! removed at any moment by whoever can write there. So the daemon never
//! resolves a path inside one by name: it opens a trusted root (a folder the
//! administrator configured) and walks down one component at a time with
//! `O_NOFOLLOW`, then creates, renames and removes entries relative to the
//! opened directory. No rename here replaces an existing entry
//! (`renameat2(RENAME_NOREPLACE)`, or a hard link where that is missing), and
//! this module owns the one namer that picks `name-1.ext`, `name-2.ext`...

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

/// The longest file name the common Linux file systems take.
pub const NAME_MAX: usize = 255;

/// An opened directory and the path it was reached by (for messages only).
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Device and inode: what a file is, whatever its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// One plain name: not empty, no `/`, not `.` or `..`, no NUL.
pub fn is_plain_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    !b.is_empty() && b != b"." && b != b".." && !b.contains(&b'/') && !b.contains(&0)
}

impl Dir {
    /// Opens a folder the administrator configured, creating it if needed.
    /// Symlinks on the way are followed: the configuration is trusted.
    pub fn open_trusted(path: &Path) -> io::Result<Dir> {
        std::fs::create_dir_all(path)?;
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Opens `root` and then `rel` below it without following any symlink in
    /// `rel`; missing folders are created when `create` is set.
    pub fn open_below(root: &Path, rel: &Path, create: bool) -> io::Result<Dir> {
        Dir::open_trusted(root)?.open_path(rel, create)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Walks `rel` down from here, one plain component at a time.
    pub fn open_path(&self, rel: &Path, create: bool) -> io::Result<Dir> {
        let mut dir = self.try_clone()?;
        for part in rel.components() {
            match part {
                Component::Normal(name) => dir = dir.open_child(name, create)?,
                Component::CurDir => {}
                _ => {
                    return Err(invalid(format!(
                        "{} is not a plain relative path",
                        rel.display()
                    )));
                }
            }
        }
        Ok(dir)
    }

    fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
        })
    }

    /// Opens (or creates, mode 0755 less the umask) the sub-folder `name`,
    /// refusing a symlink.
    pub fn open_child(&self, name: &OsStr, create: bool) -> io::Result<Dir> {
        self.open_child_mode(name, create, 0o755)
    }

    pub fn open_child_mode(&self, name: &OsStr, create: bool, mode: u32) -> io::Result<Dir> {
        check_name(name)?;
        let path = self.path.join(name);
        let open = || rustix::fs::openat(&self.fd, name, dir_flags(), Mode::empty());
        let fd = match open() {
            Err(Errno::NOENT) if create => {
                match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(named(e, "cannot create the folder", &path)),
                }
                open()
            }
            other => other,
        }
        .map_err(|e| match e {
            Errno::LOOP | Errno::NOTDIR => io::Error::other(format!(
                "{} is a symlink or not a folder; it is not followed",
                path.display()
            )),
            e => named(e, "cannot open the folder", &path),
        })?;
        Ok(Dir { fd, path })
    }

    /// Opens the regular file `name` for reading; a symlink, FIFO or device is refused.
    pub fn open_file(&self, name: &OsStr) -> io::Result<File> {
        check_name(name)?;
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::LOOP => io::Error::other(format!(
                "{} is a symlink; it is not followed",
                self.path.join(name).display()
            )),
            e => e.into(),
        })?;
        let st = rustix::fs::fstat(&fd)?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(io::Error::other(format!(
                "{} is not a regular file",
                self.path.join(name).display()
            )));
        }
        Ok(File::from(fd))
    }

    /// The entry `name` as it is (a symlink is not followed), if it exists.
    pub fn stat(&self, name: &OsStr) -> Option<rustix::fs::Stat> {
        rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW).ok()
    }

    pub fn exists(&self, name: &OsStr) -> bool {
        self.stat(name).is_some()
    }

    /// This folder's own identity and ownership.
    pub fn fstat(&self) -> io::Result<rustix::fs::Stat> {
        Ok(rustix::fs::fstat(&self.fd)?)
    }

    pub fn file_id(&self, name: &OsStr) -> Option<FileId> {
        self.stat(name).map(|s| FileId {
            dev: s.st_dev,
            ino: s.st_ino,
        })
    }

    /// Flushes the folder itself, so new and removed names survive a power cut.
    pub fn sync(&self) -> io::Result<()> {
        Ok(rustix::fs::fsync(&self.fd)?)
    }

    /// Names in this folder (`.` and `..` left out).
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        let fd = rustix::fs::openat(&self.fd, ".", dir_flags(), Mode::empty())?;
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&fd)? {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsString::from_vec(name.to_vec()));
            }
        }
        Ok(names)
    }

    /// Removes the file `name` (never a folder, never through a symlink).
    pub fn remove(&self, name: &OsStr) -> io::Result<()> {
        check_name(name)?;
        Ok(rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())?)
    }

    /// Removes the empty sub-folder `name`.
    pub fn remove_dir(&self, name: &OsStr) -> io::Result<()> {
        check_name(name)?;
        Ok(rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR)?)
    }

    /// Creates `name` exclusively with `bytes` (a temp name first, fsynced,
    /// then linked into place without replacing), and flushes the folder.
    /// `AlreadyExists` when the name is taken. Returns the new file's identity.
    pub fn write_new(&self, name: &OsStr, bytes: &[u8], tag: &str) -> io::Result<FileId> {
        let temp = self.write_temp(bytes, tag)?;
        let result = self.rename_no_replace(&temp, self, name);
        if result.is_err() {
            let _ = self.remove(&temp);
        }
        result?;
        self.sync()?;
        self.file_id(name)
            .ok_or_else(|| io::Error::other("the new file vanished"))
    }

    /// Writes `name` atomically, replacing what is there (only for files this
    /// daemon owns: its own state, or an output it wrote before a crash).
    pub fn write_replace(&self, name: &OsStr, bytes: &[u8], tag: &str) -> io::Result<FileId> {
        check_name(name)?;
        let temp = self.write_temp(bytes, tag)?;
        if let Err(e) = rustix::fs::renameat(&self.fd, &temp, &self.fd, name) {
            let _ = self.remove(&temp);
            return Err(e.into());
        }
        self.sync()?;
        self.file_id(name)
            .ok_or_else(|| io::Error::other("the new file vanished"))
    }

    /// A fresh, fsynced temp file holding `bytes`; returns its name. Temp names
    /// are short and ours (`.upscaled-<tag>.tmp`), whatever the final name is.
    pub fn write_temp(&self, bytes: &[u8], tag: &str) -> io::Result<OsString> {
        for n in 0..100u32 {
            let temp = OsString::from(format!(".upscaled-{tag}-{n}.tmp"));
            let fd = match rustix::fs::openat(
                &self.fd,
                &temp,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            ) {
                Ok(fd) => fd,
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(named(e, "cannot create a temporary file in", &self.path)),
            };
            let mut file = File::from(fd);
            let written = file.write_all(bytes).and_then(|_| file.sync_all());
            if let Err(e) = written {
                let _ = self.remove(&temp);
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot write into {}: {e}", self.path.display()),
                ));
            }
            return Ok(temp);
        }
        Err(io::Error::other(format!(
            "no free temporary name in {}",
            self.path.display()
        )))
    }

    /// Moves `name` from here to `to_name` in `to` without ever replacing an
    /// existing entry (`AlreadyExists` then). Across file systems the bytes are
    /// copied (fsynced) and the original removed after.
    pub fn move_to(&self, name: &OsStr, to: &Dir, to_name: &OsStr) -> io::Result<()> {
        match self.rename_no_replace(name, to, to_name) {
            Err(e) if e.raw_os_error() == Some(Errno::XDEV.raw_os_error()) => {
                let mut bytes = Vec::new();
                self.open_file(name)?.read_to_end(&mut bytes)?;
                to.write_new(to_name, &bytes, "move")?;
                self.remove(name)?;
            }
            other => other?,
        }
        to.sync()?;
        self.sync()
    }

    /// `renameat2(RENAME_NOREPLACE)`; where the file system lacks it, a hard
    /// link (which also fails on a taken name) and an unlink.
    fn rename_no_replace(&self, name: &OsStr, to: &Dir, to_name: &OsStr) -> io::Result<()> {
        check_name(name)?;
        check_name(to_name)?;
        match rustix::fs::renameat_with(&self.fd, name, &to.fd, to_name, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(()),
            Err(Errno::INVAL) | Err(Errno::NOSYS) | Err(Errno::OPNOTSUPP) => {
                rustix::fs::linkat(&self.fd, name, &to.fd, to_name, AtFlags::empty())?;
                Ok(rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())?)
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Gives `name` its first free numbered form in `dir` by trying `op` on
/// `name`, `stem-1.ext`, `stem-2.ext`... until it does not report
/// `AlreadyExists`. This is the one namer: every "take a free name" goes here.
pub fn first_free<T>(
    name: &OsStr,
    mut op: impl FnMut(&OsStr) -> io::Result<T>,
) -> io::Result<(OsString, T)> {
    for n in 0..10_000 {
        let candidate = numbered(name, n);
        match op(&candidate) {
            Ok(v) => return Ok((candidate, v)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "no free name for {} after 10000 tries",
        Path::new(name).display()
    )))
}

/// `name` itself for 0, else `stem-n.ext`, the stem shortened (on a character
/// boundary where it is text) so the result fits in `NAME_MAX` bytes.
pub fn numbered(name: &OsStr, n: usize) -> OsString {
    numbered_within(name, n, NAME_MAX)
}

/// As `numbered`, for a name that will carry `reserve` more bytes (a suffix).
pub fn numbered_within(name: &OsStr, n: usize, max: usize) -> OsString {
    let bytes = name.as_bytes();
    let (stem, ext) = match bytes.iter().rposition(|&b| b == b'.') {
        Some(dot) if dot > 0 => (&bytes[..dot], &bytes[dot..]),
        _ => (bytes, &b""[..]),
    };
    let suffix = if n == 0 {
        String::new()
    } else {
        format!("-{n}")
    };
    let room = max.saturating_sub(suffix.len() + ext.len());
    let mut out = shorten(stem, room).to_vec();
    out.extend_from_slice(suffix.as_bytes());
    out.extend_from_slice(ext);
    OsString::from_vec(out)
}

/// The first `max` bytes of `bytes`, not cutting a UTF-8 character in two.
pub fn shorten(bytes: &[u8], max: usize) -> &[u8] {
    if bytes.len() <= max {
        return bytes;
    }
    let mut end = max;
    if std::str::from_utf8(bytes).is_ok() {
        while end > 0 && (bytes[end] & 0xC0) == 0x80 {
            end -= 1;
        }
    }
    &bytes[..end]
}

fn check_name(name: &OsStr) -> io::Result<()> {
    if is_plain_name(name) {
        Ok(())
    } else {
        Err(invalid(format!("{:?} is not a plain file name", name)))
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn named(e: Errno, what: &str, path: &Path) -> io::Error {
    let e = io::Error::from(e);
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Writes `bytes` to `dest` atomically (temporary name, fsync, rename),
/// replacing what is there, and creates the folder if needed. For the
/// daemon's own files (models, caches), never for outputs.
pub fn replace_file(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    Dir::open_trusted(dir)?.write_replace(name, bytes, &temp_tag())?;
    Ok(())
}

/// Temporary files carry the host and pid that write them, so a later start
/// can tell its own dead leftovers from a live writer on another host.
pub fn temp_tag() -> String {
    format!("{}-{}-w", host_name(), std::process::id())
}

pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().replace(['-', '/'], "_"))
        .unwrap_or_else(|_| "host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_names_fit_and_keep_the_extension() {
        assert_eq!(numbered(OsStr::new("a.png"), 0), "a.png");
        assert_eq!(numbered(OsStr::new("a.png"), 2), "a-2.png");
        assert_eq!(numbered(OsStr::new("noext"), 1), "noext-1");
        assert_eq!(numbered(OsStr::new(".hidden"), 1), ".hidden-1");
        let long = format!("{}.jpeg", "é".repeat(200));
        let n = numbered(OsStr::new(&long), 12);
        assert!(n.len() <= NAME_MAX);
        assert!(n.to_str().unwrap().ends_with("-12.jpeg"));
    }

    #[test]
    fn symlinks_are_never_followed_and_nothing_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let secret = tmp.path().join("secret");
        std::fs::create_dir(&secret).unwrap();
        std::fs::write(secret.join("key"), b"root only").unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(&secret, root.join("done")).unwrap();
        std::os::unix::fs::symlink(secret.join("key"), root.join("link.png")).unwrap();
        let dir = Dir::open_trusted(&root).unwrap();
        assert!(dir.open_child(OsStr::new("done"), true).is_err());
        assert!(Dir::open_below(&root, Path::new("done/x"), true).is_err());
        assert!(dir.open_file(OsStr::new("link.png")).is_err());
        assert!(dir.open_path(Path::new("../secret"), false).is_err());
        // A planted symlink at an output name is not written through.
        let err = dir
            .write_new(OsStr::new("link.png"), b"out", "t")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(secret.join("key")).unwrap(), b"root only");
        let (name, _) =
            first_free(OsStr::new("link.png"), |n| dir.write_new(n, b"out", "t")).unwrap();
        assert_eq!(name, "link-1.png");
        // Moves never replace.
        std::fs::write(root.join("a"), b"a").unwrap();
        std::fs::write(root.join("b"), b"b").unwrap();
        let e = dir
            .move_to(OsStr::new("a"), &dir, OsStr::new("b"))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(root.join("b")).unwrap(), b"b");
        // No temp files left behind.
        let names = dir.names().unwrap();
        assert!(
            names.iter().all(|n| !n.to_string_lossy().ends_with(".tmp")),
            "{names:?}"
        );
    }
}
