/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel structures and functions the module needs that `kernel::bindings` does not have:
 * bindgen turns this header into module/bindings_generated.rs at build time (see Kbuild).
 */
#include <linux/kprobes.h>
#include <linux/net.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ipv6.h>
#include <linux/random.h>
#include <linux/siphash.h>
#include <linux/tracepoint.h>
#include <net/sock.h>
#include <net/inet_sock.h>
#include <net/tcp_states.h>
#include <net/net_namespace.h>
#include <net/ipv6.h>
#include <linux/netfilter.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6.h>
#include <linux/ip.h>
#include <linux/skbuff.h>
#include <linux/netdevice.h>
#include <linux/timer.h>

#include "helpers.h"
