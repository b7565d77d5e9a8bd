// SPDX-License-Identifier: GPL-2.0

//! The netfilter hooks: every IPv4 and IPv6 packet this host receives or sends (and, with
//! `OPT_FORWARD`, forwards), in every network namespace, those that exist when the hooks are
//! armed and those created later (pernet operations register the hooks in each). The hooks only
//! observe: every packet is accepted unchanged.
//!
//! They run after IPv4 reassembly and before connection tracking and filtering (priority -250),
//! so they see packets as they arrive or leave, whatever a firewall then decides. IPv6 packets
//! are seen before reassembly unless conntrack's defragmentation (`nf_defrag_ipv6`, priority
//! -400) is loaded: fragments after the first carry no transport header and are counted as such.

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

use crate::abi::{self, action, direction, PacketMeta};
use crate::bindings::{
    self, net, net_device, nf_hook_ops, nf_hook_state, pernet_operations, sk_buff,
};
use crate::flows::{FlowKey, FlowPacket};
use crate::log::Log;
use crate::packet_log::Seen;
use crate::parse::{self, Parsed};
use crate::skb::Skb;

const NFPROTO_IPV4: u8 = bindings::NFPROTO_IPV4 as u8;
const NFPROTO_IPV6: u8 = bindings::NFPROTO_IPV6 as u8;
const NF_INET_LOCAL_IN: c_uint = bindings::nf_inet_hooks_NF_INET_LOCAL_IN;
const NF_INET_FORWARD: c_uint = bindings::nf_inet_hooks_NF_INET_FORWARD;
const NF_INET_LOCAL_OUT: c_uint = bindings::nf_inet_hooks_NF_INET_LOCAL_OUT;
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

/// The hook operations, for the pernet callbacks (which get nothing but the namespace): set
/// before the pernet operations are registered, cleared after they are unregistered.
static OPS: Atomic<*const nf_hook_ops> = Atomic::new(core::ptr::null());

/// A netfilter hook's state, for the duration of the hook.
///
/// # Invariants
///
/// `state` is the valid `nf_hook_state` netfilter handed the running hook, for `'a`.
struct HookState<'a> {
    state: &'a nf_hook_state,
}

impl HookState<'_> {
    fn hook(&self) -> u8 {
        self.state.hook
    }

    fn is_ipv6(&self) -> bool {
        self.state.pf == NFPROTO_IPV6
    }

    /// The socket an outgoing packet is sent from: its address, to compare with a flow's
    /// owner (never followed); 0 for none.
    fn sender(&self) -> usize {
        self.state.sk as usize
    }

    fn netns(&self) -> u32 {
        // SAFETY: By the type invariant `net` is the packet's live namespace.
        unsafe { (*self.state.net).ns.inum }
    }

    /// The packet's interface: index and name.
    fn device(&self, outbound: bool) -> (u32, [u8; 16]) {
        let dev: *const net_device = if outbound {
            self.state.out
        } else {
            self.state.in_
        };
        let mut name = [0u8; 16];
        if dev.is_null() {
            return (0, name);
        }
        // SAFETY: By the type invariant the device is live for the hook; its name is an inline
        // NUL-terminated array.
        let (raw, index) = unsafe { ((*dev).name, (*dev).ifindex) };
        for (d, s) in name.iter_mut().zip(raw.iter()) {
            *d = *s;
        }
        name[15] = 0;
        (index as u32, name)
    }
}

/// The hook: observes a packet, accepts it.
///
/// # Safety
///
/// Called by netfilter with the `priv` the operation was registered with (the `Log`), and a
/// packet and hook state valid for the call.
unsafe extern "C" fn hook(
    priv_: *mut c_void,
    skb: *mut sk_buff,
    state: *const nf_hook_state,
) -> c_uint {
    // SAFETY: `priv` is the `Log` of the `NetHooks` that registered this hook, which holds a
    // reference to it until the hook is unregistered and no longer running.
    let log = unsafe { &*priv_.cast::<Log>() };
    if log.enabled() {
        // SAFETY: Netfilter passes a packet that stays alive and unchanged for the call.
        let pkt = unsafe { Skb::from_ptr(skb) };
        // SAFETY: Netfilter passes a state valid for the call.
        let state = unsafe { &*state };
        // INVARIANT: The state is valid for the call.
        let state = HookState { state };
        if let Some(pkt) = pkt {
            observe(log, &pkt, &state);
        }
    }
    bindings::NF_ACCEPT
}

