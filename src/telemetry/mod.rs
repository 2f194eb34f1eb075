//! Beside the path: logging.
//!
//! One `tracing` subscriber: human-readable or JSON lines on stderr, or the
//! systemd journal. Every verdict is one event whose fields repeat what a
//! reader needs (`verdict`, `rule`, `value`, `at`), because span fields do
//! not always reach the journal.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The level is not a valid filter.
    #[error("guard.log.level: {0}")]
    Filter(String),
    /// The journal socket is not there.
    #[error("guard.log.format journald: {0}")]
    Journald(std::io::Error),
}

/// Install the global subscriber. `RUST_LOG`, when set, overrides `level`.
pub fn init(format: LogFormat, level: &str) -> Result<(), Error> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v),
        _ => EnvFilter::try_new(level),
    }
    .map_err(|e| Error::Filter(e.to_string()))?;
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(false),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_current_span(true),
            )
            .try_init(),
        LogFormat::Journald => {
            // Fields under their own names (`VERDICT`, `RULE`,
            // `SRC_INSTANCE`), not the crate's default `F_` prefix, so that
            // `journalctl -u misp-guard VERDICT=block` works. None of the
            // guard's field names is one journald gives a meaning to.
            let layer = tracing_journald::layer()
                .map_err(Error::Journald)?
                .with_field_prefix(None);
            registry.with(layer).try_init()
        }
    };
    // Already installed (tests that start several guards): keep the first.
    let _ = result;
    Ok(())
}
