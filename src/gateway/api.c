/* The shell's JSON API under /api/ on the base host. */
#include "gateway_internal.h"

static int api_health(gw_server *srv, h2o_req_t *req)
{
    if (!gw__method_is(req, "GET") && !gw__method_is(req, "HEAD")) {
        gw__add_header(req, H2O_TOKEN_ALLOW, "GET, HEAD");
        return gw__send_json_error(req, 405, "Method Not Allowed", "use GET for /api/health");
    }
    _cleanup_error_ gr_error_t err = NULL;
    int version = st_schema_version(srv->store, &err);
    /* Milliseconds are as fine as a health check needs. */
    double uptime = (double)((gr_monotonic_ns() - srv->started_ns) / 1000000u) / 1e3;
    if (version < 0) {
        gr_warn("health: %s", gr_error_msg(err));
        return gw__send_json(req, 503, "Service Unavailable",
                         json_pack("{s:s, s:s, s:{s:b, s:s}}", "status", "unavailable", "version",
                                   GRANARY_VERSION, "store", "ok", 0, "error",
                                   gr_error_msg(err)));
    }
    return gw__send_json(req, 200, "OK",
                     json_pack("{s:s, s:s, s:f, s:s, s:{s:b, s:i, s:i}}", "status", "ok",
                               "version", GRANARY_VERSION, "uptime_seconds", uptime,
                               "install_id", st_install_id(srv->store), "store", "ok", 1,
                               "schema_version", version, "schema_latest",
                               st_latest_version()));
}

int gw__route_api(gw_server *srv, h2o_req_t *req, const char *path, size_t len)
{
    if (h2o_memis(path, len, H2O_STRLIT("/api/health")))
        return api_health(srv, req);
    int r = gw__route_auth(srv, req, path, len);
    if (r >= 0)
        return r;
    r = gw__route_grains_api(srv, req, path, len);
    if (r >= 0)
        return r;
    return gw__send_json_error(req, 404, "Not Found", "no such API endpoint");
}

