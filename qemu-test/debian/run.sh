#!/usr/bin/env bash
# The Debian lane (qemu-test/run-vm.sh --lane debian test): Debian's 7.3 kernel booting a Debian
# 13 root file system with systemd (qemu-test/debian/image.sh, cached), on which the packages of
# `make deb` are installed with apt and tcplog.service runs as an administrator would run it;
# then a reboot, and a purge. The tests are qemu-test/debian/lane.sh, brought on a second disk
# with the packages; their results come back over the second serial port, one boot after the
# other. The console is scanned for kernel bug reports as in the other lanes.
#
# Usage: qemu-test/debian/run.sh
# The last line says "N passed, N failed"; the exit status is nonzero if anything failed.
# TCPLOG_VM_TIMEOUT: seconds allowed per boot (default 600).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$repo/qemu-test/out/debian
timeout_s=${TCPLOG_VM_TIMEOUT:-600}
start=$(date +%s)

kenv=$("$repo/scripts/build.sh" | sed -n 's/^KENV=//p')
[ -n "$kenv" ] || { echo "[vm] the build failed" >&2; exit 1; }
debs=$(TCPLOG_KENV=$kenv "$repo/scripts/deb.sh")
# shellcheck source=/dev/null
. "$kenv"
image=$("$here/image.sh" "$kenv" | sed -n 's/^DEBIAN_IMAGE=//p')
[ -n "$image" ] || { echo "[vm] the Debian image was not made" >&2; exit 1; }
prep=$(date +%s)

rm -rf "$out"
mkdir -p "$out/payload"
# The image stays as cached: each run boots a copy (sparse, so a few seconds).
cp --sparse=always "$image/disk.raw" "$out/disk.raw"
while read -r d; do cp "$d" "$out/payload/"; done <<<"$debs"
install -m 0644 "$here/lane.sh" "$out/payload/lane.sh"
truncate -s 64M "$out/payload.raw"
mkfs.ext4 -q -F -d "$out/payload" "$out/payload.raw"

p=0 f=0
for boot in 1 2; do
	: >"$out/console.$boot.log"
	: >"$out/results.$boot.log"
	echo "[vm] lane debian: boot $boot of 2, kernel $KVER"
	b0=$(date +%s)
	set +e
	timeout --foreground "$timeout_s" qemu-system-x86_64 -accel tcg,thread=single -cpu max \
		-smp 2 -m 1024 -nodefaults -display none -no-reboot \
		-kernel "$VMLINUZ" -initrd "$image/initrd.img" \
		-append "root=/dev/vda rw console=ttyS0 loglevel=5 printk.time=1 panic=-1" \
		-drive "file=$out/disk.raw,format=raw,if=virtio" \
		-drive "file=$out/payload.raw,format=raw,if=virtio,readonly=on" \
		-serial "file:$out/console.$boot.log" -serial "file:$out/results.$boot.log" &
	qpid=$!
	tail -n +1 -f --pid=$qpid "$out/results.$boot.log" 2>/dev/null &
	wait $qpid
	qrc=$?
	set -e
	sleep 0.3
	sed -i 's/\r$//' "$out/console.$boot.log" "$out/results.$boot.log"
	echo "[vm] boot $boot: QEMU ran for $(($(date +%s) - b0)) s"
	p=$((p + $(grep -c '^ok ' "$out/results.$boot.log" || true)))
	f=$((f + $(grep -c '^FAIL ' "$out/results.$boot.log" || true)))
	if ! grep -q "^tcplog-lane: boot $boot done" "$out/results.$boot.log"; then
		[ "$qrc" = 124 ] && echo "[vm] boot $boot timed out after $timeout_s s" >&2
		echo "[vm] boot $boot did not finish its tests; the console's last lines:" >&2
		tail -n 40 "$out/console.$boot.log" >&2
		f=$((f + 1))
		break
	fi
	if "$repo/qemu-test/scan-kernel-log.sh" "host: boot $boot's kernel log has no bug report" "$out/console.$boot.log"; then
		p=$((p + 1))
	else
		f=$((f + 1))
	fi
done
rm -f "$out/disk.raw"
echo "[vm] lane debian took $(($(date +%s) - start)) s ($((prep - start)) s packages and image)"
echo "$p passed, $f failed"
[ "$f" = 0 ]
