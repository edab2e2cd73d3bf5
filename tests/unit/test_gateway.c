/* Unit tests for the gateway's host classification (the HTTP behaviour is
 * tested over real sockets in tests/integration). */
#include "gateway.h"

#include <setjmp.h>
#include <cmocka.h>

static void classify(const cfg *c, const char *host, gw_host_kind want, const char *want_label)
{
    char label[64] = "";
    gw_host_kind got = gw_classify_host(c, host, strlen(host), label, sizeof(label));
    if (got != want)
        fail_msg("host '%s': got kind %d, wanted %d", host, got, want);
    if (want_label)
        assert_string_equal(label, want_label);
}

static void test_hosts(void **state)
{
    cfg c;
    cfg_init(&c);
    classify(&c, "granary.localhost:6080", GW_HOST_SHELL, NULL);
    classify(&c, "GRANARY.localhost:6080", GW_HOST_SHELL, NULL);
    classify(&c, "granary.localhost", GW_HOST_UNKNOWN, NULL);
    classify(&c, "granary.localhost:6081", GW_HOST_UNKNOWN, NULL);
    classify(&c, "ui-0123abcd.granary.localhost:6080", GW_HOST_WILDCARD, "ui-0123abcd");
    classify(&c, "UI-AB.granary.localhost:6080", GW_HOST_WILDCARD, "ui-ab");
    classify(&c, "a.b.granary.localhost:6080", GW_HOST_UNKNOWN, NULL);
    classify(&c, ".granary.localhost:6080", GW_HOST_UNKNOWN, NULL);
    classify(&c, "ui_x.granary.localhost:6080", GW_HOST_UNKNOWN, NULL);
    classify(&c, "evil.com", GW_HOST_UNKNOWN, NULL);
    classify(&c, "", GW_HOST_UNKNOWN, NULL);
    classify(&c, "xgranary.localhost:6080", GW_HOST_UNKNOWN, NULL);
    /* A label too long for the caller's buffer is refused, not truncated. */
    char longhost[200];
    memset(longhost, 'a', 100);
    gr_strlcpy(longhost + 100, ".granary.localhost:6080", sizeof(longhost) - 100);
    classify(&c, longhost, GW_HOST_UNKNOWN, NULL);
    /* Embedded NUL: the length says more than the string. */
    char label[64];
    assert_int_equal(gw_classify_host(&c, "granary.localhost:6080\0x", 24, label, sizeof(label)),
                     GW_HOST_UNKNOWN);
    cfg_release(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hosts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
