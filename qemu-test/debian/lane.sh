#!/bin/sh
# The Debian lane's tests, run by the image's harness (tcplog-lane) at each boot from the payload
# disk, which also holds the packages (*.deb). Prints "ok NAME" or "FAIL NAME: why" per test.
#   Boot 1: install the packages with apt, enable the service, make traffic (curl against nginx),
#           stop the service and read its log; restart it, reload the module; configure the
#           export unit to send to nfdump's nfcapd and find curl's connection in what nfcapd
#           received; ask for a reboot.
#   Boot 2: the module is loaded and the service logging (and exporting) again at boot; purge the
#           packages and check that nothing of them is left.
# The boot count is kept in /var/lib/tcplog-lane/boot (on the VM's disk, which survives the
# reboot).
set -u
payload=/run/tcplog-lane
state=/var/lib/tcplog-lane
mkdir -p "$state"
boot=$(($(cat "$state/boot" 2>/dev/null || echo 0) + 1))
echo "$boot" >"$state/boot"
log=/var/log/tcplog/tcplog.log
kver=$(uname -r)
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

# check NAME COMMAND...: runs the command; its output is shown when it fails.
check() {
	name=$1
	shift
	if out=$("$@" 2>&1); then
		echo "ok   $name"
	else
		echo "FAIL $name: $(printf '%s' "$out" | tail -n 15)"
	fi
}

# A log's records as JSON Lines, from a stopped service's complete file.
read_log() { tcplog read "$@" --json; }

# curl's connection to nginx shows up in FILE as a summary owned by curl, port 80, bytes both ways.
curl_summary_in() {
	read_log "$1" | grep '"type":"summary"' | grep '"comm":"curl"' | grep -q '"rport":80,' ||
		{ echo "no summary of curl's connection to port 80 in $1:"; read_log "$1" | tail -n 5; return 1; }
}

service_active() { systemctl is-active --quiet tcplog || { systemctl status --no-pager tcplog; return 1; }; }

# The service's follow holds the device open: a reader besides this status command's own.
service_reading() {
	s=$(tcplog status --json) || return 1
	printf '%s' "$s" | grep -q '"readers":[2-9][,}]' || { echo "$s"; return 1; }
}

# Restart=on-failure: a follow killed with SIGKILL is started again (RestartSec=2s).
restarted_after_kill() {
	old=$(systemctl show -P MainPID tcplog)
	systemctl kill -s KILL tcplog || return 1
	t=60
	while now=$(systemctl show -P MainPID tcplog); [ "$now" = "$old" ] || [ "$now" = 0 ] ||
		! systemctl is-active --quiet tcplog; do
		t=$((t - 1))
		[ "$t" -gt 0 ] || { systemctl status --no-pager tcplog; return 1; }
		sleep 1
	done
}

