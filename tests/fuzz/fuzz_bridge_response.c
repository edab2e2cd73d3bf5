/* libFuzzer target: the bridge's parser of an app's HTTP response, the bytes
 * a compromised app controls. The input is split in two at a point taken
 * from its first byte, to exercise the parser's resumption; bit 0x80 of it
 * makes the request a HEAD, bit 0x40 a WebSocket handshake (a 101 ends the
 * response). A 1xx, 204, 304 or answer to HEAD never gets body bytes, and
 * trailer fields never reach the response. */
#include "bridge.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    size_t body;
    int heads, dones;
    bool upgrade, head;
    br_response *r; /* as on_head saw it */
    size_t ncookies, nheaders;
} counts;

static int on_head(void *ud, br_response *r)
{
    counts *c = ud;
    c->heads++;
    c->r = r;
    c->ncookies = r->ncookies;
    c->nheaders = r->nheaders;
    if ((r->status < 200 && !(c->upgrade && r->status == 101)) || r->status > 599)
        abort(); /* interim or impossible statuses never reach the caller */
    for (size_t i = 0; i < r->nheaders; i++)
        if (strpbrk(r->headers[i].value, "\r\n") || !br_response_header_allowed(r->headers[i].name))
            abort(); /* nothing unlisted or multi-line is passed on */
    /* A download name is UTF-8 without control characters. */
    const char *d = r->disposition_filename;
    for (size_t i = 0, n = d ? strlen(d) : 0; i < n;) {
        uint32_t cp;
        size_t k = gr_utf8_next(d + i, n - i, &cp);
        if (k == 0 || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            abort();
        i += k;
    }
    return 0;
}

static int on_body(void *ud, const char *d, size_t n)
{
    counts *c = ud;
    /* No body before the final head (a 1xx has none), nor after a head
     * that cannot have one (RFC 9112 6.3). */
    if (c->r == NULL || c->head || c->r->status == 204 || c->r->status == 304)
        abort();
    c->body += n;
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
    counts c = {.upgrade = (data[0] & 0x40) != 0, .head = head};
    br_parser *p = br_parser_new(NULL, &cb, &c, head);
    if (c.upgrade)
        br_parser_expect_upgrade(p);
    gr_error_t err = NULL;
    int r = br_parser_feed(p, text, split, &err);
    if (r == 0 && br_parser_upgraded(p)) {
        if (br_parser_upgrade_offset(p) > split)
            abort();
        split = len; /* the rest is the new protocol's */
    }
    if (r == 0 && split < len) {
        r = br_parser_feed(p, text + split, len - split, &err);
        if (r == 0 && br_parser_upgraded(p) && br_parser_upgrade_offset(p) > len - split)
            abort();
    }
    if (br_parser_upgraded(p) && (!c.upgrade || c.dones || c.heads != 1))
        abort(); /* a 101 ends the response only when asked, and without on_done */
    if (r == 0)
        r = br_parser_finish(p, &err);
    if (r < 0 && gr_error_msg(err)[0] == '\0')
        abort();
    if (c.dones > 1 || c.heads > 1 || (c.dones && !c.heads) || c.body > len)
        abort();
    if (c.r && (c.r->ncookies != c.ncookies || c.r->nheaders != c.nheaders))
        abort(); /* a trailer section is never merged into the head */
    gr_error_release(&err);
    br_parser_free(p);
    return 0;
}
