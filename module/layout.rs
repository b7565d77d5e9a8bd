// SPDX-License-Identifier: GPL-2.0

//! The check, at load, that the module sees the kernel's structures as the kernel does.
//!
//! The module reads `struct sock`, `struct tcp_sock` and others through its own bindgen run over
//! `module/bindings.h`. That run's idea of a layout is an assumption: a kernel built with other
//! flags or another compiler can differ, and then every field read is wrong and the module logs
//! garbage or nothing, silently. So the offsets and sizes the Rust side uses are compared with
//! the ones the kernel's own C compiler produced for `module/layout.c`, with the kernel's exact
//! flags, and any difference refuses the load with a message naming the field.

use core::mem::{offset_of, size_of};

use kernel::{prelude::*, str::CStr};

use crate::bindings::{self as b, tcplog_layout_item};

/// What the Rust side uses: (name, offset or size). The names are those of `module/layout.c`.
const RUST: &[(&str, usize)] = &[
    (
        "sock.skc_family",
        offset_of!(b::sock, __sk_common.skc_family),
    ),
    ("sock.skc_state", offset_of!(b::sock, __sk_common.skc_state)),
    (
        "sock.skc_rcv_saddr",
        offset_of!(
            b::sock,
            __sk_common.__bindgen_anon_1.__bindgen_anon_1.skc_rcv_saddr
        ),
    ),
    (
        "sock.skc_daddr",
        offset_of!(
            b::sock,
            __sk_common.__bindgen_anon_1.__bindgen_anon_1.skc_daddr
        ),
    ),
    (
        "sock.skc_dport",
        offset_of!(
            b::sock,
            __sk_common.__bindgen_anon_3.__bindgen_anon_1.skc_dport
        ),
    ),
    (
        "sock.skc_num",
        offset_of!(
            b::sock,
            __sk_common.__bindgen_anon_3.__bindgen_anon_1.skc_num
        ),
    ),
    (
        "sock.skc_v6_daddr",
        offset_of!(b::sock, __sk_common.skc_v6_daddr),
    ),
    (
        "sock.skc_v6_rcv_saddr",
        offset_of!(b::sock, __sk_common.skc_v6_rcv_saddr),
    ),
    ("sock.skc_net", offset_of!(b::sock, __sk_common.skc_net)),
    (
        "sock.skc_flags",
        offset_of!(b::sock, __sk_common.__bindgen_anon_5.skc_flags),
    ),
    ("sock.sk_protocol", offset_of!(b::sock, sk_protocol)),
    ("sock.sk_type", offset_of!(b::sock, sk_type)),
    ("sock.sk_err", offset_of!(b::sock, sk_err)),
    ("inet_sock.inet_saddr", offset_of!(b::inet_sock, inet_saddr)),
    ("inet_sock.inet_sport", offset_of!(b::inet_sock, inet_sport)),
    ("tcp_sock.snd_una", offset_of!(b::tcp_sock, snd_una)),
    ("tcp_sock.snd_nxt", offset_of!(b::tcp_sock, snd_nxt)),
    ("tcp_sock.write_seq", offset_of!(b::tcp_sock, write_seq)),
    ("tcp_sock.bytes_acked", offset_of!(b::tcp_sock, bytes_acked)),
    (
        "tcp_sock.bytes_received",
        offset_of!(b::tcp_sock, bytes_received),
    ),
    ("tcp_sock.bytes_sent", offset_of!(b::tcp_sock, bytes_sent)),
    (
        "tcp_sock.bytes_retrans",
        offset_of!(b::tcp_sock, bytes_retrans),
    ),
    ("tcp_sock.segs_in", offset_of!(b::tcp_sock, segs_in)),
    ("tcp_sock.segs_out", offset_of!(b::tcp_sock, segs_out)),
    (
        "tcp_sock.total_retrans",
        offset_of!(b::tcp_sock, total_retrans),
    ),
    ("tcp_sock.srtt_us", offset_of!(b::tcp_sock, srtt_us)),
    ("tcp_sock.rtt_min", offset_of!(b::tcp_sock, rtt_min)),
    (
        "tcp_sock.rate_delivered",
        offset_of!(b::tcp_sock, rate_delivered),
    ),
    (
        "tcp_sock.rate_interval_us",
        offset_of!(b::tcp_sock, rate_interval_us),
    ),
    ("tcp_sock.mss_cache", offset_of!(b::tcp_sock, mss_cache)),
    (
        "tcp_sock.chrono_start",
        offset_of!(b::tcp_sock, chrono_start),
    ),
    ("tcp_sock.chrono_stat", offset_of!(b::tcp_sock, chrono_stat)),
    ("tcp_sock.chrono_type", offset_of!(b::tcp_sock, chrono_type)),
    ("socket.sk", offset_of!(b::socket, sk)),
    ("sk_buff.len", offset_of!(b::sk_buff, len)),
    ("net_device.name", offset_of!(b::net_device, name)),
    ("net_device.ifindex", offset_of!(b::net_device, ifindex)),
    ("net.ns_inum", offset_of!(b::net, ns.inum)),
    ("nf_hook_state.hook", offset_of!(b::nf_hook_state, hook)),
    ("nf_hook_state.pf", offset_of!(b::nf_hook_state, pf)),
    ("nf_hook_state.in", offset_of!(b::nf_hook_state, in_)),
    ("nf_hook_state.out", offset_of!(b::nf_hook_state, out)),
    ("nf_hook_state.net", offset_of!(b::nf_hook_state, net)),
    ("nf_hook_ops.hook", offset_of!(b::nf_hook_ops, hook)),
    ("nf_hook_ops.priv", offset_of!(b::nf_hook_ops, priv_)),
    ("nf_hook_ops.pf", offset_of!(b::nf_hook_ops, pf)),
    ("nf_hook_ops.hooknum", offset_of!(b::nf_hook_ops, hooknum)),
    ("nf_hook_ops.priority", offset_of!(b::nf_hook_ops, priority)),
    ("nf_hook_ops", size_of::<b::nf_hook_ops>()),
    (
        "pernet_operations.init",
        offset_of!(b::pernet_operations, init),
    ),
    (
        "pernet_operations.exit",
        offset_of!(b::pernet_operations, exit),
    ),
    ("pernet_operations", size_of::<b::pernet_operations>()),
    ("fprobe.nmissed", offset_of!(b::fprobe, nmissed)),
    (
        "fprobe.entry_data_size",
        offset_of!(b::fprobe, entry_data_size),
    ),
    ("fprobe.entry_handler", offset_of!(b::fprobe, entry_handler)),
    ("fprobe.exit_handler", offset_of!(b::fprobe, exit_handler)),
    ("fprobe", size_of::<b::fprobe>()),
    ("tracepoint.name", offset_of!(b::tracepoint, name)),
    ("timer_list", size_of::<b::timer_list>()),
    ("delayed_work.work", offset_of!(b::delayed_work, work)),
    ("delayed_work", size_of::<b::delayed_work>()),
    (
        "mptcp_info.mptcpi_retransmits",
        offset_of!(b::mptcp_info, mptcpi_retransmits),
    ),
    (
        "mptcp_info.mptcpi_bytes_sent",
        offset_of!(b::mptcp_info, mptcpi_bytes_sent),
    ),
    (
        "mptcp_info.mptcpi_bytes_received",
        offset_of!(b::mptcp_info, mptcpi_bytes_received),
    ),
    ("mptcp_info", size_of::<b::mptcp_info>()),
];

