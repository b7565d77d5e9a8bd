#!/bin/sh
# What README's main command shows: the module loaded, real traffic, and tcplog following it.
set -e
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step insmod /lib/tcplog/tcplog.ko
step ls -l /dev/tcplog
step tcplog status

printf '\n\033[1m$ tcplog follow &   (while a TCP server and client talk, and a UDP datagram goes out)\033[0m\n'
tcplog follow --new &
follow=$!
sleep 1
nc -l -p 5000 >/dev/null &
server=$!
sleep 0.5
head -c 100000 /dev/zero | nc 127.0.0.1 5000
wait $server || true
echo hello | nc -u -w 1 127.0.0.1 5001 || true
sleep 1
kill -INT $follow
wait $follow || true

step tcplog dump --json
step tcplog status
step rmmod tcplog
