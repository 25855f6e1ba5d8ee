//! Progress on a terminal: one bar for the files of `process`, and one per
//! file while a model runs over its tiles, with an ETA from the measured rate.
//! The tile loop only emits `upscaled::tiles` trace events; this layer turns
//! them into bars. Off a terminal (pipes, systemd) nothing but the log lines.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock};
use std::thread::ThreadId;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;

/// Tiles a model needs before its bar is worth drawing (a short job ends first).
const MIN_TILES: u64 = 4;

/// The bars, when stderr is a terminal.
pub fn bars() -> Option<&'static MultiProgress> {
    static BARS: OnceLock<Option<MultiProgress>> = OnceLock::new();
    BARS.get_or_init(|| std::io::stderr().is_terminal().then(MultiProgress::new))
        .as_ref()
}

/// A bar for the whole `process` run (None: one file, or not a terminal).
pub fn files_bar(files: usize) -> Option<ProgressBar> {
    let bars = bars().filter(|_| files > 1)?;
    let bar = bars.add(ProgressBar::new(files as u64));
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} files, {elapsed} elapsed, ~{eta} left")
            .expect("valid template"),
    );
    Some(bar)
}

/// Log output that first lifts the bars off the screen, so lines and bars
/// do not overwrite each other.
pub struct LogWriter;

pub struct LineBuffer(Vec<u8>);

impl Write for LineBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        let line = std::mem::take(&mut self.0);
        let write = || {
            let _ = std::io::stderr().write_all(&line);
        };
        match bars() {
            Some(b) => b.suspend(write),
            None => write(),
        }
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LineBuffer;

    fn make_writer(&'a self) -> LineBuffer {
        LineBuffer(Vec::new())
    }
}

#[derive(Default)]
struct TileFields {
    done: u64,
    total: u64,
    model: String,
}

impl Visit for TileFields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "done" => self.done = value,
            "total" => self.total = value,
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "model" {
            self.model = value.to_string();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "model" {
            self.model = format!("{value:?}");
        }
    }
}

/// One bar per thread running a model, keyed by the thread that emits.
#[derive(Default)]
pub struct TileBars {
    running: Mutex<HashMap<ThreadId, ProgressBar>>,
}

impl<S: tracing::Subscriber> Layer<S> for TileBars {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let Some(bars) = bars() else { return };
        if event.metadata().target() != "upscaled::tiles" {
            return;
        }
        let mut f = TileFields::default();
        event.record(&mut f);
        if f.total < MIN_TILES {
            return;
        }
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        let me = std::thread::current().id();
        let bar = running.entry(me).or_insert_with(|| {
            let bar = bars.add(ProgressBar::new(f.total));
            bar.set_style(
                ProgressStyle::with_template(
                    "  {msg} {bar:30} {pos}/{len} tiles, {elapsed} elapsed, ~{eta} left",
                )
                .expect("valid template"),
            );
            bar.set_message(f.model.clone());
            bar
        });
        if bar.length() != Some(f.total) {
            bar.set_length(f.total);
            bar.set_message(f.model);
            bar.reset();
        }
        bar.set_position(f.done);
        if f.done >= f.total
            && let Some(bar) = running.remove(&me)
        {
            bar.finish_and_clear();
            bars.remove(&bar);
        }
    }
}
