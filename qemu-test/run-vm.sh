#!/usr/bin/env bash
# Builds the VM image and boots a kernel in QEMU with it.
#
# Usage: qemu-test/run-vm.sh [--lane LANE] MODE [ARG]
#   test [FILTER]    run the in-VM suite (or the tests matching FILTER)
#   demo             the demonstration README's main command shows
#   bench [WORDS]    the benchmarks (numbers, not verdicts); WORDS, joined by commas: quick (fewer
#                    rounds), icount (the VM's clock counts instructions, see below), and the
#                    sections to run (ring, churn, churn2, bulk, memory; all by default)
#   profile [WORDS]  where the time goes (perf) in churn and bulk with tcplog enabled; WORDS: quick,
#                    churn, bulk
#   shell            an interactive shell in the VM (serial console)
#
# Lanes (TCPLOG_LANE=... does the same as --lane ...):
#   stock  Debian's own 7.3 kernel and the tcplog.ko built for it (the default). In test and shell
#          modes it boots with KFENCE sampling every allocation, SLUB debugging and page poisoning.
#   debug  The debug kernel of scripts/debug-kernel.sh (KASAN, lockdep, ...) and tcplog.ko built
#          against it with clang.
#   SUITE/FLAVOUR[@SERIES][=VERSION]  Another Debian kernel, as scripts/build-root.sh names them
#          (backports/cloud-amd64, unstable/amd64, ...), and tcplog.ko built for it: the same
#          suite as the stock lane, with the memory debugging the kernel has, and the adversarial
#          tests smaller (a quarter of the fuzzer's calls and of the blinding threads, 20 load
#          cycles), as the stock lane runs them at full size.
#   debian Debian's kernel booting a Debian 13 system (systemd, apt, nginx) from a disk image: the
#          packages of `make deb` installed, tcplog.service run, a reboot, a purge
#          (qemu-test/debian/run.sh; test mode only).
#
# The console streams to stdout. In test mode the suite's results come back over a second serial
# port, and the console is then scanned for kernel bug reports (KASAN, lockdep, WARN, ...): that
# scan counts as one more test. The last line says "N passed, N failed"; the exit status is
# nonzero on any failed test, on a crash and on a timeout (TCPLOG_VM_TIMEOUT seconds; default 900,
# 2400 in the debug lane), and the kernel log is printed then.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
lane=${TCPLOG_LANE:-stock}
case "${1:-}" in
--lane) lane=${2:?--lane needs a lane}; shift 2 ;;
--lane=*) lane=${1#--lane=}; shift ;;
esac
mode=${1:-test}
filter=${2:-}
# A kernel lane's name has slashes: its directory does not.
out=$here/out/${lane//\//-}
if [ "$lane" = debian ]; then
	if [ "$mode" != test ] || [ -n "$filter" ]; then
		echo "[vm] the debian lane has only the test mode, without a filter" >&2
		exit 2
	fi
	exec "$here/debian/run.sh"
fi

case "$lane" in
stock)
	kenv=$("$repo/scripts/build.sh" | sed -n 's/^KENV=//p')
	# shellcheck source=/dev/null
	. "$kenv"
	kernel=$VMLINUZ
	krel=$KVER
	moddir=$MODDIR_IN_ROOT
	ko=/src/tcplog.ko
	mem=1024
	timeout_s=${TCPLOG_VM_TIMEOUT:-900}
	# Debian's kernel has KFENCE (off unless sampled), SLUB_DEBUG and PAGE_POISONING: the tests
	# turn them on; the demo and the benchmarks run as the kernel ships.
	debug_args="kfence.sample_interval=1 slub_debug=FZPU page_poison=1"
	boot_args=""
	;;
debug)
	envs=$("$repo/scripts/build.sh" --lane debug)
	kenv=$(sed -n 's/^KENV=//p' <<<"$envs")
	dkenv=$(sed -n 's/^DKENV=//p' <<<"$envs")
	[ -n "$kenv" ] && [ -n "$dkenv" ] || { echo "[vm] the debug lane's build failed" >&2; exit 1; }
	# shellcheck source=/dev/null
	. "$kenv"
	# shellcheck source=/dev/null
	. "$dkenv"
	kernel=$DK_BZIMAGE
	krel=$DK_KREL
	moddir=$DK_MODDIR_IN_ROOT
	ko=/src/target/debug-lane/module/tcplog.ko
	# KASAN's shadow takes an eighth of the memory and its quarantine holds freed objects.
	mem=2048
	timeout_s=${TCPLOG_VM_TIMEOUT:-2400}
	# Every KASAN report, not only the first; RCU stall reports after a minute rather than 21 s,
	# as TCG on a busy host can stall a CPU for a while without anyone being at fault.
	# The adversarial suite runs smaller (a quarter of the fuzzer's calls and of the blinding
	# threads, 10 load cycles): KASAN and lockdep under emulation make it several times slower,
	# and the stock lane runs it at full size.
	debug_args="kasan_multi_shot rcupdate.rcu_cpu_stall_timeout=60 tlvm_adv_percent=25 tlvm_cycles=10"
	# 4-level paging: with QEMU's 5-level paging (-cpu max), 7.3's KASAN reports every access an
	# interrupt makes while identify_cpu() has cleared the boot CPU's feature bits (LA57 among
	# them) as a "wild-memory-access", thousands of them, before init even starts.
	boot_args="no5lvl"
	;;
