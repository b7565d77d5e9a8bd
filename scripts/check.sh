#!/usr/bin/env bash
# README's test command: host unit tests, checks of the built module, and the in-VM suite in its
# lanes: Debian's stock kernel with its memory debugging on; the debug kernel (KASAN, lockdep, ...;
# see qemu-test/run-vm.sh); other Debian kernels (backports' cloud-amd64 and unstable's amd64 by
# default), each with tcplog.ko built for it; and a Debian 13 system booted from disk with the
# packages installed and the service running (qemu-test/debian/run.sh). TCPLOG_LANES="stock
# unstable/cloud-amd64" (stock, debug, debian, or any kernel as scripts/build-root.sh names them)
# runs those.
# Ends with one line "N passed, N failed" that sums everything; exits nonzero if anything failed.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
passed=0
failed=0
finish() {
	echo "$passed passed, $failed failed"
	[ "$failed" = 0 ]
	exit
}

"$repo/scripts/setup-host.sh" || { failed=$((failed + 1)); finish; }
kenv=$("$repo/scripts/build.sh" | sed -n 's/^KENV=//p')
if [ -z "$kenv" ]; then
	echo "[check] the build failed" >&2
	failed=$((failed + 1))
	finish
fi
# shellcheck source=/dev/null
. "$kenv"

