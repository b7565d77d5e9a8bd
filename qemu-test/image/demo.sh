#!/bin/sh
# What README's main command shows: the module loaded, the device, the tool talking to it.
set -e
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step insmod /lib/tcplog/tcplog.ko
step ls -l /dev/tcplog
step tcplog status
step tcplog status --json
step rmmod tcplog
