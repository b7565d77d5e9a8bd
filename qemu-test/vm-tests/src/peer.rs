//! Helper modes of the test binary, run as separate processes so that the connecting and the
//! accepting side of a connection are different processes (and can live in other namespaces).
//!
//! `--tcp-server ADDR RECV SEND`: listens on ADDR (port 0 for any), prints `port N`, accepts one
//! connection, reads exactly RECV bytes, writes SEND bytes, reads to EOF and closes.
//! `--tcp-client ADDR SEND RECV`: connects, writes SEND bytes, reads exactly RECV bytes, closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("peer: {what}: {e}");
    std::process::exit(1);
}

fn num(s: Option<String>) -> usize {
    s.and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fail("usage", "a number is missing"))
}

/// Runs a helper mode if the arguments ask for one; returns whether it did.
pub fn main_if_peer() -> bool {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("--tcp-server") => {
            let addr = args.next().unwrap_or_default();
            let (recv, send) = (num(args.next()), num(args.next()));
            let l = TcpListener::bind(&addr).unwrap_or_else(|e| fail("bind", e));
            println!("port {}", l.local_addr().unwrap().port());
            std::io::stdout().flush().ok();
            let (mut s, _) = l.accept().unwrap_or_else(|e| fail("accept", e));
            drop(l);
            let mut buf = vec![0u8; recv];
            s.read_exact(&mut buf).unwrap_or_else(|e| fail("read", e));
            s.write_all(&vec![b's'; send])
                .unwrap_or_else(|e| fail("write", e));
            let mut rest = Vec::new();
            s.read_to_end(&mut rest)
                .unwrap_or_else(|e| fail("read to EOF", e));
            true
        }
        Some("--tcp-client") => {
            let addr = args.next().unwrap_or_default();
            let (send, recv) = (num(args.next()), num(args.next()));
            let mut s = TcpStream::connect(&addr).unwrap_or_else(|e| fail("connect", e));
            s.write_all(&vec![b'c'; send])
                .unwrap_or_else(|e| fail("write", e));
            let mut buf = vec![0u8; recv];
            s.read_exact(&mut buf).unwrap_or_else(|e| fail("read", e));
            true
        }
        _ => false,
    }
}

/// A helper process serving one connection.
pub struct Server {
    pub child: Child,
    pub port: u16,
}

/// Starts `--tcp-server`, prefixed by `wrap` (e.g. `ip netns exec NS`), and waits for its port.
pub fn server(wrap: &[&str], addr: &str, recv: usize, send: usize) -> Result<Server, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let me = me.to_str().unwrap_or("/usr/bin/tcplog-vm-tests").to_owned();
    let (prog, pre) = match wrap.split_first() {
        Some((p, rest)) => (p.to_string(), rest.iter().map(|s| s.to_string()).collect()),
        None => (me.clone(), Vec::new()),
    };
    let mut args: Vec<String> = pre;
    if !wrap.is_empty() {
        args.push(me);
    }
    args.extend([
        "--tcp-server".into(),
        addr.into(),
        recv.to_string(),
        send.to_string(),
    ]);
    let mut child = Command::new(&prog)
        .args(&args)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn server: {e}"))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let port = line
        .trim()
        .strip_prefix("port ")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("server said {line:?}"))?;
    Ok(Server { child, port })
}

/// Runs `--tcp-client` (prefixed by `wrap`) to completion; returns its pid.
pub fn client(wrap: &[&str], addr: &str, send: usize, recv: usize) -> Result<u32, String> {
    client_as(wrap, None, addr, send, recv)
}

/// As [`client`], run through the executable path `exe` (its name becomes the command name).
pub fn client_as(
    wrap: &[&str],
    exe: Option<&str>,
    addr: &str,
    send: usize,
    recv: usize,
) -> Result<u32, String> {
    let me = match exe {
        Some(e) => e.to_owned(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned(),
    };
    let mut cmd = match wrap.split_first() {
        Some((p, rest)) => {
            let mut c = Command::new(p);
            c.args(rest).arg(&me);
            c
        }
        None => Command::new(&me),
    };
    cmd.args(["--tcp-client", addr, &send.to_string(), &recv.to_string()]);
    let child = cmd.spawn().map_err(|e| format!("spawn client: {e}"))?;
    let pid = child.id();
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("client exited with {}", out.status));
    }
    Ok(pid)
}

impl Server {
    pub fn finish(mut self) -> Result<u32, String> {
        let pid = self.child.id();
        let st = self.child.wait().map_err(|e| e.to_string())?;
        if !st.success() {
            return Err(format!("server exited with {st}"));
        }
        Ok(pid)
    }
}
