//! `tcplog status`.

use std::io::Write;

use serde::Serialize;

use crate::device::{Access, Device};
use crate::error::{Error, Result};

#[derive(Debug, Serialize)]
struct Status<'a> {
    device: &'a str,
    module_abi_version: u32,
    tool_abi_version: u32,
}

pub fn run(path: &str, json: bool, out: &mut dyn Write) -> Result<()> {
    let dev = Device::open(path, Access::ReadOnly)?;
    let module = dev.abi_version()?;
    let st = Status {
        device: dev.path(),
        module_abi_version: module,
        tool_abi_version: tcplog_ctl::ABI_VERSION,
    };
    let res = if json {
        serde_json::to_writer(&mut *out, &st)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        writeln!(out, "device            {}", st.device).and_then(|()| {
            writeln!(out, "module ABI        {}", st.module_abi_version)?;
            writeln!(out, "tool ABI          {}", st.tool_abi_version)
        })
    };
    res.map_err(|e| Error::io("writing status", e))?;
    if module != tcplog_ctl::ABI_VERSION {
        return Err(Error::AbiMismatch {
            module,
            tool: tcplog_ctl::ABI_VERSION,
        });
    }
    Ok(())
}
