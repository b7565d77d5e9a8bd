#!/usr/bin/env bash
# README's main command: builds everything, boots the VM, loads the module and shows the tool.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
"$repo/scripts/setup-host.sh"
exec "$repo/qemu-test/run-vm.sh" demo
