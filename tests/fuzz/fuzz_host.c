/* libFuzzer target: Host header classification, the first thing the gateway
 * does with every request's untrusted bytes. */
#include "gateway.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cfg c;
    static bool ready;
    if (!ready) {
        cfg_init(&c);
        ready = true;
    }
    char label[64];
    gw_host_kind k = gw_classify_host(&c, (const char *)data, size, label, sizeof(label));
    if (k == GW_HOST_WILDCARD && (strlen(label) == 0 || strlen(label) >= sizeof(label)))
        abort();
    return 0;
}
