// SPDX-License-Identifier: GPL-2.0
/*
 * The offsets and sizes of the kernel structures tcplog reads or fills in, computed by the
 * kernel's own C compiler with the kernel's exact flags. The module's Rust side sees these
 * structures through its own bindgen run, which is an assumption about the layout, not a fact:
 * module/layout.rs compares the two at load and refuses to load on any difference.
 *
 * Names are "struct.field" (or "struct" for a size); module/layout.rs looks them up by name.
 */
#include <linux/fprobe.h>
#include <linux/netdevice.h>
#include <linux/netfilter.h>
#include <linux/skbuff.h>
#include <linux/tcp.h>
#include <linux/timer.h>
#include <linux/tracepoint.h>
#include <net/inet_sock.h>
#include <net/net_namespace.h>
#include <linux/workqueue.h>
#include <net/sock.h>
#include <uapi/linux/mptcp.h>

#include "helpers.h"

#define F(type, name, member) { #type "." #name, offsetof(struct type, member) }
#define S(type) { #type, sizeof(struct type) }

const struct tcplog_layout_item tcplog_layout[] = {
	F(sock, skc_family, __sk_common.skc_family),
	F(sock, skc_state, __sk_common.skc_state),
	F(sock, skc_rcv_saddr, __sk_common.skc_rcv_saddr),
	F(sock, skc_daddr, __sk_common.skc_daddr),
	F(sock, skc_dport, __sk_common.skc_dport),
	F(sock, skc_num, __sk_common.skc_num),
	F(sock, skc_v6_daddr, __sk_common.skc_v6_daddr),
	F(sock, skc_v6_rcv_saddr, __sk_common.skc_v6_rcv_saddr),
	F(sock, skc_net, __sk_common.skc_net),
	F(sock, skc_flags, __sk_common.skc_flags),
	F(sock, sk_protocol, sk_protocol),
	F(sock, sk_type, sk_type),
	F(sock, sk_err, sk_err),
	F(inet_sock, inet_saddr, inet_saddr),
	F(inet_sock, inet_sport, inet_sport),
	F(tcp_sock, snd_una, snd_una),
	F(tcp_sock, snd_nxt, snd_nxt),
	F(tcp_sock, write_seq, write_seq),
	F(tcp_sock, bytes_acked, bytes_acked),
	F(tcp_sock, bytes_received, bytes_received),
	F(tcp_sock, bytes_sent, bytes_sent),
	F(tcp_sock, bytes_retrans, bytes_retrans),
	F(tcp_sock, segs_in, segs_in),
	F(tcp_sock, segs_out, segs_out),
	F(tcp_sock, total_retrans, total_retrans),
	F(tcp_sock, srtt_us, srtt_us),
	F(tcp_sock, rtt_min, rtt_min),
	F(tcp_sock, rate_delivered, rate_delivered),
	F(tcp_sock, rate_interval_us, rate_interval_us),
	F(tcp_sock, mss_cache, mss_cache),
	F(tcp_sock, chrono_start, chrono_start),
	F(tcp_sock, chrono_stat, chrono_stat),
	F(tcp_sock, chrono_type, chrono_type),
	F(socket, sk, sk),
	F(sk_buff, len, len),
	F(net_device, name, name),
	F(net_device, ifindex, ifindex),
	F(net, ns_inum, ns.inum),
	F(nf_hook_state, hook, hook),
	F(nf_hook_state, pf, pf),
	F(nf_hook_state, in, in),
	F(nf_hook_state, out, out),
	F(nf_hook_state, net, net),
	F(nf_hook_ops, hook, hook),
	F(nf_hook_ops, priv, priv),
	F(nf_hook_ops, pf, pf),
	F(nf_hook_ops, hooknum, hooknum),
	F(nf_hook_ops, priority, priority),
	S(nf_hook_ops),
	F(pernet_operations, init, init),
	F(pernet_operations, exit, exit),
	S(pernet_operations),
	F(fprobe, nmissed, nmissed),
	F(fprobe, entry_data_size, entry_data_size),
	F(fprobe, entry_handler, entry_handler),
	F(fprobe, exit_handler, exit_handler),
	S(fprobe),
	F(tracepoint, name, name),
	S(timer_list),
	F(delayed_work, work, work),
	S(delayed_work),
	F(mptcp_info, mptcpi_retransmits, mptcpi_retransmits),
	F(mptcp_info, mptcpi_bytes_sent, mptcpi_bytes_sent),
	F(mptcp_info, mptcpi_bytes_received, mptcpi_bytes_received),
	S(mptcp_info),
};

const unsigned int tcplog_layout_len = ARRAY_SIZE(tcplog_layout);
