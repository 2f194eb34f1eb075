//! Beside the path: logging.
//!
//! One `tracing` subscriber: human-readable or JSON lines on stderr, or the
//! systemd journal. Every verdict is one event whose fields repeat what a
//! reader needs (`verdict`, `rule`, `value`, `at`, `mode`), because span
//! fields do not always reach the journal. Without a `guard.log.format` the
//! guard writes to the journal's native socket when systemd connected its
//! stderr to the journal (`JOURNAL_STREAM` names stderr's device and
//! inode), so that the fields arrive as fields and not inside one line of
//! text; otherwise text on stderr.
//!
//! [`metrics`]: the counters served on the admin listener.

pub mod metrics;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use crate::config::{LogFormat, LogSettings};

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

/// The format `settings` ask for: theirs when given, else the journal when
/// stderr is connected to it, else text.
pub fn format(settings: &LogSettings) -> LogFormat {
    if settings.format_given {
        return settings.format;
    }
    match std::env::var("JOURNAL_STREAM") {
        Ok(v) if stderr_is(&v) => LogFormat::Journald,
        _ => LogFormat::Text,
    }
}

/// Whether `journal_stream` (`DEVICE:INODE`, as systemd sets it) is the
/// file behind stderr. systemd passes the variable on to children whose
/// stderr may have been redirected since: only a match counts.
fn stderr_is(journal_stream: &str) -> bool {
    let Some((dev, ino)) = journal_stream.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    let file = match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => std::fs::File::from(fd),
        Err(_) => return false,
    };
    file.metadata()
        .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// Install the global subscriber for `settings` (see [`format`]). `RUST_LOG`,
/// when set, overrides the level. A journal found through `JOURNAL_STREAM`
/// that cannot be reached falls back to text on stderr (which systemd
/// still sends to the journal); a `format: "journald"` asked for fails.
pub fn init(settings: &LogSettings) -> Result<(), Error> {
    let mut format = format(settings);
    if format == LogFormat::Journald && !settings.format_given && tracing_journald::layer().is_err()
    {
        format = LogFormat::Text;
    }
    let level = settings.level.as_str();
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
                    // Colour only for a person at a terminal: a file or
                    // the journal would keep the escape codes.
                    .with_ansi(std::io::stderr().is_terminal())
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
