// SPDX-License-Identifier: GPL-2.0

//! Connection summaries (Apple TCPLogger's record): what is known about a connection when it
//! ends, merged with its IP-layer counters.

use crate::abi::{self, close, SummaryBody};
use crate::conns::{Closed, Conn};
use crate::flows::{FlowCounts, FlowKey};
use crate::log::Log;

/// How a connection ended, from what was seen and its final error. A reset this side sends
/// sets its own error to ECONNRESET too (`tcp_disconnect`), so a reset seen going out wins over
/// that error; one seen coming in wins over both.
fn close_reason(rst_received: bool, rst_sent: bool, err: i32) -> u8 {
    if rst_received {
        close::RST_RECEIVED
    } else if rst_sent {
        close::RST_SENT
    } else if err == kernel::bindings::ECONNRESET as i32 {
        close::RST_RECEIVED
    } else if err != 0 {
        close::TIMEOUT
    } else {
        close::FIN
    }
}

/// Builds the summary of a connection from what was known (`None`: it was not tracked) and
/// what was snapshotted at CLOSE.
pub(crate) fn build(conn: Option<&Conn>, closed: &Closed) -> SummaryBody {
    let i = &closed.info;
    let st = &closed.stats;
    let mut b = SummaryBody {
        sock_id: i.sock_id,
        bytes_sent: st.bytes_sent,
        bytes_received: st.bytes_received,
        segs_in: st.segs_in,
        segs_out: st.segs_out,
        retrans: st.retrans,
        srtt_us: st.srtt_us,
        min_rtt_us: st.min_rtt_us,
        delivery_rate: st.delivery_rate,
        busy_us: st.busy_us,
        rwnd_limited_us: st.rwnd_limited_us,
        sndbuf_limited_us: st.sndbuf_limited_us,
        netns: i.netns,
        family: i.family,
        lport: i.lport,
        rport: i.rport,
        laddr: i.laddr,
        raddr: i.raddr,
        ..SummaryBody::default()
    };
    if closed.fin_wait2 {
        b.flags |= abi::SUMF_FIN_WAIT2;
    }
    match conn {
        Some(c) => {
            if let Some(base) = c.sent_base {
                // Sequence numbers sent since the handshake, less our FIN if it went out.
                let fin = u64::from(c.fin_queued && st.all_sent);
                b.bytes_sent = st.seq_sent.saturating_sub(base).saturating_sub(fin);
            }
            b.start_ns = c.start_ns;
            b.duration_ns = closed.end_boot.saturating_sub(c.start_boot);
            b.open = c.open;
            if c.open == abi::open::ACTIVE && c.established_boot != 0 {
                b.connect_latency_ns = c.established_boot.saturating_sub(c.start_boot);
                b.flags |= abi::SUMF_LATENCY;
            }
            b.close = close_reason(c.rst_received, c.rst_sent, closed.err);
            match c.owner {
                Some(o) => {
                    b.pid = o.pid;
                    b.ppid = o.ppid;
                    b.uid = o.uid;
                    b.cgroup_id = o.cgroup_id;
                    b.comm = o.comm;
                }
                None => b.flags |= abi::SUMF_OWNER_UNKNOWN,
            }
        }
        None => {
            b.flags |= abi::SUMF_PARTIAL | abi::SUMF_OWNER_UNKNOWN | abi::SUMF_START_UNKNOWN;
            b.open = abi::open::UNKNOWN;
            b.close = close_reason(false, false, closed.err);
        }
    }
    b
}

/// The flow key of a summary's connection.
pub(crate) fn flow_key(b: &SummaryBody) -> FlowKey {
    FlowKey::new(b.netns, b.family, b.laddr, b.lport, b.raddr, b.rport)
}

/// Writes a summary, with the connection's IP-layer counters when the packet hooks saw all of
/// its packets (from its first SYN on) in a flow that socket `owner` confirmed.
pub(crate) fn emit(log: &Log, mut b: SummaryBody, owner: usize) {
    if let Some(f) = log.flows.take(&flow_key(&b), owner) {
        add_flow(&mut b, &f);
    }
    log.summary(&b);
}

/// Puts a flow's counters and times into a summary.
pub(crate) fn add_flow(b: &mut SummaryBody, f: &FlowCounts) {
    b.pkts_in = f.pkts_in;
    b.pkts_out = f.pkts_out;
    b.ip_bytes_in = f.bytes_in;
    b.ip_bytes_out = f.bytes_out;
    b.max_idle_ns = f.max_idle_ns;
    b.flags |= abi::SUMF_IP_COUNTERS;
    // Retired in FIN_WAIT2, but the peer's late FIN (and so the last ACK, which answers it at
    // once) crossed the hooks before the counters were taken: nothing is left out after all.
    if f.fin_in {
        b.flags &= !abi::SUMF_FIN_WAIT2;
    }
    if let Some(t) = f.first_tx_ns {
        b.first_tx_ns = t;
        b.flags |= abi::SUMF_FIRST_TX;
    }
    if let Some(t) = f.first_rx_ns {
        b.first_rx_ns = t;
        b.flags |= abi::SUMF_FIRST_RX;
    }
}
