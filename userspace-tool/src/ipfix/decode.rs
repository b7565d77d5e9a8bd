//! A small IPFIX decoder for the tests: messages into their header, templates and records, each
//! field as its specifier and bytes. It checks what a collector relies on: lengths, set
//! padding, templates before their records.

use std::collections::HashMap;

use super::ie::{self, FieldSpec, VARLEN};

/// A data record: its template id, and its fields with their values.
pub type DataRecord = (u16, Vec<(FieldSpec, Vec<u8>)>);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub length: u16,
    pub export_secs: u32,
    pub seq: u32,
    pub domain: u32,
    /// Template records in this message: (id, scope field count, fields).
    pub templates: Vec<(u16, u16, Vec<FieldSpec>)>,
    /// Data records: (template id, fields with their values).
    pub records: Vec<DataRecord>,
    /// Each set's id and length, in order.
    pub sets: Vec<(u16, u16)>,
}

/// Decodes a stream of messages: templates carry over from one message to the next, as in a
/// transport session.
#[derive(Default)]
pub struct Session {
    templates: HashMap<u16, Vec<FieldSpec>>,
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Session {
    /// Decodes one message; `Err` says what is wrong with it.
    pub fn message(&mut self, m: &[u8]) -> Result<Decoded, String> {
        if m.len() < ie::MESSAGE_HEADER_LEN {
            return Err("short message".into());
        }
        if be16(m) != ie::VERSION {
            return Err(format!("version {}", be16(m)));
        }
        let length = be16(&m[2..]);
        if usize::from(length) != m.len() {
            return Err(format!("length {length} of a {}-byte message", m.len()));
        }
        let mut d = Decoded {
            length,
            export_secs: be32(&m[4..]),
            seq: be32(&m[8..]),
            domain: be32(&m[12..]),
            templates: Vec::new(),
            records: Vec::new(),
            sets: Vec::new(),
        };
        let mut off = ie::MESSAGE_HEADER_LEN;
        while off < m.len() {
            if off + 4 > m.len() {
                return Err(format!("set header cut at {off}"));
            }
            let (id, len) = (be16(&m[off..]), be16(&m[off + 2..]));
            let len = usize::from(len);
            if len < 4 || off + len > m.len() {
                return Err(format!("set {id} of length {len} at {off}"));
            }
            if len % 4 != 0 {
                return Err(format!("set {id} of length {len} is not padded to 4"));
            }
            d.sets.push((id, len as u16));
            let body = &m[off + 4..off + len];
            match id {
                ie::SET_TEMPLATE | ie::SET_OPTIONS_TEMPLATE => {
                    self.templates_in(id == ie::SET_OPTIONS_TEMPLATE, body, &mut d)?
                }
                id if id >= ie::FIRST_TEMPLATE_ID => self.records_in(id, body, &mut d)?,
                _ => return Err(format!("set id {id}")),
            }
            off += len;
        }
        Ok(d)
    }

    fn templates_in(&mut self, options: bool, body: &[u8], d: &mut Decoded) -> Result<(), String> {
        let mut off = 0;
        // What remains after the last record is padding: shorter than a record header.
        while body.len() - off >= 4 && be16(&body[off..]) != 0 {
            let id = be16(&body[off..]);
            let count = be16(&body[off + 2..]);
            off += 4;
            let scope = if options {
                let s = be16(&body[off..]);
                off += 2;
                s
            } else {
                0
            };
            let mut fields = Vec::new();
            for _ in 0..count {
                let (raw, len) = (be16(&body[off..]), be16(&body[off + 2..]));
                off += 4;
                let (id, pen) = if raw & ie::ENTERPRISE_BIT != 0 {
                    let pen = be32(&body[off..]);
                    off += 4;
                    (raw & !ie::ENTERPRISE_BIT, pen)
                } else {
                    (raw, 0)
                };
                fields.push(FieldSpec { id, len, pen });
            }
            self.templates.insert(id, fields.clone());
            d.templates.push((id, scope, fields));
        }
        if body[off..].iter().any(|&b| b != 0) {
            return Err("template set padding is not zero".into());
        }
        Ok(())
    }

    fn records_in(&self, id: u16, body: &[u8], d: &mut Decoded) -> Result<(), String> {
        let fields = self
            .templates
            .get(&id)
            .ok_or(format!("data set {id} before its template"))?;
        let min: usize = fields
            .iter()
            .map(|f| {
                if f.len == VARLEN {
                    1
                } else {
                    usize::from(f.len)
                }
            })
            .sum();
        let mut off = 0;
        while body.len() - off >= min {
            let mut rec = Vec::new();
            for f in fields {
                let len = if f.len == VARLEN {
                    let l = usize::from(body[off]);
                    off += 1;
                    if l == 255 {
                        let l = usize::from(be16(&body[off..]));
                        off += 2;
                        l
                    } else {
                        l
                    }
                } else {
                    usize::from(f.len)
                };
                if off + len > body.len() {
                    return Err(format!("record of template {id} cut"));
                }
                rec.push((*f, body[off..off + len].to_vec()));
                off += len;
            }
            d.records.push((id, rec));
        }
        if body[off..].iter().any(|&b| b != 0) {
            return Err(format!(
                "data set {id}: {} bytes left over",
                body.len() - off
            ));
        }
        Ok(())
    }
}

/// A record's value of element (`pen`, `id`) as an unsigned number.
pub fn num(rec: &[(FieldSpec, Vec<u8>)], pen: u32, id: u16) -> Option<u64> {
    rec.iter()
        .find(|(f, _)| f.pen == pen && f.id == id)
        .map(|(_, v)| v.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b)))
}

/// A record's value of element (`pen`, `id`) as bytes.
pub fn bytes(rec: &[(FieldSpec, Vec<u8>)], pen: u32, id: u16) -> Option<Vec<u8>> {
    rec.iter()
        .find(|(f, _)| f.pen == pen && f.id == id)
        .map(|(_, v)| v.clone())
}
