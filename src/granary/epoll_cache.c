/* epoll_ctl for the daemon, answering calls that change nothing.
 *
 * libuv 1.44 forgets what the kernel holds for a watcher once the watcher
 * stops: starting it again costs a failing EPOLL_CTL_ADD (EEXIST) and then an
 * EPOLL_CTL_MOD with the very events the kernel already has. h2o stops
 * reading from a browser's connection while it answers each HTTP/1 request
 * and starts again after, so that is two system calls per request for no
 * change (docs/performance.md).
 *
 * This definition takes the place of libc's for the daemon and the libraries
 * it loads. For one epoll set, the first one that registers anything, it
 * remembers per descriptor the events and data the kernel holds, and answers
 * an ADD or MOD that would leave them as they are without entering the
 * kernel. Everything else goes to the kernel unchanged:
 *
 *   - DEL always does, and forgets the descriptor, whatever the answer;
 *   - a call that fails forgets the descriptor (the kernel knows best);
 *   - a new epoll set that gets the remembered set's number (the old one was
 *     closed) forgets everything.
 *
 * libuv removes a descriptor from its set (DEL) before it closes it, so a
 * number reused by a new socket is never taken for the old one. Calls for
 * other epoll sets go straight to the kernel. */
#include "epoll_cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct {
    bool held;
    uint32_t events;
    uint64_t data;
} held_entry;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int cached_epfd = -1;
static held_entry *held;
static size_t nheld;
static unsigned long answered; /* calls answered without the kernel */

static int real_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    return (int)syscall(SYS_epoll_ctl, epfd, op, fd, ev);
}

static void forget_all(void)
{
    free(held);
    held = NULL;
    nheld = 0;
}

static held_entry *entry_for(int fd, bool grow)
{
    if (fd < 0)
        return NULL;
    if ((size_t)fd >= nheld) {
        if (!grow)
            return NULL;
        size_t n = nheld ? nheld : 256;
        while (n <= (size_t)fd)
            n *= 2;
        held_entry *t = realloc(held, n * sizeof(*t));
        if (t == NULL)
            return NULL;
        for (size_t i = nheld; i < n; i++)
            t[i] = (held_entry){0};
        held = t;
        nheld = n;
    }
    return &held[fd];
}

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    pthread_mutex_lock(&lock);
    if (cached_epfd < 0 && op == EPOLL_CTL_ADD)
        cached_epfd = epfd;
    if (epfd != cached_epfd) {
        pthread_mutex_unlock(&lock);
        return real_ctl(epfd, op, fd, ev);
    }
    held_entry *e = entry_for(fd, false);
    if (op != EPOLL_CTL_DEL && ev && e && e->held && e->events == ev->events &&
        e->data == ev->data.u64) {
        answered++;
        pthread_mutex_unlock(&lock);
        return 0;
    }
    int r;
    if (op == EPOLL_CTL_ADD && ev && e && e->held)
        r = real_ctl(epfd, EPOLL_CTL_MOD, fd, ev); /* held with other events */
    else
        r = real_ctl(epfd, op, fd, ev);
    int saved = errno;
    if (r == 0 && op != EPOLL_CTL_DEL && ev) {
        held_entry *w = entry_for(fd, true);
        if (w)
            *w = (held_entry){true, ev->events, ev->data.u64};
    } else if (e) {
        e->held = false;
    }
    pthread_mutex_unlock(&lock);
    errno = saved;
    return r;
}

static void new_set(int fd)
{
    if (fd < 0)
        return;
    pthread_mutex_lock(&lock);
    if (fd == cached_epfd)
        forget_all();
    pthread_mutex_unlock(&lock);
}

int epoll_create1(int flags)
{
    int fd = (int)syscall(SYS_epoll_create1, flags);
    new_set(fd);
    return fd;
}

int epoll_create(int size)
{
    if (size <= 0) {
        errno = EINVAL;
        return -1;
    }
    return epoll_create1(0);
}

unsigned long granary_epoll_answered(void)
{
    pthread_mutex_lock(&lock);
    unsigned long n = answered;
    pthread_mutex_unlock(&lock);
    return n;
}
