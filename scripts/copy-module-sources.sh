#!/usr/bin/env bash
# Copies what kbuild reads for tcplog.ko (Kbuild, the crate and what it includes) into DEST,
# without build products and with their times, so that a build there rebuilds only what changed.
# kbuild builds in the source directory: a copy is how one tree of sources gets a second build
# (for another kernel, or with other flags) beside the main one.
# Usage: scripts/copy-module-sources.sh DEST
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:?usage: copy-module-sources.sh DEST}
mkdir -p "$dest"
tar -C "$repo" --exclude=./target --exclude=./.git --exclude=./qemu-test --exclude=./userspace-tool \
	--exclude='*.o' --exclude='*.ko' --exclude='*.mod' --exclude='*.mod.c' --exclude='.*.cmd' \
	--exclude=Module.symvers --exclude=modules.order --exclude=./module/bindings_generated.rs \
	-cf - . | tar -C "$dest" -xf -
