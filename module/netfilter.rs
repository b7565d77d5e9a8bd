// SPDX-License-Identifier: GPL-2.0

//! The netfilter hooks: every IPv4 and IPv6 packet this host receives or sends (and, with
//! `OPT_FORWARD`, forwards), in every network namespace, those that exist at load and those
//! created later (pernet operations register the hooks in each). The hooks only observe: every
//! packet is accepted unchanged.
//!
//! They run after defragmentation and before connection tracking and filtering (priority -250),
//! so they see packets whole, as they arrive or leave, whatever a firewall then decides.

use core::ffi::c_void;

use kernel::{
    error::to_result,
    ffi::{c_int, c_uint},
    prelude::*,
    sync::{
        atomic::{ordering::Acquire, ordering::Release, Atomic},
        Arc,
    },
};

use crate::abi::{self, direction};
use crate::bindings::{self, net, nf_hook_ops, nf_hook_state, pernet_operations, sk_buff};
use crate::flows::FlowKey;
use crate::log::Log;
use crate::packet::{self, Parsed};

// Netfilter's constants (include/uapi/linux/netfilter.h), fixed by the UAPI.
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const NF_INET_LOCAL_IN: c_uint = 1;
const NF_INET_FORWARD: c_uint = 2;
const NF_INET_LOCAL_OUT: c_uint = 3;
/// After `NF_IP_PRI_CONNTRACK_DEFRAG` (-400) and `NF_IP_PRI_RAW` (-300), before conntrack (-200).
const PRIORITY: c_int = -250;

/// (family, hook) of each registered operation.
const HOOKS: [(u8, c_uint); 6] = [
    (NFPROTO_IPV4, NF_INET_LOCAL_IN),
    (NFPROTO_IPV4, NF_INET_LOCAL_OUT),
    (NFPROTO_IPV4, NF_INET_FORWARD),
    (NFPROTO_IPV6, NF_INET_LOCAL_IN),
    (NFPROTO_IPV6, NF_INET_LOCAL_OUT),
    (NFPROTO_IPV6, NF_INET_FORWARD),
];

/// The log and the hook operations: set before the pernet operations are registered, cleared
/// after they are unregistered (see `PacketHooks`).
static LOG: Atomic<*const Log> = Atomic::new(core::ptr::null());
static OPS: Atomic<*const nf_hook_ops> = Atomic::new(core::ptr::null());

fn log() -> Option<&'static Log> {
    let p = LOG.load(Acquire);
    // SAFETY: `LOG` is non-null only while `PacketHooks` exists and holds the `Arc<Log>` it was
    // set from; it is cleared only after every namespace's hooks are unregistered, which waits
    // for running hooks. So a hook that sees it non-null may use it while it runs.
    unsafe { p.as_ref() }
}

/// The hook: observes a packet, accepts it.
///
/// # Safety
///
/// Called by netfilter with a valid packet and hook state.
unsafe extern "C" fn hook(
    _priv: *mut c_void,
    skb: *mut sk_buff,
    state: *const nf_hook_state,
) -> c_uint {
    if let Some(log) = log().filter(|l| l.enabled()) {
        // SAFETY: Netfilter passes a valid skb and state for the duration of the call.
        unsafe { observe(log, skb, &*state) };
    }
    bindings::NF_ACCEPT
}

/// # Safety
///
/// `skb` and `state` must be a packet and its hook state, valid for the call.
unsafe fn observe(log: &Log, skb: *mut sk_buff, state: &nf_hook_state) {
    let dir = match c_uint::from(state.hook) {
        NF_INET_LOCAL_IN => direction::IN,
        NF_INET_LOCAL_OUT => direction::OUT,
        _ if log.forwarding() => direction::FORWARD,
        _ => return,
    };
    let family = if state.pf == NFPROTO_IPV6 {
        abi::AF_INET6
    } else {
        abi::AF_INET
    };
    // SAFETY: By the function's requirements `skb` is valid; `state.net` is the packet's live
    // namespace.
    let (p, netns) = unsafe {
        let Some(p) = packet::parse(skb, family) else {
            return;
        };
        (p, (*state.net).ns.inum)
    };
    if p.protocol == abi::IPPROTO_TCP && dir != direction::FORWARD {
        count_flow(log, &p, dir, netns);
    }
    let dev = if dir == direction::OUT {
        state.out
    } else {
        state.in_
    };
    // SAFETY: As above; `dev` is null or the packet's live device.
    unsafe { packet::apply_rules(log, skb, &p, dir, state.hook, dev, netns) };
}

