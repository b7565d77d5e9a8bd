//! Names nobody here chose (issue #16): a process names itself with bytes meant to hurt (ESC [ 2 J
//! clears a terminal, a newline forges a line, 0xff 0xfe are not UTF-8), makes one connection,
//! and `tcplog dump` shows it safely in every format, with its exact bytes recoverable.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::dev::Dev;
use crate::harness::{Harness, TestResult};
use crate::sys;
use crate::{ensure, ensure_eq};

/// ESC [ 2 J " a , b LF 0xff 0xfe: 11 bytes, within PR_SET_NAME's 15.
const NAME: &[u8] = b"\x1b[2J\"a,b\n\xff\xfe";

pub fn all(h: &mut Harness) {
    sys::ensure_loaded();
    h.run(
        "names: a process named ESC [2J \" , LF 0xff 0xfe shows safely in text, JSON and CSV",
        hostile_name,
    );
}

/// A child renames itself and connects to `l`; returns its pid once its connection is over.
fn connect_as_hostile_name(l: &TcpListener) -> Result<u32, String> {
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
        },
        sin_zero: [0; 8],
    };
    let mut name = [0u8; 16];
    name[..NAME.len()].copy_from_slice(NAME);
    // SAFETY: The child makes only plain system calls (prctl, socket, connect, close, _exit).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: `name` is NUL-terminated, `sa` a valid sockaddr_in of the size given.
        unsafe {
            libc::prctl(libc::PR_SET_NAME, name.as_ptr());
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            let rc = libc::connect(
                fd,
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
            libc::close(fd);
            libc::_exit(if rc == 0 { 0 } else { 1 });
        }
    }
    let mut status = 0;
    // SAFETY: Waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child could not connect"
    );
    // The connection waits in the backlog: accept it and close our end, so both end.
    drop(l.accept().map_err(|e| e.to_string())?);
    Ok(pid as u32)
}

fn dump(args: &[&str]) -> Result<Vec<u8>, String> {
    let out = sys::run(sys::TOOL, args)?;
    ensure!(
        out.status.success(),
        "tcplog {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

/// No byte but the line ends is a control: nothing a terminal would act on, no line split.
fn only_printable(what: &str, out: &[u8]) -> TestResult {
    let bad = out
        .iter()
        .position(|&b| (b < 0x20 && b != b'\n') || b == 0x7f);
    ensure!(
        bad.is_none(),
        "{what}: control byte at {bad:?}: {:?}",
        String::from_utf8_lossy(out)
    );
    Ok(())
}

fn hostile_name() -> TestResult {
    sys::run_ok(sys::TOOL, &["events", "all", "--summaries", "on"])?;
    sys::run_ok(sys::TOOL, &["filter", "clear"])?;
    Dev::rw()?.flush()?;
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let pid = connect_as_hostile_name(&l)?.to_string();
    let mine = ["dump", "--pid", pid.as_str()];

    // JSON first, until the connection's summary is in: then all of the child's records are.
    let deadline = Instant::now() + Duration::from_secs(10);
    let recs = loop {
        let json = dump(&[&mine[..], &["--json"]].concat())?;
        only_printable("JSON", &json)?;
        let recs: Vec<Value> = String::from_utf8_lossy(&json)
            .lines()
            .map(|l| serde_json::from_str(l).map_err(|e| format!("{l}: {e}")))
            .collect::<Result<_, _>>()?;
        if recs.iter().any(|r| r["type"] == "summary") || Instant::now() > deadline {
            break recs;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    ensure!(
        recs.iter()
            .any(|r| r["type"] == "event" && r["op"] == "connect"),
        "no connect event of pid {pid}: {recs:?}"
    );
    let hex: String = NAME.iter().fold(String::new(), |mut o, b| {
        let _ = write!(o, "{b:02x}");
        o
    });
    let lossy = String::from_utf8_lossy(NAME);
    for r in &recs {
        // Documented: `comm` is the name with U+FFFD for what is not UTF-8, `comm_hex` the bytes.
        ensure_eq!(r["comm"], lossy.as_ref(), "{r}");
        ensure_eq!(r["comm_hex"], hex.as_str(), "{r}");
    }

    let text = dump(&mine)?;
    only_printable("text", &text)?;
    let text = String::from_utf8_lossy(&text);
    ensure_eq!(
        text.lines().count(),
        1 + recs.len(),
        "a header and exactly one line per record: {text}"
    );
    for line in text.lines().skip(1) {
        ensure!(
            line.contains(r" \x1b[2J\x22a,b\n\xff\xfe "),
            "the escaped name is not in {line:?}"
        );
    }

    let csv = dump(&[&mine[..], &["--format", "csv"]].concat())?;
    only_printable("CSV", &csv)?;
    let csv = String::from_utf8_lossy(&csv);
    ensure_eq!(
        csv.lines().count(),
        1 + recs.len(),
        "one row per line: {csv}"
    );
    for line in csv.lines().skip(1) {
        ensure!(
            line.contains(r#","\x1b[2J""a,b\n\xff\xfe","#),
            "the escaped, quoted name is not in {line:?}"
        );
    }
    Ok(())
}
