/* Accounts in the shell API: first-run setup, password and email-link login,
 * the TOTP second factor, sessions, logout, and accounts made by an admin.
 *
 * Every state-changing call is a POST with a JSON body, an X-Granary-CSRF
 * header (the session's token once logged in) and, when the browser sends
 * one, an Origin equal to the base URL. A cross-site page can send none of
 * these without a CORS preflight, which Granary never grants. */
#include "auth.h"
#include "gateway_internal.h"
#include "websession.h"

#include <netdb.h>
#include <sodium.h>
#include <strings.h>

#define SESSION_COOKIE "granary_session"
/* Over https the cookie's name carries the __Host- prefix: browsers then
 * refuse any cookie of that name set with a Domain (or without Secure, or
 * for another path), so no grain page can plant one beside it. */
#define HOST_SESSION_COOKIE "__Host-" SESSION_COOKIE
#define SESSION_SECONDS (14 * 24 * 3600)
#define EMAIL_LINK_SECONDS (15 * 60)
#define MAX_BODY (64 * 1024)
#define FAIL_WINDOW 300        /* seconds over which login failures count */
#define FAIL_LIMIT_EMAIL 5     /* per account */
#define FAIL_LIMIT_ADDRESS 20  /* per client address */

typedef gw_session session;

void gw__session_release(gw_session *s)
{
    st_account_release(&s->account);
    free(s->csrf);
    s->csrf = NULL;
}

int gw__store_failure(h2o_req_t *req, gr_error_t *err)
{
    gr_error_log("store: %s", gr_error_msg(*err));
    gr_error_release(err);
    return gw__send_json_error(req, 500, "Internal Server Error",
                               "the server could not read or write its store");
}

static const char *session_cookie(const gw_server *srv)
{
    return srv->cfg->base_https ? HOST_SESSION_COOKIE : SESSION_COOKIE;
}

/* ---- request parsing ----------------------------------------------------- */

/* The value of cookie `name`, newly allocated, or NULL when the request has
 * none. *twice is set when it has more than one: a page of a grain origin
 * (a subdomain) can set a cookie of the same name for the parent domain,
 * which the browser then sends beside ours, and which comes first is the
 * browser's choice. */
/* The value of the cookie called name in Cookie header values (n of
 * them), or NULL; *twice when it is there more than once. */
static char *cookie_value(const h2o_iovec_t *values, size_t n, const char *name, bool *twice)
{
    size_t nl = strlen(name);
    char *found = NULL;
    *twice = false;
    for (size_t i = 0; i < n; i++) {
        const char *p = values[i].base;
        const char *end = gw__cookie_end(values[i].base, values[i].len);
        gw_cookie c;
        while (gw__cookie_next(&p, end, &c)) {
            if (!h2o_memis(c.name, c.name_len, name, nl))
                continue;
            if (found) {
                *twice = true;
                return found;
            }
            found = gr_strndup(c.value, c.value_len);
        }
    }
    return found;
}