fn count_flow(log: &Log, p: &Parsed, dir: u8, netns: u32) {
    let inbound = dir == direction::IN;
    let key = if inbound {
        FlowKey::new(netns, p.family, p.daddr, p.dport, p.saddr, p.sport)
    } else {
        FlowKey::new(netns, p.family, p.saddr, p.sport, p.daddr, p.dport)
    };
    let syn = p.tcp_flags & (abi::tcp_flag::SYN | abi::tcp_flag::ACK) == abi::tcp_flag::SYN;
    log.count_flow(&key, inbound, u64::from(p.skb_len), syn);
}

/// Registers the hooks in a namespace.
///
/// # Safety
///
/// Called by the pernet core with a namespace being set up, while `OPS` is set.
unsafe extern "C" fn net_init(n: *mut net) -> c_int {
    let ops = OPS.load(Acquire);
    // SAFETY: `ops` points at `HOOKS.len()` operations that outlive the registration (see
    // `PacketHooks`), and `n` is a live namespace.
    unsafe { bindings::nf_register_net_hooks(n, ops, HOOKS.len() as c_uint) }
}

/// Unregisters the hooks of a namespace going away (or of every namespace, at unload).
///
/// # Safety
///
/// Called by the pernet core with a namespace whose `net_init` succeeded.
unsafe extern "C" fn net_exit(n: *mut net) {
    let ops = OPS.load(Acquire);
    // SAFETY: The same operations were registered in `n` by `net_init`. The call waits until no
    // hook runs in `n`.
    unsafe { bindings::nf_unregister_net_hooks(n, ops, HOOKS.len() as c_uint) };
}

/// The installed hooks. Dropping them unregisters them from every namespace.
pub(crate) struct PacketHooks {
    /// Registered in every namespace: must stay put until unregistered.
    _ops: KBox<[nf_hook_ops; HOOKS.len()]>,
    pernet: KBox<pernet_operations>,
    _log: Arc<Log>,
}

// SAFETY: The operations are only read by netfilter after registration; nothing here is touched
// through a shared reference.
unsafe impl Send for PacketHooks {}
// SAFETY: As above.
unsafe impl Sync for PacketHooks {}

impl PacketHooks {
    pub(crate) fn install(log: Arc<Log>) -> Result<Self> {
        // SAFETY: All-zero is a valid `nf_hook_ops` (no hook, empty list and rcu heads) and
        // `pernet_operations` (no callbacks); the fields that matter are set below.
        let (mut ops, mut pernet) = unsafe {
            (
                KBox::new(
                    core::mem::zeroed::<[nf_hook_ops; HOOKS.len()]>(),
                    GFP_KERNEL,
                )?,
                KBox::new(core::mem::zeroed::<pernet_operations>(), GFP_KERNEL)?,
            )
        };
        for (op, (pf, hooknum)) in ops.iter_mut().zip(HOOKS) {
            op.hook = Some(hook);
            op.pf = pf;
            op.hooknum = hooknum;
            op.priority = PRIORITY;
        }
        pernet.init = Some(net_init);
        pernet.exit = Some(net_exit);
        LOG.store(Arc::as_ptr(&log), Release);
        OPS.store(ops.as_ptr(), Release);
        // SAFETY: `pernet` and `ops` are heap allocations that stay put until `drop`, which
        // unregisters first. Registration runs `net_init` for every existing namespace.
        let r = to_result(unsafe { bindings::register_pernet_subsys(&mut *pernet) });
        if let Err(e) = r {
            OPS.store(core::ptr::null(), Release);
            LOG.store(core::ptr::null(), Release);
            pr_err!("cannot register the netfilter hooks: {:?}\n", e);
            return Err(e);
        }
        Ok(PacketHooks {
            _ops: ops,
            pernet,
            _log: log,
        })
    }
}

impl Drop for PacketHooks {
    fn drop(&mut self) {
        // SAFETY: Registered in `install`; this runs `net_exit` for every namespace, which waits
        // for running hooks.
        unsafe { bindings::unregister_pernet_subsys(&mut *self.pernet) };
        OPS.store(core::ptr::null(), Release);
        LOG.store(core::ptr::null(), Release);
    }
}
