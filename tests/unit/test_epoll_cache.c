/* The daemon's epoll_ctl (src/granary/epoll_cache.c), linked in as the
 * daemon links it: calls that change nothing are answered without the
 * kernel, and nothing it answers may leave a descriptor unwatched. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cmocka.h>

#include "epoll_cache.h"

static struct epoll_event ev_in(int fd)
{
    return (struct epoll_event){.events = EPOLLIN, .data.fd = fd};
}

/* Whether epfd reports fd readable within a moment. */
static bool readable(int epfd, int fd)
{
    struct epoll_event out[8];
    int n = epoll_wait(epfd, out, 8, 50);
    for (int i = 0; i < n; i++)
        if (out[i].data.fd == fd && (out[i].events & EPOLLIN))
            return true;
    return false;
}

/* libuv's pattern for a watcher that stops and starts again: ADD, which the
 * kernel would refuse with EEXIST, then MOD with the same events. */
static void test_restart_costs_no_call_and_still_watches(void **state)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct epoll_event ev = ev_in(p[0]);
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev), 0);
    unsigned long before = granary_epoll_answered();
    ev = ev_in(p[0]);
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev), 0);
    ev = ev_in(p[0]);
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev), 0);
    assert_int_equal(granary_epoll_answered() - before, 2);
    assert_int_equal(write(p[1], "x", 1), 1);
    assert_true(readable(ep, p[0]));
    close(p[0]);
    close(p[1]);
    close(ep);
}

/* A change goes to the kernel: asking for EPOLLOUT on a writable pipe end
 * must be reported, and going back to EPOLLIN must stop the reports. */
static void test_changes_reach_the_kernel(void **state)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = p[1]};
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, p[1], &ev), 0);
    struct epoll_event out[4];
    assert_int_equal(epoll_wait(ep, out, 4, 0), 0);
    ev = (struct epoll_event){.events = EPOLLOUT, .data.fd = p[1]};
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_MOD, p[1], &ev), 0);
    assert_int_equal(epoll_wait(ep, out, 4, 50), 1);
    /* An ADD with other events for a held descriptor becomes a MOD. */
    ev = (struct epoll_event){.events = EPOLLIN, .data.fd = p[1]};
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, p[1], &ev), 0);
    assert_int_equal(epoll_wait(ep, out, 4, 0), 0);
    close(p[0]);
    close(p[1]);
    close(ep);
}

/* After DEL the descriptor is forgotten: a number reused by a new pipe is
 * really added, and a second DEL is the kernel's ENOENT. */
static void test_del_forgets(void **state)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int p[2];
    assert_int_equal(pipe(p), 0);
    int num = p[0];
    struct epoll_event ev = ev_in(num);
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, num, &ev), 0);
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_DEL, num, &ev), 0);
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_DEL, num, &ev), -1);
    assert_int_equal(errno, ENOENT);
    close(p[0]);
    close(p[1]);
    assert_int_equal(pipe(p), 0);
    assert_int_equal(p[0], num); /* the lowest free number again */
    ev = ev_in(num);
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, num, &ev), 0);
    assert_int_equal(write(p[1], "x", 1), 1);
    assert_true(readable(ep, num));
    close(p[0]);
    close(p[1]);
    close(ep);
}

/* A failing call leaves nothing remembered; a MOD of a descriptor never
 * added is the kernel's ENOENT, not an answer from the table. */
static void test_failures_are_the_kernels(void **state)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct epoll_event ev = ev_in(p[0]);
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, 9999, &ev), -1);
    assert_int_equal(errno, EBADF);
    close(p[0]);
    close(p[1]);
    close(ep);
}

/* A new epoll set that gets the number of the remembered one starts from
 * nothing: the old set's registrations are not taken for the new one's. */
static void test_a_new_set_with_the_same_number_forgets(void **state)
{
    int ep = epoll_create1(EPOLL_CLOEXEC); /* the remembered set's number */
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct epoll_event ev = ev_in(p[0]);
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev), 0);
    ev = ev_in(p[0]);
    unsigned long held = granary_epoll_answered();
    assert_int_equal(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev), 0);
    assert_int_equal(granary_epoll_answered(), held + 1);
    close(ep);
    int ep2 = epoll_create1(EPOLL_CLOEXEC);
    assert_int_equal(ep2, ep);
    unsigned long before = granary_epoll_answered();
    ev = ev_in(p[0]);
    assert_int_equal(epoll_ctl(ep2, EPOLL_CTL_ADD, p[0], &ev), 0);
    assert_int_equal(granary_epoll_answered(), before);
    assert_int_equal(write(p[1], "x", 1), 1);
    assert_true(readable(ep2, p[0]));
    close(p[0]);
    close(p[1]);
    close(ep2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restart_costs_no_call_and_still_watches),
        cmocka_unit_test(test_changes_reach_the_kernel),
        cmocka_unit_test(test_del_forgets),
        cmocka_unit_test(test_failures_are_the_kernels),
        cmocka_unit_test(test_a_new_set_with_the_same_number_forgets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
