//! Beside the path: the service manager (systemd).
//!
//! The guard tells systemd how it is doing over the notify socket
//! (`sd_notify(3)`, through the `sd-notify` crate): `READY=1` once every
//! listener is bound, the signal handlers are in place and the nftables
//! table is installed, so `systemctl start` returns only then; `RELOADING=1`
//! … `READY=1` around each reload; `STOPPING=1`; `STATUS=` with what it
//! serves; `WATCHDOG=1` at half of `WatchdogSec=`. Without `NOTIFY_SOCKET`
//! (not under systemd) all of it does nothing.
//!
//! Debian 12's systemd (252) has no `Type=notify-reload`, and its reload
//! job ends when `ExecReload=` exits. So the outcome of each reload also
//! goes to a small file in the runtime directory (`RuntimeDirectory=`,
//! `$RUNTIME_DIRECTORY`), and `misp-guard reload` (the unit's
//! `ExecReload=`) sends SIGHUP and waits for it: a refused reload is a
//! failed `systemctl reload`, and the old config stays in force.

mod notify;
mod reload;

pub use notify::{ready, reloading, status, stopping, watchdog};
pub use reload::{request_reload, ReloadError, Reports};
