//! Reload outcomes: written by the running guard, awaited by
//! `misp-guard reload`.
//!
//! The file `reload.json` in the runtime directory holds the guard's pid,
//! the number of the last reload (0 before any) and its state. It is
//! replaced whole (a temporary file renamed over it), so a reader never
//! sees half of it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

const FILE: &str = "reload.json";

/// How often `misp-guard reload` looks at the file while it waits.
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum State {
    /// Started; no reload yet.
    Ready,
    /// Reload `generation` is under way.
    Reloading,
    /// Reload `generation` is in force.
    Reloaded,
    /// Reload `generation` was refused; the previous config stays.
    Refused,
}

#[derive(Debug, Serialize, Deserialize)]
struct Report {
    pid: u32,
    generation: u64,
    state: State,
    message: String,
}

/// The running guard's side: where it reports, and the reload count.
#[derive(Debug)]
pub struct Reports {
    file: Option<PathBuf>,
    generation: u64,
}

impl Reports {
    /// Report in `$RUNTIME_DIRECTORY` (its first entry) when systemd set
    /// it; otherwise nowhere.
    pub fn from_env() -> Reports {
        let dir = std::env::var_os("RUNTIME_DIRECTORY")
            .and_then(|v| std::env::split_paths(&v).next())
            .filter(|d| !d.as_os_str().is_empty());
        Reports {
            file: dir.map(|d| d.join(FILE)),
            generation: 0,
        }
    }

    /// Started and serving.
    pub fn ready(&mut self) {
        self.write(State::Ready, "started");
    }

    /// A reload begins.
    pub fn begin(&mut self) {
        self.generation += 1;
        self.write(State::Reloading, "");
    }

    /// The reload that began is over: in force, or refused with a reason.
    pub fn finish(&mut self, outcome: Result<&str, &str>) {
        match outcome {
            Ok(m) => self.write(State::Reloaded, m),
            Err(m) => self.write(State::Refused, m),
        }
    }

    /// The number of the last reload (0 before any).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn write(&self, state: State, message: &str) {
        let Some(file) = &self.file else {
            return;
        };
        let report = Report {
            pid: std::process::id(),
            generation: self.generation,
            state,
            message: message.to_owned(),
        };
        if let Err(e) = replace(file, &report) {
            tracing::warn!(file = %file.display(), "cannot write the reload outcome: {e}");
        }
    }
}

fn replace(file: &Path, report: &Report) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer(&mut tmp, report)?;
    tmp.write_all(b"\n")?;
    tmp.persist(file).map_err(|e| e.error)?;
    Ok(())
}

/// Why `misp-guard reload` did not see the new config in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// `--pid` 0 would signal a whole process group.
    #[error("--pid {0}: not a process id")]
    BadPid(u32),
    /// No report file: the guard is not running, not ready yet, or not
    /// under a unit with `RuntimeDirectory=`.
    #[error("{}: no reload report ({source}); is misp-guard running under its systemd unit (RuntimeDirectory=misp-guard) and ready?", .file.display())]
    NoReport {
        /// The file looked for.
        file: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// The report is not one the guard writes.
    #[error("{}: not a reload report: {reason}", .file.display())]
    BadReport {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The report is another process's.
    #[error("{}: written by pid {found}, not by pid {pid}", .file.display())]
    OtherProcess {
        /// The file.
        file: PathBuf,
        /// The pid asked for.
        pid: u32,
        /// The pid in the report.
        found: u32,
    },
    /// SIGHUP could not be sent.
    #[error("cannot send SIGHUP to pid {pid}: {source}")]
    Signal {
        /// The pid.
        pid: u32,
        /// The error.
        #[source]
        source: nix::Error,
    },
    /// The process went away while we waited.
    #[error("pid {0} exited before the reload was over")]
    Exited(u32),
    /// No outcome within the time allowed.
    #[error("no reload outcome from pid {pid} within {} s", .after.as_secs())]
    TimedOut {
        /// The pid.
        pid: u32,
        /// How long we waited.
        after: Duration,
    },
    /// The guard refused the new config; the old one stays in force.
    #[error("reload refused, the running config stays in force: {0}")]
    Refused(String),
}

/// Send SIGHUP to the guard `pid` that reports in `dir`, and wait (at most
/// `timeout`) for the outcome of a reload that began after the signal. The
/// message of a reload in force comes back.
pub fn request_reload(pid: u32, dir: &Path, timeout: Duration) -> Result<String, ReloadError> {
    let target = i32::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .map(Pid::from_raw)
        .ok_or(ReloadError::BadPid(pid))?;
    let file = dir.join(FILE);
    let before = read(&file, pid)?;
    // A reload under way when we looked may have read the config before the
    // change we are asked to apply; the signal then starts the next one.
    // Either way the one to wait for is the next number.
    let wanted = before.generation + 1;
    kill(target, Signal::SIGHUP).map_err(|source| ReloadError::Signal { pid, source })?;
    let start = Instant::now();
    loop {
        let now = read(&file, pid)?;
        if now.generation >= wanted {
            match now.state {
                State::Reloaded => return Ok(now.message),
                State::Refused => return Err(ReloadError::Refused(now.message)),
                State::Ready | State::Reloading => {}
            }
        }
        if kill(target, None).is_err() {
            return Err(ReloadError::Exited(pid));
        }
        if start.elapsed() >= timeout {
            return Err(ReloadError::TimedOut {
                pid,
                after: timeout,
            });
        }
        std::thread::sleep(POLL);
    }
}

fn read(file: &Path, pid: u32) -> Result<Report, ReloadError> {
    let text = std::fs::read_to_string(file).map_err(|source| ReloadError::NoReport {
        file: file.to_owned(),
        source,
    })?;
    let report: Report = serde_json::from_str(&text).map_err(|e| ReloadError::BadReport {
        file: file.to_owned(),
        reason: e.to_string(),
    })?;
    if report.pid != pid {
        return Err(ReloadError::OtherProcess {
            file: file.to_owned(),
            pid,
            found: report.pid,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reports(dir: &Path) -> Reports {
        Reports {
            file: Some(dir.join(FILE)),
            generation: 0,
        }
    }

    #[test]
    fn reports_replace_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = reports(dir.path());
        r.ready();
        let first = read(&dir.path().join(FILE), std::process::id()).unwrap();
        assert_eq!((first.generation, first.state), (0, State::Ready));
        r.begin();
        r.finish(Err("instances.a.port: 0 is outside 1..65535"));
        let last = read(&dir.path().join(FILE), std::process::id()).unwrap();
        assert_eq!((last.generation, last.state), (1, State::Refused));
        assert_eq!(last.message, "instances.a.port: 0 is outside 1..65535");
        // Only the report itself is left: no temporary files beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_report_of_another_process_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        reports(dir.path()).ready();
        let other = std::process::id() + 1;
        assert!(matches!(
            request_reload(other, dir.path(), Duration::from_secs(1)),
            Err(ReloadError::OtherProcess { .. })
        ));
    }

    #[test]
    fn no_report_and_pid_zero_are_refused_before_any_signal() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            request_reload(std::process::id(), dir.path(), Duration::from_secs(1)),
            Err(ReloadError::NoReport { .. })
        ));
        assert!(matches!(
            request_reload(0, dir.path(), Duration::from_secs(1)),
            Err(ReloadError::BadPid(0))
        ));
    }
}
