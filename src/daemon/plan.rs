//! Output planning: the names of a job's outputs are fixed once, before
//! anything is written, and kept in the job's record, so a re-run after a
//! crash writes the same files instead of adding `-1` copies.
//!
//! Every planned name is one plain file-name component below the rule's
//! output folder; nothing read back from a record is used before it is
//! checked again (`is_plain_name`), so even a damaged record cannot point
//! outside the output folder.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::claim::PlannedOutput;
use crate::config::{FolderRule, OutputTarget};
use crate::durable::{self, Dir};

/// The outputs of `rel` under `rule`, per target and format. Names already
/// taken in the output folder (by another source's outputs, or anything else)
/// get `-1`, `-2`... here; the write itself never replaces either.
pub fn plan(rule: &FolderRule, rel: &Path, output: &Dir) -> io::Result<Vec<Vec<PlannedOutput>>> {
    let sub = rel.parent().unwrap_or(Path::new(""));
    let out_dir = output.open_path(sub, false).ok();
    let stem = rel.file_stem().unwrap_or(OsStr::new("image"));
    let mut taken: Vec<OsString> = Vec::new();
    let mut plan = Vec::new();
    for target in &rule.targets {
        let mut outputs = Vec::new();
        for format in &target.formats {
            let wanted = output_name(rule, target, stem, format.extension());
            let mut n = 0;
            let name = loop {
                let candidate = durable::numbered(&wanted, n);
                let busy = taken.contains(&candidate)
                    || out_dir.as_ref().is_some_and(|d| d.exists(&candidate));
                if !busy {
                    break candidate;
                }
                n += 1;
            };
            taken.push(name.clone());
            outputs.push(PlannedOutput {
                dir: sub.as_os_str().as_bytes().to_vec(),
                name: name.as_bytes().to_vec(),
                base: wanted.as_bytes().to_vec(),
                ids: Vec::new(),
            });
        }
        plan.push(outputs);
    }
    Ok(plan)
}

/// The file name of one output, from the folder's name template (which the
/// config already gave a `{preset}` when the folder has several targets).
fn output_name(rule: &FolderRule, target: &OutputTarget, stem: &OsStr, ext: &str) -> OsString {
    rule.name_template.render(stem, target, ext)
}

/// A record's output location, checked again before use.
pub fn checked(output: &PlannedOutput) -> io::Result<(PathBuf, OsString)> {
    let dir = output.dir();
    let plain = dir
        .components()
        .all(|c| matches!(c, Component::Normal(n) if durable::is_plain_name(n)));
    if !plain || !durable::is_plain_name(output.name()) {
        return Err(io::Error::other(format!(
            "the job record names {:?} in {:?}, which is not inside the output folder",
            output.name(),
            dir
        )));
    }
    Ok((dir.to_path_buf(), output.name().to_os_string()))
}
