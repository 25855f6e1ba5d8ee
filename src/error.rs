//! Errors of the pipeline: every failure names the file, the stage and the cause.

use std::fmt;
use std::path::PathBuf;

/// The stages of the pipeline, in the order a file goes through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Read,
    Decode,
    Crop,
    Classify,
    Route,
    Upscale,
    Resize,
    Encode,
    Write,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Stage::Read => "read",
            Stage::Decode => "decode",
            Stage::Crop => "crop",
            Stage::Classify => "classify",
            Stage::Route => "route",
            Stage::Upscale => "upscale",
            Stage::Resize => "resize",
            Stage::Encode => "encode",
            Stage::Write => "write",
        };
        f.write_str(name)
    }
}

impl Stage {
    /// The stage that follows this one.
    pub fn next(self) -> Option<Stage> {
        use Stage::*;
        let order = [
            Read, Decode, Crop, Classify, Route, Upscale, Resize, Encode, Write,
        ];
        let i = order.iter().position(|s| *s == self)?;
        order.get(i + 1).copied()
    }
}

thread_local! {
    static CURRENT_STAGE: std::cell::Cell<Stage> = const { std::cell::Cell::new(Stage::Read) };
}

/// Notes the stage this thread is in, so a panic can be labelled with it.
pub fn set_stage(stage: Stage) {
    CURRENT_STAGE.with(|s| s.set(stage));
}

/// The stage this thread last said it was in.
pub fn current_stage() -> Stage {
    CURRENT_STAGE.with(|s| s.get())
}

/// The text of a panic's payload.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// A stage's failure, before it is tied to a file.
#[derive(Debug, thiserror::Error)]
#[error("{stage}: {cause}")]
pub struct StageError {
    pub stage: Stage,
    pub cause: String,
}

impl StageError {
    pub fn new(stage: Stage, cause: impl Into<String>) -> Self {
        StageError {
            stage,
            cause: cause.into(),
        }
    }
}

/// A path for a log line or a reason file: control characters (a newline,
/// an escape sequence) in a name are shown escaped, so a name cannot forge
/// a line or recolour a terminal.
pub fn printable(path: &std::path::Path) -> String {
    let text = path.to_string_lossy();
    if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        text.into_owned()
    }
}

/// A failed file: what `failed/<name>.error.txt` and the log line say.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {stage} failed: {cause}", file = printable(.file))]
pub struct JobError {
    pub file: PathBuf,
    pub stage: Stage,
    pub cause: String,
}

impl JobError {
    pub fn from_stage(file: impl Into<PathBuf>, err: StageError) -> Self {
        JobError {
            file: file.into(),
            stage: err.stage,
            cause: err.cause,
        }
    }
}

/// Runs decoder or encoder code that may panic on hostile input and turns a panic
/// into an error of that stage, so one bad file never takes the process down.
pub fn catch_panic<T>(
    stage: Stage,
    work: impl FnOnce() -> Result<T, StageError>,
) -> Result<T, StageError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(result) => result,
        Err(payload) => Err(StageError::new(
            stage,
            format!(
                "internal error in the codec: {}",
                panic_text(payload.as_ref())
            ),
        )),
    }
}

/// The closest known name within a small edit distance, for "did you mean".
pub fn did_you_mean<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let next = (row[j] + 1).min(row[j + 1] + 1).min(prev + cost);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}
