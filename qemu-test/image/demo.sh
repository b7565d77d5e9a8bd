#!/bin/sh
# What README's main command shows: the module loaded, real traffic, and tcplog following it.
set -e
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
peer=/usr/bin/tcplog-vm-tests

step insmod /lib/tcplog/tcplog.ko
step ls -l /dev/tcplog
step tcplog status
step tcplog rules set 'log in proto tcp flags SYN/SYN,ACK'

printf '\n\033[1m$ tcplog follow -w /tmp/demo.tlog &   (a client sends 100000 bytes, the server answers 54321)\033[0m\n'
tcplog follow --new -w /tmp/demo.tlog &
follow=$!
sleep 1
$peer --tcp-server 127.0.0.1:5000 100000 54321 >/dev/null &
server=$!
sleep 0.5
$peer --tcp-client 127.0.0.1:5000 100000 54321
wait $server
sleep 1
kill -INT $follow
wait $follow || true

step tcplog read --type summary --no-header /tmp/demo.tlog
step tcplog read --json --type summary /tmp/demo.tlog
step tcplog rules
step tcplog status
step tcplog rules clear
step rmmod tcplog
