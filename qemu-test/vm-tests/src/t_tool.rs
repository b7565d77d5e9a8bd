//! The tcplog tool against the real device: control commands, dump, follow, errors.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::dev::Dev;
use crate::harness::{Harness, TestResult};
use crate::sys;
use crate::{ensure, ensure_eq};

pub fn all(h: &mut Harness) {
    sys::ensure_loaded();
    h.run(
        "tool: mark then dump --json shows the records",
        mark_and_dump,
    );
    h.run(
        "tool: disable and enable change status and are audited",
        enable_disable,
    );
    h.run("tool: flush prints the bytes flushed", flush);
    h.run(
        "tool: follow --json prints records as they arrive and totals on SIGINT",
        follow,
    );
    h.run(
        "tool: follow shows lost records and their total",
        follow_lost,
    );
    h.run(
        "tool: config sets snap_len; out-of-range values are refused",
        config,
    );
    h.run("tool: dump into a closed pipe exits quietly", broken_pipe);
    h.run(
        "tool: non-root enable says permission denied, exit 4",
        nobody_enable,
    );
}

fn tool(args: &[&str]) -> Result<String, String> {
    sys::run_ok(sys::TOOL, args)
}

fn json_lines(s: &str) -> Result<Vec<Value>, String> {
    s.lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("bad JSON line {l:?}: {e}")))
        .collect()
}

fn mark_and_dump() -> TestResult {
    Dev::rw()?.flush()?;
    tool(&["mark", "--value", "55", "--count", "3"])?;
    let recs = json_lines(&tool(&["dump", "--json"])?)?;
    ensure_eq!(recs.len(), 4, "the flush's CONFIG record and 3 marks");
    ensure_eq!(recs[0]["type"], "config");
    ensure_eq!(recs[0]["item"], "flush");
    for (i, r) in recs[1..].iter().enumerate() {
        ensure_eq!(r["type"], "mark");
        ensure_eq!(r["value"], 55);
        ensure_eq!(r["index"], i as u64);
        ensure_eq!(r["comm"], "tcplog");
        ensure_eq!(r["seq"], recs[0]["seq"].as_u64().unwrap() + 1 + i as u64);
        let time = r["time"].as_str().ok_or("no time")?;
        ensure!(
            time.ends_with('Z') && time.len() == 30,
            "time {time:?} is not RFC 3339 with ns"
        );
        ensure!(r["time_ns"].as_u64().is_some(), "no time_ns");
    }
    let text = tool(&["dump"])?;
    ensure_eq!(text.lines().count(), 5, "a header line and 4 records");
    ensure!(text.starts_with("TIME "), "{text}");
    let line = text.lines().nth(2).unwrap_or("");
    ensure!(
        line.contains(" mark ") && line.contains("value 55 #0 (uid 0)"),
        "{text}"
    );
    Ok(())
}

fn status_json() -> Result<Value, String> {
    serde_json::from_str(&tool(&["status", "--json"])?).map_err(|e| e.to_string())
}

fn enable_disable() -> TestResult {
    let d = Dev::open(false, true)?;
    d.seek_end()?;
    tool(&["disable"])?;
    ensure_eq!(status_json()?["enabled"], false);
    tool(&["enable"])?;
    ensure_eq!(status_json()?["enabled"], true);
    ensure_eq!(d.drain()?.len(), 2);
    let text = tool(&["status"])?;
    ensure!(text.contains("logging             enabled"), "{text}");
    Ok(())
}

fn flush() -> TestResult {
    tool(&["mark", "--count", "10"])?;
    let used = status_json()?["bytes_used"]
        .as_u64()
        .ok_or("no bytes_used")?;
    let out = tool(&["flush"])?;
    ensure_eq!(out.trim(), format!("flushed {used} bytes"));
    Ok(())
}

/// Sends a signal to a child process.
fn kill(pid: u32, sig: i32) {
    // SAFETY: Signalling our own child.
    unsafe { libc::kill(pid as i32, sig) };
}

