//! Why a connection was slow, in one word: what limited this side's sending for most of the
//! connection's life, from TCP's own chronographs (tcp_info's busy, rwnd_limited and
//! sndbuf_limited times).
//!
//! The rule, for a summary (or interim record) whose duration D is known:
//!
//! - Only a connection that lasted at least [`MIN_DURATION_NS`] (100 ms: the chronographs tick
//!   in jiffies, 4 ms on Debian's kernel) and on which this side was the sender (it sent data,
//!   and at least as many bytes as it received) gets a verdict: a receiver's pace is set by its
//!   peer's sending, which only the peer's chronographs explain.
//! - Its life D splits into four parts: time with nothing to send, D - busy (`app`: the
//!   application gave TCP no data: it was thinking, or waiting for the peer); time sending but
//!   held by the receiver's window, rwnd_limited (`rwnd`: the peer's application did not read
//!   fast enough, or its buffer is small); time held by this socket's send buffer,
//!   sndbuf_limited (`sndbuf`: SO_SNDBUF too small for the path); and the rest of the busy time,
//!   busy - rwnd_limited - sndbuf_limited (`network`: the congestion window, pacing, losses: the
//!   path).
//! - The verdict is the largest part if it covers at least half of D; otherwise none dominates
//!   and there is no verdict. Ties go to the first in the order `rwnd`, `sndbuf`, `network`,
//!   `app`.

use tcplog_ctl::{SummaryBody, SUMF_START_UNKNOWN};

/// Connections shorter than this get no verdict.
pub const MIN_DURATION_NS: u64 = 100_000_000;

/// The verdict for a summary, if there is one: `app`, `rwnd`, `sndbuf` or `network`.
pub fn limited_by(s: &SummaryBody) -> Option<&'static str> {
    if s.flags & SUMF_START_UNKNOWN != 0 || s.duration_ns < MIN_DURATION_NS {
        return None;
    }
    if s.bytes_sent == 0 || s.bytes_sent < s.bytes_received {
        return None;
    }
    let life = s.duration_ns / 1000;
    let busy = s.busy_us.min(life);
    let rwnd = s.rwnd_limited_us.min(busy);
    let sndbuf = s.sndbuf_limited_us.min(busy - rwnd);
    let parts = [
        ("rwnd", rwnd),
        ("sndbuf", sndbuf),
        ("network", busy - rwnd - sndbuf),
        ("app", life - busy),
    ];
    let (word, most) = parts
        .iter()
        .fold(parts[0], |best, &p| if p.1 > best.1 { p } else { best });
    (most.saturating_mul(2) >= life).then_some(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sender's summary: `ms` long, 1 MB sent, 100 bytes received, chronographs in ms.
    fn sender(ms: u64, busy: u64, rwnd: u64, sndbuf: u64) -> SummaryBody {
        SummaryBody {
            duration_ns: ms * 1_000_000,
            bytes_sent: 1_000_000,
            bytes_received: 100,
            busy_us: busy * 1000,
            rwnd_limited_us: rwnd * 1000,
            sndbuf_limited_us: sndbuf * 1000,
            ..SummaryBody::default()
        }
    }

    #[test]
    fn the_dominant_part_is_the_verdict() {
        assert_eq!(limited_by(&sender(1000, 900, 800, 0)), Some("rwnd"));
        assert_eq!(limited_by(&sender(1000, 900, 0, 700)), Some("sndbuf"));
        assert_eq!(limited_by(&sender(1000, 900, 100, 100)), Some("network"));
        assert_eq!(limited_by(&sender(1000, 100, 0, 0)), Some("app"));
        // Exactly half is enough.
        assert_eq!(limited_by(&sender(1000, 500, 0, 0)), Some("network"));
    }

    #[test]
    fn no_verdict_where_nothing_dominates() {
        // app 400, network 300, rwnd 300.
        assert_eq!(limited_by(&sender(1000, 600, 300, 0)), None);
        // app 300, rwnd 350, sndbuf 350.
        assert_eq!(limited_by(&sender(1000, 700, 350, 350)), None);
    }

    #[test]
    fn ties_go_to_the_first_in_order() {
        // rwnd 500, app 500.
        assert_eq!(limited_by(&sender(1000, 500, 500, 0)), Some("rwnd"));
        // network 500, app 500.
        assert_eq!(limited_by(&sender(1000, 500, 0, 0)), Some("network"));
    }

    #[test]
    fn only_senders_of_long_enough_known_connections() {
        assert_eq!(limited_by(&sender(99, 90, 80, 0)), None, "too short");
        let mut s = sender(1000, 900, 800, 0);
        s.flags |= SUMF_START_UNKNOWN;
        assert_eq!(limited_by(&s), None, "duration unknown");
        let mut s = sender(1000, 900, 800, 0);
        s.bytes_received = s.bytes_sent + 1;
        assert_eq!(limited_by(&s), None, "a receiver");
        let mut s = sender(1000, 0, 0, 0);
        s.bytes_sent = 0;
        s.bytes_received = 0;
        assert_eq!(limited_by(&s), None, "sent nothing");
    }

    #[test]
    fn inconsistent_chronographs_are_clamped() {
        // busy longer than the life (ticks rounded up), limits longer than busy.
        assert_eq!(limited_by(&sender(1000, 1200, 5000, 5000)), Some("rwnd"));
        assert_eq!(limited_by(&sender(1000, 1200, 0, 0)), Some("network"));
    }
}
