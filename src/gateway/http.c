/* Response helpers shared by the gateway's handlers. */
#include "gateway_internal.h"

/* h2o keeps pointers to header names and values until the response is
 * sent, so both are copied into the request's pool: callers may pass
 * strings they free, or that live in a message about to be released. */
void gw__add_header(h2o_req_t *req, const h2o_token_t *token, const char *value)
{
    h2o_iovec_t v = h2o_strdup(&req->pool, value, SIZE_MAX);
    h2o_add_header(&req->pool, &req->res.headers, token, NULL, v.base, v.len);
}

void gw__add_header_str(h2o_req_t *req, const char *name, const char *value)
{
    h2o_iovec_t n = h2o_strdup(&req->pool, name, SIZE_MAX);
    h2o_iovec_t v = h2o_strdup(&req->pool, value, SIZE_MAX);
    h2o_add_header_by_str(&req->pool, &req->res.headers, n.base, n.len, 0, NULL, v.base, v.len);
}

void gw__add_header_lasting(h2o_req_t *req, const char *name, const char *value)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, strlen(name), 0, NULL, value,
                          strlen(value));
}

void gw__add_common_headers(h2o_req_t *req)
{
    gw__add_header_lasting(req, "x-content-type-options", "nosniff");
    gw__add_header_lasting(req, "referrer-policy", "same-origin");
}

/* Sends a body held in memory; h2o copies it into the request's pool. */
int gw__send_body(h2o_req_t *req, int status, const char *reason, const char *type,
                     const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = reason;
    gw__add_header(req, H2O_TOKEN_CONTENT_TYPE, type);
    gw__add_common_headers(req);
    h2o_send_inline(req, body, len);
    return 0;
}

int gw__send_json(h2o_req_t *req, int status, const char *reason, json_t *obj)
{
    char *text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(6));
    json_decref(obj);
    if (text == NULL)
        abort();
    gw__add_header(req, H2O_TOKEN_CACHE_CONTROL, "no-store");
    gw__send_body(req, status, reason, "application/json; charset=utf-8", text, strlen(text));
    free(text);
    return 0;
}

int gw__send_json_error(h2o_req_t *req, int status, const char *reason, const char *message)
{
    return gw__send_json(req, status, reason, json_pack("{s:s}", "error", message));
}

/* Escapes text for an HTML body: only what can break out of text content. */
void gw__html_escape(gr_buf *b, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        switch (s[i]) {
        case '<': gr_buf_puts(b, "&lt;"); break;
        case '>': gr_buf_puts(b, "&gt;"); break;
        case '&': gr_buf_puts(b, "&amp;"); break;
        case '"': gr_buf_puts(b, "&quot;"); break;
        case '\'': gr_buf_puts(b, "&#39;"); break;
        default:
            if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
                gr_buf_puts(b, "?");
            else
                gr_buf_append(b, &s[i], 1);
        }
    }
}

int gw__send_error_page(gw_server *srv, h2o_req_t *req, int status, const char *reason,
                           const char *title, const char *detail, size_t detail_len)
{
    gr_buf b = GR_BUF_INIT;
    gr_buf_printf(&b,
                  "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                  "<title>%d %s</title></head><body style=\"font-family:sans-serif;"
                  "max-width:40em;margin:4em auto\"><h1>%d %s</h1><p>%s</p><p>",
                  status, reason, status, reason, title);
    gw__html_escape(&b, detail, detail_len);
    gr_buf_puts(&b, "</p><p>The Granary shell is at <a href=\"");
    gw__html_escape(&b, srv->cfg->base_url, strlen(srv->cfg->base_url));
    gr_buf_puts(&b, "/\">");
    gw__html_escape(&b, srv->cfg->base_url, strlen(srv->cfg->base_url));
    gr_buf_puts(&b, "</a>.</p></body></html>\n");
    gw__add_header(req, H2O_TOKEN_CACHE_CONTROL, "no-store");
    gw__add_header_str(req, "content-security-policy", "default-src 'none'; frame-ancestors 'none'");
    gw__send_body(req, status, reason, "text/html; charset=utf-8", b.data, b.len);
    gr_buf_release(&b);
    return 0;
}

/* Lives in the request's memory pool: when h2o frees the request, the guard
 * is disposed and clears the references that point at it (one or two: a
 * grain call and its response stream share one). */
struct gw_req_guard {
    gw_req_ref *refs[2];
};

static void on_guard_dispose(void *p)
{
    struct gw_req_guard *g = p;
    for (int i = 0; i < 2; i++)
        if (g->refs[i])
            g->refs[i]->req = NULL;
}

void gw__req_ref_init_pair(gw_req_ref *a, gw_req_ref *b, h2o_req_t *req)
{
    struct gw_req_guard *g = h2o_mem_alloc_shared(&req->pool, sizeof(*g), on_guard_dispose);
    g->refs[0] = a;
    g->refs[1] = b;
    a->req = req;
    a->guard = g;
    if (b) {
        b->req = req;
        b->guard = g;
    }
}

void gw__req_ref_init(gw_req_ref *ref, h2o_req_t *req)
{
    gw__req_ref_init_pair(ref, NULL, req);
}

void gw__req_ref_clear(gw_req_ref *ref)
{
    if (ref->req && ref->guard)
        for (int i = 0; i < 2; i++)
            if (ref->guard->refs[i] == ref)
                ref->guard->refs[i] = NULL;
    ref->req = NULL;
    ref->guard = NULL;
}

static void job_run(uv_work_t *w)
{
    gw_job *job = (gw_job *)w;
    job->run(job);
}

static void job_after(uv_work_t *w, int status)
{
    gw_job *job = (gw_job *)w;
    h2o_req_t *req = job->ref.req;
    gw__req_ref_clear(&job->ref);
    if (req) {
        if (status == 0)
            job->done(job, req);
        else
            gw__send_json_error(req, 503, "Service Unavailable", "the server is stopping");
    }
    if (job->free_data)
        job->free_data(job->data);
    free(job);
}

int gw__defer(gw_server *srv, h2o_req_t *req, void (*run)(gw_job *), int (*done)(gw_job *, h2o_req_t *),
              void *data, void (*free_data)(void *))
{
    gw_job *job = gr_calloc(1, sizeof(*job));
    job->srv = srv;
    job->run = run;
    job->done = done;
    job->data = data;
    job->free_data = free_data;
    gw__req_ref_init(&job->ref, req);
    int r = uv_queue_work(srv->loop, &job->work, job_run, job_after);
    if (r != 0) {
        gw__req_ref_clear(&job->ref);
        if (free_data)
            free_data(data);
        free(job);
        return gw__send_json_error(req, 503, "Service Unavailable", "cannot queue work");
    }
    return 0;
}
