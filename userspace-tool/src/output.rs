//! How records are shown: text lines for people, JSON objects for scripts.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::record::{comm_str, config_item_name, type_name, Body, Record};

/// Output formats of `dump` and `follow`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned text, a line per record.
    Text,
    /// JSON Lines: one object per record, with a `type` field.
    Json,
}

/// RFC 3339 time with nanoseconds, in UTC.
pub fn rfc3339(time_ns: u64) -> String {
    humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(time_ns)).to_string()
}

/// A record as one JSON object.
pub fn to_json(r: &Record) -> Value {
    let h = &r.header;
    let mut m = Map::new();
    m.insert("type".into(), type_name(h.rtype).into());
    m.insert("seq".into(), h.seq.into());
    m.insert("time".into(), rfc3339(h.time_ns).into());
    m.insert("time_ns".into(), h.time_ns.into());
    m.insert("boot_ns".into(), h.boot_ns.into());
    m.insert("cpu".into(), h.cpu.into());
    let body = match &r.body {
        Body::Lost(l) => json!({
            "count": l.count,
            "first_seq": l.first_seq,
            "last_seq": l.last_seq,
        }),
        Body::Config(c) => json!({
            "item": config_item_name(c.item),
            "old": c.old,
            "new": c.new,
            "pid": c.pid,
            "uid": c.uid,
            "comm": comm_str(&c.comm),
        }),
        Body::Mark(k) => json!({
            "value": k.value,
            "index": k.index,
            "pid": k.pid,
            "uid": k.uid,
            "comm": comm_str(&k.comm),
        }),
        Body::Unknown(bytes) => json!({ "rtype": h.rtype, "body_len": bytes.len() }),
    };
    if let Value::Object(b) = body {
        m.extend(b);
    }
    Value::Object(m)
}

/// A record as one line of text.
pub fn to_text(r: &Record) -> String {
    let h = &r.header;
    let detail = match &r.body {
        Body::Lost(l) => format!(
            "lost {} records (seq {}..={})",
            l.count, l.first_seq, l.last_seq
        ),
        Body::Config(c) => format!(
            "{} {} -> {} by pid {} uid {} ({})",
            config_item_name(c.item),
            c.old,
            c.new,
            c.pid,
            c.uid,
            comm_str(&c.comm)
        ),
        Body::Mark(k) => format!(
            "value {} #{} by pid {} uid {} ({})",
            k.value,
            k.index,
            k.pid,
            k.uid,
            comm_str(&k.comm)
        ),
        Body::Unknown(bytes) => format!("type {} ({} bytes)", h.rtype, bytes.len()),
    };
    format!(
        "{} {:>8} {:<7} {}",
        rfc3339(h.time_ns),
        h.seq,
        type_name(h.rtype),
        detail
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::mark;
    use crate::record::{Decoder, Item};

    fn one(buf: &[u8]) -> Record {
        match Decoder::new(buf).next_item() {
            Some(Item::Record(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn time_is_rfc3339_with_nanoseconds() {
        assert_eq!(
            rfc3339(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
    }

    #[test]
    fn mark_as_json() {
        let v = to_json(&one(&mark(5, 77)));
        assert_eq!(v["type"], "mark");
        assert_eq!(v["seq"], 5);
        assert_eq!(v["time"], "2023-11-14T22:13:20.123456789Z");
        assert_eq!(v["time_ns"], 1_700_000_000_123_456_789u64);
        assert_eq!(v["value"], 77);
        assert_eq!(v["pid"], 42);
        assert_eq!(v["comm"], "test");
    }

    #[test]
    fn mark_as_text() {
        assert_eq!(
            to_text(&one(&mark(5, 77))),
            "2023-11-14T22:13:20.123456789Z        5 mark    value 77 #0 by pid 42 uid 0 (test)"
        );
    }
}
