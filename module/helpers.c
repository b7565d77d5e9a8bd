// SPDX-License-Identifier: GPL-2.0
/*
 * One-line wrappers of static inline functions and macros that Rust cannot call.
 */
#include <linux/cgroup.h>
#include <linux/ftrace.h>
#include <linux/jiffies.h>
#include <linux/preempt.h>
#include <linux/sched.h>
#include <linux/skbuff.h>
#include <linux/timer.h>
#include <linux/tracepoint.h>
#include <linux/workqueue.h>
#include <net/sock.h>

#include "helpers.h"

unsigned long tcplog_fregs_arg(struct ftrace_regs *fregs, unsigned int n)
{
	return ftrace_regs_get_argument(fregs, n);
}

unsigned long tcplog_fregs_return(struct ftrace_regs *fregs)
{
	return ftrace_regs_get_return_value(fregs);
}

void tcplog_tracepoint_sync(void)
{
	tracepoint_synchronize_unregister();
}

/* A process is running on its own behalf: not an interrupt, not a section with BHs disabled
 * (threaded NAPI and busy polling process packets there), not a kernel thread. */
bool tcplog_in_process(void)
{
	return in_task() && !softirq_count() && !(current->flags & PF_KTHREAD);
}

void tcplog_cond_resched(void)
{
	cond_resched();
}

/* A bitfield: its layout is the compiler's business, so C reads it. */
bool tcplog_sk_kern(const struct sock *sk)
{
	return sk->sk_kern_sock;
}

int tcplog_skb_network_offset(const struct sk_buff *skb)
{
	return skb_network_offset(skb);
}

void tcplog_timer_setup(struct timer_list *timer, void (*fn)(struct timer_list *))
{
	timer_setup(timer, fn, 0);
}

int tcplog_timer_arm(struct timer_list *timer, unsigned int msecs)
{
	return mod_timer(timer, jiffies + msecs_to_jiffies(msecs));
}

void tcplog_work_setup(struct delayed_work *dwork, void (*fn)(struct work_struct *))
{
	INIT_DELAYED_WORK(dwork, fn);
}

bool tcplog_work_queue(struct delayed_work *dwork, unsigned int msecs)
{
	return mod_delayed_work(system_dfl_wq, dwork, msecs_to_jiffies(msecs));
}

u64 tcplog_current_cgroup_id(void)
{
	u64 id;

	rcu_read_lock();
	id = cgroup_id(task_dfl_cgroup(current));
	rcu_read_unlock();
	return id;
}

int tcplog_current_ppid(void)
{
	return task_ppid_nr(current);
}

void tcplog_sock_hold(struct sock *sk)
{
	sock_hold(sk);
}

void tcplog_sock_put(struct sock *sk)
{
	sock_put(sk);
}

u32 tcplog_jiffies32(void)
{
	return (u32)jiffies;
}

unsigned int tcplog_hz(void)
{
	return HZ;
}

/* Before 7.3 the kernel crate has no interrupt-disabling spinlock: module/compat.rs makes one. */
unsigned long tcplog_spin_lock_irqsave(spinlock_t *lock)
{
	unsigned long flags;

	spin_lock_irqsave(lock, flags);
	return flags;
}

bool tcplog_spin_trylock_irqsave(spinlock_t *lock, unsigned long *flags)
{
	return spin_trylock_irqsave(lock, *flags);
}

void tcplog_spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags)
{
	spin_unlock_irqrestore(lock, flags);
}
