//! Commands that show or change the module's state: enable, disable, flush, mark, config,
//! events, filter, rules.

use std::io::Write;
use std::path::Path;

use serde_json::json;
use tcplog_ctl as abi;

use crate::device::{Access, Device};
use crate::error::{Error, Result};
use crate::output::json::to_line;

fn open_rw(path: &Path) -> Result<Device> {
    Device::open_checked(path, Access::ReadWrite)
}

/// Opens the device for writing only when the command changes something (the module insists on
/// it then, and a read-only look needs no more).
fn open_for(path: &Path, changing: bool) -> Result<Device> {
    let access = if changing {
        Access::ReadWrite
    } else {
        Access::ReadOnly
    };
    Device::open_checked(path, access)
}

fn write_out(out: &mut dyn Write, s: &str) -> Result<()> {
    writeln!(out, "{s}").map_err(|e| Error::io("writing output", e))
}

pub fn set_enabled(path: &Path, on: bool) -> Result<()> {
    open_rw(path)?.set_enabled(on)
}

pub fn flush(path: &Path, out: &mut dyn Write) -> Result<()> {
    let bytes = open_rw(path)?.flush()?;
    write_out(out, &format!("flushed {bytes} bytes"))
}

pub fn mark(path: &Path, value: u64, count: u32) -> Result<()> {
    open_rw(path)?.mark(value, count)
}

/// Changes to the configuration asked for on the command line.
#[derive(Debug, Default)]
pub struct ConfigChange {
    pub snap_len: Option<u32>,
    pub forward: Option<bool>,
    pub interim_s: Option<u32>,
}

impl ConfigChange {
    fn is_empty(&self) -> bool {
        self.snap_len.is_none() && self.forward.is_none() && self.interim_s.is_none()
    }
}

/// Shows the configuration, after applying `change` if it asks for anything.
pub fn config(path: &Path, change: &ConfigChange, json: bool, out: &mut dyn Write) -> Result<()> {
    let dev = open_for(path, !change.is_empty())?;
    let mut cfg = dev.config()?;
    if !change.is_empty() {
        if let Some(n) = change.snap_len {
            cfg.snap_len = n;
        }
        if let Some(n) = change.interim_s {
            cfg.interim_s = n;
        }
        if let Some(on) = change.forward {
            cfg.options = if on {
                cfg.options | abi::OPT_FORWARD
            } else {
                cfg.options & !abi::OPT_FORWARD
            };
        }
        dev.set_config(&cfg)?;
        cfg = dev.config()?;
    }
    let text = if json {
        to_line(&json!({
            "event_mask": cfg.event_mask,
            "options": cfg.options,
            "snap_len": cfg.snap_len,
            "forward": cfg.options & abi::OPT_FORWARD != 0,
            "interim_s": cfg.interim_s,
        }))
    } else {
        format!(
            "event_mask          {:#x}\noptions             {:#x}\nsnap_len            {}\nforward             {}\ninterim             {}",
            cfg.event_mask,
            cfg.options,
            cfg.snap_len,
            if cfg.options & abi::OPT_FORWARD != 0 { "on" } else { "off" },
            if cfg.interim_s == 0 { "off".to_owned() } else { format!("{}s", cfg.interim_s) }
        )
    };
    write_out(out, &text)
}

/// `tcplog events`: shows the logged operations, after replacing them if `ops` is not empty.
pub fn events(
    path: &Path,
    ops: &[String],
    summaries: Option<bool>,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let change = !ops.is_empty() || summaries.is_some();
    let dev = open_for(path, change)?;
    let mut cfg = dev.config()?;
    if change {
        if !ops.is_empty() {
            cfg.event_mask = crate::events::parse_mask(ops).map_err(Error::bad_input)?;
        }
        if let Some(on) = summaries {
            cfg.options = if on {
                cfg.options | abi::OPT_SUMMARIES
            } else {
                cfg.options & !abi::OPT_SUMMARIES
            };
        }
        dev.set_config(&cfg)?;
        cfg = dev.config()?;
    }
    let names = crate::events::mask_names(cfg.event_mask);
    let summ = cfg.options & abi::OPT_SUMMARIES != 0;
    let text = if json {
        to_line(&json!({ "events": names, "summaries": summ }))
    } else {
        format!(
            "events              {}\nsummaries           {}",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(" ")
            },
            if summ { "on" } else { "off" }
        )
    };
    write_out(out, &text)
}