static bool is_hex_token(const char *t)
{
    if (t == NULL || strlen(t) != AU_TOKEN_HEX - 1)
        return false;
    for (const char *p = t; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

/* Resolves the session cookie. Returns 1 with *s filled, 0 when there is no
 * valid session, or -1 with err. */
int gw__session_find(gw_server *srv, h2o_req_t *req, gw_session *s, gr_error_t *err)
{
    h2o_iovec_t values[GW_MAX_COOKIE_HEADERS];
    size_t n = 0;
    for (ssize_t i = -1; (i = h2o_find_header(&req->headers, H2O_TOKEN_COOKIE, i)) != -1;) {
        if (n == GW_MAX_COOKIE_HEADERS) {
            memset(s, 0, sizeof(*s));
            return 0; /* no browser sends so many: signed out */
        }
        values[n++] = req->headers.entries[i].value;
    }
    return gw__session_find_in(srv, values, n, s, err);
}

int gw__session_find_in(gw_server *srv, const h2o_iovec_t *cookies, size_t n, gw_session *s,
                        gr_error_t *err)
{
    memset(s, 0, sizeof(*s));
    bool twice = false;
    _cleanup_free_ char *token = cookie_value(cookies, n, session_cookie(srv), &twice);
    if (twice) {
        /* Which is ours cannot be told: using either could sign the user in
         * as whoever planted the other. */
        gr_warn("auth: a request carried two %s cookies (a grain's page may have set one for "
                "the parent domain); treated as signed out",
                session_cookie(srv));
        return 0;
    }
    if (!is_hex_token(token))
        return 0;
    au_token_hash(token, s->token_hash);
    _cleanup_free_ char *account_id = NULL;
    int r = st_session_get(srv->store, s->token_hash, gr_now_unix(), &account_id, &s->csrf, err);
    if (r <= 0)
        return r;
    r = st_account_by_id(srv->store, account_id, &s->account, err);
    if (r <= 0)
        gw__session_release(s);
    return r;
}

/* Checks what every state-changing call needs (see the top of this file).
 * Returns 0 when the request may go on; otherwise it has answered. With a
 * session, the CSRF header must be that session's token. */
int gw__check_post(gw_server *srv, h2o_req_t *req, const gw_session *s, const char *content_type)
{
    if (!gw__method_is(req, "POST")) {
        gw__add_header(req, H2O_TOKEN_ALLOW, "POST");
        gw__send_json_error(req, 405, "Method Not Allowed", "use POST");
        return -1;
    }
    const h2o_iovec_t *origin = gw__header(req, "origin");
    if (origin && !h2o_memis(origin->base, origin->len, srv->cfg->base_url,
                             strlen(srv->cfg->base_url))) {
        gw__send_json_error(req, 403, "Forbidden", "cross-origin request refused");
        return -1;
    }
    const h2o_iovec_t *csrf = gw__header(req, "x-granary-csrf");
    bool ok = csrf && csrf->len > 0 && csrf->len < 256;
    if (ok && s) {
        char got[256];
        memcpy(got, csrf->base, csrf->len);
        got[csrf->len] = '\0';
        ok = au_secret_equal(got, s->csrf);
    }
    if (!ok) {
        gw__send_json_error(req, 403, "Forbidden", "missing or wrong X-Granary-CSRF header");
        return -1;
    }
    const h2o_iovec_t *type = gw__header(req, "content-type");
    size_t tl = strlen(content_type);
    if (type == NULL || type->len < tl || strncasecmp(type->base, content_type, tl) != 0) {
        char msg[96];
        snprintf(msg, sizeof(msg), "send the body as %s", content_type);
        gw__send_json_error(req, 415, "Unsupported Media Type", msg);
        return -1;
    }
    if (strcmp(content_type, "application/json") == 0 && req->entity.len > MAX_BODY) {
        gw__send_json_error(req, 413, "Payload Too Large", "the request body is too large");
        return -1;
    }
    return 0;
}

static int gw__check_post_json(gw_server *srv, h2o_req_t *req, const gw_session *s)
{
    return gw__check_post(srv, req, s, "application/json");
}

/* Parses the body as a JSON object. Returns it (the caller decrefs), or NULL
 * having answered 400. */
json_t *gw__parse_body(h2o_req_t *req)
{
    json_error_t jerr;
    json_t *body = NULL;
    if (req->entity.base != NULL)
        body = json_loadb(req->entity.base, req->entity.len, JSON_REJECT_DUPLICATES, &jerr);
    if (body == NULL || !json_is_object(body)) {
        json_decref(body);
        gw__send_json_error(req, 400, "Bad Request", "the body must be a JSON object");
        return NULL;
    }
    return body;
}

/* A string member of obj, or NULL when absent or not a string. */
static const char *str_field(json_t *obj, const char *key, size_t *len)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        return NULL;
    if (len)
        *len = json_string_length(v);
    return json_string_value(v);
}

static const char *check_email(const char *email)
{
    if (email == NULL)
        return "an email address is required";
    size_t len = strlen(email);
    const char *at = strchr(email, '@');
    if (len < 3 || len > 254 || at == NULL || at == email || at[1] == '\0' ||
        strchr(at + 1, '@') || strchr(email, ' ') || gr_has_control_chars(email))
        return "that is not an email address";
    return NULL;
}

static const char *check_name(const char *name)
{
    if (name == NULL || *name == '\0')
        return "a name is required";
    if (strlen(name) > 100 || gr_has_control_chars(name))
        return "the name must be at most 100 characters, with no control characters";
    return NULL;
}

/* ---- responses ----------------------------------------------------------- */

static json_t *account_json(const st_account *a)
{
    return json_pack("{s:s, s:s, s:s, s:b, s:b}", "id", a->id, "email", a->email ? a->email : "",
                     "name", a->display_name ? a->display_name : "", "is_admin", a->is_admin,
                     "totp", a->totp_secret != NULL);
}

/* Starts a session for account: sets the cookie and answers with the account
 * and the session's CSRF token. */
static int start_session(gw_server *srv, h2o_req_t *req, const st_account *a, int status)
{
    char token[AU_TOKEN_HEX], hash[AU_TOKEN_HEX], csrf[AU_TOKEN_HEX];
    au_token_new(token);
    au_token_hash(token, hash);
    au_token_new(csrf);
    _cleanup_error_ gr_error_t err = NULL;
    if (st_session_create(srv->store, hash, a->id, csrf, gr_now_unix() + SESSION_SECONDS, &err) <
        0)
        return gw__store_failure(req, &err);
    _cleanup_free_ char *cookie =
        gr_asprintf("%s=%s; Path=/; HttpOnly; SameSite=Lax; Max-Age=%d%s", session_cookie(srv),
                    token, SESSION_SECONDS, srv->cfg->base_https ? "; Secure" : "");
    gw__add_header(req, H2O_TOKEN_SET_COOKIE, cookie);
    gr_info("login: %s", a->email);
    return gw__send_json(req, status, status == 201 ? "Created" : "OK",
                         json_pack("{s:o, s:s}", "account", account_json(a), "csrf", csrf));
}

static void clear_cookie(gw_server *srv, h2o_req_t *req)
{
    gw__add_header(req, H2O_TOKEN_SET_COOKIE,
                   srv->cfg->base_https
                       ? HOST_SESSION_COOKIE "=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0; Secure"
                       : SESSION_COOKIE "=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
}

/* ---- rate limiting -------------------------------------------------------- */

static void client_address(h2o_req_t *req, char *out, size_t size)
{
    struct sockaddr_storage sa;
    socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&sa);
    out[0] = '\0';
    if (len == 0 || h2o_socket_getnumerichost((struct sockaddr *)&sa, len, out) == SIZE_MAX)
        gr_strlcpy(out, "unknown", size);
}

/* Keys are lowercase so "A@x" and "a@x" share one budget. */
static void fail_keys(h2o_req_t *req, const char *email, char *ekey, char *akey, size_t size)
{
    snprintf(ekey, size, "email:%s", email);
    gr_ascii_lower(ekey);
    char addr[NI_MAXHOST];
    client_address(req, addr, sizeof(addr));
    snprintf(akey, size, "addr:%s", addr);
}

/* Answers 429 and returns 1 when either key has used up its budget. */
static int rate_limited(gw_server *srv, h2o_req_t *req, const char *ekey, const char *akey)
{
    _cleanup_error_ gr_error_t err = NULL;
    int64_t since = gr_now_unix() - FAIL_WINDOW;
    int e = st_login_failure_count(srv->store, ekey, since, &err);
    int a = e < 0 ? -1 : st_login_failure_count(srv->store, akey, since, &err);
    if (e < 0 || a < 0) {
        gw__store_failure(req, &err);
        return 1;
    }
    if (e >= FAIL_LIMIT_EMAIL || a >= FAIL_LIMIT_ADDRESS) {
        gr_warn("login: too many failures for %s / %s", ekey, akey);
        gw__add_header(req, H2O_TOKEN_RETRY_AFTER, "300");
        gw__send_json_error(req, 429, "Too Many Requests",
                            "too many failed logins: wait five minutes and try again");
        return 1;
    }
    return 0;
}

static void record_failure(gw_server *srv, const char *ekey, const char *akey)
{
    gr_error_t err = NULL;
    int64_t now = gr_now_unix();
    if (st_login_failure_add(srv->store, ekey, now, &err) < 0 ||
        st_login_failure_add(srv->store, akey, now, &err) < 0) {
        gr_error_log("login: %s", gr_error_msg(err));
        gr_error_release(&err);
    }
}

/* ---- the password work, off the loop ------------------------------------- */

typedef struct {
    /* inputs */
    char *email;
    char *password;
    size_t password_len;
    char *new_password;
    size_t new_password_len;
    char *stored_hash; /* to verify against; NULL means "hash only" */
    char *totp;
    char *name;
    char *token;
    char ekey[300], akey[300];
    /* outputs */
    bool verified;
    char new_hash[AU_HASH_MAX];
    bool hashed;
} pw_job;

static void pw_job_free(void *p)
{
    pw_job *j = p;
    if (j->password)
        sodium_memzero(j->password, j->password_len);
    if (j->new_password)
        sodium_memzero(j->new_password, j->new_password_len);
    free(j->email);
    free(j->password);
    free(j->new_password);
    free(j->stored_hash);
    free(j->totp);
    free(j->name);
    free(j->token);
    free(j);
}

/* A hash of a password nobody knows, verified when the account does not
 * exist, so that the answer takes as long either way. */
static char dummy_hash[AU_HASH_MAX];

static void pw_run(gw_job *job)
{
    pw_job *j = job->data;
    if (j->password)
        j->verified = au_password_verify(j->stored_hash ? j->stored_hash : dummy_hash, j->password,
                                         j->password_len) &&
                      j->stored_hash != NULL;
    if (j->new_password) {
        gr_error_t err = NULL;
        j->hashed = au_password_hash(j->new_password, j->new_password_len, j->new_hash, &err) == 0;
        gr_error_release(&err);
    }
}

static pw_job *pw_job_new(void)
{
    return gr_calloc(1, sizeof(pw_job));
}

/* ---- endpoints ------------------------------------------------------------ */

static int api_session(gw_server *srv, h2o_req_t *req)
{
    if (!gw__method_is(req, "GET") && !gw__method_is(req, "HEAD"))
        return gw__send_json_error(req, 405, "Method Not Allowed", "use GET");
    _cleanup_error_ gr_error_t err = NULL;
    session s;
    int r = gw__session_find(srv, req, &s, &err);
    if (r < 0)
        return gw__store_failure(req, &err);
    if (r == 1) {
        json_t *o = json_pack("{s:o, s:s}", "account", account_json(&s.account), "csrf", s.csrf);
        gw__session_release(&s);
        return gw__send_json(req, 200, "OK", o);
    }
    int admins = st_account_count(srv->store, true, &err);
    if (admins < 0)
        return gw__store_failure(req, &err);
    return gw__send_json(req, 200, "OK",
                         json_pack("{s:n, s:b}", "account", "setup_needed", admins == 0));
}

static int login_done(gw_job *job, h2o_req_t *req)
{
    gw_server *srv = job->srv;
    pw_job *j = job->data;
    _cleanup_error_ gr_error_t err = NULL;
    st_account a = {0};
    int found = j->verified ? st_account_by_email(srv->store, j->email, &a, &err) : 0;
    if (found < 0)
        return gw__store_failure(req, &err);
    if (!found) {
        record_failure(srv, j->ekey, j->akey);
        return gw__send_json_error(req, 401, "Unauthorized", "wrong email or password");
    }
    if (a.totp_secret) {
        if (j->totp == NULL) {
            st_account_release(&a);
            return gw__send_json(req, 401, "Unauthorized",
                                 json_pack("{s:s, s:b}", "error",
                                           "enter the code from your authenticator app",
                                           "totp_required", 1));
        }
        if (!au_totp_verify(a.totp_secret, j->totp, gr_now_unix())) {
            st_account_release(&a);
            record_failure(srv, j->ekey, j->akey);
            return gw__send_json(req, 401, "Unauthorized",
                                 json_pack("{s:s, s:b}", "error",
                                           "that authenticator code is not right",
                                           "totp_required", 1));
        }
    }
    st_login_failure_clear(srv->store, j->ekey, &err);
    gr_error_release(&err);
    int rc = start_session(srv, req, &a, 200);
    st_account_release(&a);
    return rc;
}

static int api_login(gw_server *srv, h2o_req_t *req)
{
    if (gw__check_post_json(srv, req, NULL) < 0)
        return 0;
    json_t *body = gw__parse_body(req);
    if (body == NULL)
        return 0;
    size_t plen = 0;
    const char *email = str_field(body, "email", NULL);
    const char *password = str_field(body, "password", &plen);
    const char *totp = str_field(body, "totp", NULL);
    if (email == NULL || password == NULL || check_email(email) || plen > AU_PASSWORD_MAX) {
        json_decref(body);
        return gw__send_json_error(req, 400, "Bad Request",
                                   "send an email address and a password");
    }
    pw_job *j = pw_job_new();
    fail_keys(req, email, j->ekey, j->akey, sizeof(j->ekey));
    if (rate_limited(srv, req, j->ekey, j->akey)) {
        json_decref(body);
        pw_job_free(j);
        return 0;
    }
    _cleanup_error_ gr_error_t err = NULL;
    st_account a = {0};
    int found = st_account_by_email(srv->store, email, &a, &err);
    if (found < 0) {
        json_decref(body);
        pw_job_free(j);
        return gw__store_failure(req, &err);
    }
    j->email = gr_strdup(email);
    j->password = gr_strndup(password, plen);
    j->password_len = plen;
    j->totp = totp ? gr_strdup(totp) : NULL;
    j->stored_hash = found && a.password_hash ? gr_strdup(a.password_hash) : NULL;
    st_account_release(&a);
    json_decref(body);
    return gw__defer(srv, req, pw_run, login_done, j, pw_job_free);
}

static int setup_done(gw_job *job, h2o_req_t *req)
{
    gw_server *srv = job->srv;
    pw_job *j = job->data;
    if (!j->hashed)
        return gw__send_json_error(req, 500, "Internal Server Error", "could not hash the password");
    _cleanup_error_ gr_error_t err = NULL;
    char hash[AU_TOKEN_HEX];
    au_token_hash(j->token, hash);
    _cleanup_free_ char *unused = NULL;
    int r = st_login_token_take(srv->store, hash, "setup", gr_now_unix(), &unused, &err);
    if (r < 0)
        return gw__store_failure(req, &err);
    if (r == 0)
        return gw__send_json_error(req, 403, "Forbidden",
                                   "this setup link is invalid, used or expired: make a new one "
                                   "with `granary admin setup-link`");
    char id[33];
    unsigned char raw[16];
    randombytes_buf(raw, sizeof(raw));
    gr_hex(raw, sizeof(raw), id);
    st_account a = {.id = id, .email = j->email, .display_name = j->name,
                    .password_hash = j->new_hash, .is_admin = true, .created_at = gr_now_unix()};
    if (st_account_create(srv->store, &a, &err) < 0) {
        if (err->status == EEXIST)
            return gw__send_json_error(req, 409, "Conflict", gr_error_msg(err));
        return gw__store_failure(req, &err);
    }
    gr_info("setup: administrator %s created", j->email);
    return start_session(srv, req, &a, 201);
}

static int api_setup(gw_server *srv, h2o_req_t *req)
{
    if (gw__check_post_json(srv, req, NULL) < 0)
        return 0;
    json_t *body = gw__parse_body(req);
    if (body == NULL)
        return 0;
    size_t plen = 0;
    const char *token = str_field(body, "token", NULL);
    const char *email = str_field(body, "email", NULL);
    const char *name = str_field(body, "name", NULL);
    const char *password = str_field(body, "password", &plen);
    _cleanup_error_ gr_error_t err = NULL;
    const char *problem = !is_hex_token(token) ? "the setup link is not complete"
                          : check_email(email) ? check_email(email)
                          : check_name(name)   ? check_name(name)
                          : password == NULL   ? "a password is required"
                                               : NULL;
    if (problem == NULL && au_password_check(password, plen, &err) < 0)
        problem = gr_error_msg(err);
    if (problem) {
        int rc = gw__send_json_error(req, 400, "Bad Request", problem);
        json_decref(body);
        return rc;
    }
    pw_job *j = pw_job_new();
    j->token = gr_strdup(token);
    j->email = gr_strdup(email);
    j->name = gr_strdup(name);
    j->new_password = gr_strndup(password, plen);
    j->new_password_len = plen;
    json_decref(body);
    return gw__defer(srv, req, pw_run, setup_done, j, pw_job_free);
}

static int api_logout(gw_server *srv, h2o_req_t *req)
{
    _cleanup_error_ gr_error_t err = NULL;
    session s;
    int r = gw__session_find(srv, req, &s, &err);
    if (r < 0)
        return gw__store_failure(req, &err);
    if (gw__check_post_json(srv, req, r ? &s : NULL) < 0) {
        if (r)
            gw__session_release(&s);
        return 0;
    }
    if (r) {
        st_session_delete(srv->store, s.token_hash, &err);
        gr_info("logout: %s", s.account.email);
        gw__session_release(&s);
        if (err)
            return gw__store_failure(req, &err);
    }
    clear_cookie(srv, req);
    return gw__send_json(req, 200, "OK", json_pack("{s:b}", "ok", 1));
}

static int api_login_email(gw_server *srv, h2o_req_t *req)
{
    if (gw__check_post_json(srv, req, NULL) < 0)
        return 0;
    json_t *body = gw__parse_body(req);
    if (body == NULL)
        return 0;
    const char *email = str_field(body, "email", NULL);
    if (check_email(email)) {
        int rc = gw__send_json_error(req, 400, "Bad Request", check_email(email));
        json_decref(body);
        return rc;
    }
    _cleanup_error_ gr_error_t err = NULL;
    st_account a = {0};
    int found = st_account_by_email(srv->store, email, &a, &err);
    json_decref(body);
    if (found < 0)
        return gw__store_failure(req, &err);
    if (found) {
        char token[AU_TOKEN_HEX], hash[AU_TOKEN_HEX];
        au_token_new(token);
        au_token_hash(token, hash);
        int r = st_login_token_create(srv->store, hash, "email", a.id,
                                      gr_now_unix() + EMAIL_LINK_SECONDS, &err);
        if (r == 0)
            /* No mail server is configured: the operator reads the log. */
            gr_info("login link for %s (valid 15 minutes): %s/login/email#token=%s", a.email,
                    srv->cfg->base_url, token);
        st_account_release(&a);
        if (r < 0)
            return gw__store_failure(req, &err);
    }
    /* The same answer either way, so the call cannot probe for accounts. */
    return gw__send_json(req, 202, "Accepted", json_pack("{s:b}", "sent", 1));
}

static int api_login_email_redeem(gw_server *srv, h2o_req_t *req)
{
    if (gw__check_post_json(srv, req, NULL) < 0)
        return 0;
    json_t *body = gw__parse_body(req);
    if (body == NULL)
        return 0;
    const char *token = str_field(body, "token", NULL);
    const char *totp = str_field(body, "totp", NULL);
    _cleanup_error_ gr_error_t err = NULL;
    char hash[AU_TOKEN_HEX];
    if (!is_hex_token(token)) {
        json_decref(body);
        return gw__send_json_error(req, 403, "Forbidden",
                                   "this login link is invalid, used or expired");
    }
    au_token_hash(token, hash);
    _cleanup_free_ char *account_id = NULL;
    int r = st_login_token_peek(srv->store, hash, "email", gr_now_unix(), &account_id, &err);
    st_account a = {0};
    if (r == 1)
        r = st_account_by_id(srv->store, account_id, &a, &err);
    if (r < 0) {
        json_decref(body);
        return gw__store_failure(req, &err);
    }
    if (r == 0) {
        json_decref(body);
        return gw__send_json_error(req, 403, "Forbidden",
                                   "this login link is invalid, used or expired");
    }
    /* A second factor guards link logins too; the link stays usable until
     * the right code comes with it. */
    if (a.totp_secret && (totp == NULL || !au_totp_verify(a.totp_secret, totp, gr_now_unix()))) {
        st_account_release(&a);
        int rc = gw__send_json(
            req, 401, "Unauthorized",
            json_pack("{s:s, s:b}", "error",
                      totp ? "that authenticator code is not right"
                           : "enter the code from your authenticator app",
                      "totp_required", 1));
        json_decref(body);
        return rc;
    }
    json_decref(body);
    _cleanup_free_ char *taken = NULL;
    r = st_login_token_take(srv->store, hash, "email", gr_now_unix(), &taken, &err);
    if (r <= 0) {
        st_account_release(&a);
        if (r < 0)
            return gw__store_failure(req, &err);
        return gw__send_json_error(req, 403, "Forbidden",
                                   "this login link is invalid, used or expired");
    }
    int rc = start_session(srv, req, &a, 200);
    st_account_release(&a);
    return rc;
}

/* Handlers that need a logged-in user get the session from here. Returns 1
 * with *s filled, or 0 having answered (401, or a refused POST). */
int gw__session_login(gw_server *srv, h2o_req_t *req, gw_session *s)
{
    _cleanup_error_ gr_error_t err = NULL;
    int r = gw__session_find(srv, req, s, &err);
    if (r < 0) {
        gw__store_failure(req, &err);
        return 0;
    }
    if (r == 0) {
        gw__send_json_error(req, 401, "Unauthorized", "log in first");
        return 0;
    }
    return 1;
}

int gw__session_require(gw_server *srv, h2o_req_t *req, gw_session *s)
{
    if (!gw__session_login(srv, req, s))
        return 0;
    if (gw__check_post_json(srv, req, s) < 0) {
        gw__session_release(s);
        return 0;
    }
    return 1;
}

/* For calls of logged-in users with a JSON body: the session and the body
 * (the caller decrefs it and releases s), or NULL having answered. */
json_t *gw__session_body(gw_server *srv, h2o_req_t *req, gw_session *s)
{
    if (!gw__session_require(srv, req, s))
        return NULL;
    json_t *body = gw__parse_body(req);
    if (body == NULL)
        gw__session_release(s);
    return body;
}

static int password_done(gw_job *job, h2o_req_t *req)
{
    gw_server *srv = job->srv;
    pw_job *j = job->data;
    if (!j->verified)
        return gw__send_json_error(req, 403, "Forbidden", "the current password is not right");
    if (!j->hashed)
        return gw__send_json_error(req, 500, "Internal Server Error", "could not hash the password");
    _cleanup_error_ gr_error_t err = NULL;
    if (st_account_set_password(srv->store, j->name, j->new_hash, &err) < 0)
        return gw__store_failure(req, &err);
    gr_info("account: password changed for %s", j->email);
    return gw__send_json(req, 200, "OK", json_pack("{s:b}", "ok", 1));
}

static int api_password(gw_server *srv, h2o_req_t *req)
{
    session s;
    json_t *body = gw__session_body(srv, req, &s);
    if (body == NULL)
        return 0;
    size_t clen = 0, nlen = 0;
    const char *current = str_field(body, "current", &clen);
    const char *next = str_field(body, "new", &nlen);
    _cleanup_error_ gr_error_t err = NULL;
    const char *problem = next == NULL ? "a new password is required" : NULL;
    if (problem == NULL && au_password_check(next, nlen, &err) < 0)
        problem = gr_error_msg(err);
    if (problem == NULL && s.account.password_hash && (current == NULL || clen > AU_PASSWORD_MAX))
        problem = "the current password is required";
    if (problem) {
        int rc = gw__send_json_error(req, 400, "Bad Request", problem);
        json_decref(body);
        gw__session_release(&s);
        return rc;
    }
    pw_job *j = pw_job_new();
    j->name = gr_strdup(s.account.id); /* the account to change */
    j->email = gr_strdup(s.account.email);
    j->new_password = gr_strndup(next, nlen);
    j->new_password_len = nlen;
    if (s.account.password_hash) {
        j->stored_hash = gr_strdup(s.account.password_hash);
        j->password = gr_strndup(current, clen);
        j->password_len = clen;
    } else {
        j->verified = true; /* a link-only account sets its first password */
    }
    json_decref(body);
    gw__session_release(&s);
    return gw__defer(srv, req, pw_run, password_done, j, pw_job_free);
}

static int api_totp_begin(gw_server *srv, h2o_req_t *req)
{
    session s;
    if (!gw__session_require(srv, req, &s))
        return 0;
    char secret[AU_TOTP_SECRET_B32];
    au_totp_secret_new(secret);
    /* The secret is stored only when enable proves the app has it. */
    char *uri = gr_asprintf("otpauth://totp/Granary:%s?secret=%s&issuer=Granary&digits=6&period=30",
                            s.account.email, secret);
    gw__session_release(&s);
    json_t *o = json_pack("{s:s, s:s}", "secret", secret, "uri", uri);
    free(uri);
    return gw__send_json(req, 200, "OK", o);
}

static int api_totp_enable(gw_server *srv, h2o_req_t *req)
{
    session s;
    json_t *body = gw__session_body(srv, req, &s);
    if (body == NULL)
        return 0;
    const char *secret = str_field(body, "secret", NULL);
    const char *code = str_field(body, "code", NULL);
    unsigned char raw[64];
    int rc;
    _cleanup_error_ gr_error_t err = NULL;
    if (secret == NULL || strlen(secret) != AU_TOTP_SECRET_B32 - 1 ||
        au_base32_decode(secret, raw, sizeof(raw)) != 20)
        rc = gw__send_json_error(req, 400, "Bad Request", "the secret is not one Granary made");
    else if (!au_totp_verify(secret, code, gr_now_unix()))
        rc = gw__send_json_error(req, 400, "Bad Request",
                                 "that code does not match: check the time on your device");
    else if (st_account_set_totp(srv->store, s.account.id, secret, &err) < 0)
        rc = gw__store_failure(req, &err);
    else {
        gr_info("account: second factor enabled for %s", s.account.email);
        rc = gw__send_json(req, 200, "OK", json_pack("{s:b}", "totp", 1));
    }
    json_decref(body);
    gw__session_release(&s);
    return rc;
}

static int api_totp_disable(gw_server *srv, h2o_req_t *req)
{
    session s;
    json_t *body = gw__session_body(srv, req, &s);
    if (body == NULL)
        return 0;
    const char *code = str_field(body, "code", NULL);
    int rc;
    _cleanup_error_ gr_error_t err = NULL;
    if (s.account.totp_secret == NULL)
        rc = gw__send_json(req, 200, "OK", json_pack("{s:b}", "totp", 0));
    else if (!au_totp_verify(s.account.totp_secret, code, gr_now_unix()))
        rc = gw__send_json_error(req, 403, "Forbidden", "that authenticator code is not right");
    else if (st_account_set_totp(srv->store, s.account.id, NULL, &err) < 0)
        rc = gw__store_failure(req, &err);
    else {
        gr_info("account: second factor disabled for %s", s.account.email);
        rc = gw__send_json(req, 200, "OK", json_pack("{s:b}", "totp", 0));
    }
    json_decref(body);
    gw__session_release(&s);
    return rc;
}

static int create_account_done(gw_job *job, h2o_req_t *req)
{
    gw_server *srv = job->srv;
    pw_job *j = job->data;
    if (j->new_password && !j->hashed)
        return gw__send_json_error(req, 500, "Internal Server Error", "could not hash the password");
    char id[33];
    unsigned char raw[16];
    randombytes_buf(raw, sizeof(raw));
    gr_hex(raw, sizeof(raw), id);
    st_account a = {.id = id, .email = j->email, .display_name = j->name,
                    .password_hash = j->new_password ? j->new_hash : NULL,
                    .created_at = gr_now_unix()};
    _cleanup_error_ gr_error_t err = NULL;
    if (st_account_create(srv->store, &a, &err) < 0) {
        if (err->status == EEXIST)
            return gw__send_json_error(req, 409, "Conflict", gr_error_msg(err));
        return gw__store_failure(req, &err);
    }
    gr_info("admin: account %s created", j->email);
    return gw__send_json(req, 201, "Created", json_pack("{s:o}", "account", account_json(&a)));
}

static int api_admin_create_account(gw_server *srv, h2o_req_t *req)
{
    session s;
    if (!gw__session_require(srv, req, &s))
        return 0;
    if (!s.account.is_admin) {
        gw__session_release(&s);
        return gw__send_json_error(req, 403, "Forbidden", "only an administrator can do that");
    }
    gw__session_release(&s);
    json_t *body = gw__parse_body(req);
    if (body == NULL)
        return 0;
    size_t plen = 0;
    const char *email = str_field(body, "email", NULL);
    const char *name = str_field(body, "name", NULL);
    const char *password = str_field(body, "password", &plen);
    _cleanup_error_ gr_error_t err = NULL;
    const char *problem = check_email(email) ? check_email(email) : check_name(name);
    if (problem == NULL && password && au_password_check(password, plen, &err) < 0)
        problem = gr_error_msg(err);
    if (problem) {
        int rc = gw__send_json_error(req, 400, "Bad Request", problem);
        json_decref(body);
        return rc;
    }
    pw_job *j = pw_job_new();
    j->email = gr_strdup(email);
    j->name = gr_strdup(name);
    if (password) {
        j->new_password = gr_strndup(password, plen);
        j->new_password_len = plen;
    }
    json_decref(body);
    return gw__defer(srv, req, pw_run, create_account_done, j, pw_job_free);
}

int gw__auth_init(gr_error_t *err)
{
    if (au_init(err) < 0)
        return -1;
    char pw[AU_TOKEN_HEX];
    au_token_new(pw);
    return au_password_hash(pw, strlen(pw), dummy_hash, err);
}

int gw__route_auth(gw_server *srv, h2o_req_t *req, const char *path, size_t len)
{
    static const struct {
        const char *path;
        int (*handler)(gw_server *, h2o_req_t *);
    } routes[] = {
        {"/api/session", api_session},
        {"/api/setup", api_setup},
        {"/api/login", api_login},
        {"/api/login/email", api_login_email},
        {"/api/login/email/redeem", api_login_email_redeem},
        {"/api/logout", api_logout},
        {"/api/account/password", api_password},
        {"/api/account/totp/begin", api_totp_begin},
        {"/api/account/totp/enable", api_totp_enable},
        {"/api/account/totp/disable", api_totp_disable},
        {"/api/admin/accounts", api_admin_create_account},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (h2o_memis(path, len, routes[i].path, strlen(routes[i].path)))
            return routes[i].handler(srv, req);
    return -1;
}
