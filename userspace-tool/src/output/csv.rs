//! Records as CSV rows, for spreadsheets and scripts.
//!
//! A row is always one line: names from outside are shown through [`escape::csv_field`] (controls
//! escaped as in text, and never a formula), and the CSV writer quotes what holds commas or quotes.

use serde_json::Value;

use super::json::to_json;
use super::{outside_names, Context};
use crate::escape;
use crate::record::Record;

/// The columns of `--format csv`: what the JSON objects hold, one column per field, empty where
/// a record has no such field.
pub const CSV_COLUMNS: [&str; 70] = [
    "type",
    "seq",
    "time",
    "time_ns",
    "cpu",
    "op",
    "family",
    "proto",
    "pid",
    "tid",
    "uid",
    "comm",
    "laddr",
    "lport",
    "raddr",
    "rport",
    "netns",
    "sock_id",
    "result",
    "error",
    "open",
    "close",
    "partial",
    "duration_ns",
    "bytes_sent",
    "bytes_received",
    "segs_in",
    "segs_out",
    "retrans",
    "srtt_us",
    "pkts_in",
    "pkts_out",
    "ip_bytes_in",
    "ip_bytes_out",
    "ifname",
    "direction",
    "rule",
    "saddr",
    "daddr",
    "sport",
    "dport",
    "tcp_flags",
    "orig_len",
    "count",
    "ppid",
    "cgroup_id",
    "cgroup",
    "container",
    "container_runtime",
    "latency_ns",
    "parent_id",
    "min_rtt_us",
    "connect_latency_ns",
    "delivery_rate",
    "busy_us",
    "rwnd_limited_us",
    "sndbuf_limited_us",
    "first_tx_ns",
    "first_rx_ns",
    "max_idle_ns",
    "limited_by",
    "fin_wait2",
    "state",
    "since_ns",
    "delta_bytes_sent",
    "delta_bytes_received",
    "delta_pkts_in",
    "delta_pkts_out",
    "delta_ip_bytes_in",
    "delta_ip_bytes_out",
];

/// A record as a CSV row of [`CSV_COLUMNS`]; fields only some types have beyond those (a
/// packet's bytes, a config record's values) are in JSON, not here.
pub fn to_csv_row(r: &Record, ctx: &Context<'_>) -> Vec<String> {
    let v = to_json(r, ctx);
    let outside = outside_names(r, ctx);
    CSV_COLUMNS
        .iter()
        .map(|k| match outside.iter().find(|(name, _)| name == k) {
            Some((_, bytes)) => escape::csv_field(bytes),
            None => match &v[*k] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        })
        .collect()
}
