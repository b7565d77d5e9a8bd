//! `tcplog status`.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde_json::json;
use tcplog_ctl as abi;

use crate::device::{Access, Device};
use crate::error::{Error, Result};
use crate::record::type_name;

pub fn run(path: &Path, json: bool, out: &mut dyn Write) -> Result<()> {
    let dev = Device::open(path, Access::ReadOnly)?;
    let module = dev.abi_version()?;
    if module != abi::ABI_VERSION {
        // Only the version can be trusted: the status layout may differ.
        writeln!(
            out,
            "module ABI        {module}\ntool ABI          {}",
            abi::ABI_VERSION
        )
        .map_err(|e| Error::io("writing status", e))?;
        return Err(Error::AbiMismatch {
            module,
            tool: abi::ABI_VERSION,
        });
    }
    let s = dev.status()?;
    let by_type: Vec<(&str, u64)> = s
        .produced_by_type
        .iter()
        .enumerate()
        .filter(|&(t, &n)| t > 0 && n > 0)
        .map(|(t, &n)| (type_name(t as u16), n))
        .collect();
    // The node's name is the command line's: any bytes, shown as names from outside are.
    let device = dev.path().as_os_str().as_bytes();
    let res = if json {
        let types: serde_json::Map<String, serde_json::Value> = by_type
            .iter()
            .map(|(t, n)| ((*t).to_owned(), (*n).into()))
            .collect();
        let mut v = json!({
            "device": String::from_utf8_lossy(device),
            "module_abi_version": s.abi_version,
            "tool_abi_version": abi::ABI_VERSION,
            "enabled": s.enabled != 0,
            "ring_size": s.ring_size,
            "bytes_used": s.bytes_used,
            "records_held": s.records_held,
            "records_produced": s.records_produced,
            "records_overwritten": s.records_overwritten,
            "records_flushed": s.records_flushed,
            "bytes_flushed": s.bytes_flushed,
            "records_dropped": s.records_dropped,
            "oldest_seq": s.oldest_seq,
            "readers": s.readers,
            "conn_table_size": s.conn_table_size,
            "conns_tracked": s.conns_tracked,
            "conns_untracked": s.conns_untracked,
            "flow_table_size": s.flow_table_size,
            "flows_tracked": s.flows_tracked,
            "flows_untracked": s.flows_untracked,
            "probes_missed": s.probes_missed,
            "records_filtered": s.records_filtered,
            "packets_repeated": s.packets_repeated,
            "packets_malformed": s.packets_malformed,
            "packets_no_transport": s.packets_no_transport,
            "flows_evicted": s.flows_evicted,
            "limits_untracked": s.limits_untracked,
            "produced_by_type": types,
        });
        if std::str::from_utf8(device).is_err() {
            v["device_hex"] = crate::escape::hex(device).into();
        }
        writeln!(out, "{}", crate::output::json::to_line(&v))
    } else {
        let pct = if s.ring_size > 0 {
            s.bytes_used as f64 * 100.0 / s.ring_size as f64
        } else {
            0.0
        };
        let mut t = String::new();
        let mut row = |k: &str, v: String| t.push_str(&format!("{k:<20}{v}\n"));
        row("device", crate::escape::text(device));
        row("module ABI", s.abi_version.to_string());
        row("tool ABI", abi::ABI_VERSION.to_string());
        row(
            "logging",
            if s.enabled != 0 {
                "enabled"
            } else {
                "disabled"
            }
            .to_owned(),
        );
        row(
            "ring",
            format!("{} of {} bytes used ({pct:.1}%)", s.bytes_used, s.ring_size),
        );
        row(
            "records held",
            format!("{} (oldest seq {})", s.records_held, s.oldest_seq),
        );
        row("produced", s.records_produced.to_string());
        row("overwritten", s.records_overwritten.to_string());
        row(
            "flushed",
            format!("{} records, {} bytes", s.records_flushed, s.bytes_flushed),
        );
        row("dropped", s.records_dropped.to_string());
        row("readers", s.readers.to_string());
        row(
            "connections",
            format!(
                "{} tracked of {} (untracked for want of room: {})",
                s.conns_tracked, s.conn_table_size, s.conns_untracked
            ),
        );
        row(
            "flows",
            format!(
                "{} counted of {} (packets left uncounted: {}, handshakes evicted: {})",
                s.flows_tracked, s.flow_table_size, s.flows_untracked, s.flows_evicted
            ),
        );
        row(
            "packets skipped",
            format!(
                "{} malformed, {} without a transport header",
                s.packets_malformed, s.packets_no_transport
            ),
        );
        row("limits untracked", s.limits_untracked.to_string());
        row("probes missed", s.probes_missed.to_string());
        row("filtered out", s.records_filtered.to_string());
        row("packet repeats", s.packets_repeated.to_string());
        for (ty, n) in &by_type {
            row(&format!("  {ty}"), n.to_string());
        }
        out.write_all(t.as_bytes())
    };
    res.map_err(|e| Error::io("writing status", e))
}