fn follow() -> TestResult {
    let mut child = Command::new(sys::TOOL)
        .args(["follow", "--json", "--new"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    tool(&["mark", "--value", "66", "--count", "2"])?;
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..2 {
        let mut l = String::new();
        stdout.read_line(&mut l).map_err(|e| e.to_string())?;
        lines.push(l);
    }
    let latency = t0.elapsed();
    kill(child.id(), libc::SIGINT);
    let status = child.wait().map_err(|e| e.to_string())?;
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).ok();
    ensure!(status.success(), "follow exited with {status}: {err}");
    let recs = json_lines(&lines.concat())?;
    ensure_eq!(recs[0]["value"], 66);
    ensure_eq!(recs[1]["index"], 1);
    ensure!(
        err.contains("2 records, lost 0 records in total"),
        "stderr: {err}"
    );
    ensure!(
        latency < Duration::from_secs(5),
        "records took {latency:?} to show"
    );
    Ok(())
}

fn follow_lost() -> TestResult {
    let mut child = Command::new(sys::TOOL)
        .args(["follow", "--new"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(500));
    // Stopped, it cannot keep up: two full rings of marks overwrite what it has not read.
    kill(child.id(), libc::SIGSTOP);
    let ring = status_json()?["ring_size"].as_u64().ok_or("no ring_size")?;
    let n = ring * 2 / tcplog_ctl::MARK_RECORD_LEN as u64;
    let w = Dev::rw()?;
    let mut left = n;
    while left > 0 {
        let c = left.min(u64::from(tcplog_ctl::MAX_MARK_COUNT));
        w.mark(77, c as u32)?;
        left -= c;
    }
    let held = w.status()?.records_held;
    kill(child.id(), libc::SIGCONT);
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    // Everything arrives: the LOST line and the records still held.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = vec![0u8; 1 << 16];
    while out.lines().count() < held as usize + 1 && Instant::now() < deadline {
        let k = stdout.read(&mut buf).map_err(|e| e.to_string())?;
        if k == 0 {
            break;
        }
        out.push_str(&String::from_utf8_lossy(&buf[..k]));
    }
    kill(child.id(), libc::SIGINT);
    child.wait().map_err(|e| e.to_string())?;
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).ok();
    let lost = n - held;
    let first = out.lines().nth(1).unwrap_or("");
    ensure!(
        first.contains(" lost ") && first.contains(&format!("lost {lost} records")),
        "first record: {first:?}"
    );
    ensure!(
        err.contains(&format!("lost {lost} records in total")),
        "stderr: {err}"
    );
    Ok(())
}

fn config() -> TestResult {
    let out = tool(&["config", "--snap-len", "256"])?;
    ensure!(out.contains("snap_len            256"), "{out}");
    let out = sys::run(sys::TOOL, &["config", "--snap-len", "5000"])?;
    ensure_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(err.contains("at most 4096"), "{err}");
    let v: Value = serde_json::from_str(&tool(&["config", "--json", "--snap-len", "128"])?)
        .map_err(|e| e.to_string())?;
    ensure_eq!(v["snap_len"], 128);
    Ok(())
}

fn broken_pipe() -> TestResult {
    tool(&["mark", "--count", "3000"])?;
    let mut child = Command::new(sys::TOOL)
        .arg("dump")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .map_err(|e| e.to_string())?;
    // The reader end is closed now.
    let status = child.wait().map_err(|e| e.to_string())?;
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).ok();
    ensure!(status.success(), "exit {status}");
    ensure!(err.is_empty(), "stderr: {err}");
    ensure!(!first.is_empty(), "no output at all");
    Ok(())
}

fn nobody_enable() -> TestResult {
    let out = sys::run_as_nobody(sys::TOOL, &["enable"])?;
    ensure_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(err.contains("root or CAP_NET_ADMIN"), "{err}");
    Ok(())
}

// Files and formats.

pub fn files(h: &mut Harness) {
    sys::ensure_loaded();
    h.run(
        "tool: follow --json -w during real traffic; read gives the same records",
        follow_write_read,
    );
    h.run(
        "tool: read reports damage and a cut-short end, and reads on past them",
        read_damaged,
    );
    h.run("tool: --pcap writes packets that tcpdump reads", pcap);
    h.run(
        "tool: transcript reproduces a conversation byte for byte",
        transcript,
    );
    h.run("tool: CSV has a header row and a row per record", csv);
    h.run("tool: completions and the manual page", || {
        let bash = tool(&["completions", "bash"])?;
        ensure!(
            bash.contains("transcript") && bash.contains("--pcap"),
            "bash completion"
        );
        let man = tool(&["man"])?;
        ensure!(
            man.contains(".TH tcplog") && man.contains("follow"),
            "man page"
        );
        Ok(())
    });
}