traffic() { curl -sS -o /dev/null --max-time 20 http://127.0.0.1/; }

# The export unit, with EXPORT_COLLECTOR empty: pulled in by the service's start, skipped by its
# ExecCondition (Result exec-condition), inactive and not failed.
export_skipped() {
	a=$(systemctl show -P ActiveState tcplog-export)
	r=$(systemctl show -P Result tcplog-export)
	if [ "$a" != inactive ] || [ "$r" != exec-condition ] || systemctl is-failed --quiet tcplog-export; then
		echo "ActiveState=$a Result=$r"
		systemctl status --no-pager tcplog-export
		return 1
	fi
}

# The export unit runs and reads the device: a third reader, besides follow and status.
export_reading() {
	systemctl is-active --quiet tcplog-export || { systemctl status --no-pager tcplog-export; return 1; }
	s=$(tcplog status --json) || return 1
	printf '%s' "$s" | grep -q '"readers":[3-9][,}]' || { echo "$s"; return 1; }
}

# Stopping the service stops the export unit (PartOf=): its tcplog export exits 0 on SIGTERM.
stop_both() {
	systemctl stop tcplog || return 1
	! systemctl is-active --quiet tcplog-export && ! systemctl is-failed --quiet tcplog-export &&
		[ "$(systemctl show -P ExecMainStatus tcplog-export)" = 0 ] ||
		{ systemctl status --no-pager tcplog-export; return 1; }
}

# The collector: nfdump's nfcapd on 127.0.0.1:9995 (0x270B), writing into $flows.
flows=$state/nfcapd
collector_bound() { grep -q '^ *[0-9]*: 0100007F:270B ' /proc/net/udp; }

# The last summary of curl's connection to port 80 in LOG is a flow nfcapd received: nfdump shows
# the client's port, port 80 and the IP bytes each way of curl's own summary (the exporter makes
# each summary a biflow from the end that connected, RFC 5103; nfcapd cannot decode a data set
# without the template set that came before it).
curl_flow_received() {
	sum=$(read_log "$1" | grep '"type":"summary"' | grep '"comm":"curl"' | grep '"rport":80,' | tail -n 1)
	[ -n "$sum" ] || { echo "no summary of curl's connection to port 80 in $1"; return 1; }
	field() { printf '%s' "$sum" | sed -n "s/.*\"$1\":\([0-9]*\)[,}].*/\1/p"; }
	port=$(field lport) out=$(field ip_bytes_out) in=$(field ip_bytes_in)
	[ -n "$port" ] && [ "${out:-0}" != 0 ] && [ "${in:-0}" != 0 ] ||
		{ echo "curl's summary has no port or no IP bytes: $sum"; return 1; }
	want="$port|80|$out|$in"
	rows=$(for f in "$flows"/nfcapd.2*; do
		[ -e "$f" ] && nfdump -q -N -r "$f" -o 'fmt:%sp|%dp|%ibyt|%obyt'
	done | tr -d ' ')
	printf '%s\n' "$rows" | grep -qx "$want" ||
		{ echo "nfcapd has no flow $want (client port|port|bytes out|bytes in); it has:"; printf '%s\n' "$rows"; return 1; }
}

# Waits up to $1 seconds for a command to succeed; shows its output if it never does.
wait_for() {
	t=$1
	shift
	while ! "$@" >/dev/null 2>&1; do
		t=$((t - 1))
		if [ "$t" -le 0 ]; then
			"$@"
			return 1
		fi
		sleep 1
	done
}

echo "tcplog-lane: boot $boot, kernel $kver"
case "$boot" in
1)
	check "apt installs the packages" apt-get install -y -q --no-install-recommends \
		"$payload"/tcplog-modules-*.deb "$payload"/tcplog_*.deb
	check "the module is installed in updates/ and indexed by depmod" \
		sh -c "modinfo -n tcplog | grep -qx '/usr/lib/modules/$kver/updates/tcplog.ko\|/lib/modules/$kver/updates/tcplog.ko'"
	check "the man page and completions are installed" \
		test -e /usr/share/man/man1/tcplog.1.gz -a -e /usr/share/bash-completion/completions/tcplog
	check "the service is not enabled by installation" sh -c '! systemctl is-enabled --quiet tcplog'
	check "systemctl enable --now tcplog" systemctl enable --now tcplog
	check "the service is active" wait_for 30 service_active
	check "the service's follow reads the device" wait_for 30 service_reading
	check "the export unit is enabled into tcplog.service.wants/" sh -c \
		'systemctl is-enabled --quiet tcplog-export && test -L /etc/systemd/system/tcplog.service.wants/tcplog-export.service'
	check "with EXPORT_COLLECTOR empty the export unit is skipped, inactive, not failed" wait_for 30 export_skipped
	check "the module was loaded by the service" sh -c 'grep -q "^tcplog " /proc/modules'
	check "curl fetches nginx's page" traffic
	sleep 1
	check "systemctl stop tcplog" systemctl stop tcplog
	check "the stopped follow exited cleanly" sh -c \
		'[ "$(systemctl show -P ExecMainStatus tcplog)" = 0 ] && ! systemctl is-failed --quiet tcplog'
	check "the log is complete: tcplog read finds no damage" read_log "$log"
	check "the log holds curl's connection to nginx" curl_summary_in "$log"
	check "the log holds the service's configuration (CONFIG records)" \
		sh -c "tcplog read $log --json | grep -q '\"type\":\"config\"'"
	check "systemctl start tcplog again" systemctl start tcplog
	check "a restart keeps the earlier log as tcplog.log.1" curl_summary_in "$log.1"
	check "the module cannot be unloaded while the service reads it" sh -c '! modprobe -r tcplog'
	check "reloading the module: stop, modprobe -r, start" sh -c \
		'systemctl stop tcplog && modprobe -r tcplog && ! grep -q "^tcplog " /proc/modules && systemctl start tcplog'
	check "after the reload the service reads the new module" wait_for 30 service_reading
	check "a killed follow is restarted (Restart=on-failure)" restarted_after_kill
	check "the restarted service reads the device" wait_for 30 service_reading
	# A changed configuration reaches a fresh module at start, and a running one at reload.
	sed -i 's/^FILTER=""/FILTER="--port 80"/' /etc/tcplog/tcplog.conf
	check "systemctl reload applies a changed filter" sh -c \
		'systemctl reload tcplog && tcplog filter | grep -q 80'
	sed -i 's/^FILTER="--port 80"/FILTER=""/' /etc/tcplog/tcplog.conf
	check "systemctl reload clears it again" sh -c 'systemctl reload tcplog && ! tcplog filter | grep -q 80'
	# The export unit with a collector: nfcapd on 127.0.0.1:9995, configured in tcplog.conf, and
	# `systemctl restart tcplog` (which restarts or starts the export unit with the service).
	rm -rf "$flows"
	mkdir -p "$flows"
	nfcapd -w "$flows" -b 127.0.0.1 -p 9995 -t 3600 >"$state/nfcapd.log" 2>&1 &
	collector=$!
	check "nfcapd receives on 127.0.0.1:9995" wait_for 20 collector_bound
	sed -i 's/^EXPORT_COLLECTOR=""/EXPORT_COLLECTOR="127.0.0.1:9995"/; s/^EXPORT_OPTIONS=""/EXPORT_OPTIONS="--udp"/' \
		/etc/tcplog/tcplog.conf
	check "systemctl restart tcplog starts the export unit too" systemctl restart tcplog
	check "the export unit reads the device" wait_for 30 export_reading
	check "the export unit sends to the configured collector" wait_for 10 sh -c \
		'journalctl -b -u tcplog-export -o cat | grep -qx "tcplog: exporting IPFIX over udp to 127.0.0.1:9995"'
	check "systemctl reload tcplog leaves the exporter running" sh -c \
		'pid=$(systemctl show -P MainPID tcplog-export) && systemctl reload tcplog &&
			[ "$(systemctl show -P MainPID tcplog-export)" = "$pid" ] && [ "$pid" != 0 ]'
	check "curl fetches nginx's page" traffic
	# The exporter sends within its 250 ms poll of the device.
	sleep 2
	check "systemctl stop tcplog stops the export unit too, which exits cleanly" stop_both
	journalctl -b -u tcplog-export -o cat --no-pager | grep 'records exported over' | tail -n 1
	check "the exporter lost nothing" sh -c \
		'journalctl -b -u tcplog-export -o cat | grep "records exported over udp" | tail -n 1 | grep -q " 0 lost$"'
	# nfcapd writes its file when it stops.
	kill -TERM "$collector"
	wait "$collector"
	check "nfcapd received curl's connection from the export unit: port 80, bytes each way" \
		curl_flow_received "$log"
	check "the module can be unloaded: no unit holds the device" sh -c \
		'modprobe -r tcplog && ! grep -q "^tcplog " /proc/modules'
	# The collector stays configured, and gone: the next boot starts the exporter with the service.
	check "systemctl start tcplog" systemctl start tcplog
	systemd-analyze security --no-pager tcplog | tail -n 1
	systemd-analyze security --no-pager tcplog-export | tail -n 1
	echo "tcplog-lane: rebooting"
	touch /run/tcplog-lane.reboot
	;;