*/*)
	envs=$("$repo/scripts/build.sh" --kernels "$lane")
	kenv=$(sed -n 's/^KENV=//p' <<<"$envs")
	read -r kkenv ko < <(sed -n 's/^MODULE=//p' <<<"$envs")
	[ -n "$kenv" ] && [ -n "${kkenv:-}" ] || { echo "[vm] the build for kernel $lane failed" >&2; exit 1; }
	# shellcheck source=/dev/null
	. "$kkenv"
	kernel=$VMLINUZ
	krel=$KVER
	moddir=$MODDIR_IN_ROOT
	ko=/src/$ko
	mem=1024
	timeout_s=${TCPLOG_VM_TIMEOUT:-1200}
	debug_args="kfence.sample_interval=1 slub_debug=FZPU page_poison=1 tlvm_adv_percent=25 tlvm_cycles=20"
	boot_args=""
	;;
*)
	echo "[vm] unknown lane '$lane' (stock, debug, debian or SUITE/FLAVOUR)" >&2
	exit 2
	;;
esac
mkdir -p "$out"
"$repo/scripts/in-root.sh" "$kenv" sh /src/qemu-test/image/assemble.sh "$krel" "$moddir" \
	"/src/${out#"$repo"/}" "$ko" >&2
# The benchmarks' and the profile's peers (bpftrace, perf) ride in an archive of their own, appended.
case "$mode" in bench | profile)
	"$repo/scripts/in-root.sh" "$kenv" sh /src/qemu-test/image/peers.sh "/src/${out#"$repo"/}" >&2
	cat "$out/peers.cpio.gz" >>"$out/initramfs.cpio.gz"
	;;
esac

# loglevel=5: warnings reach the console too (lockdep, RCU and WARN reports are warnings).
append="console=ttyS0 loglevel=5 printk.time=1 panic=-1 $boot_args tlvm_mode=$mode"
case "$mode" in test | shell) append+=" $debug_args" ;; esac
[ -n "$filter" ] && append+=" tlvm_filter=$filter"
# The adversarial tests' seed (printed by each of them), to repeat a run.
[ -n "${TCPLOG_VM_SEED:-}" ] && append+=" tlvm_seed=$TCPLOG_VM_SEED"
# The benchmarks load the module with its largest ring and tables once, and take longer.
case "$mode" in bench | profile)
	[ "$mem" -ge 2048 ] || mem=2048
	[ -n "${TCPLOG_VM_TIMEOUT:-}" ] || timeout_s=$((timeout_s > 2400 ? timeout_s : 2400))
	;;
esac
: >"$out/console.log"
: >"$out/results.log"
# Single-threaded TCG (both vCPUs on one host thread) is slower, but immune to multi-threaded
# TCG's faults on kernel text being patched: an Oops at int3, or a fault mid-instruction, at a
# jump label while tracepoints, probes or modules come and go, with or without tcplog (see
# qemu-test/vm-tests/src/t_adv_cycles.rs). Only the benchmarks, which want both host cores, run
# multi-threaded. TCPLOG_VM_ACCEL overrides either.
#
# A benchmark with the word icount runs with QEMU's -icount on one vCPU: the guest's clocks
# advance one nanosecond per instruction executed, and jump over idle time. Its rates and CPU
# times then count instructions, immune to how fast the host happens to run (with two vCPUs
# taking turns on one host thread, one spinning for the other would count too); the price is
# that every instruction costs the same (no caches, no contention), on one CPU.
icount=()
smp=2
case "$mode" in
bench | profile)
	accel=${TCPLOG_VM_ACCEL:-tcg}
	case ",$filter," in
	*,icount,*)
		accel=${TCPLOG_VM_ACCEL:-tcg,thread=single}
		icount=(-icount shift=0,sleep=off)
		smp=1
		;;
	esac
	;;
*) accel=${TCPLOG_VM_ACCEL:-tcg,thread=single} ;;
esac
qemu=(qemu-system-x86_64 -accel "$accel" "${icount[@]}" -cpu max -smp "$smp" -m "$mem" -nodefaults
	-display none -no-reboot -kernel "$kernel" -initrd "$out/initramfs.cpio.gz" -append "$append")
if [ "$mode" = shell ]; then
	exec "${qemu[@]}" -serial mon:stdio
fi
qemu+=(-serial "file:$out/console.log" -serial "file:$out/results.log")

echo "[vm] lane $lane: kernel $krel, $smp CPUs, $mem MB, accel $accel${icount:+ ${icount[*]}}"
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
sed -i 's/\r$//' "$out/results.log" "$out/console.log"
summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out/results.log" | tail -1 || true)
if [ $qrc = 124 ]; then
	echo "[vm] timed out after $timeout_s s" >&2
elif [ $qrc != 0 ]; then
	echo "[vm] QEMU exited with status $qrc" >&2
fi
if [ -n "$summary" ]; then
	read -r p f < <(awk '{ print $1, $3 }' <<<"$summary")
else
	echo "[vm] the suite did not finish; the console's last lines:" >&2
	tail -n 60 "$out/console.log" >&2
	# Count what finished, and one failure for the suite that did not.
	p=$(grep -c '^ok ' "$out/results.log" || true)
	f=$(($(grep -c '^FAIL ' "$out/results.log" || true) + 1))
fi

# The host's own look at the kernel log: every kernel message that reached the console.
if "$here/scan-kernel-log.sh" "host: the $lane lane's kernel log has no bug report" "$out/console.log"; then
	p=$((p + 1))
else
	f=$((f + 1))
fi
echo "$p passed, $f failed"
[ "$f" = 0 ]
