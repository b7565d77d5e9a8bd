// SPDX-License-Identifier: GPL-2.0

//! tcplog: logs TCP and UDP activity from inside the kernel.
//!
//! The module keeps a ring of records (socket events, connection summaries, packet headers) and
//! hands them to readers of the misc device `/dev/tcplog`, which the `tcplog` tool drives.
//!
//! Where things are:
//! - `ctl/src/abi/`: the device ABI, shared as source with the userspace tool.
//! - `module/device.rs`: the misc device and its file operations.

use kernel::prelude::*;

// The ABI is shared with userspace, where every item is public API; the module uses only a part.
#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "ctl/src/abi/mod.rs"]
mod abi;

#[path = "module/device.rs"]
mod device;

module! {
    type: TcpLog,
    name: "tcplog",
    authors: ["The tcplog developers"],
    description: "Logs TCP and UDP activity: socket events, connection summaries, packet headers",
    license: "GPL",
}

#[pin_data]
struct TcpLog {
    #[pin]
    dev: device::Registration,
}

impl kernel::InPlaceModule for TcpLog {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            dev <- device::Registration::register(),
        })
    }
}