2)
	check "after the reboot the service is active" wait_for 60 service_active
	check "after the reboot the module is loaded" sh -c 'grep -q "^tcplog " /proc/modules'
	check "after the reboot the service's follow reads the device" wait_for 30 service_reading
	check "after the reboot the export unit runs with the service" wait_for 30 export_reading
	check "curl fetches nginx's page" traffic
	sleep 1
	check "systemctl stop tcplog" systemctl stop tcplog
	check "the log of this boot holds curl's connection" curl_summary_in "$log"
	check "the journal has this boot's start of the service" sh -c \
		'journalctl -b -u tcplog --no-pager | grep -q "Started tcplog.service\|Started tcplog"'
	journalctl -b -u tcplog --no-pager | tail -n 5
	check "apt purges both packages" apt-get purge -y -q tcplog "tcplog-modules-$kver"
	check "after the purge no exporter runs, and systemd knows no export unit" sh -c \
		'! pgrep -x tcplog && [ "$(systemctl show -P LoadState tcplog-export)" = not-found ]'
	check "nothing of the export unit is left: unit file, enablement, its state" sh -c '
		for f in /usr/lib/systemd/system/tcplog-export.service /etc/systemd/system/tcplog.service.wants \
			/var/lib/systemd/deb-systemd-helper-enabled/tcplog-export.service.dsh-also \
			/var/lib/systemd/deb-systemd-helper-enabled/tcplog.service.wants; do
			[ ! -e "$f" ] || { echo "left behind: $f"; exit 1; }
		done'
	check "dpkg knows no tcplog package" sh -c '! dpkg -l "tcplog*" 2>/dev/null | grep -q "^[a-z][a-z] "'
	check "nothing of the packages is left: files, configuration, logs, enablement" sh -c '
		left=$(find / -xdev \( -path /run -o -path /proc -o -path /sys -o -path /var/lib/tcplog-lane \) -prune -o \
			\( -name "*tcplog*" -a ! -name "tcplog-lane*" \) -print 2>/dev/null)
		[ -z "$left" ] || { echo "left behind: $left"; exit 1; }'
	check "depmod forgot the module" sh -c "! grep -q tcplog /usr/lib/modules/$kver/modules.dep"
	;;
*)
	echo "FAIL lane: unexpected boot $boot"
	;;
esac
echo "tcplog-lane: boot $boot done"
