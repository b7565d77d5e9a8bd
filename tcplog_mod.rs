// SPDX-License-Identifier: GPL-2.0

//! tcplog: logs TCP and UDP activity from inside the kernel.
//!
//! The module keeps a ring of records (socket events, connection summaries, packet headers) and
//! hands them to readers of the misc device `/dev/tcplog`, which the `tcplog` tool drives.
//!
//! Where things are:
//! - `ctl/src/abi/`: the device ABI, shared as source with the userspace tool.
//! - `module/ring.rs`: the record ring buffer.
//! - `module/log.rs`: the ring with its wait queue, switches and configuration.
//! - `module/device.rs`: the misc device, its file operations and ioctls.
//! - `module/reader.rs`: one open descriptor: its cursor, reads and poll.
//! - `module/socket_hooks.rs`: the socket-operation hooks: events and connection summaries.
//! - `module/conns.rs`: the bounded table of tracked connections.
//! - `module/probes.rs`, `module/sockinfo.rs`: kretprobe and tracepoint plumbing; reading socks.
//! - `module/netfilter.rs`: the netfilter hooks, in every network namespace.
//! - `module/packet.rs`: packet parsing, rules, packet records, connection limits.
//! - `module/flows.rs`: IP-layer counters of TCP connections.
//! - `module/bindings.rs`, `module/helpers.c`: kernel definitions the `kernel` crate lacks.

use kernel::{prelude::*, sync::Arc};

// The ABI is shared with userspace, where every item is public API; the module uses only a part.
#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "ctl/src/abi/mod.rs"]
mod abi;

#[path = "module/bindings.rs"]
mod bindings;
#[path = "module/conns.rs"]
mod conns;
#[path = "module/device.rs"]
mod device;
#[path = "module/flows.rs"]
mod flows;
#[path = "module/identity.rs"]
mod identity;
#[path = "module/log.rs"]
mod log;
#[path = "module/netfilter.rs"]
mod netfilter;
#[path = "module/packet.rs"]
mod packet;
#[path = "module/probes.rs"]
mod probes;
#[path = "module/reader.rs"]
mod reader;
#[path = "module/ring.rs"]
mod ring;
#[path = "module/socket_hooks.rs"]
mod socket_hooks;
#[path = "module/sockinfo.rs"]
mod sockinfo;

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
        enabled: bool {
            default: true,
            description: "Start with logging enabled (default true)",
        },
        max_conns: u32 {
            default: 16384,
            description: "TCP connections tracked at once (64 to 1048576, default 16384)",
        },
    },
}

struct TcpLog {
    // Fields drop in order: the device first (no descriptor can be open by then), then the
    // hooks (no handler runs after), then the log they wrote to.
    _dev: Pin<KBox<device::Registration>>,
    _packet_hooks: netfilter::PacketHooks,
    _hooks: Arc<socket_hooks::SocketHooks>,
    _log: Arc<log::Log>,
}

impl kernel::Module for TcpLog {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let kib = module_parameters::ring_kib.value() as usize;
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
        let max_conns = module_parameters::max_conns.value() as usize;
        if !(conns::MIN_CONNS..=conns::MAX_CONNS).contains(&max_conns) {
            pr_err!(
                "max_conns={} is out of range ({} to {})\n",
                max_conns,
                conns::MIN_CONNS,
                conns::MAX_CONNS
            );
            return Err(EINVAL);
        }
        let log = log::Log::new(size, max_conns, module_parameters::enabled.value())?;
        let hooks = Arc::new(socket_hooks::SocketHooks::install(log.clone())?, GFP_KERNEL)?;
        if !log.enabled() {
            hooks.set_armed(false);
        }
        let packet_hooks = netfilter::PacketHooks::install(log.clone())?;
        let dev = KBox::pin_init(
            device::Registration::register(log.clone(), hooks.clone()),
            GFP_KERNEL,
        )?;
        pr_info!(
            "loaded: ring of {} KiB, {} connections, ABI version {}\n",
            kib,
            max_conns,
            abi::ABI_VERSION
        );
        Ok(TcpLog {
            _dev: dev,
            _packet_hooks: packet_hooks,
            _hooks: hooks,
            _log: log,
        })
    }
}