fn observe(log: &Log, pkt: &Skb<'_>, state: &HookState<'_>) {
    let dir = match c_uint::from(state.hook()) {
        NF_INET_LOCAL_IN => direction::IN,
        NF_INET_LOCAL_OUT => direction::OUT,
        _ if log.forwarding() => direction::FORWARD,
        _ => return,
    };
    let family = if state.is_ipv6() {
        abi::AF_INET6
    } else {
        abi::AF_INET
    };
    let Ok(p) = parse::parse(pkt, family) else {
        log.count_malformed();
        return;
    };
    let netns = state.netns();
    if p.protocol == abi::IPPROTO_TCP || p.protocol == abi::IPPROTO_UDP {
        if !p.transport {
            log.count_no_transport();
        } else if p.protocol == abi::IPPROTO_TCP && dir != direction::FORWARD {
            count_flow(log, &p, dir, netns, state.sender());
        }
    }
    if !log.rules.any() {
        return;
    }
    let (ifindex, ifname) = state.device(dir == direction::OUT);
    let meta = PacketMeta {
        family: p.family,
        protocol: p.protocol,
        direction: dir,
        saddr: &p.saddr,
        daddr: &p.daddr,
        sport: p.sport,
        dport: p.dport,
        tcp_flags: p.tcp_flags,
        ifname: &ifname,
    };
    let Some(m) = log.rules.decide(&meta, u64::from(p.len)) else {
        return;
    };
    if m.action == action::COUNT {
        return;
    }
    let seen = Seen {
        netns,
        ifindex,
        ifname,
        hook: state.hook(),
        direction: dir,
    };
    log.packets.record(log, pkt, &p, m.rule, m.action, &seen);
}

fn count_flow(log: &Log, p: &Parsed, dir: u8, netns: u32, sender: usize) {
    let inbound = dir == direction::IN;
    let key = if inbound {
        FlowKey::new(netns, p.family, p.daddr, p.dport, p.saddr, p.sport)
    } else {
        FlowKey::new(netns, p.family, p.saddr, p.sport, p.daddr, p.dport)
    };
    let syn_ack = abi::tcp_flag::SYN | abi::tcp_flag::ACK;
    log.flows.count(
        &key,
        &FlowPacket {
            inbound,
            bytes: u64::from(p.len),
            data: p.orig_len as usize > p.ip_hlen + p.l4_hlen,
            first_syn: p.tcp_flags & syn_ack == abi::tcp_flag::SYN,
            rst: p.tcp_flags & abi::tcp_flag::RST != 0,
            fin: p.tcp_flags & abi::tcp_flag::FIN != 0,
            seq: p.seq,
            sender,
            now: crate::clock::boot_ns(),
        },
    );
}

/// Registers the hooks in a namespace.
///
/// # Safety
///
/// Called by the pernet core with a namespace being set up, while `OPS` is set.
unsafe extern "C" fn net_init(n: *mut net) -> c_int {
    let ops = OPS.load(Acquire);
    // SAFETY: `ops` points at `HOOKS.len()` operations that outlive the registration (see
    // `NetHooks`), and `n` is a live namespace.
    unsafe { bindings::nf_register_net_hooks(n, ops, HOOKS.len() as c_uint) }
}

/// Unregisters the hooks of a namespace going away (or of every namespace, when disarmed).
///
/// # Safety
///
/// Called by the pernet core with a namespace whose `net_init` succeeded.
unsafe extern "C" fn net_exit(n: *mut net) {
    let ops = OPS.load(Acquire);
    // SAFETY: The same operations were registered in `n` by `net_init`.
    unsafe { bindings::nf_unregister_net_hooks(n, ops, HOOKS.len() as c_uint) };
}

/// The hooks, registered in every namespace while this exists.
///
/// # Invariants
///
/// `pernet` is registered with `register_pernet_subsys`, and `_ops` (which `OPS` points to) is
/// registered in every namespace, until `drop`; `_ops[..].priv` is `_log`.
pub(crate) struct NetHooks {
    _ops: KBox<[nf_hook_ops; HOOKS.len()]>,
    pernet: KBox<pernet_operations>,
    _log: Arc<Log>,
}

// SAFETY: The operations are only read by netfilter after registration; nothing here is touched
// through a shared reference.
unsafe impl Send for NetHooks {}
// SAFETY: As above.
unsafe impl Sync for NetHooks {}

impl NetHooks {
    /// Registers the hooks in every namespace, writing to `log`.
    pub(crate) fn register(log: Arc<Log>) -> Result<Self> {
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
            op.priv_ = Arc::as_ptr(&log).cast_mut().cast();
            op.pf = pf;
            op.hooknum = hooknum;
            op.priority = PRIORITY;
        }
        pernet.init = Some(net_init);
        pernet.exit = Some(net_exit);
        OPS.store(ops.as_ptr(), Release);
        // SAFETY: `pernet` and `ops` are heap allocations that stay put until `drop`, which
        // unregisters first. Registration runs `net_init` for every existing namespace.
        let r = to_result(unsafe { bindings::register_pernet_subsys(&mut *pernet) });
        if let Err(e) = r {
            OPS.store(core::ptr::null(), Release);
            pr_err!("cannot register the netfilter hooks: {:?}\n", e);
            return Err(e);
        }
        // INVARIANT: Registered in every namespace, with `log` as `priv`.
        Ok(NetHooks {
            _ops: ops,
            pernet,
            _log: log,
        })
    }
}

impl Drop for NetHooks {
    fn drop(&mut self) {
        // SAFETY: Registered in `register`; this runs `net_exit` for every namespace.
        unsafe { bindings::unregister_pernet_subsys(&mut *self.pernet) };
        // `nf_unregister_net_hooks` does not wait for hooks already running (the old hook
        // arrays are freed by RCU): wait for them before `ops` and the log can go.
        // SAFETY: No preconditions; we are in process context.
        unsafe { bindings::synchronize_net() };
        OPS.store(core::ptr::null(), Release);
        // The fields, `log` among them, go only after this.
    }
}
