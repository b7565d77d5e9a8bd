/* SPDX-License-Identifier: GPL-2.0 */
/* One-line wrappers of static inline functions and macros that Rust cannot call. */
#ifndef TCPLOG_HELPERS_H
#define TCPLOG_HELPERS_H

#include <linux/spinlock_types.h>
#include <linux/types.h>

struct delayed_work;
struct ftrace_regs;
struct sk_buff;
struct sock;
struct timer_list;
struct work_struct;

unsigned long tcplog_fregs_arg(struct ftrace_regs *fregs, unsigned int n);
unsigned long tcplog_fregs_return(struct ftrace_regs *fregs);
void tcplog_tracepoint_sync(void);
bool tcplog_in_process(void);
void tcplog_cond_resched(void);
bool tcplog_sk_kern(const struct sock *sk);
int tcplog_skb_network_offset(const struct sk_buff *skb);
void tcplog_timer_setup(struct timer_list *timer, void (*fn)(struct timer_list *));
int tcplog_timer_arm(struct timer_list *timer, unsigned int msecs);
void tcplog_work_setup(struct delayed_work *dwork, void (*fn)(struct work_struct *));
bool tcplog_work_queue(struct delayed_work *dwork, unsigned int msecs);
u64 tcplog_current_cgroup_id(void);
int tcplog_current_ppid(void);
void tcplog_sock_hold(struct sock *sk);
void tcplog_sock_put(struct sock *sk);
u32 tcplog_jiffies32(void);
unsigned int tcplog_hz(void);
unsigned long tcplog_spin_lock_irqsave(spinlock_t *lock);
bool tcplog_spin_trylock_irqsave(spinlock_t *lock, unsigned long *flags);
void tcplog_spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags);

/* The layout of the kernel structures the module reads, as the kernel's own compiler sees it. */
struct tcplog_layout_item {
	const char *name;
	size_t value;
};
extern const struct tcplog_layout_item tcplog_layout[];
extern const unsigned int tcplog_layout_len;

#endif
