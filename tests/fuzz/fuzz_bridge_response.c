/* libFuzzer target: the bridge's parser of an app's HTTP response, the bytes
 * a compromised app controls. The input is split in two at a point taken
 * from its first byte, to exercise the parser's resumption. */
#include "bridge.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    size_t body;
    int heads, dones;
} counts;

static int on_head(void *ud, br_response *r)
{
    counts *c = ud;
    c->heads++;
    if (r->status < 200 || r->status > 599)
        abort(); /* interim or impossible statuses never reach the caller */
    for (size_t i = 0; i < r->nheaders; i++)
        if (strpbrk(r->headers[i].value, "\r\n") || !br_response_header_allowed(r->headers[i].name))
            abort(); /* nothing unlisted or multi-line is passed on */
    return 0;
}

static int on_body(void *ud, const char *d, size_t n)
{
    ((counts *)ud)->body += n;
    return 0;
}

static int on_done(void *ud)
{
    ((counts *)ud)->dones++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t split = size > 1 ? data[0] % size : 0;
    bool head = data[0] & 0x80;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if (split > len)
        split = len;
    static const br_parser_callbacks cb = {on_head, on_body, on_done};
    counts c = {0};
    br_parser *p = br_parser_new(NULL, &cb, &c, head);
    gr_error_t err = NULL;
    int r = br_parser_feed(p, text, split, &err);
    if (r == 0)
        r = br_parser_feed(p, text + split, len - split, &err);
    if (r == 0)
        r = br_parser_finish(p, &err);
    if (r < 0 && gr_error_msg(err)[0] == '\0')
        abort();
    if (c.dones > 1 || c.heads > 1 || (c.dones && !c.heads) || c.body > len)
        abort();
    gr_error_release(&err);
    br_parser_free(p);
    return 0;
}
