#!/usr/bin/env bash
# Builds the VM image and boots Debian's kernel in QEMU with it.
#
# Usage: qemu-test/run-vm.sh test [FILTER]   run the in-VM suite (or the tests matching FILTER)
#        qemu-test/run-vm.sh demo            the demonstration README's main command shows
#        qemu-test/run-vm.sh bench [WORDS]   the benchmarks (numbers, not verdicts); WORDS, joined
#                                            by commas: quick (fewer rounds), and the sections to
#                                            run (ring, churn, churn2, bulk, memory; all by default)
#        qemu-test/run-vm.sh profile [WORDS] where the time goes (perf) in churn and bulk with
#                                            tcplog enabled; WORDS: quick, churn, bulk
#        qemu-test/run-vm.sh shell           an interactive shell in the VM (serial console)
#
# The console streams to stdout. In test mode the suite's results come back over a second serial
# port; the exit status is nonzero on any failed test, on a crash and on a timeout (TCPLOG_VM_TIMEOUT
# seconds, default 900), and the kernel log is printed then.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
mode=${1:-test}
filter=${2:-}
timeout_s=${TCPLOG_VM_TIMEOUT:-900}
out=$here/out

kenv=$("$repo/scripts/build.sh" | sed -n 's/^KENV=//p')
# shellcheck source=/dev/null
. "$kenv"
mkdir -p "$out"
"$repo/scripts/in-root.sh" "$kenv" sh /src/qemu-test/image/assemble.sh "$KVER" "$MODDIR_IN_ROOT" /src/qemu-test/out >&2
# The benchmarks' and the profile's peers (bpftrace, perf) ride in an archive of their own, appended.
case "$mode" in bench | profile)
	"$repo/scripts/in-root.sh" "$kenv" sh /src/qemu-test/image/peers.sh "/src/${out#"$repo"/}" >&2
	cat "$out/peers.cpio.gz" >>"$out/initramfs.cpio.gz"
	;;
esac

append="console=ttyS0 loglevel=4 panic=-1 tlvm_mode=$mode"
[ -n "$filter" ] && append+=" tlvm_filter=$filter"
# The adversarial tests' seed (printed by each of them), to repeat a run.
[ -n "${TCPLOG_VM_SEED:-}" ] && append+=" tlvm_seed=$TCPLOG_VM_SEED"
: >"$out/console.log"
: >"$out/results.log"
# TCPLOG_VM_ACCEL=tcg,thread=single runs both vCPUs on one host thread: slower, but immune to
# multi-threaded TCG's faults on kernel text being patched (Oops: int3 at a jump label while
# tracepoints, probes or modules come and go; see qemu-test/vm-tests/src/t_adv_cycles.rs).
qemu=(qemu-system-x86_64 -accel "${TCPLOG_VM_ACCEL:-tcg}" -cpu max -smp 2 -m 1024 -nodefaults -display none -no-reboot
	-kernel "$VMLINUZ" -initrd "$out/initramfs.cpio.gz" -append "$append")
if [ "$mode" = shell ]; then
	exec "${qemu[@]}" -serial mon:stdio
fi
qemu+=(-serial "file:$out/console.log" -serial "file:$out/results.log")
# The benchmarks load the module with its largest ring and tables once, and take longer.
case "$mode" in bench | profile)
	qemu+=(-m 2048)
	[ -n "${TCPLOG_VM_TIMEOUT:-}" ] || timeout_s=2400
	;;
esac

start=$(date +%s)
set +e
timeout --foreground "$timeout_s" "${qemu[@]}" &
qpid=$!
tail -n +1 -f --pid=$qpid "$out/console.log" 2>/dev/null &
wait $qpid
qrc=$?
sleep 0.3
set -e
echo "[vm] QEMU ran for $(($(date +%s) - start)) s"

if [ "$mode" = demo ] || [ "$mode" = bench ] || [ "$mode" = profile ]; then
	grep -q '^tcplog-vm: done, status 0' "$out/console.log" || { echo "[vm] the $mode failed" >&2; exit 1; }
	exit 0
fi

# The guest's tty turns \n into \r\n.
sed -i 's/\r$//' "$out/results.log"
summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out/results.log" | tail -1 || true)
if [ $qrc = 124 ]; then
	echo "[vm] timed out after $timeout_s s" >&2
elif [ $qrc != 0 ]; then
	echo "[vm] QEMU exited with status $qrc" >&2
fi
if [ -z "$summary" ]; then
	echo "[vm] the suite did not finish; the console's last lines:" >&2
	tail -n 60 "$out/console.log" >&2
	# Count what finished, and one failure for the suite that did not.
	p=$(grep -c '^ok ' "$out/results.log" || true)
	f=$(grep -c '^FAIL ' "$out/results.log" || true)
	echo "$p passed, $((f + 1)) failed"
	exit 1
fi
echo "$summary"
case "$summary" in *" 0 failed") exit 0 ;; *) exit 1 ;; esac