echo "== host: cargo test"
log=$(mktemp)
"$repo/scripts/in-root.sh" "$kenv" sh -c 'cd /src && CARGO_TARGET_DIR=/src/target/buildroot cargo test --locked 2>&1' | tee "$log"
rc=${PIPESTATUS[0]}
read -r p f < <(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' "$log")
passed=$((passed + p))
failed=$((failed + f))
if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
	echo "[check] cargo test failed before running its tests" >&2
	failed=$((failed + 1))
fi
rm -f "$log"

echo "== host: the built module"
check() {
	local name=$1
	shift
	if out=$("$@" 2>&1); then
		echo "ok   $name"
		passed=$((passed + 1))
	else
		echo "FAIL $name: $out"
		failed=$((failed + 1))
	fi
}
modinfo_field() { "$repo/scripts/in-root.sh" "$kenv" modinfo -F "$1" "$2"; }
same_vermagic() {
	local ours theirs
	ours=$(modinfo_field vermagic /src/tcplog.ko)
	theirs=$(modinfo_field vermagic "$MODDIR_IN_ROOT/kernel/drivers/net/veth.ko.xz")
	[ -n "$ours" ] && [ "$ours" = "$theirs" ] || { echo "ours '$ours', Debian's veth.ko '$theirs'"; return 1; }
	case "$ours" in "$KVER "*) ;; *) echo "vermagic '$ours' is not for $KVER"; return 1 ;; esac
}
license_gpl() { [ "$(modinfo_field license /src/tcplog.ko)" = GPL ]; }
metadata() {
	[ "$(modinfo_field name /src/tcplog.ko)" = tcplog ] &&
		[ -n "$(modinfo_field author /src/tcplog.ko)" ] &&
		[ -n "$(modinfo_field description /src/tcplog.ko)" ]
}
# The whole module through clippy (kbuild's CLIPPY=1 runs clippy-driver in place of rustc, with
# the lints the kernel's own Rust code is held to), from a copy of the sources so that every file
# is linted, not only those changed since the last build: any warning fails.
clippy_clean() { clippy_clean_for "$kenv" target/clippy/module; }
clippy_clean_for() {
	local kkenv=$1 dir=$2 out
	rm -rf "${repo:?}/$dir"
	"$repo/scripts/copy-module-sources.sh" "$repo/$dir"
	out=$( . "$kkenv" && "$repo/scripts/in-root.sh" "$kkenv" make -s -C "$KDIR_IN_ROOT" M="/src/$dir" CLIPPY=1 modules 2>&1) ||
		{ echo "$out"; return 1; }
	! grep -E '^(warning|error)' <<<"$out" || { echo "$out"; return 1; }
}
# The userspace crates with all their targets, tests included, denying every warning.
crates_clippy_clean() {
	local out
	out=$("$repo/scripts/in-root.sh" "$kenv" sh -c 'cd /src && CARGO_TARGET_DIR=/src/target/buildroot cargo clippy --locked --workspace --all-targets -- -D warnings 2>&1') ||
		{ grep -E '^(warning|error)|-->' <<<"$out" | head -40; return 1; }
}
# Secure Boot: tcplog.ko signed (scripts/sign.sh: the kernel's sign-file) with a throwaway key
# made here carries a signature that modinfo attributes to that key and that openssl verifies,
# as PKCS#7 over the rest of the file, against the certificate; one changed byte fails it.
signature_verifies() {
	local d ko=$repo/target/sign-check/tcplog.ko cn="tcplog check $$" v size siglen rc=1
	d=$(mktemp -d)
	if ! openssl req -new -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=$cn/" \
		-keyout "$d/key.pem" -out "$d/cert.pem" 2>"$d/err"; then
		cat "$d/err"
	elif ! TCPLOG_KENV=$kenv "$repo/scripts/sign.sh" "$d/key.pem" "$d/cert.pem" "$repo/tcplog.ko" "$ko" \
		>/dev/null 2>"$d/err"; then
		cat "$d/err"
	elif [ "$(modinfo_field signer /src/target/sign-check/tcplog.ko)" != "$cn" ]; then
		echo "modinfo names signer '$(modinfo_field signer /src/target/sign-check/tcplog.ko)', not '$cn'"
	elif v=$(modinfo_field sig_key /src/target/sign-check/tcplog.ko | tr -d ':') &&
		[ "$v" != "$(openssl x509 -in "$d/cert.pem" -noout -serial | sed 's/^serial=//')" ]; then
		echo "modinfo's sig_key '$v' is not the certificate's serial number"
	elif [ "$(modinfo_field sig_hashalgo /src/target/sign-check/tcplog.ko)" != sha256 ]; then
		echo "the signature's hash is not sha256"
	elif [ "$(tail -c 28 "$ko")" != '~Module signature appended~' ]; then
		echo "no signature marker at the end of $ko"
	else
		# The end of a signed module: the PKCS#7 signature (DER), struct module_signature (12
		# bytes, the signature's length big-endian in the last 4), the 28-byte marker.
		siglen=$(tail -c 32 "$ko" | head -c 4 | od -An -tu1 | awk '{ print (($1 * 256 + $2) * 256 + $3) * 256 + $4 }')
		size=$(stat -c %s "$ko")
		head -c $((size - 40 - siglen)) "$ko" >"$d/content"
		tail -c $((40 + siglen)) "$ko" | head -c "$siglen" >"$d/sig.p7"
		verify() {
			openssl cms -verify -binary -inform DER -in "$d/sig.p7" -content "$d/content" \
				-certfile "$d/cert.pem" -nointern -CAfile "$d/cert.pem" -purpose any -out /dev/null 2>&1
		}
		if ! verify >/dev/null; then
			echo "openssl does not verify the module's signature"
		else
			printf '\377' | dd of="$d/content" bs=1 seek=4096 conv=notrunc 2>/dev/null
			if verify >/dev/null; then echo "the signature verifies a changed module too"; else rc=0; fi
		fi
	fi
	rm -rf "$d"
	return $rc
}

