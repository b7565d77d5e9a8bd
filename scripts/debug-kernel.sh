#!/usr/bin/env bash
# Builds the debug kernel of the VM's "debug" lane, inside the build root, and keeps it in the
# cache: Debian's own 7.3 source (linux-source-7.3 of the version build-root.sh resolved) built
# with clang (KASAN and Rust together need it), from `allnoconfig` plus
# qemu-test/debug-kernel.config: KASAN, KFENCE, UBSAN, lockdep, RCU and atomic-sleep checks,
# debug objects, KUnit, and what the module and the VM need, built in.
#
# The kernel is built once per cache key: the kernel package's version, the fragment, the
# compilers (rustc, bindgen, clang) and RECIPE below. A second run with the same key only prints
# where it is. What stays is what an out-of-tree module build needs (.config, generated headers,
# scripts, Module.symvers, the Rust metadata) and the bzImage; the object files are dropped.
#
# Usage: scripts/debug-kernel.sh [--config-only] [KENV]
#   KENV: the file build-root.sh names (the build root is made if it is not given).
#   --config-only: configure and check the configuration, then stop (a later run resumes).
# Output: DKENV=<file> on the last line of stdout. The file sets DK_KREL (the kernel's release,
# uname -r), DK_LLVM (make's LLVM= for module builds), DK_TREE_IN_ROOT (the build tree, inside the root), DK_BZIMAGE (on the host),
# DK_MODDIR_IN_ROOT (lib/modules/DK_KREL with modules.builtin, inside the root) and DK_KEY.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
FRAGMENT=$repo/qemu-test/debug-kernel.config
# Bump RECIPE when the way the kernel is built changes (a comment edit does not need it): it is
# part of the cache key. Bump TRIM when trim() changes: a built tree is then trimmed again.
RECIPE=1
TRIM=2
LLVM_SUFFIX=-19
CLANG_PKGS="clang$LLVM_SUFFIX lld$LLVM_SUFFIX llvm$LLVM_SUFFIX"
JOBS=$(nproc)

log() { printf '[debug-kernel] %s\n' "$*" >&2; }
die() { printf '[debug-kernel] error: %s\n' "$*" >&2; exit 1; }

config_only=0
if [ "${1:-}" = --config-only ]; then
	config_only=1
	shift
fi
kenv=${1:-}
if [ -z "$kenv" ]; then
	kenv=$("$repo/scripts/build-root.sh" | sed -n 's/^KENV=//p')
	[ -n "$kenv" ] || die "the build root did not come up"
fi
# shellcheck source=/dev/null
. "$kenv"
CACHE=${BUILD_ROOT%/root}
in_root() { "$repo/scripts/in-root.sh" "$kenv" "$@"; }

# One debug kernel build at a time on this machine (it is the most expensive thing we do).
exec 9>"$CACHE/debug-kernel.lock"
if ! flock -n 9; then
	log "waiting for another debug kernel build to finish"
	flock 9
fi

# The clang toolchain, in the build root (the stock lane does not need it).
if [ ! -e "$BUILD_ROOT/.tcplog-clang$LLVM_SUFFIX" ]; then
	log "installing $CLANG_PKGS in the build root"
	# shellcheck disable=SC2086 # the list is split on purpose
	in_root apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 $CLANG_PKGS \
		>"$CACHE/apt-clang.log" 2>&1 || {
		in_root apt-get update -q -o DPkg::Lock::Timeout=600 >/dev/null 2>&1 || true
		# shellcheck disable=SC2086
		in_root apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 $CLANG_PKGS \
			>"$CACHE/apt-clang.log" 2>&1
	} || { tail -20 "$CACHE/apt-clang.log" >&2; die "installing $CLANG_PKGS failed"; }
	touch "$BUILD_ROOT/.tcplog-clang$LLVM_SUFFIX"
fi

# The source must be the stock kernel's own.
src_version=$(in_root dpkg-query -W -f '${Version}' linux-source-7.3)
[ "$src_version" = "$KPKG_VERSION" ] ||
	die "linux-source-7.3 in the build root is $src_version, the stock kernel is $KPKG_VERSION"

tools=$(in_root sh -c "rustc --version; bindgen --version; clang$LLVM_SUFFIX --version | head -1")
KEY=$({
	echo "recipe $RECIPE"
	echo "linux-source-7.3 $KPKG_VERSION"
	echo "$tools"
	cat "$FRAGMENT"
} | sha256sum | cut -c1-12)
TREE_IN_ROOT=/opt/tcplog-debug/$KVER-$KEY
TREE=$BUILD_ROOT$TREE_IN_ROOT
BUILD_LOG=$CACHE/debug-kernel-$KVER-$KEY.log
ENVF=$CACHE/debug-kernel-$KVER-$KEY.env
mk=(make -s ARCH=x86_64 "LLVM=$LLVM_SUFFIX")

