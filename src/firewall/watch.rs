//! Keeping the table in place while the guard runs.
//!
//! The table is the guard's only defence against a direct path: when
//! something else removes it (`nft flush ruleset`, which
//! `systemctl restart nftables` runs, or an admin's `nft delete table`),
//! MISP's sync goes straight to the other instance, uninspected. So the
//! guard listens to nftables' own change notifications (the netlink
//! multicast group `NFNLGRP_NFTABLES`, which the kernel sends for every
//! committed change to any table) and, after each burst of them, reads its
//! table back and compares it with the plan in force; a table that is gone
//! or differs is installed again at once, with a warning. Notifications
//! rather than only a timer, because a period is a window in which sync
//! fails open; a slow check of the table as well, every [`Kept::watch`]
//! interval, in case notifications were lost (a full socket buffer) or the
//! socket could not be opened.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{install, readback, Error, Installed, Plan, TABLE};
use crate::telemetry::metrics::metrics;

/// `NFNLGRP_NFTABLES` (linux/netfilter/nfnetlink.h).
const NFNLGRP_NFTABLES: u32 = 7;

/// How long a burst of notifications (one batch sends one per object) is
/// let settle before the table is read back.
const SETTLE: Duration = Duration::from_millis(20);

/// The plan in force, and the lock that keeps an install by a reload and
/// one by the watch from interleaving.
#[derive(Debug, Default)]
pub struct Kept {
    plan: Mutex<Option<Plan>>,
}

impl Kept {
    /// Nothing installed yet.
    pub fn new() -> Arc<Kept> {
        Arc::new(Kept::default())
    }

    /// Install `plan` (see [`install`]) and keep it as the plan in force;
    /// a plan the kernel refuses leaves the previous one in force.
    pub fn install(&self, plan: Plan) -> Result<Installed, Error> {
        let mut kept = self.plan.lock().unwrap_or_else(PoisonError::into_inner);
        let done = install(&plan)?;
        *kept = Some(plan);
        metrics().table(true);
        Ok(done)
    }

    /// No table to keep any more (`guard.firewall.mode` became off): the
    /// one installed stays, but is not put back once removed.
    pub fn forget(&self) {
        *self.plan.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Watch the table until `shutdown`: after every change notification,
    /// and every `every` besides.
    pub async fn watch(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let mut changes = match changes_subscribed() {
            Ok(rx) => Some(rx),
            Err(e) => {
                tracing::warn!(
                    "cannot follow nftables changes ({e}): table inet {TABLE} is checked every {}s only",
                    every.as_secs()
                );
                None
            }
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    // Notifications lost (or never had): subscribe again,
                    // so the gap does not stay at `every` for good.
                    if changes.is_none() {
                        if let Ok(rx) = changes_subscribed() {
                            tracing::info!("following nftables changes again");
                            changes = Some(rx);
                        }
                    }
                }
                note = next(&mut changes) => {
                    if note.is_none() {
                        tracing::warn!("nftables change notifications stopped: table inet {TABLE} is checked every {}s only", every.as_secs());
                        changes = None;
                        continue;
                    }
                    tokio::time::sleep(SETTLE).await;
                    if let Some(rx) = &mut changes {
                        while rx.try_recv().is_ok() {}
                    }
                }
            }
            let kept = self.clone();
            let _ = tokio::task::spawn_blocking(move || kept.check()).await;
        }
    }

    /// Read the table back; install it again when it is gone or differs.
    fn check(&self) {
        let kept = self.plan.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(plan) = kept.as_ref() else {
            return;
        };
        let Err(found) = readback::check(plan) else {
            metrics().table(true);
            return;
        };
        metrics().table(false);
        tracing::warn!(
            "table inet {TABLE} is gone or changed ({found}): sync could bypass the guard; installing it again"
        );
        match install(plan) {
            Ok(done) => {
                metrics().table(true);
                metrics().reinstall(true);
                tracing::warn!("firewall {done} installed again");
            }
            Err(e) => {
                metrics().reinstall(false);
                tracing::error!("cannot install table inet {TABLE} again: {e}");
            }
        }
    }
}

async fn next(changes: &mut Option<mpsc::Receiver<()>>) -> Option<()> {
    match changes {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A receive buffer aligned for `nlmsghdr`, as `mnl` asks.
#[repr(C, align(8))]
struct Buffer([u8; 64 * 1024]);

/// A thread subscribed to nftables' change notifications; each one (or
/// lost ones, `ENOBUFS`) puts a note in the channel. The channel holds one
/// note: a check already due covers every change before it.
fn changes_subscribed() -> io::Result<mpsc::Receiver<()>> {
    let (tx, rx) = mpsc::channel(1);
    let (opened, result) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("nft-watch".into())
        .spawn(move || {
            // The socket is not Send: it lives on this thread.
            let socket = match subscribe() {
                Ok(s) => {
                    let _ = opened.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = opened.send(Err(e));
                    return;
                }
            };
            let mut buf = Box::new(Buffer([0; 64 * 1024]));
            loop {
                match socket.recv_raw(&mut buf.0) {
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        tracing::warn!("reading nftables change notifications: {e}");
                        return;
                    }
                }
                if let Err(mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
                    return;
                }
            }
        })?;
    result
        .recv()
        .map_err(|_| io::Error::other("the watch thread ended"))??;
    Ok(rx)
}

fn subscribe() -> io::Result<mnl::Socket> {
    let socket = mnl::Socket::open(mnl::Bus::Netfilter)?;
    socket.bind(
        1 << (NFNLGRP_NFTABLES - 1),
        mnl::mnl_sys::MNL_SOCKET_AUTOPID,
    )?;
    Ok(socket)
}
