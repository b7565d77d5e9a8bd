#!/usr/bin/env bash
# Developer helper: builds tcplog.ko in the build root and prints compiler messages with the
# generated bindings' very long lines cut short.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
# The stock kernel's (backports/amd64) environment, the newest release of it that was built for;
# KSPEC=... picks another kernel's (as scripts/build-root.sh names them).
spec=${KSPEC:-backports/amd64}
kenv=$(grep -lx "KSPEC=$spec" "${TCPLOG_CACHE:-/var/cache/tcplog}"/kernel-*.env | sort -V | tail -1) ||
	{ echo "kbuild.sh: no kernel environment for $spec; run make (or scripts/build-root.sh $spec) first" >&2; exit 1; }
# shellcheck source=/dev/null
. "$kenv"
"$repo/scripts/in-root.sh" "$kenv" sh -c "cd /src && make -s -C $KDIR_IN_ROOT M=/src modules 2>&1" |
	grep -v 'Failed to run rustfmt' | cut -c1-300
