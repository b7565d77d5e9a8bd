// SPDX-License-Identifier: GPL-2.0

//! tcplog: logs TCP and UDP activity from inside the kernel.
//!
//! The module keeps a ring of records (socket events, connection summaries, packet headers) and
//! hands them to readers of the misc device `/dev/tcplog`, which the `tcplog` tool drives.
//!
//! Where things are:
//! - `ctl/src/abi/`: the device ABI, shared as source with the userspace tool.
//! - The log: `module/ring.rs` (the record ring), `module/log.rs` (the ring with its wait queue,
//!   switches, configuration and tables), `module/clock.rs`, `module/keys.rs` (hash keys).
//! - The device: `module/device.rs` (the misc device, file operations, ioctls) and
//!   `module/reader.rs` (one open descriptor: cursor, reads, poll).
//! - The hooks: `module/hooks.rs` (arming and disarming all of them), `module/probes.rs`
//!   (fprobe and tracepoint plumbing), `module/socket_ops.rs` (create, bind, listen, accept,
//!   connect, close), `module/tcp_state.rs` (TCP state changes, resets, socket destruction),
//!   `module/netfilter.rs` (the packet hooks in every network namespace).
//! - What the hooks keep: `module/conns.rs` (tracked connections), `module/summary.rs`
//!   (connection summaries), `module/flows.rs` (IP-layer counters), `module/rules.rs` (packet
//!   rules), `module/packet_log.rs` (packet records and repeats), `module/limits.rs`
//!   (connection limits), `module/mptcp.rs` (MPTCP connections and their subflows),
//!   `module/table.rs` (the bounded hash table they are all made of).
//! - `module/worker.rs`: what runs in process context or on a schedule (MPTCP summaries,
//!   interim records).
//! - Views of kernel objects, where the unsafe reads are: `module/sock.rs` (sockets),
//!   `module/skb.rs` (packets, parsed by `module/parse.rs`), `module/identity.rs` (tasks);
//!   `module/events.rs` builds events from them.
//! - The kernel's definitions: `module/bindings.rs` (the module's own bindgen run),
//!   `module/helpers.c` (one-line C helpers), `module/layout.{c,rs}` (the load-time check that
//!   both agree with the kernel's compiler), `module/compat.rs` (what differs between kernel
//!   releases, in one place).

use kernel::{prelude::*, sync::Arc};

// The ABI is shared with userspace, where every item is public API; the module uses only a part.
#[expect(dead_code, unreachable_pub)]
#[path = "ctl/src/abi/mod.rs"]
mod abi;

#[path = "module/bindings.rs"]
mod bindings;
#[path = "module/clock.rs"]
mod clock;
#[path = "module/compat.rs"]
mod compat;
#[path = "module/conns.rs"]
mod conns;
#[path = "module/device.rs"]
mod device;
#[path = "module/events.rs"]
mod events;
#[path = "module/flows.rs"]
mod flows;
#[path = "module/hooks.rs"]
mod hooks;
#[path = "module/identity.rs"]
mod identity;
#[path = "module/keys.rs"]
mod keys;
#[path = "module/layout.rs"]
mod layout;
#[path = "module/limits.rs"]
mod limits;
#[path = "module/log.rs"]
mod log;
#[path = "module/mptcp.rs"]
mod mptcp;
#[path = "module/netfilter.rs"]
mod netfilter;
#[path = "module/packet_log.rs"]
mod packet_log;
#[path = "module/parse.rs"]
mod parse;
#[path = "module/probes.rs"]
mod probes;
#[path = "module/reader.rs"]
mod reader;
#[path = "module/ring.rs"]
mod ring;
#[path = "module/rules.rs"]
mod rules;
#[path = "module/skb.rs"]
mod skb;
#[path = "module/sock.rs"]
mod sock;
#[path = "module/socket_ops.rs"]
mod socket_ops;
#[path = "module/summary.rs"]
mod summary;
#[path = "module/table.rs"]
mod table;
#[path = "module/tcp_state.rs"]
mod tcp_state;
#[path = "module/timer.rs"]
mod timer;
#[path = "module/worker.rs"]
mod worker;

/// The module's metadata and parameters, less the type of `enabled`: the kernel has `bool`
/// parameters from 7.3 on, and before that it is an integer, 1 or 0 (`module/compat.rs` reads
/// either).
macro_rules! tcplog_module {
    ($enabled_type:tt, $enabled_default:tt, $enabled_description:tt) => {
        module! {
            type: TcpLog,
            name: "tcplog",
            authors: ["The tcplog developers"],
            description: "Logs TCP and UDP activity: socket events, connection summaries, packet headers",
            license: "GPL",
            params: {
                ring_kib: u32 {
                    default: 4096,
                    description: "Size of the record ring in KiB (64 to 262144, default 4096)",
                },
                enabled: $enabled_type {
                    default: $enabled_default,
                    description: $enabled_description,
                },
                max_conns: u32 {
                    default: 16384,
                    description: "TCP connections tracked at once (64 to 1048576, default 16384)",
                },
            },
        }
    };
}

#[cfg(tcplog_kernel_ge_7_3)]
tcplog_module!(bool, true, "Start with logging enabled (default true)");
#[cfg(not(tcplog_kernel_ge_7_3))]
tcplog_module!(u32, 1, "Start with logging enabled: 1 (default) or 0");

struct TcpLog {
    dev: Option<Pin<KBox<device::Registration>>>,
    hooks: Arc<hooks::Hooks>,
}

impl kernel::Module for TcpLog {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        layout::check()?;
        let params = compat::Params::read();
        let kib = params.ring_kib as usize;
        let size = kib.checked_mul(1024).ok_or(EINVAL)?;
        if !(ring::MIN_RING_SIZE..=ring::MAX_RING_SIZE).contains(&size) {
            pr_err!(
                "ring_kib={} is out of range ({} to {})\n",
                kib,
                ring::MIN_RING_SIZE / 1024,
                ring::MAX_RING_SIZE / 1024
            );
            return Err(EINVAL);
        }
        let max_conns = params.max_conns as usize;
        if !(conns::MIN_CONNS..=conns::MAX_CONNS).contains(&max_conns) {
            pr_err!(
                "max_conns={} is out of range ({} to {})\n",
                max_conns,
                conns::MIN_CONNS,
                conns::MAX_CONNS
            );
            return Err(EINVAL);
        }
        let log = log::Log::new(size, max_conns, keys::HashKeys::new())?;
        let hooks = Arc::pin_init(hooks::Hooks::new(log), GFP_KERNEL)?;
        if params.enabled {
            hooks.arm_at_load()?;
        }
        let dev = KBox::pin_init(device::Registration::register(hooks.clone()), GFP_KERNEL)?;
        pr_info!(
            "loaded: ring of {} KiB, {} connections, ABI version {}\n",
            kib,
            max_conns,
            abi::ABI_VERSION
        );
        Ok(TcpLog {
            dev: Some(dev),
            hooks,
        })
    }
}

impl Drop for TcpLog {
    fn drop(&mut self) {
        // The order matters, so it is spelled out rather than left to the fields' order:
        // 1. The device. No descriptor is open (each pins the module), so no file operation
        //    runs or will.
        self.dev = None;
        // 2. Every hook, each unregistration waiting for its running handlers; then the repeat
        //    timer, which only the packet hooks arm, shut down for good.
        self.hooks.shutdown();
        // 3. The log goes with the last reference to it, which the hooks hold.
    }
}
