/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel structures and functions the module needs that `kernel::bindings` does not have:
 * bindgen turns this header into module/bindings_generated.rs at build time (see Kbuild), and
 * module/layout.rs checks the layouts it assumes against the kernel's at load.
 */
#include <linux/fprobe.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/net.h>
#include <linux/netdevice.h>
#include <linux/netfilter.h>
#include <linux/skbuff.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>
#include <linux/timer.h>
#include <linux/tracepoint.h>
#include <uapi/linux/mptcp.h>
#include <linux/workqueue.h>
#include <net/inet_sock.h>
#include <net/mptcp.h>
#include <net/net_namespace.h>
#include <net/sock.h>
#include <net/tcp_states.h>

#include "helpers.h"