write_env() {
	local krel
	krel=$(cat "$TREE/include/config/kernel.release")
	cat >"$ENVF" <<ENV
DK_KEY=$KEY
DK_KREL=$krel
DK_LLVM=$LLVM_SUFFIX
DK_TREE_IN_ROOT=$TREE_IN_ROOT
DK_BZIMAGE=$TREE/bzImage
DK_MODDIR_IN_ROOT=$TREE_IN_ROOT/modroot/lib/modules/$krel
ENV
	echo "DKENV=$ENVF"
}

# Removes the trees of other keys: unfinished ones, and finished ones but the most recently used
# one (another branch's fragment, say), so that the cache holds at most two debug kernels.
prune() {
	local d keep
	keep=$(ls -1t "$BUILD_ROOT"/opt/tcplog-debug/*/.tcplog-built 2>/dev/null | grep -v "^$TREE/" | head -1 || true)
	for d in "$BUILD_ROOT"/opt/tcplog-debug/*/; do
		d=${d%/}
		[ "$d" = "$TREE" ] && continue
		[ -n "$keep" ] && [ "$d/.tcplog-built" = "$keep" ] && continue
		log "removing the debug tree of another configuration: ${d#"$BUILD_ROOT"}"
		rm -rf "$d" "$CACHE/debug-kernel-${d##*/}.env" "$CACHE/debug-kernel-${d##*/}.log"
	done
}

# Checks that every line of the fragment holds in .config; prints those that do not.
check_config() {
	local line sym want got bad=0
	while IFS= read -r line; do
		case "$line" in
		CONFIG_*=*)
			sym=${line%%=*}
			want=${line#*=}
			;;
		"# CONFIG_"*" is not set")
			sym=${line#\# }
			sym=${sym%% *}
			want=n
			;;
		*) continue ;;
		esac
		got=$(sed -n "s/^$sym=//p" "$TREE/.config")
		[ -n "$got" ] || got=n
		if [ "$got" != "$want" ]; then
			if grep -rqE "^[[:space:]]*(menu)?config ${sym#CONFIG_}\$" --include='Kconfig*' "$TREE"; then
				printf '  %s: asked for %s, got %s\n' "$sym" "$want" "$got" >&2
			else
				printf '  %s: no such option in this kernel\n' "$sym" >&2
			fi
			bad=1
		fi
	done < <(cat "$FRAGMENT"; echo)
	return $bad
}

configure() {
	rm -rf "$TREE"
	mkdir -p "$TREE"
	in_root tar -C "$TREE_IN_ROOT" --strip-components=1 -xf /usr/src/linux-source-7.3.tar.xz
	in_root sh -euc "cd $TREE_IN_ROOT && ${mk[*]} allnoconfig" >"$BUILD_LOG" 2>&1 ||
		{ tail -20 "$BUILD_LOG" >&2; die "allnoconfig failed"; }
	cat "$FRAGMENT" >>"$TREE/.config"
	in_root sh -euc "cd $TREE_IN_ROOT && ${mk[*]} olddefconfig" >>"$BUILD_LOG" 2>&1 ||
		{ tail -20 "$BUILD_LOG" >&2; die "olddefconfig failed"; }
	check_config || die "olddefconfig did not keep the options above (unmet dependencies?): fix $FRAGMENT"
	touch "$TREE/.tcplog-configured"
}

build() {
	in_root nice -n 10 "${mk[@]}" -C "$TREE_IN_ROOT" -j"$JOBS" all >>"$BUILD_LOG" 2>&1 ||
		{ tail -40 "$BUILD_LOG" >&2; die "the debug kernel build failed (log: $BUILD_LOG)"; }
}

