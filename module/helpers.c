// SPDX-License-Identifier: GPL-2.0
/*
 * One-line wrappers of static inline functions and macros that Rust cannot call.
 */
#include <linux/kprobes.h>
#include <linux/preempt.h>
#include <linux/jiffies.h>
#include <linux/ptrace.h>
#include <linux/timer.h>
#include <linux/tracepoint.h>

#include "helpers.h"

unsigned long tcplog_regs_arg(struct pt_regs *regs, unsigned int n)
{
	return regs_get_kernel_argument(regs, n);
}

unsigned long tcplog_regs_return(struct pt_regs *regs)
{
	return regs_return_value(regs);
}

void tcplog_tracepoint_sync(void)
{
	tracepoint_synchronize_unregister();
}

bool tcplog_in_task(void)
{
	return in_task();
}

void tcplog_timer_setup(struct timer_list *timer, void (*fn)(struct timer_list *))
{
	timer_setup(timer, fn, 0);
}

int tcplog_timer_arm(struct timer_list *timer, unsigned int msecs)
{
	return mod_timer(timer, jiffies + msecs_to_jiffies(msecs));
}