/// The kernel's side, from `module/layout.c`.
fn kernel_side() -> &'static [tcplog_layout_item] {
    // SAFETY: `tcplog_layout` is a static array of `tcplog_layout_len` items, which never
    // change.
    unsafe {
        core::slice::from_raw_parts(
            core::ptr::addr_of!(b::tcplog_layout).cast::<tcplog_layout_item>(),
            b::tcplog_layout_len as usize,
        )
    }
}

fn name_of(item: &tcplog_layout_item) -> &'static CStr {
    // SAFETY: Every name in `tcplog_layout` is a static NUL-terminated string literal.
    unsafe { CStr::from_char_ptr(item.name) }
}

/// Compares the two; logs every difference and fails if there is one.
pub(crate) fn check() -> Result {
    let kernel = kernel_side();
    let mut bad = 0;
    for &(name, ours) in RUST {
        match kernel
            .iter()
            .find(|k| name_of(k).to_bytes() == name.as_bytes())
        {
            Some(k) if k.value == ours => {}
            Some(k) => {
                pr_err!(
                    "layout: {} is {} in this kernel, {} in the module's bindings\n",
                    name,
                    k.value,
                    ours
                );
                bad += 1;
            }
            None => {
                pr_err!("layout: {} is not in module/layout.c\n", name);
                bad += 1;
            }
        }
    }
    if kernel.len() != RUST.len() {
        pr_err!(
            "layout: module/layout.c has {} entries, module/layout.rs {}\n",
            kernel.len(),
            RUST.len()
        );
        bad += 1;
    }
    if bad > 0 {
        pr_err!(
            "refusing to load: {} structure layouts differ from this kernel's (was the module's \
             bindgen run given other flags than the kernel's compiler?)\n",
            bad
        );
        return Err(ENOEXEC);
    }
    Ok(())
}
