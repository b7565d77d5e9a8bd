//! What in the kernel log reports a bug: one list for every test that reads the log
//! (`qemu-test/scan-kernel-log.sh` scans the console on the host with the same list).

/// WARN and BUG, oopses, KASAN, KFENCE, UBSAN, lockdep, RCU, atomic-context and debug-object
/// reports, refcount and list corruption, SLUB and page poisoning reports, stalls, lockups, hung
/// tasks and Rust panics.
const REPORTS: &[&str] = &[
    "WARNING:",
    "BUG:",
    "kernel BUG at",
    "Oops",
    "general protection fault",
    "Kernel panic",
    "Call Trace:",
    "KASAN:",
    "KFENCE:",
    "UBSAN:",
    "ODEBUG:",
    "possible recursive locking",
    "possible circular locking",
    "inconsistent lock state",
    "trying to register non-static key",
    "DEBUG_LOCKS_WARN_ON",
    "suspicious RCU usage",
    "rcu: INFO",
    "detected stall",
    "soft lockup",
    "hard LOCKUP",
    "sleeping function called from invalid context",
    "scheduling while atomic",
    "blocked for more than",
    "refcount_t:",
    "ref_tracker:",
    "list_add corruption",
    "list_del corruption",
    "memory corruption",
    "Poison overwritten",
    "Redzone overwritten",
    "Padding overwritten",
    "Freepointer corrupt",
    "Object already free",
    "rust_panic",
    "panicked at",
];

/// Messages that match [`REPORTS`] but report no bug.
///
/// The x86 ORC unwinder's "WARNING: stack going in the wrong direction? at return_to_handler":
/// printed once per boot when the kernel unwinds a stack (SLUB's per-allocation stack traces,
/// KFENCE's) that an interrupt caught inside the tail of `return_to_handler`, the function-graph
/// return trampoline through which fprobe exit handlers run, whose unwind hints do not describe
/// its last instructions. The stack trace comes out short; nothing else happens.
const NOT_BUGS: &[&str] = &["stack going in the wrong direction? at return_to_handler"];

/// A SLUB report's first line: `BUG kmalloc-64 (Tainted: G O): Poison overwritten`.
fn slub_report(line: &str) -> bool {
    line.contains("BUG ") && (line.contains(" (Not tainted): ") || line.contains(" (Tainted: "))
}

/// Whether a kernel log line reports a bug.
pub fn is_report(line: &str) -> bool {
    (REPORTS.iter().any(|p| line.contains(p)) || slub_report(line))
        && !NOT_BUGS.iter().any(|p| line.contains(p))
}
