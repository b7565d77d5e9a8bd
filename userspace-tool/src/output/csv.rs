//! Records as CSV rows, for spreadsheets and scripts.
//!
//! A row is always one line: names from outside are shown through [`escape::csv_field`] (controls
//! escaped as in text, and never a formula), and the CSV writer quotes what holds commas or quotes.

use serde_json::Value;

use super::json::to_json;
use super::outside_name;
use crate::escape;
use crate::record::Record;

/// The columns of `--format csv`: what the JSON objects hold, one column per field, empty where
/// a record has no such field.
pub const CSV_COLUMNS: [&str; 44] = [
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
];

/// A record as a CSV row of [`CSV_COLUMNS`]; fields only some types have beyond those (a
/// packet's bytes, a config record's values) are in JSON, not here.
pub fn to_csv_row(r: &Record) -> Vec<String> {
    let v = to_json(r);
    let outside = outside_name(r);
    CSV_COLUMNS
        .iter()
        .map(|k| match (&v[*k], outside) {
            (_, Some((name, bytes))) if name == *k => escape::csv_field(bytes),
            (Value::Null, _) => String::new(),
            (Value::String(s), _) => s.clone(),
            (other, _) => other.to_string(),
        })
        .collect()
}