fn follow_write_read() -> TestResult {
    let _ = std::fs::remove_file("/tmp/f.tlog");
    let child = Command::new(sys::TOOL)
        .args(["follow", "--json", "--new", "-w", "/tmp/f.tlog"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(500));
    crate::fixtures::exchange(&[], "127.0.0.1:0", &[], "127.0.0.1", 1000, 2000)?;
    tool(&["mark", "--value", "9", "--count", "3"])?;
    std::thread::sleep(Duration::from_millis(800));
    kill(child.id(), libc::SIGINT);
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    ensure!(
        out.status.success(),
        "follow: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let followed = String::from_utf8_lossy(&out.stdout).into_owned();
    let read = tool(&["read", "--json", "/tmp/f.tlog"])?;
    let recs = json_lines(&followed)?;
    ensure!(
        recs.iter().any(|r| r["type"] == "summary"),
        "no summary followed"
    );
    ensure!(recs.len() >= 15, "only {} records", recs.len());
    ensure_eq!(read, followed, "read of the file == what follow printed");
    // Selection applies to files as to the device.
    let marks = json_lines(&tool(&["read", "--json", "--type", "mark", "/tmp/f.tlog"])?)?;
    ensure_eq!(marks.len(), 3);
    Ok(())
}

fn read_damaged() -> TestResult {
    let mut bytes = std::fs::read("/tmp/f.tlog").map_err(|e| e.to_string())?;
    let all = json_lines(&tool(&["read", "--json", "/tmp/f.tlog"])?)?;
    // Break the second record's magic, and cut the last record in two.
    let first_len = u16::from_ne_bytes([bytes[256 + 6], bytes[256 + 7]]) as usize;
    bytes[256 + first_len] ^= 0xff;
    let cut = bytes.len() - 20;
    bytes.truncate(cut);
    std::fs::write("/tmp/d.tlog", &bytes).map_err(|e| e.to_string())?;
    let out = sys::run(sys::TOOL, &["read", "--json", "/tmp/d.tlog"])?;
    ensure_eq!(out.status.code(), Some(7), "exit code of a damaged file");
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        err.contains("damaged bytes at offset") && err.contains("reading resumed"),
        "{err}"
    );
    ensure!(err.contains("ends in the middle of a record"), "{err}");
    let got = json_lines(&String::from_utf8_lossy(&out.stdout))?;
    ensure_eq!(
        got.len(),
        all.len() - 2,
        "all but the damaged and the cut record"
    );
    ensure_eq!(got[0], all[0]);
    ensure_eq!(got[1], all[2], "resynchronised on the next record");
    let out = sys::run(sys::TOOL, &["read", "/etc/passwd"])?;
    ensure_eq!(out.status.code(), Some(6));
    ensure!(
        String::from_utf8_lossy(&out.stderr).contains("not a tcplog log file"),
        "not a log file"
    );
    Ok(())
}

fn pcap() -> TestResult {
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = rx.local_addr().unwrap().port();
    Dev::rw()?.flush()?;
    tool(&["rules", "set", &format!("log body proto udp dport {port}")])?;
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    for msg in [&b"one"[..], b"two!", b"three"] {
        tx.send_to(msg, ("127.0.0.1", port))
            .map_err(|e| e.to_string())?;
    }
    std::thread::sleep(Duration::from_millis(500));
    tool(&["dump", "--pcap", "/tmp/p.pcap", "--type", "packet"])?;
    tool(&["rules", "clear"])?;
    let out = sys::run_ok("tcpdump", &["-nn", "-r", "/tmp/p.pcap"])?;
    let lines: Vec<&str> = out.lines().collect();
    ensure_eq!(lines.len(), 6, "3 datagrams, out and in: {out}");
    for (i, n) in [3, 3, 4, 4, 5, 5].iter().enumerate() {
        ensure!(
            lines[i].contains(&format!("> 127.0.0.1.{port}: UDP, length {n}")),
            "line {i}: {}",
            lines[i]
        );
    }
    Ok(())
}

fn transcript() -> TestResult {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = l.local_addr().unwrap().port();
    Dev::rw()?.flush()?;
    tool(&["config", "--snap-len", "4096"])?;
    tool(&[
        "rules",
        "set",
        &format!("log body proto tcp dport {port}"),
        &format!("log body proto tcp sport {port}"),
    ])?;
    let script: [(bool, &[u8]); 4] = [
        (true, b"HELO tcplog\r\n"),
        (false, b"250 hello, pleased to meet you\r\n"),
        (true, b"QUIT\r\n"),
        (false, b"221 bye\r\n"),
    ];
    let server = std::thread::spawn(move || -> Result<(), String> {
        let (mut s, _) = l.accept().map_err(|e| e.to_string())?;
        for (from_client, msg) in script {
            if from_client {
                let mut buf = vec![0u8; msg.len()];
                s.read_exact(&mut buf).map_err(|e| e.to_string())?;
            } else {
                s.write_all(msg).map_err(|e| e.to_string())?;
            }
        }
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).map_err(|e| e.to_string())?;
        Ok(())
    });
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    for (from_client, msg) in script {
        std::thread::sleep(Duration::from_millis(100));
        if from_client {
            c.write_all(msg).map_err(|e| e.to_string())?;
        } else {
            let mut buf = vec![0u8; msg.len()];
            c.read_exact(&mut buf).map_err(|e| e.to_string())?;
        }
    }
    drop(c);
    server.join().map_err(|_| "server panicked")??;
    std::thread::sleep(Duration::from_millis(500));
    let _ = std::fs::remove_file("/tmp/t.tlog");
    tool(&[
        "dump",
        "-w",
        "/tmp/t.tlog",
        "--format",
        "csv",
        "--no-header",
        "--type",
        "mark",
    ])?;
    tool(&["rules", "clear"])?;
    tool(&["config", "--snap-len", "128"])?;
    let report = tool(&["transcript", "/tmp/t.tlog", "/tmp/tr."])?;
    ensure!(
        report.starts_with("/tmp/tr.1: client 127.0.0.1:"),
        "{report}"
    );
    ensure!(
        report.contains(&format!(
            "-> server 127.0.0.1:{port}: client sent 19 bytes, server sent 41"
        )),
        "{report}"
    );
    let text = std::fs::read("/tmp/tr.1").map_err(|e| e.to_string())?;
    // Byte for byte, but for the times: each line's second word.
    let mut want: Vec<u8> = b"c T con\n".to_vec();
    for (from_client, msg) in script {
        want.extend(format!("{} T {}\n", if from_client { 'c' } else { 's' }, msg.len()).bytes());
        want.extend(msg);
    }
    want.extend(b"c T hup\ns T hup\n");
    let mut got = Vec::new();
    let mut rest = &text[..];
    while !rest.is_empty() {
        let nl = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("a line without newline")?;
        let line = std::str::from_utf8(&rest[..nl]).map_err(|e| e.to_string())?;
        let w: Vec<&str> = line.split(' ').collect();
        ensure!(
            w.len() == 3 && w[1].parse::<f64>().is_ok(),
            "odd line {line:?}"
        );
        got.extend(format!("{} T {}\n", w[0], w[2]).bytes());
        rest = &rest[nl + 1..];
        if let Ok(n) = w[2].parse::<usize>() {
            got.extend(&rest[..n]);
            rest = &rest[n..];
        }
    }
    ensure_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
    Ok(())
}

fn csv() -> TestResult {
    Dev::rw()?.flush()?;
    tool(&["mark", "--value", "5", "--count", "2"])?;
    let out = tool(&["dump", "--format", "csv"])?;
    let lines: Vec<&str> = out.lines().collect();
    ensure_eq!(lines.len(), 4, "header, flush record, 2 marks: {out}");
    ensure!(
        lines[0].starts_with("type,seq,time,time_ns,cpu,op,"),
        "{}",
        lines[0]
    );
    let cols = lines[0].split(',').count();
    ensure!(
        lines.iter().all(|l| l.split(',').count() == cols),
        "ragged rows"
    );
    ensure!(
        lines[2].starts_with("mark,") && lines[2].contains(",tcplog,"),
        "{}",
        lines[2]
    );
    Ok(())
}
