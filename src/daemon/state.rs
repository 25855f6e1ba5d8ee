//! The daemon's own folder in a hot folder, `<hot>/.upscaled/`, and the roots
//! of a rule's folders, opened so that nothing planted can redirect them.
//!
//! Whoever can write the hot folder can replace `.upscaled` or anything in it
//! at any moment. The folder is therefore created mode 0700 and, every time it
//! is opened, must be a real directory (not a symlink) owned by the daemon's
//! own user with no group or other write bit: a user who can write the hot
//! folder but is not the daemon cannot put a single file inside it. A folder
//! that fails the check is moved aside (it stays in the hot folder, hidden)
//! and a fresh one is made.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::config::FolderRule;
use crate::durable::Dir;

pub const STATE_NAME: &str = ".upscaled";

/// The hot folder itself (configured, so trusted).
pub fn hot_dir(rule: &FolderRule) -> io::Result<Dir> {
    Dir::open_trusted(&rule.path)
}

/// Opens (creating or replacing when untrusted) `<hot>/.upscaled`.
pub fn open_state(rule: &FolderRule) -> io::Result<Dir> {
    let hot = hot_dir(rule)?;
    open_private_child(&hot, OsStr::new(STATE_NAME))
}

/// Opens `name` in `parent` as a private folder of this daemon, creating it
/// 0700; an entry there that is not ours is moved aside first.
pub fn open_private_child(parent: &Dir, name: &OsStr) -> io::Result<Dir> {
    if let Some(st) = parent.stat(name) {
        let is_dir = rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir();
        if !is_dir || !stat_is_ours(&st) {
            move_aside(parent, name)?;
        }
    }
    let dir = parent.open_child_mode(name, true, 0o700)?;
    if !is_ours(&dir)? {
        // Swapped between the look and the open: refuse this time.
        return Err(io::Error::other(format!(
            "{} is not private to this daemon",
            dir.path().display()
        )));
    }
    // Older versions made it 0755: ours, but tighten it.
    let _ = rustix::fs::fchmod(dir.as_fd(), rustix::fs::Mode::from_raw_mode(0o700));
    Ok(dir)
}

fn move_aside(parent: &Dir, name: &OsStr) -> io::Result<()> {
    let aside = format!(
        "{}.untrusted-{}",
        name.to_string_lossy(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    tracing::error!(
        folder = %parent.path().join(name).display(),
        "not made by this daemon (a symlink, a file, another owner, or writable by others): moved aside to {aside}, not used"
    );
    parent.move_to(name, parent, OsStr::new(&aside))
}

fn stat_is_ours(st: &rustix::fs::Stat) -> bool {
    st.st_uid == rustix::process::geteuid().as_raw() && st.st_mode & 0o022 == 0
}

fn is_ours(dir: &Dir) -> io::Result<bool> {
    Ok(stat_is_ours(&dir.fstat()?))
}

/// Opens one of a rule's destination roots (output, done, failed). A root the
/// administrator configured outside every hot folder is trusted as written;
/// the part of a root that lies inside a hot folder (the default `done/` and
/// `failed/`) is walked without following symlinks, since users can replace it.
pub fn open_root(root: &Path, hot_folders: &[PathBuf]) -> io::Result<Dir> {
    let inside = hot_folders
        .iter()
        .filter(|hot| root.starts_with(hot))
        .max_by_key(|hot| hot.as_os_str().len());
    match inside {
        Some(hot) => Dir::open_below(hot, root.strip_prefix(hot).unwrap_or(root), true),
        None => Dir::open_trusted(root),
    }
}

/// As `open_root`, creating nothing (a folder that is gone stays gone).
pub fn open_root_existing(root: &Path, hot_folders: &[PathBuf]) -> io::Result<Dir> {
    let inside = hot_folders
        .iter()
        .filter(|hot| root.starts_with(hot))
        .max_by_key(|hot| hot.as_os_str().len());
    match inside {
        Some(hot) => {
            Dir::open_trusted(hot)?.open_path(root.strip_prefix(hot).unwrap_or(root), false)
        }
        None => {
            if !root.is_dir() {
                return Err(io::Error::new(io::ErrorKind::NotFound, "gone"));
            }
            Dir::open_trusted(root)
        }
    }
}

/// Removes temporary files left under `dir` (at most `depth` folders down,
/// no symlink followed) by writers on this host that no longer run: a
/// SIGKILL or power cut between create and rename. Returns how many.
pub fn sweep_stale_temps(dir: &Dir, depth: usize) -> usize {
    let prefix = format!(".upscaled-{}-", crate::durable::host_name());
    let mut removed = 0;
    for name in dir.names().unwrap_or_default() {
        let text = name.to_string_lossy();
        if let Some(rest) = text.strip_prefix(&prefix) {
            let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
            let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
            if text.ends_with(".tmp") && !alive && dir.remove(&name).is_ok() {
                removed += 1;
            }
            continue;
        }
        let is_dir = dir
            .stat(&name)
            .is_some_and(|s| rustix::fs::FileType::from_raw_mode(s.st_mode).is_dir());
        if depth > 0
            && is_dir
            && let Ok(sub) = dir.open_child(&name, false)
        {
            removed += sweep_stale_temps(&sub, depth - 1);
        }
    }
    removed
}
