//! The per-file time limit (`limits.seconds_per_file`). It is checked between
//! stages and between rows of model tiles, the points where work can stop
//! cleanly; a file past its limit fails there with a reason and goes to
//! `failed/`. A single decoder or encoder call cannot be stopped halfway;
//! the decode limits bound those instead.

use std::time::{Duration, Instant};

use crate::error::{Stage, StageError};

#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    at: Instant,
    limit: Duration,
}

impl Deadline {
    /// `limit` from now.
    pub fn after(limit: Duration) -> Self {
        Deadline {
            at: Instant::now() + limit,
            limit,
        }
    }

    /// The same deadline, `wait` later: time spent queued behind another
    /// file's inference is not this file's.
    pub fn extended(self, wait: Duration) -> Self {
        Deadline {
            at: self.at + wait,
            ..self
        }
    }

    /// An error of `stage` once the deadline has passed.
    pub fn check(&self, stage: Stage) -> Result<(), StageError> {
        if Instant::now() <= self.at {
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
pub fn check(deadline: Option<Deadline>, stage: Stage) -> Result<(), StageError> {
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
        // Waiting for another file's inference moves it later.
        assert!(
            past.extended(Duration::from_secs(60))
                .check(Stage::Upscale)
                .is_ok()
        );
        assert!(check(None, Stage::Encode).is_ok());
    }
}
