//! The per-file time limit (`limits.seconds_per_file`). It is checked between
//! stages and between rows of model tiles, the points where work can stop
//! cleanly; a file past its limit fails there with a reason and goes to
//! `failed/`. A single decoder or encoder call cannot be stopped halfway;
//! the decode limits bound those instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Stage, StageError};

/// One file's time limit. Clones share the time credited for waiting, so
/// every target of the file sees it.
#[derive(Clone, Debug)]
pub struct Deadline {
    start: Instant,
    limit: Duration,
    waited_ns: Arc<AtomicU64>,
}

impl Deadline {
    /// `limit` from now.
    pub fn after(limit: Duration) -> Self {
        Deadline {
            start: Instant::now(),
            limit,
            waited_ns: Arc::default(),
        }
    }

    /// Moves the deadline `wait` later: time spent queued behind another
    /// file's inference is not this file's.
    pub fn credit(&self, wait: Duration) {
        let ns = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
        self.waited_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// An error of `stage` once the deadline has passed.
    pub fn check(&self, stage: Stage) -> Result<(), StageError> {
        let waited = Duration::from_nanos(self.waited_ns.load(Ordering::Relaxed));
        if self.start.elapsed() <= self.limit + waited {
            return Ok(());
        }
        Err(StageError::new(
            stage,
            format!(
                "stopped: the file took longer than its {} s limit (limits.seconds_per_file)",
                self.limit.as_secs_f64()
            ),
        ))
    }
}

/// `deadline.check(stage)` where there is a deadline.
pub fn check(deadline: Option<&Deadline>, stage: Stage) -> Result<(), StageError> {
    deadline.map_or(Ok(()), |d| d.check(stage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_until_the_limit_then_names_it() {
        let d = Deadline::after(Duration::from_secs(60));
        assert!(d.check(Stage::Upscale).is_ok());
        let past = Deadline::after(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        let e = past.check(Stage::Upscale).unwrap_err();
        assert_eq!(e.stage, Stage::Upscale);
        assert!(e.cause.contains("seconds_per_file"), "{e}");
        assert!(check(None, Stage::Encode).is_ok());
    }

    #[test]
    fn waiting_for_another_file_is_credited_to_every_clone() {
        let past = Deadline::after(Duration::ZERO);
        let shared = past.clone();
        std::thread::sleep(Duration::from_millis(2));
        assert!(shared.check(Stage::Resize).is_err());
        past.credit(Duration::from_secs(60));
        assert!(shared.check(Stage::Resize).is_ok());
    }
}
