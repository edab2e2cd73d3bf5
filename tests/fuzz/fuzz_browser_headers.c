/* libFuzzer target: the gateway's parsers of browser headers bound for a
 * grain (Cookie, Accept, If-Match / If-None-Match), and the cookie writer
 * fed what an app could set, and the download name's header. The input is
 * split at NUL bytes into fields (the download name takes it whole). */
#include "websession.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = gr_strndup((const char *)data, size); /* stops at the first NUL */
    const char *second = memchr(data, '\0', size);
    char *other = second ? gr_strndup(second + 1, size - (size_t)(second + 1 - (const char *)data))
                         : gr_strdup("");
    gr_error_t err = NULL;

    /* The cookie walker: items inside the header, names not empty and
     * without '=' or ';', values without ';'. */
    const char *walk = text, *end = text + strlen(text);
    gw_cookie item;
    while (gw__cookie_next(&walk, end, &item)) {
        if (item.name_len == 0 || item.name < text || item.name + item.name_len > end ||
            item.value < text || item.value + item.value_len > end ||
            memchr(item.name, '=', item.name_len) || memchr(item.name, ';', item.name_len) ||
            memchr(item.value, ';', item.value_len))
            abort();
    }

    ssize_t n;
    /* A download name (any bytes) makes a header value with no control
     * byte, and a quoted filename= with no quote or backslash inside. */
    gr_buf disp = GR_BUF_INIT;
    gw__ws_download_disposition(&disp, (const char *)data, size);
    static const char lead[] = "attachment; filename=\"";
    if (strncmp(disp.data, lead, sizeof lead - 1) != 0)
        abort();
    for (size_t i = 0; i < disp.len; i++)
        if ((unsigned char)disp.data[i] < 0x20 || disp.data[i] == 0x7f)
            abort();
    const char *quoted = disp.data + sizeof lead - 1;
    const char *close = strchr(quoted, '"');
    if (!close || memchr(quoted, '\\', (size_t)(close - quoted)) ||
        (close[1] != '\0' && strncmp(close + 1, "; filename*=UTF-8''", 19) != 0))
        abort();
    gr_buf_release(&disp);

    gw_accepted *a = NULL;
    n = gw__ws_parse_accept(text, &a, &err);
    for (ssize_t i = 0; i < n; i++)
        if (!(a[i].q >= 0.0f && a[i].q <= 1.0f))
            abort();
    if (n > 0)
        gw__accepted_free(a, (size_t)n);
    gr_error_release(&err);

    gw_precondition p;
    if (gw__ws_parse_precondition(text, NULL, &p, &err) == 0)
        gw__precondition_release(&p);
    gr_error_release(&err);
    if (gw__ws_parse_precondition(NULL, other, &p, &err) == 0)
        gw__precondition_release(&p);
    gr_error_release(&err);

    gr_buf b = GR_BUF_INIT;
    gw_set_cookie c = {.name = text, .value = other, .path = other,
                       .expires = (size % 3) == 0 ? GW_EXPIRES_NONE : GW_EXPIRES_RELATIVE,
                       .expires_value = (int64_t)size * 1000003, .http_only = size & 1};
    if (gw__ws_format_cookie(&b, &c, size & 2, 1700000000, &err) == 0 &&
        (strpbrk(b.data, "\r\n") || b.len == 0))
        abort(); /* a written cookie is one clean header line */
    gr_error_release(&err);
    gr_buf_release(&b);
    free(text);
    free(other);
    return 0;
}
