//! tcplog's in-VM test suite. The VM's init runs it as root; it loads the module itself.
//!
//! Usage: `tcplog-vm-tests [FILTER]` runs the tests whose names contain FILTER (all by default);
//! `tcplog-vm-tests --bench [WORDS]` runs the benchmarks instead, `tcplog-vm-tests --profile
//! [WORDS]` the profile (see `bench.rs`).

mod adv;
mod adv_kit;
mod bench;
mod craft;
mod dev;
mod fixtures;
mod floor;
mod fuzz;
mod harness;
mod klog;
mod peer;
mod sys;
mod t_adv_blind;
mod t_adv_cycles;
mod t_adv_device;
mod t_adv_peer;
mod t_adv_socket;
mod t_basic;
mod t_device;
mod t_export;
mod t_kunit;
mod t_names;
mod t_packet;
mod t_real;
mod t_socket;
mod t_tool;
mod uffd;
mod uring;

use harness::Harness;

/// The second serial port, read by the host.
const REPORT: &str = "/dev/ttyS1";

fn main() {
    if peer::main_if_peer() || t_real::main_if_helper() || fuzz::main_if_fuzz() {
        return;
    }
    if adv::main_if_helper() {
        return;
    }
    let filter = std::env::args().nth(1);
    if let Some(mode @ ("--bench" | "--profile")) = filter.as_deref() {
        let words = std::env::args().nth(2);
        let res = if mode == "--bench" {
            bench::main(words.as_deref())
        } else {
            bench::profile(words.as_deref())
        };
        if let Err(e) = res {
            println!("{} failed: {e}", &mode[2..]);
            std::process::exit(1);
        }
        return;
    }
    let mut h = Harness::new(filter, REPORT);

    t_basic::load(&mut h);
    t_kunit::all(&mut h);
    t_basic::device(&mut h);
    t_device::all(&mut h);
    t_tool::all(&mut h);
    t_names::all(&mut h);
    t_socket::all(&mut h);
    t_packet::all(&mut h);
    t_real::all(&mut h);
    t_tool::files(&mut h);
    t_export::all(&mut h);
    t_adv_socket::all(&mut h);
    t_adv_blind::all(&mut h);
    t_adv_peer::all(&mut h);
    t_adv_device::all(&mut h);
    t_adv_device::last(&mut h);
    t_adv_cycles::all(&mut h);
    t_basic::unload(&mut h);
    t_basic::kernel_log(&mut h);

    h.finish();
    if h.failed() > 0 {
        h.note("kernel log follows");
        for line in sys::dmesg().lines() {
            h.note(line);
        }
    }
    std::process::exit(if h.failed() > 0 { 1 } else { 0 });
}
