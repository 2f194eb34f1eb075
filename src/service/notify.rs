//! Messages to systemd's notify socket.

use std::time::Duration;

use sd_notify::NotifyState;

/// Startup or a reload is over: `READY=1` with `status`.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(&one_line(status))]);
}

/// A reload begins (`RELOADING=1`); [`ready`] ends it, whatever its outcome.
pub fn reloading() {
    send(&[
        NotifyState::Reloading,
        NotifyState::Status("reloading the config"),
    ]);
}

/// Shutdown begins (`STOPPING=1`).
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: no new connections, exchanges in flight may finish"),
    ]);
}

/// A new `STATUS=` line (e.g. why the guard is about to exit).
pub fn status(status: &str) {
    send(&[NotifyState::Status(&one_line(status))]);
}

/// When the unit sets `WatchdogSec=`: a task that sends `WATCHDOG=1` at half
/// that interval for as long as the runtime runs it. It shows that the
/// runtime still schedules tasks and fires timers, which a wedged runtime
/// would not; systemd restarts the guard when it stops.
pub fn watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let every = sd_notify::watchdog_enabled()? / 2;
    let every = every.max(Duration::from_millis(100));
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    }))
}

/// The protocol is one `KEY=value` per line: a newline inside a status (a
/// refusal that names several problems) would start a new assignment.
fn one_line(s: &str) -> String {
    s.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot tell the service manager: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_status_stays_one_line() {
        assert_eq!(
            one_line("TLS settings:\nREADY=1\r\n  x: bad  \n"),
            "TLS settings:; READY=1; x: bad"
        );
    }
}
