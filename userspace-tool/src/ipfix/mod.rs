//! IPFIX export (RFC 7011) of connection summaries and interim records: `tcplog export ipfix`.
//!
//! [`flow`] turns records into biflows (RFC 5103), [`encode`] into messages, [`transport`]
//! sends them over UDP or TCP; [`ie`] has the numbers.

#[cfg(test)]
pub mod decode;
pub mod encode;
pub mod flow;
pub mod ie;
pub mod transport;
