/* SPDX-License-Identifier: GPL-2.0 */
/* One-line wrappers of static inline functions and macros that Rust cannot call. */
#ifndef TCPLOG_HELPERS_H
#define TCPLOG_HELPERS_H

#include <linux/types.h>

struct pt_regs;

unsigned long tcplog_regs_arg(struct pt_regs *regs, unsigned int n);
unsigned long tcplog_regs_return(struct pt_regs *regs);
void tcplog_tracepoint_sync(void);
bool tcplog_in_task(void);

struct timer_list;
void tcplog_timer_setup(struct timer_list *timer, void (*fn)(struct timer_list *));
int tcplog_timer_arm(struct timer_list *timer, unsigned int msecs);

#endif
