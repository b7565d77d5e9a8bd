// SPDX-License-Identifier: GPL-2.0

//! Arming and disarming every hook: the fprobes on socket operations, the TCP tracepoints and
//! the netfilter hooks in every namespace.
//!
//! Hooks exist only while logging is enabled: `tcplog disable` unregisters all of them, so a
//! loaded but disabled module costs the socket calls and the packet path nothing. Disarming
//! waits until no handler runs anymore; only then are the tables emptied.

use kernel::{
    new_mutex,
    prelude::*,
    sync::{
        atomic::{ordering::Relaxed, Atomic},
        Arc, Mutex,
    },
};

use crate::identity::Identity;
use crate::log::Log;
use crate::mptcp;
use crate::netfilter::NetHooks;
use crate::probes::{self, FProbe, Hook, TracepointProbe};
use crate::socket_ops;
use crate::tcp_state;

/// The hooks of one arming.
struct Armed {
    fprobes: KVec<Pin<KBox<FProbe>>>,
    tracepoints: KVec<TracepointProbe>,
    net: Option<NetHooks>,
}

impl Armed {
    fn new() -> Self {
        Armed {
            fprobes: KVec::new(),
            tracepoints: KVec::new(),
            net: None,
        }
    }

    fn probe<H: Hook>(&mut self, log: &Arc<Log>) -> Result {
        let p = KBox::pin_init(FProbe::register::<H>(log.clone()), GFP_KERNEL)?;
        self.fprobes.push(p, GFP_KERNEL)?;
        Ok(())
    }

    /// Registers everything; on failure, what was registered is left for `drop` to undo.
    fn arm(&mut self, log: &Arc<Log>) -> Result {
        self.probe::<socket_ops::Create>(log)?;
        self.probe::<socket_ops::Bind>(log)?;
        self.probe::<socket_ops::Listen>(log)?;
        self.probe::<socket_ops::Accept>(log)?;
        self.probe::<socket_ops::Connect>(log)?;
        self.probe::<socket_ops::DgramConnect>(log)?;
        self.probe::<socket_ops::Send>(log)?;
        self.probe::<socket_ops::Release>(log)?;
        let optional: [fn(&mut Self, &Arc<Log>) -> Result; 5] = [
            Self::probe::<socket_ops::MptcpBind>,
            Self::probe::<socket_ops::MptcpListen>,
            Self::probe::<socket_ops::MptcpAccept>,
            Self::probe::<mptcp::SubflowCreate>,
            Self::probe::<mptcp::CloneInit>,
        ];
        for probe in optional {
            // A kernel without MPTCP lacks these: its sockets cannot be made there anyway.
            let _ = probe(self, log);
        }
        // SAFETY: `Hooks` keeps `log` alive until after these probes are dropped and the
        // tracepoints synchronised (`Armed` is dropped in `Hooks::disarm` and in `Hooks`' drop,
        // both before `Hooks::log`).
        unsafe { tcp_state::register_all(log, &mut self.tracepoints)? };
        self.net = Some(NetHooks::register(log.clone())?);
        Ok(())
    }

    fn missed(&self) -> u64 {
        self.fprobes.iter().map(|p| p.missed()).sum()
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        // Netfilter first (it waits for running hooks), then the tracepoints (and a wait for
        // theirs), then the fprobes (each unregistration waits for its handlers).
        self.net = None;
        self.tracepoints.clear();
        probes::sync_tracepoints();
        self.fprobes.clear();
    }
}

/// The hooks, armed or not.
#[pin_data(PinnedDrop)]
pub(crate) struct Hooks {
    log: Arc<Log>,
    #[pin]
    armed: Mutex<Option<Armed>>,
    /// Calls missed by fprobes of earlier armings.
    missed_before: Atomic<u64>,
}

impl Hooks {
    pub(crate) fn new(log: Arc<Log>) -> impl PinInit<Self> {
        pin_init!(Hooks {
            log,
            armed <- new_mutex!(None, "tcplog_hooks"),
            missed_before: Atomic::new(0),
        })
    }

    pub(crate) fn log(&self) -> &Arc<Log> {
        &self.log
    }

    /// Arms the hooks at load, when the module starts enabled (no one to audit yet).
    pub(crate) fn arm_at_load(&self) -> Result {
        let _config = self.log.config_guard();
        let mut armed = self.armed.lock();
        self.log.set_enabled_quietly(true);
        let mut a = Armed::new();
        if let Err(e) = a.arm(&self.log) {
            drop(a);
            self.log.set_enabled_quietly(false);
            return Err(e);
        }
        *armed = Some(a);
        Ok(())
    }

    /// Turns logging on (arming every hook) or off (disarming them, then forgetting what they
    /// tracked); audited if it changed anything. Fails, disabled, if a hook cannot be armed.
    pub(crate) fn set_enabled(&self, on: bool, who: &Identity) -> Result {
        let _config = self.log.config_guard();
        let mut armed = self.armed.lock();
        if on == armed.is_some() {
            return Ok(());
        }
        if on {
            // Enabled first, so that events flow from the first hook armed.
            self.log.set_enabled_locked(true, who);
            let mut a = Armed::new();
            if let Err(e) = a.arm(&self.log) {
                drop(a);
                self.log.set_enabled_locked(false, who);
                self.log.forget_tracking();
                return Err(e);
            }
            *armed = Some(a);
        } else {
            self.log.set_enabled_locked(false, who);
            if let Some(a) = armed.take() {
                self.missed_before.add(a.missed(), Relaxed);
            }
            self.log.forget_tracking();
        }
        Ok(())
    }

    /// Calls the fprobes missed since load (their events are missing).
    pub(crate) fn missed(&self) -> u64 {
        let now = self.armed.lock().as_ref().map_or(0, Armed::missed);
        self.missed_before.load(Relaxed) + now
    }

    /// Disarms everything for good: after this, no handler runs or will run.
    pub(crate) fn shutdown(&self) {
        drop(self.armed.lock().take());
        // The worker and the repeat timer are kicked or armed by the hooks, gone now.
        self.log.worker.shutdown();
        self.log.mptcp.drop_closed();
        self.log.packets.shutdown(&self.log);
    }
}

#[pinned_drop]
impl PinnedDrop for Hooks {
    fn drop(self: Pin<&mut Self>) {
        // Normally done by the module's unload already; harmless twice.
        self.shutdown();
    }
}