# Kernel resolution against the archive's own index (the trixie root's trixie-backports Packages
# file, read here with awk, not apt): a kernel named without a version is the newest upload of
# its series; pinned to an older upload, that one. The series is any with two uploads or more.
resolves_newest_and_pinned() {
	local lists=$BUILD_ROOT/var/lib/apt/lists idx uploads series newest older got
	idx=$(ls "$lists"/*_dists_trixie-backports_main_binary-amd64_Packages 2>/dev/null | head -n 1)
	[ -n "$idx" ] || { echo "no trixie-backports index in $lists"; return 1; }
	# "SERIES VERSION" of every amd64 headers package, newest first.
	uploads=$(awk '/^Package: linux-headers-[0-9]+\.[0-9]+\.[0-9]+\+deb[0-9]+-amd64$/ { p = $2 }
		/^Version: / && p { split(substr(p, 15), v, "."); print v[1] "." v[2], $2; p = "" }' "$idx" | sort -u -k2,2rV)
	series=$(awk '{ n[$1]++ } END { for (s in n) if (n[s] > 1) print s }' <<<"$uploads" | sort -rV | head -n 1)
	[ -n "$series" ] || series=$(head -n 1 <<<"$uploads" | cut -d' ' -f1)
	newest=$(awk -v s="$series" '$1 == s { print $2; exit }' <<<"$uploads")
	older=$(awk -v s="$series" '$1 == s { n++; if (n == 2) { print $2; exit } }' <<<"$uploads")
	got=$("$repo/scripts/build-root.sh" --resolve "backports/amd64@$series" 2>/dev/null) || { echo "backports/amd64@$series did not resolve"; return 1; }
	[ "${got%% *}" = "$newest" ] || { echo "backports/amd64@$series resolved to '$got', the index's newest is $newest"; return 1; }
	[ -n "$older" ] || { echo "(series $series has one upload: nothing older to pin)" >&2; return 0; }
	got=$("$repo/scripts/build-root.sh" --resolve "backports/amd64=$older" 2>/dev/null) || { echo "backports/amd64=$older did not resolve"; return 1; }
	[ "${got%% *}" = "$older" ] || { echo "backports/amd64=$older resolved to '$got'"; return 1; }
}

check "tcplog.ko has the vermagic of Debian's own modules" same_vermagic
check "make CLIPPY=1: the module is clippy-clean" clippy_clean
check "cargo clippy: the tool, the ABI crate and the VM tests are clippy-clean (-D warnings)" crates_clippy_clean
check "tcplog.ko is licensed GPL" license_gpl
check "tcplog.ko names itself, its authors and what it does" metadata
check "Debian kernels resolve from the archive: a series' newest upload, or the upload pinned" resolves_newest_and_pinned
check "tcplog.ko signed with a throwaway key: modinfo names the key, openssl verifies the PKCS#7 signature" signature_verifies

# The lanes run two at a time, each VM on one host CPU (single-threaded TCG): two workers take
# them in TCPLOG_LANES's order, so that the debug kernel's build (nice, when not cached) and its
# lane go on beside the others. Each lane writes its own log, printed whole at the end; the sums
# come from each log's last line.
out=$repo/qemu-test/out
mkdir -p "$out"
lane_id() { echo "${1//\//-}"; }

# Runs the in-VM suite of one lane into $out/check-ID.log (its last line "N passed, N failed");
# the checks of the lane's own build go to $out/check-ID.extra as "passed failed".
vm_lane() {
	local lane=$1 id log start extra_p=0 extra_f=0
	id=$(lane_id "$lane")
	log=$out/check-$id.log
	start=$(date +%s)
	case "$lane" in
	stock) echo "== VM, stock lane: Debian's kernel with KFENCE, SLUB debugging and page poisoning" ;;
	debug) echo "== VM, debug lane: the debug kernel (KASAN, KFENCE, UBSAN, lockdep, KUnit, ...)" ;;
	debian) echo "== VM, debian lane: Debian 13 with systemd, the packages installed, the service, a reboot, a purge" ;;
	*) echo "== VM, kernel lane $lane: that Debian kernel and tcplog.ko built for it, the whole suite (adversarial sizes smaller)" ;;
	esac >"$log"
	case "$lane" in
	debug)
		local dkenv v
		dkenv=$("$repo/scripts/build.sh" --lane debug 2>>"$log" | sed -n 's/^DKENV=//p')
		echo "[check] the debug lane's kernel and module took $(($(date +%s) - start)) s" >>"$log"
		if [ -z "$dkenv" ]; then
			{ echo "FAIL the debug kernel and tcplog.ko for it build"; echo "0 passed, 1 failed"; } >>"$log"
			return
		fi
		# shellcheck source=/dev/null
		. "$dkenv"
		v=$(modinfo_field vermagic /src/target/debug-lane/module/tcplog.ko)
		case "$v" in
		"$DK_KREL "*) echo "ok   tcplog.ko of the debug lane has the debug kernel's vermagic" >>"$log"; extra_p=1 ;;
		*) echo "FAIL tcplog.ko of the debug lane: vermagic '$v' is not for $DK_KREL" >>"$log"; extra_f=1 ;;
		esac
		;;
	*/*)
		local envs kkenv ko ours theirs out
		envs=$("$repo/scripts/build.sh" --kernels "$lane" 2>>"$log")
		read -r kkenv ko < <(sed -n 's/^MODULE=//p' <<<"$envs") || true
		echo "[check] the $lane lane's build took $(($(date +%s) - start)) s" >>"$log"
		if [ -z "${kkenv:-}" ]; then
			{ echo "FAIL tcplog.ko builds for kernel $lane"; echo "0 passed, 1 failed"; } >>"$log"
			return
		fi
		ours=$(modinfo_field vermagic "/src/$ko")
		theirs=$( (. "$kkenv" && modinfo_field vermagic "$MODDIR_IN_ROOT/kernel/drivers/net/veth.ko.xz"))
		if [ -n "$ours" ] && [ "$ours" = "$theirs" ]; then
			echo "ok   tcplog.ko for $lane has the vermagic of that kernel's own modules" >>"$log"
			extra_p=$((extra_p + 1))
		else
			echo "FAIL tcplog.ko for $lane: vermagic '$ours', that kernel's veth.ko '$theirs'" >>"$log"
			extra_f=$((extra_f + 1))
		fi
		# Its suite's clippy (unstable's is newer, with lints Debian 13's lacks).
		if out=$(clippy_clean_for "$kkenv" "target/clippy/$id" 2>&1); then
			echo "ok   make CLIPPY=1 for $lane: the module is clippy-clean with that kernel's toolchain" >>"$log"
			extra_p=$((extra_p + 1))
		else
			echo "FAIL make CLIPPY=1 for $lane: $out" >>"$log"
			extra_f=$((extra_f + 1))
		fi
		;;
	esac
	echo "$extra_p $extra_f" >"$out/check-$id.extra"
	"$repo/qemu-test/run-vm.sh" --lane "$lane" test >>"$log" 2>&1
	echo "[check] the $lane lane took $(($(date +%s) - start)) s" >>"$log"
}

