#!/bin/sh
# What README's main command shows: the module loaded, the device, the tool talking to it.
set -e
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step insmod /lib/tcplog/tcplog.ko
step ls -l /dev/tcplog
step tcplog status
step tcplog mark --value 42 --count 3
step tcplog dump

printf '\n\033[1m$ tcplog follow --json --new &   (then: tcplog disable; tcplog enable)\033[0m\n'
tcplog follow --json --new &
follow=$!
sleep 1
tcplog disable
tcplog enable
sleep 1
kill -INT $follow
wait $follow || true

step tcplog flush
step tcplog status --json
step rmmod tcplog