# Keeps what out-of-tree module builds need and the bzImage, drops the rest: the objects, and
# every source file but the headers of include/ and arch/x86/, the Makefiles and scripts/ (as in a
# distribution's headers package). Can run again on a trimmed tree (when TRIM changes).
trim() {
	local krel before after
	krel=$(cat "$TREE/include/config/kernel.release")
	[ -s "$TREE/Module.symvers" ] || die "no Module.symvers in the debug tree"
	[ -s "$TREE/rust/libkernel.rmeta" ] || die "no Rust metadata in the debug tree"
	if [ -e "$TREE/arch/x86/boot/bzImage" ]; then
		cp "$TREE/arch/x86/boot/bzImage" "$TREE/bzImage"
	fi
	[ -s "$TREE/bzImage" ] || die "no bzImage in the debug tree"
	# modules.builtin and friends, in a lib/modules tree of their own: the VM's modprobe reads them.
	if [ ! -e "$TREE/modroot/lib/modules/$krel/modules.builtin" ]; then
		in_root sh -euc "cd $TREE_IN_ROOT && rm -rf modroot &&
			${mk[*]} INSTALL_MOD_PATH=$TREE_IN_ROOT/modroot modules_install" >>"$BUILD_LOG" 2>&1 ||
			{ tail -20 "$BUILD_LOG" >&2; die "modules_install of the debug kernel failed"; }
		[ -e "$TREE/modroot/lib/modules/$krel/modules.builtin" ] || die "modules_install made no modules.builtin"
		rm -f "$TREE/modroot/lib/modules/$krel/build"
	fi
	before=$(du -sm "$TREE" | cut -f1)
	(
		cd "$TREE"
		find . -path ./modroot -prune -o \
			\( -name '*.o' -o -name '*.a' -o -name '.*.cmd' -o -name '*.ko' -o -name '.tmp_*' \) -print0 |
			xargs -0 rm -rf
		rm -rf vmlinux vmlinux.* arch/x86/boot/bzImage arch/x86/boot/compressed/vmlinux* \
			arch/x86/boot/vmlinux.bin Documentation LICENSES
		# Other architectures, and the sources of this one.
		find arch -mindepth 1 -maxdepth 1 ! -name x86 -exec rm -rf {} +
		find arch/x86 -type f \( -name '*.c' -o -name '*.S' \) -delete
		# Of tools/, objtool (kbuild runs it on module objects).
		find tools -type f ! -path tools/objtool/objtool -delete
		# The other directories keep their Makefiles and Kconfig files only (and the Rust sample
		# self_test builds).
		for d in */; do
			case "$d" in arch/ | include/ | modroot/ | rust/ | scripts/ | tools/) continue ;; esac
			find "$d" -type f ! -name 'Makefile*' ! -name 'Kbuild*' ! -name 'Kconfig*' \
				! -path samples/rust/rust_minimal.rs -delete
		done
		find . -mindepth 1 -type d -empty -delete
	)
	echo "$TRIM" >"$TREE/.tcplog-trim"
	after=$(du -sm "$TREE" | cut -f1)
	log "trimmed the tree from $before MB to $after MB"
}

# Builds the kernel's own minimal Rust sample out of tree against the trimmed tree: proof that
# the tree still builds modules before it is kept.
self_test() {
	local t_in_root=/tmp/tcplog-debug-selftest
	local t=$BUILD_ROOT$t_in_root
	rm -rf "$t" && mkdir -p "$t"
	cp "$TREE/samples/rust/rust_minimal.rs" "$t/"
	echo 'obj-m := rust_minimal.o' >"$t/Kbuild"
	in_root "${mk[@]}" -C "$TREE_IN_ROOT" M="$t_in_root" modules >>"$BUILD_LOG" 2>&1 ||
		{ tail -20 "$BUILD_LOG" >&2; die "a Rust sample module does not build against the trimmed debug tree"; }
	[ -s "$t/rust_minimal.ko" ] || die "the Rust sample module was not built"
	rm -rf "$t"
}


stage() {
	local name=$1 start
	shift
	start=$(date +%s)
	log "stage '$name' ..."
	"$@"
	log "stage '$name' took $(($(date +%s) - start)) s"
}

if [ -e "$TREE/.tcplog-built" ] && [ "$(cat "$TREE/.tcplog-trim" 2>/dev/null)" != "$TRIM" ]; then
	rm "$TREE/.tcplog-built"
	stage trim trim
	stage self-test self_test
	touch "$TREE/.tcplog-built"
fi
if [ -e "$TREE/.tcplog-built" ]; then
	log "reusing debug kernel $(cat "$TREE/include/config/kernel.release") ($TREE_IN_ROOT)"
	touch "$TREE/.tcplog-built" # the time of last use, for prune()
	write_env
	exit 0
fi

log "debug kernel $KVER-$KEY: $TREE_IN_ROOT (log: $BUILD_LOG)"
prune
if [ -e "$TREE/.tcplog-configured" ] && [ ! -e "$TREE/.tcplog-trim" ]; then
	log "resuming the build begun before"
else
	stage configure configure
fi
if [ $config_only = 1 ]; then
	log "configured: $TREE/.config"
	exit 0
fi
stage build build
stage trim trim
stage self-test self_test
touch "$TREE/.tcplog-built"
write_env
