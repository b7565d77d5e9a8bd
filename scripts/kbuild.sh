#!/usr/bin/env bash
# Developer helper: builds tcplog.ko in the build root and prints compiler messages with the
# generated bindings' very long lines cut short.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
kenv=$(ls "${TCPLOG_CACHE:-/var/cache/tcplog}"/kernel-*.env | sort -V | tail -1)
# shellcheck source=/dev/null
. "$kenv"
"$repo/scripts/in-root.sh" "$kenv" sh -c "cd /src && make -s -C $KDIR_IN_ROOT M=/src modules 2>&1" |
	grep -v 'Failed to run rustfmt' | cut -c1-300