# Adds a lane's numbers from its log (a lane that ended without its line counts as one failure).
count_lane() {
	local id log p f
	id=$(lane_id "$1")
	log=$out/check-$id.log
	cat "$log"
	read -r p f < <(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 |
		awk '{ print $1, $3 } END { if (NR == 0) print 0, 1 }')
	passed=$((passed + p))
	failed=$((failed + f))
	if [ -s "$out/check-$id.extra" ]; then
		read -r p f <"$out/check-$id.extra"
		passed=$((passed + p))
		failed=$((failed + f))
	fi
}

# Every lane by default but the kernels on request (README: which and why): the stock kernel, the
# debug kernel, backports' cloud kernel and unstable's kernel, and the Debian system.
lanes=${TCPLOG_LANES:-stock debug backports/cloud-amd64 unstable/amd64 debian}
queue=$out/check-queue
: >"$queue"
for lane in $lanes; do
	case "$lane" in
	stock | debian | debug | */*) echo "$lane" >>"$queue" ;;
	*)
		echo "FAIL unknown lane '$lane' in TCPLOG_LANES"
		failed=$((failed + 1))
		;;
	esac
done
rm -f "$out"/check-*.log "$out"/check-*.extra
# A worker takes the next lane from the queue until none is left.
worker() {
	local lane
	while :; do
		lane=$(flock "$queue.lock" sh -c 'head -n 1 "$1" && sed -i 1d "$1"' take "$queue")
		[ -n "$lane" ] || return 0
		vm_lane "$lane"
	done
}
echo "[check] lanes, two at a time: $(tr '\n' ' ' <"$queue")(logs in qemu-test/out/check-LANE.log)"
worker &
w1=$!
worker &
w2=$!
wait $w1 $w2
for lane in $lanes; do
	case "$lane" in stock | debug | debian | */*) count_lane "$lane" ;; esac
done
finish
