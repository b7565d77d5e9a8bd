//! The benchmarks' floor: the kernel's hook mechanisms at the points tcplog hooks, each doing
//! nothing, armed with the kernel's own interfaces (tracefs and nftables) and none of tcplog's
//! code. What it costs, no logger that hooks those points with those mechanisms can avoid.
//!
//! - fprobes on tcplog's functions (tracefs fprobe events): an entry event where tcplog only
//!   needs the entry, a return event where it needs the return (which rides on the same
//!   function-graph entry tcplog's exit handlers do);
//! - probes on its four tracepoints (trace events);
//! - empty netfilter base chains at its hooks and priority (nftables, `inet`: IPv4 and IPv6), in
//!   this namespace only, where the churn runs.
//!
//! Tracing is turned off, so the events' handlers find the ring buffer off and write nothing.
//! The floor without netfilter (the probes alone) tells the packet hooks' share apart.

use std::fs::OpenOptions;
use std::io::Write;

use crate::sys;

const TRACING: &str = "/sys/kernel/tracing";
const GROUP: &str = "tcplog_floor";

/// tcplog's fprobes: (function, whether it needs the return), as `module/socket_ops.rs` and
/// `module/mptcp.rs` have them. MPTCP's functions may be missing.
const FPROBES: [(&str, bool); 16] = [
    ("inet_create", true),
    ("inet6_create", true),
    ("inet_bind", true),
    ("inet6_bind", true),
    ("inet_listen", true),
    ("inet_accept", true),
    ("inet_stream_connect", true),
    ("inet_dgram_connect", true),
    // tcplog's return handler runs only on unbound UDP sockets' sends.
    ("inet_sendmsg", false),
    ("inet6_sendmsg", false),
    ("inet_release", false),
    ("mptcp_bind", true),
    ("mptcp_listen", true),
    ("mptcp_stream_accept", true),
    ("mptcp_subflow_create_socket", true),
    ("mptcp_sk_clone_init", true),
];

/// tcplog's tracepoints, as `module/tcp_state.rs` has them.
const TRACEPOINTS: [&str; 4] = [
    "sock/inet_sock_set_state",
    "tcp/tcp_send_reset",
    "tcp/tcp_receive_reset",
    "tcp/tcp_destroy_sock",
];

/// Base chains at tcplog's netfilter hooks and priority (`module/netfilter.rs`).
const RULESET: &str = "table inet tcplog_floor {
    chain tl_in { type filter hook input priority -250; policy accept; }
    chain tl_out { type filter hook output priority -250; policy accept; }
    chain tl_fwd { type filter hook forward priority -250; policy accept; }
}
";

fn write(path: &str, what: &str, append: bool) -> Result<(), String> {
    let path = format!("{TRACING}/{path}");
    OpenOptions::new()
        .write(true)
        .append(append)
        .truncate(!append)
        .open(&path)
        .and_then(|mut f| f.write_all(what.as_bytes()))
        .map_err(|e| format!("{path} <- {what:?}: {e}"))
}

/// Arms the floor, its netfilter chains if `netfilter`; on failure, what was armed stays for
/// [`disarm`].
pub fn arm(netfilter: bool) -> Result<(), String> {
    write("tracing_on", "0", false)?;
    for (func, ret) in FPROBES {
        let def = if ret {
            format!("f:{GROUP}/{func}_ret {func}%return\n")
        } else {
            format!("f:{GROUP}/{func} {func}\n")
        };
        if let Err(e) = write("dynamic_events", &def, true) {
            if !func.starts_with("mptcp") {
                return Err(e);
            }
        }
    }
    write(&format!("events/{GROUP}/enable"), "1", false)?;
    for tp in TRACEPOINTS {
        write(&format!("events/{tp}/enable"), "1", false)?;
    }
    if !netfilter {
        return Ok(());
    }
    sys::run_ok("modprobe", &["nf_tables"])?;
    std::fs::write("/tmp/floor.nft", RULESET).map_err(|e| e.to_string())?;
    sys::run_ok("nft", &["-f", "/tmp/floor.nft"])?;
    Ok(())
}

/// Takes everything [`arm`] armed away again (whatever part of it is there).
pub fn disarm() -> Result<(), String> {
    let mut errors = Vec::new();
    if sys::run("nft", &["list", "table", "inet", GROUP]).is_ok_and(|o| o.status.success()) {
        if let Err(e) = sys::run_ok("nft", &["delete", "table", "inet", GROUP]) {
            errors.push(e);
        }
    }
    sys::run("rmmod", &["nf_tables"]).ok();
    for tp in TRACEPOINTS {
        write(&format!("events/{tp}/enable"), "0", false).ok();
    }
    if std::path::Path::new(&format!("{TRACING}/events/{GROUP}")).exists() {
        write(&format!("events/{GROUP}/enable"), "0", false).ok();
        // The group's events, and nothing else's.
        if let Err(e) = write("dynamic_events", &format!("-:{GROUP}/\n"), true) {
            errors.push(e);
        }
    }
    write("tracing_on", "1", false).ok();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}
