//! Where log lines go: the journal, stderr as text (with tile bars on a
//! terminal) or JSON.

/// The journal (structured fields) under systemd, else stderr as text or JSON.
pub fn init(json: bool) {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // The NATS client says every (re)connect at info; ours say it once.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn"));
    let registry = tracing_subscriber::registry();
    if upscaled::daemon::systemd::under_journal()
        && let Ok(journal) = upscaled::daemon::systemd::JournalLayer::new()
    {
        registry.with(journal.with_filter(filter)).init();
    } else if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .init();
    } else {
        // On a terminal, model runs also get a bar of tiles (super::progress);
        // the filter is per layer so that the tile events reach it.
        let tiles = tracing_subscriber::filter::Targets::new()
            .with_target("upscaled::tiles", tracing::Level::TRACE);
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(super::progress::LogWriter)
                    .with_target(false)
                    .with_filter(filter),
            )
            .with(super::progress::TileBars::default().with_filter(tiles))
            .init();
    }
}
