#!/usr/bin/env bash
# Runs a command inside the build root, with this repository at /src and /proc mounted, in a mount
# namespace of its own so that nothing stays mounted when it ends, however it ends.
#
# Usage: scripts/in-root.sh KENV_FILE COMMAND [ARG...]
set -euo pipefail
kenv=$1
shift
# shellcheck source=/dev/null
. "$kenv"
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$BUILD_ROOT/src"
# The host's CA bundle, so that cargo inside the root trusts what the host trusts (a TLS-inspecting
# proxy's CA, say); proxy settings pass through likewise.
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
	cp /etc/ssl/certs/ca-certificates.crt "$BUILD_ROOT/etc/ssl/certs/tcplog-host-ca.crt"
fi
passenv=()
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
	if [ -n "${!v:-}" ]; then passenv+=("$v=${!v}"); fi
done
exec unshare --mount --propagation private -- /bin/sh -euc '
	root=$1 repo=$2
	shift 2
	mount --bind "$repo" "$root/src"
	mount -t proc proc "$root/proc"
	exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
		LC_ALL=C.UTF-8 CARGO_HOME=/var/cache/cargo \
		CARGO_HTTP_CAINFO=/etc/ssl/certs/tcplog-host-ca.crt SSL_CERT_FILE=/etc/ssl/certs/tcplog-host-ca.crt "$@"
' in-root "$BUILD_ROOT" "$repo" ${passenv[@]+"${passenv[@]}"} "$@"