/// `tcplog filter`: shows the criteria, after setting or clearing them.
pub fn filter(
    path: &Path,
    action: Option<&crate::cli::FilterAction>,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    use crate::cli::FilterAction;
    // Parsed before the device is opened: a bad criterion is reported as such.
    let new = match action {
        None => None,
        Some(FilterAction::Set(args)) => Some(args.to_filter().map_err(Error::bad_input)?),
        Some(FilterAction::Clear) => Some(abi::Filter::default()),
    };
    let dev = open_for(path, new.is_some())?;
    if let Some(f) = new {
        dev.set_filter(&f)?;
    }
    let f = dev.filter()?;
    let mut cgroups = crate::cgroup::Cgroups::new(crate::cgroup::root());
    for &id in &f.cgroups[..f.n_cgroups as usize] {
        cgroups.learn(id);
    }
    let crit = crate::criteria::describe(&f, &|id| cgroups.path(id).map(<[u8]>::to_vec));
    let text = if json {
        to_line(&json!({ "criteria": crit }))
    } else if crit.is_empty() {
        "no criteria: everything is logged".to_owned()
    } else {
        crit.join(" ")
    };
    write_out(out, &text)
}

/// `tcplog rules`: shows the rules and what each matched, after setting or clearing them.
pub fn rules(
    path: &Path,
    action: Option<&crate::cli::RulesAction>,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    use crate::cli::RulesAction;
    // Parsed before the device is opened: a bad rule is reported as such.
    let new = match action {
        None => None,
        Some(a) => Some(match a {
            RulesAction::Set { rules, file } => {
                let mut lines = rules.clone();
                if let Some(f) = file {
                    let text =
                        std::fs::read_to_string(f).map_err(|e| Error::file("cannot read", f, e))?;
                    lines.extend(text.lines().map(str::to_owned));
                }
                crate::rules::parse_rules(&lines).map_err(Error::bad_input)?
            }
            RulesAction::Clear => abi::RuleSet::default(),
        }),
    };
    let dev = open_for(path, new.is_some())?;
    if let Some(set) = new {
        dev.set_rules(&set)?;
    }
    let set = dev.rules()?;
    let stats = dev.rule_stats()?;
    let rules = &set.rules[..set.n_rules as usize];
    let text = if json {
        let list: Vec<serde_json::Value> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                json!({
                    "rule": i + 1,
                    "text": crate::rules::rule_str(r),
                    "packets": stats.packets[i],
                    "bytes": stats.bytes[i],
                })
            })
            .collect();
        to_line(&json!({ "rules": list }))
    } else if rules.is_empty() {
        "no rules".to_owned()
    } else {
        let width = rules
            .iter()
            .map(|r| crate::rules::rule_str(r).len())
            .max()
            .unwrap_or(0);
        rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                format!(
                    "{:>2}  {:<width$}  {} packets, {} bytes",
                    i + 1,
                    crate::rules::rule_str(r),
                    stats.packets[i],
                    stats.bytes[i]
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    write_out(out, &text)
}

/// Bounds the tool checks before asking the module, to give a clear message.
pub fn parse_snap_len(s: &str) -> std::result::Result<u32, String> {
    let n: u32 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if n > abi::MAX_SNAP_LEN {
        return Err(format!("at most {} bytes", abi::MAX_SNAP_LEN));
    }
    Ok(n)
}

/// A duration in whole seconds, at most a day: `60s`, `5m`, `1h`, a bare number of seconds, or
/// `0`/`off` for none.
pub fn parse_interim(s: &str) -> std::result::Result<u32, String> {
    let secs = match s {
        "0" | "off" => return Ok(0),
        _ if s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<u64>().map_err(|_| format!("'{s}' is too long"))?
        }
        _ => {
            let d = humantime::parse_duration(s).map_err(|e| format!("'{s}': {e}"))?;
            if d.subsec_nanos() != 0 {
                return Err(format!("'{s}': whole seconds only"));
            }
            d.as_secs()
        }
    };
    if secs > u64::from(abi::MAX_INTERIM_S) {
        return Err(format!("at most {} s (a day)", abi::MAX_INTERIM_S));
    }
    Ok(secs as u32)
}

pub fn parse_mark_count(s: &str) -> std::result::Result<u32, String> {
    let n: u32 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if n == 0 || n > abi::MAX_MARK_COUNT {
        return Err(format!("must be 1 to {}", abi::MAX_MARK_COUNT));
    }
    Ok(n)
}
