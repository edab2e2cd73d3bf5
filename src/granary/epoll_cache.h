/* The daemon's epoll_ctl (epoll_cache.c): answers registrations that change
 * nothing without a system call. */
#ifndef GRANARY_EPOLL_CACHE_H
#define GRANARY_EPOLL_CACHE_H

/* How many epoll_ctl calls were answered without the kernel so far. */
unsigned long granary_epoll_answered(void);

#endif
