#!/usr/bin/env bash
# Scans a VM's console log for kernel bug reports: KASAN, KFENCE, UBSAN, lockdep, RCU, atomic
# context, debug objects, WARN, BUG, oopses, refcount and list corruption, SLUB and page poisoning
# reports, stalls and hung tasks (the in-VM test "kernel log has no WARN, ..." looks for the same).
# Only kernel messages count (they carry a "[  12.345678] " time stamp), not what programs print.
#
# Usage: scan-kernel-log.sh NAME CONSOLE_LOG
# Prints "ok   NAME", or "FAIL NAME: ..." with the first report's first 40 lines and every
# matching line (at most 30); exits 1 then.
set -euo pipefail
name=$1
log=$2

# A kernel message: "[   12.345678] ...", not always at the start of a line (it can cut into a
# line a program was writing).
KMSG='\[ *[0-9]+\.[0-9]+\] '
BAD='WARNING:|BUG:|kernel BUG at|Oops|general protection fault|Kernel panic|Call Trace:'
BAD+='|KASAN:|KFENCE:|UBSAN:|ODEBUG:|possible recursive locking|possible circular locking'
BAD+='|inconsistent lock state|trying to register non-static key|DEBUG_LOCKS_WARN_ON'
BAD+='|suspicious RCU usage|detected stall|sleeping function called from invalid context'
BAD+='|scheduling while atomic|blocked for more than|refcount_t:|ref_tracker:'
BAD+='|list_(add|del) corruption|memory corruption|Poison overwritten|Redzone overwritten'
BAD+='|Padding overwritten|Freepointer corrupt|Object already free'
BAD+='|BUG [^ ]+ \((Not tainted|Tainted: [^)]*)\): '

# Matches that report no bug (qemu-test/vm-tests/src/klog.rs says why): the ORC unwinder's note
# on return_to_handler, the trampoline of fprobe exit handlers.
NOT_BUGS='stack going in the wrong direction\? at return_to_handler'

bad=$(tr -d '\r' <"$log" | grep -nE "$KMSG" | grep -E "$BAD" | grep -vE "$NOT_BUGS" || true)
if [ -z "$bad" ]; then
	echo "ok   $name"
	exit 0
fi
echo "FAIL $name: $(wc -l <<<"$bad") lines match; the first report:"
tr -d '\r' <"$log" | tail -n +"${bad%%:*}" | grep -E "$KMSG" | head -n 40 | sed 's/^/#    /'
echo "#    every matching line (at most 30):"
cut -d: -f2- <<<"$bad" | head -n 30 | sed 's/^/#    /'
exit 1
