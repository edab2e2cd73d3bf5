/* Apps and grains in the shell API: installing a package (upload), listing
 * apps and their "new" actions, creating grains, listing a user's grains,
 * opening one at a fresh origin, renaming, the trash, deleting for good, and
 * the grain's log. Only a grain's owner may touch it; for anyone else the
 * grain does not exist (404, never 403, so ids cannot be probed). */
#include "gateway_internal.h"
#include "grain.capnp.h"
#include "package.capnp.h"
#include "spk.h"
#include "util.capnp.h"

#include <fcntl.h>
#include <ftw.h>
#include <sodium.h>
#include <sys/stat.h>

#define MAX_PACKAGE_BYTES (1024u << 20)
#define MAX_MANIFEST (8u << 20)
#define GRAIN_ID_LEN 22

/* ---- manifests ---------------------------------------------------------- */

static json_t *localized(LocalizedText_R t)
{
    cp_text s = LocalizedText_get_defaultText(t);
    return json_stringn(s.str, s.len);
}

/* The "new grain" actions of an installed package, from its manifest. */
static json_t *package_actions(gw_server *srv, const char *package_id)
{
    json_t *out = json_array();
    _cleanup_free_ char *path = gr_asprintf("%s/apps/%s/sandstorm-manifest", srv->cfg->data_dir,
                                            package_id);
    _cleanup_free_ char *buf = NULL;
    size_t len;
    gr_error_t err = NULL;
    if (gr_read_file(path, MAX_MANIFEST, &buf, &len, &err) < 0) {
        gr_warn("apps: %s", gr_error_msg(err));
        gr_error_release(&err);
        return out;
    }
    cp_message msg;
    if (cp_message_open(&msg, buf, len, NULL, &err) < 0) {
        gr_error_release(&err);
        return out;
    }
    Manifest_Action_LR actions = Manifest_get_actions(Manifest_root(&msg));
    for (uint32_t i = 0; i < Manifest_Action_list_len(actions) && i < 64; i++) {
        Manifest_Action_R a = Manifest_Action_list_get(actions, i);
        json_t *title = localized(Manifest_Action_get_title(a));
        json_t *noun = localized(Manifest_Action_get_nounPhrase(a));
        if (title && noun)
            json_array_append_new(out, json_pack("{s:i, s:o, s:o}", "index", (int)i, "title", title,
                                                 "noun", noun));
        else {
            json_decref(title);
            json_decref(noun);
        }
    }
    cp_message_release(&msg);
    return out;
}

/* The app's icon for the app grid (or its grain icon), from the manifest:
 * 1 with the bytes copied into *out and *type set, 0 when it has none. */
static int package_icon(gw_server *srv, const char *package_id, gr_buf *out, const char **type)
{
    _cleanup_free_ char *path = gr_asprintf("%s/apps/%s/sandstorm-manifest", srv->cfg->data_dir,
                                            package_id);
    _cleanup_free_ char *buf = NULL;
    size_t len;
    gr_error_t err = NULL;
    if (gr_read_file(path, MAX_MANIFEST, &buf, &len, &err) < 0) {
        gr_error_release(&err);
        return 0;
    }
    cp_message msg;
    if (cp_message_open(&msg, buf, len, NULL, &err) < 0) {
        gr_error_release(&err);
        return 0;
    }
    Metadata_icons_R icons = Metadata_get_icons(Manifest_get_metadata(Manifest_root(&msg)));
    Metadata_Icon_R icon = Metadata_icons_has_appGrid(icons) ? Metadata_icons_get_appGrid(icons)
                                                             : Metadata_icons_get_grain(icons);
    int found = 0;
    switch (Metadata_Icon_which(icon)) {
    case Metadata_Icon_WHICH_svg: {
        cp_text t = Metadata_Icon_get_svg(icon);
        if (t.len) {
            gr_buf_append(out, t.str, t.len);
            *type = "image/svg+xml";
            found = 1;
        }
        break;
    }
    case Metadata_Icon_WHICH_png: {
        Metadata_Icon_png_R png = Metadata_Icon_get_png(icon);
        cp_data d = Metadata_Icon_png_get_dpi2x(png);
        if (d.len == 0)
            d = Metadata_Icon_png_get_dpi1x(png);
        if (d.len) {
            gr_buf_append(out, d.ptr, d.len);
            *type = "image/png";
            found = 1;
        }
        break;
    }
    default: break;
    }
    found &= cp_message_ok(&msg);
    cp_message_release(&msg);
    return found;
}

static bool valid_package_id(const char *p, size_t len)
{
    if (len != 32)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
            return false;
    return true;
}

static int api_app_icon(gw_server *srv, h2o_req_t *req, const char *package_id, size_t len)
{
    if (!valid_package_id(package_id, len))
        return gw__send_json_error(req, 404, "Not Found", "no such app");
    _cleanup_free_ char *id = gr_strndup(package_id, len);
    gr_buf b = GR_BUF_INIT;
    const char *type = NULL;
    if (!package_icon(srv, id, &b, &type)) {
        gr_buf_release(&b);
        return gw__send_json_error(req, 404, "Not Found", "the app has no icon");
    }
    /* An icon comes from a package: it is only ever an image, never a page
     * that could run script on the shell's origin. */
    gw__add_header_str(req, "content-security-policy", "default-src 'none'; style-src 'unsafe-inline'");
    gw__add_header(req, H2O_TOKEN_CACHE_CONTROL, "public, max-age=86400");
    int rc = gw__send_body(req, 200, "OK", type, b.data, b.len);
    gr_buf_release(&b);
    return rc;
}

/* ---- requests -------------------------------------------------------------- */

/* A grain's disk use, as last counted. Counting walks every file on the
 * loop, and an app may make millions: so a count is kept until the grain
 * serves another request (or for SIZE_TTL_NS), and stops at
 * SIZE_MAX_ENTRIES entries, the figure then being a lower bound. */
#define SIZE_TTL_NS (60 * 1000000000ull)
#define SIZE_MAX_ENTRIES 50000

typedef struct gw_grain_size {
    struct gw_grain_size *next;
    char *id;
    uint64_t bytes;
    bool partial;
    uint64_t at_ns;
} gw_grain_size;

static uint64_t tree_bytes, tree_entries;

static int add_size(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    if (flag == FTW_F)
        tree_bytes += (uint64_t)st->st_blocks * 512u;
    return ++tree_entries >= SIZE_MAX_ENTRIES ? FTW_STOP : FTW_CONTINUE;
}

/* Disk used by a grain's directory (its storage and log), in bytes. */
static const gw_grain_size *grain_size(gw_server *srv, const char *id)
{
    gw_grain_size *z = gr_index_find(&srv->sizes_by_id, id, NULL);
    uint64_t now = gr_monotonic_ns();
    if (z && now - z->at_ns < SIZE_TTL_NS &&
        (srv->grains == NULL || gm_last_used_ns(srv->grains, id) < z->at_ns))
        return z;
    if (z == NULL) {
        z = gr_calloc(1, sizeof(*z));
        z->id = gr_strdup(id);
        z->next = srv->grain_sizes;
        srv->grain_sizes = z;
        gr_index_add(&srv->sizes_by_id, z->id, z);
    }
    _cleanup_free_ char *dir = gr_asprintf("%s/grains/%s", srv->cfg->data_dir, id);
    tree_bytes = tree_entries = 0;
    z->partial = nftw(dir, add_size, 16, FTW_PHYS | FTW_ACTIONRETVAL) == FTW_STOP;
    z->bytes = tree_bytes;
    z->at_ns = gr_monotonic_ns();
    return z;
}

static void grain_size_forget(gw_server *srv, const char *id)
{
    for (gw_grain_size **p = &srv->grain_sizes; *p; p = &(*p)->next) {
        if (strcmp((*p)->id, id) == 0) {
            gw_grain_size *z = *p;
            *p = z->next;
            gr_index_remove(&srv->sizes_by_id, z->id, z);
            free(z->id);
            free(z);
            return;
        }
    }
}

void gw__grain_sizes_free(gw_server *srv)
{
    gr_index_release(&srv->sizes_by_id);
    while (srv->grain_sizes) {
        gw_grain_size *z = srv->grain_sizes;
        srv->grain_sizes = z->next;
        free(z->id);
        free(z);
    }
}

static json_t *grain_json(gw_server *srv, const st_grain *g)
{
    st_package p = {0};
    gr_error_t err = NULL;
    int found = st_package_get(srv->store, g->package_id, &p, &err);
    gr_error_release(&err);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:b, s:b}", "id", g->id, "title",
                          g->title, "package_id", g->package_id, "app_title",
                          found > 0 && p.title ? p.title : "", "created_at",
                          (json_int_t)g->created_at, "last_used_at", (json_int_t)g->last_used_at,
                          "trashed", g->trashed_at != 0, "running",
                          srv->grains && gm_is_running(srv->grains, g->id));
    st_package_release(&p);
    const gw_grain_size *z = grain_size(srv, g->id);
    json_object_set_new(o, "size_bytes", json_integer((json_int_t)z->bytes));
    if (z->partial)
        json_object_set_new(o, "size_at_least", json_true());
    int status;
    int64_t at;
    const char *awake[8];
    size_t nawake = srv->grains ? gm_kept_awake(srv->grains, g->id, awake, 8) : 0;
    if (nawake) {
        json_t *a = json_array();
        for (size_t i = 0; i < nawake && i < 8; i++)
            json_array_append_new(a, json_string(awake[i]));
        json_object_set_new(o, "kept_awake", a);
    }
    if (srv->grains && gm_last_crash(srv->grains, g->id, &status, &at))
        json_object_set_new(o, "crashed", json_pack("{s:i, s:I}", "status", status, "at", (json_int_t)at));
    return o;
}

static int api_apps_list(gw_server *srv, h2o_req_t *req)
{
    gw_session s;
    if (!gw__session_login(srv, req, &s))
        return 0;
    gw__session_release(&s);
    st_package *pkgs = NULL;
    size_t n = 0;
    _cleanup_error_ gr_error_t err = NULL;
    if (st_package_list(srv->store, &pkgs, &n, &err) < 0)
        return gw__store_failure(req, &err);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        gr_buf icon = GR_BUF_INIT;
        const char *type = NULL;
        bool has_icon = package_icon(srv, pkgs[i].package_id, &icon, &type);
        gr_buf_release(&icon);
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:o}", "package_id",
                                             pkgs[i].package_id, "app_id", pkgs[i].app_id, "title",
                                             pkgs[i].title ? pkgs[i].title : "", "marketing_version",
                                             pkgs[i].marketing_version ? pkgs[i].marketing_version
                                                                       : "",
                                             "version", (json_int_t)pkgs[i].version, "actions",
                                             package_actions(srv, pkgs[i].package_id));
        if (has_icon) {
            char *url = gr_asprintf("/api/apps/%s/icon", pkgs[i].package_id);
            json_object_set_new(o, "icon", json_string(url));
            free(url);
        }
        json_array_append_new(arr, o);
    }
    st_packages_free(pkgs, n);
    return gw__send_json(req, 200, "OK", json_pack("{s:o}", "apps", arr));
}

/* ---- install (upload), off the loop ---------------------------------------- */

typedef struct {
    char *tmp_path;
    char *data_dir;
    char *db_path;
    int status; /* 0 ok, else the HTTP status */
    char *error;
    spk_install_result result;
} install_job;

static void install_job_free(void *p)
{
    install_job *j = p;
    if (j->tmp_path)
        unlink(j->tmp_path);
    free(j->tmp_path);
    free(j->data_dir);
    free(j->db_path);
    free(j->error);
    spk_install_result_release(&j->result);
    free(j);
}

static void install_run(gw_job *job)
{
    install_job *j = job->data;
    gr_error_t err = NULL;
    /* A connection of its own: the loop's is not to be used from here. */
    st_store *st = NULL;
    if (st_open(&st, j->db_path, &err) < 0 ||
        spk_install(j->tmp_path, j->data_dir, st, &j->result, &err) < 0) {
        j->status = 400;
        j->error = gr_strdup(gr_error_msg(err));
    }
    gr_error_release(&err);
    st_close(st);
}

static int install_done(gw_job *job, h2o_req_t *req)
{
    install_job *j = job->data;
    if (j->status)
        return gw__send_json_error(req, j->status, "Bad Request", j->error);
    static const char *const words[] = {"installed", "upgrade available", "older version installed",
                                        "already installed"};
    const spk_info *in = &j->result.info;
    gr_info("apps: %s %s (%s) %s", in->title, in->marketing_version, in->package_id,
            words[j->result.status]);
    return gw__send_json(req, j->result.status == SPK_INSTALLED_ALREADY ? 200 : 201, "OK",
                         json_pack("{s:s, s:s, s:s, s:s, s:I, s:s}", "package_id", in->package_id,
                                   "app_id", in->app_id, "title", in->title ? in->title : "",
                                   "marketing_version",
                                   in->marketing_version ? in->marketing_version : "", "version",
                                   (json_int_t)in->version, "status", words[j->result.status]));
}

static int api_apps_install(gw_server *srv, h2o_req_t *req)
{
    gw_session s;
    if (!gw__session_login(srv, req, &s))
        return 0;
    int rc = gw__check_post(srv, req, &s, "application/octet-stream");
    bool admin = s.account.is_admin;
    gw__session_release(&s);
    if (rc < 0)
        return 0;
    if (!admin)
        return gw__send_json_error(req, 403, "Forbidden", "only an administrator can install apps");
    if (req->entity.len == 0)
        return gw__send_json_error(req, 400, "Bad Request", "the upload is empty");
    if (req->entity.len > MAX_PACKAGE_BYTES)
        return gw__send_json_error(req, 413, "Payload Too Large", "the package is too large");
    _cleanup_error_ gr_error_t err = NULL;
    _cleanup_free_ char *tmp_dir = gr_asprintf("%s/tmp", srv->cfg->data_dir);
    if (gr_mkdir_p(tmp_dir, 0700, &err) < 0)
        return gw__store_failure(req, &err);
    char *path = gr_asprintf("%s/upload-XXXXXX", tmp_dir);
    int fd = mkstemp(path);
    bool ok = fd >= 0;
    for (size_t off = 0; ok && off < req->entity.len;) {
        ssize_t w = write(fd, req->entity.base + off, req->entity.len - off);
        if (w < 0 && errno == EINTR)
            continue;
        ok = w > 0;
        off += w > 0 ? (size_t)w : 0;
    }
    if (fd >= 0)
        close(fd);
    if (!ok) {
        gr_make_error(&err, errno, "store the upload");
        if (fd >= 0)
            unlink(path);
        free(path);
        return gw__store_failure(req, &err);
    }
    install_job *j = gr_calloc(1, sizeof(*j));
    j->tmp_path = path;
    j->data_dir = gr_strdup(srv->cfg->data_dir);
    j->db_path = gr_asprintf("%s/granary.sqlite", srv->cfg->data_dir);
    return gw__defer(srv, req, install_run, install_done, j, install_job_free);
}

/* ---- grains ------------------------------------------------------------------- */

static int api_grains_list(gw_server *srv, h2o_req_t *req, gw_session *s)
{
    st_grain *gs = NULL;
    size_t n = 0;
    _cleanup_error_ gr_error_t err = NULL;
    if (st_grain_list(srv->store, s->account.id, &gs, &n, &err) < 0)
        return gw__store_failure(req, &err);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, grain_json(srv, &gs[i]));
    st_grains_free(gs, n);
    return gw__send_json(req, 200, "OK", json_pack("{s:o}", "grains", arr));
}

static void new_grain_id(char out[GRAIN_ID_LEN + 1])
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    for (int i = 0; i < GRAIN_ID_LEN; i++)
        out[i] = alphabet[randombytes_uniform(sizeof(alphabet) - 1)];
    out[GRAIN_ID_LEN] = '\0';
}

static int api_grains_create(gw_server *srv, h2o_req_t *req, gw_session *s, json_t *body)
{
    const char *package_id = json_string_value(json_object_get(body, "package_id"));
    json_t *action = json_object_get(body, "action");
    const char *title = json_string_value(json_object_get(body, "title"));
    _cleanup_error_ gr_error_t err = NULL;
    st_package p = {0};
    int found = package_id ? st_package_get(srv->store, package_id, &p, &err) : 0;
    if (found < 0)
        return gw__store_failure(req, &err);
    if (!found)
        return gw__send_json_error(req, 404, "Not Found", "no such app is installed");
    /* `action` is the manifest's index of the action, as the app list gives
     * it: not a position among the actions the list shows. */
    json_t *actions = package_actions(srv, package_id);
    json_int_t index = json_is_integer(action) ? json_integer_value(action) : -1;
    json_t *chosen = NULL;
    size_t i;
    json_t *a;
    json_array_foreach(actions, i, a) {
        if (action == NULL || json_integer_value(json_object_get(a, "index")) == index) {
            chosen = a;
            index = json_integer_value(json_object_get(a, "index"));
            break;
        }
    }
    if (chosen == NULL) {
        json_decref(actions);
        st_package_release(&p);
        return gw__send_json_error(req, 400, "Bad Request", "the app has no such action");
    }
    _cleanup_free_ char *default_title = gr_asprintf(
        "Untitled %s", json_string_value(json_object_get(chosen, "noun")));
    json_decref(actions);
    if (title && (strlen(title) > 200 || gr_has_control_chars(title))) {
        st_package_release(&p);
        return gw__send_json_error(req, 400, "Bad Request",
                                   "a title of at most 200 characters, none of them control "
                                   "characters, is needed");
    }
    char id[GRAIN_ID_LEN + 1];
    new_grain_id(id);
    st_grain g = {.id = id, .owner_id = s->account.id, .package_id = p.package_id,
                  .title = (char *)(title && *title ? title : default_title),
                  .created_at = gr_now_unix(), .action_index = (int)index};
    int rc = st_grain_create(srv->store, &g, &err);
    st_package_release(&p);
    if (rc < 0)
        return gw__store_failure(req, &err);
    gr_info("grains: %s created %s (%s)", s->account.email, id, g.title);
    st_grain row = {0};
    if (st_grain_get(srv->store, id, &row, &err) <= 0)
        return gw__store_failure(req, &err);
    json_t *o = grain_json(srv, &row);
    st_grain_release(&row);
    return gw__send_json(req, 201, "Created", json_pack("{s:o}", "grain", o));
}

/* ---- the app's view info, read from the running grain ------------------------- */

typedef struct view_info_call {
    gw_req_ref ref;
    gm_grain *grain;
} view_info_call;

static json_t *localized_or_empty(LocalizedText_R t)
{
    json_t *s = localized(t);
    return s ? s : json_string("");
}

static void on_view_info(const cp_response *resp, void *ud)
{
    view_info_call *vc = ud;
    h2o_req_t *req = vc->ref.req;
    gw__req_ref_clear(&vc->ref);
    if (req && resp->exception) {
        gw__send_json_error(req, 502, "Bad Gateway", resp->exception->reason);
    } else if (req) {
        UiView_ViewInfo_R vi = UiView_getViewInfo_response(resp);
        json_t *perms = json_array(), *roles = json_array();
        PermissionDef_LR pl = UiView_ViewInfo_get_permissions(vi);
        for (uint32_t i = 0; i < PermissionDef_list_len(pl) && i < 64; i++) {
            PermissionDef_R p = PermissionDef_list_get(pl, i);
            cp_text name = PermissionDef_get_name(p);
            json_array_append_new(perms, json_pack("{s:s%, s:o, s:o, s:b}", "name", name.str,
                                                   name.len, "title",
                                                   localized_or_empty(PermissionDef_get_title(p)),
                                                   "description",
                                                   localized_or_empty(PermissionDef_get_description(p)),
                                                   "obsolete", PermissionDef_get_obsolete(p)));
        }
        RoleDef_LR rl = UiView_ViewInfo_get_roles(vi);
        for (uint32_t i = 0; i < RoleDef_list_len(rl) && i < 64; i++) {
            RoleDef_R r = RoleDef_list_get(rl, i);
            json_t *held = json_array();
            cp_list_reader bits = RoleDef_get_permissions(r);
            for (uint32_t b = 0; b < bits.len && b < 64; b++)
                json_array_append_new(held, json_boolean(cp_list_get_bool(bits, b)));
            json_array_append_new(roles, json_pack("{s:o, s:o, s:o, s:b}", "title",
                                                   localized_or_empty(RoleDef_get_title(r)),
                                                   "verb_phrase",
                                                   localized_or_empty(RoleDef_get_verbPhrase(r)),
                                                   "permissions", held, "default",
                                                   RoleDef_get_default(r)));
        }
        json_t *o = json_pack("{s:o, s:o, s:o}", "app_title",
                              localized_or_empty(UiView_ViewInfo_get_appTitle(vi)), "permissions",
                              perms, "roles", roles);
        if (o == NULL) /* an app's text that is not UTF-8 */
            gw__send_json_error(req, 502, "Bad Gateway", "the app's view info is not valid text");
        else
            gw__send_json(req, 200, "OK", o);
    }
    gm_grain_release(vc->grain);
    free(vc);
}

/* GET /api/grains/<id>/view-info: asks the grain (starting it if needed). */
static int api_view_info(gw_server *srv, h2o_req_t *req, const char *id)
{
    _cleanup_error_ gr_error_t err = NULL;
    gm_grain *g = NULL;
    if (srv->grains == NULL || gm_grain_acquire(srv->grains, id, &g, &err) < 0)
        return gw__send_json_error(req, 503, "Service Unavailable",
                                   err ? gr_error_msg(err) : "this server runs no grains");
    view_info_call *vc = gr_calloc(1, sizeof(*vc));
    vc->grain = g;
    UiView_getViewInfo_Params_B p;
    cp_request *call = UiView_getViewInfo_request(gm_grain_main_view(g), &p);
    gw__req_ref_init(&vc->ref, req);
    if (cp_request_send(call, on_view_info, vc, NULL, &err) < 0) {
        gw__req_ref_clear(&vc->ref);
        gm_grain_release(g);
        free(vc);
        return gw__send_json_error(req, 502, "Bad Gateway", gr_error_msg(err));
    }
    return 0;
}

/* Calls on one grain: /api/grains/<id>/<verb>. */
static int api_grain_verb(gw_server *srv, h2o_req_t *req, gw_session *s, const char *id,
                          const char *verb)
{
    _cleanup_error_ gr_error_t err = NULL;
    st_grain g = {0};
    int found = st_grain_get(srv->store, id, &g, &err);
    if (found < 0)
        return gw__store_failure(req, &err);
    if (!found || strcmp(g.owner_id, s->account.id) != 0) {
        st_grain_release(&g);
        return gw__send_json_error(req, 404, "Not Found", "no such grain");
    }
    int rc;
    if (strcmp(verb, "view-info") == 0) {
        bool trashed = g.trashed_at != 0;
        st_grain_release(&g);
        if (trashed)
            return gw__send_json_error(req, 409, "Conflict", "restore the grain from the trash first");
        return api_view_info(srv, req, id);
    }
    if (strcmp(verb, "log") == 0) {
        _cleanup_free_ char *path = gm_log_path(srv->grains, id);
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        if (gr_read_file(path, 8u << 20, &text, &len, &err) < 0) {
            text = gr_strdup("");
            len = 0;
        }
        gw__add_header(req, H2O_TOKEN_CACHE_CONTROL, "no-store");
        gw__add_header_str(req, "content-disposition", "attachment; filename=\"grain.log\"");
        rc = gw__send_body(req, 200, "OK", "text/plain; charset=utf-8", text, len);
        st_grain_release(&g);
        return rc;
    }
    json_t *body = NULL;
    if (gw__check_post(srv, req, s, "application/json") < 0 || (body = gw__parse_body(req)) == NULL) {
        st_grain_release(&g);
        return 0;
    }
    if (strcmp(verb, "keepalive") == 0) {
        /* The shell calls this while the grain's view is open. */
        if (srv->grains)
            gm_touch(srv->grains, id);
        gw__grain_sessions_touch(srv, id, s->account.id);
        rc = gw__send_json(req, 200, "OK",
                           json_pack("{s:b}", "running", srv->grains && gm_is_running(srv->grains, id)));
    } else if (strcmp(verb, "let-sleep") == 0) {
        /* Ends the app's wake locks (SandstormApi.stayAwake). */
        size_t n = srv->grains ? gm_let_sleep(srv->grains, id) : 0;
        rc = gw__send_json(req, 200, "OK", json_pack("{s:I}", "cancelled", (json_int_t)n));
    } else if (strcmp(verb, "open") == 0) {
        if (g.trashed_at) {
            rc = gw__send_json_error(req, 409, "Conflict", "restore the grain from the trash first");
        } else {
            const char *path = json_string_value(json_object_get(body, "path"));
            st_grain_touch(srv->store, id, gr_now_unix(), &err);
            gr_error_release(&err);
            _cleanup_free_ char *url = gw__grain_session_new(
                srv, id, s->account.id, s->account.display_name, path ? path : "/");
            rc = gw__send_json(req, 200, "OK",
                               json_pack("{s:s, s:s}", "url", url, "title", g.title));
        }
    } else if (strcmp(verb, "rename") == 0) {
        const char *title = json_string_value(json_object_get(body, "title"));
        if (title == NULL || *title == '\0' || strlen(title) > 200 || gr_has_control_chars(title))
            rc = gw__send_json_error(req, 400, "Bad Request",
                                     "a title of 1 to 200 characters, none of them control "
                                     "characters, is needed");
        else if (st_grain_rename(srv->store, id, title, &err) < 0)
            rc = gw__store_failure(req, &err);
        else
            rc = gw__send_json(req, 200, "OK", json_pack("{s:b}", "ok", 1));
    } else if (strcmp(verb, "trash") == 0 || strcmp(verb, "restore") == 0) {
        bool trash = strcmp(verb, "trash") == 0;
        if (trash) {
            gw__grain_sessions_drop_grain(srv, id);
            if (srv->grains)
                gm_stop(srv->grains, id);
        }
        if (st_grain_set_trashed(srv->store, id, trash ? gr_now_unix() : 0, &err) < 0)
            rc = gw__store_failure(req, &err);
        else
            rc = gw__send_json(req, 200, "OK", json_pack("{s:b}", "trashed", trash));
    } else if (strcmp(verb, "delete") == 0) {
        if (!g.trashed_at) {
            rc = gw__send_json_error(req, 409, "Conflict", "move the grain to the trash first");
        } else {
            gw__grain_sessions_drop_grain(srv, id);
            _cleanup_free_ char *dir = gr_asprintf("%s/grains/%s", srv->cfg->data_dir, id);
            /* Its files go only once its processes have: one still running
             * could swap a directory for a link while the walk goes by. And
             * the grain stays listed until every file is gone, so that none
             * is left behind unseen. */
            if (srv->grains && !gm_stop_and_reap(srv->grains, id, 2000)) {
                rc = gw__send_json_error(req, 409, "Conflict",
                                         "the grain is still stopping; try again in a moment");
            } else if (gr_remove_tree(dir, &err) < 0) {
                gr_warn("grains: deleting %s: %s", id, gr_error_msg(err));
                rc = gw__send_json_error(req, 500, "Internal Server Error",
                                         "some of the grain's files could not be removed; it "
                                         "stays in the trash (the server's log says which)");
            } else if (st_grain_delete(srv->store, id, &err) < 0) {
                rc = gw__store_failure(req, &err);
            } else {
                if (srv->grains)
                    gm_forget(srv->grains, id);
                grain_size_forget(srv, id);
                gr_info("grains: %s deleted %s for good", s->account.email, id);
                rc = gw__send_json(req, 200, "OK", json_pack("{s:b}", "deleted", 1));
            }
        }
    } else {
        rc = gw__send_json_error(req, 404, "Not Found", "no such API endpoint");
    }
    json_decref(body);
    st_grain_release(&g);
    return rc;
}

static bool valid_grain_id(const char *id, size_t len)
{
    if (len != GRAIN_ID_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
              (id[i] >= '0' && id[i] <= '9')))
            return false;
    return true;
}

int gw__route_grains_api(gw_server *srv, h2o_req_t *req, const char *path, size_t len)
{
    if (h2o_memis(path, len, H2O_STRLIT("/api/apps"))) {
        if (gw__method_is(req, "POST"))
            return api_apps_install(srv, req);
        return api_apps_list(srv, req);
    }
    static const char apps_prefix[] = "/api/apps/";
    if (len > sizeof(apps_prefix) - 1 && memcmp(path, apps_prefix, sizeof(apps_prefix) - 1) == 0) {
        const char *id = path + sizeof(apps_prefix) - 1;
        const char *slash = memchr(id, '/', len - (sizeof(apps_prefix) - 1));
        if (slash && h2o_memis(slash, (size_t)(path + len - slash), H2O_STRLIT("/icon"))) {
            gw_session s;
            if (!gw__session_login(srv, req, &s))
                return 0;
            gw__session_release(&s);
            return api_app_icon(srv, req, id, (size_t)(slash - id));
        }
        return gw__send_json_error(req, 404, "Not Found", "no such API endpoint");
    }
    static const char prefix[] = "/api/grains";
    if (len < sizeof(prefix) - 1 || memcmp(path, prefix, sizeof(prefix) - 1) != 0)
        return -1;
    const char *rest = path + sizeof(prefix) - 1;
    size_t rlen = len - (sizeof(prefix) - 1);
    if (rlen != 0 && rest[0] != '/')
        return -1;
    gw_session s;
    if (!gw__session_login(srv, req, &s))
        return 0;
    int rc;
    if (rlen == 0) {
        if (gw__method_is(req, "POST")) {
            json_t *body = NULL;
            if (gw__check_post(srv, req, &s, "application/json") < 0 ||
                (body = gw__parse_body(req)) == NULL)
                rc = 0;
            else
                rc = api_grains_create(srv, req, &s, body);
            json_decref(body);
        } else {
            rc = api_grains_list(srv, req, &s);
        }
    } else {
        const char *id = rest + 1;
        const char *slash = memchr(id, '/', rlen - 1);
        size_t idlen = slash ? (size_t)(slash - id) : rlen - 1;
        _cleanup_free_ char *gid = gr_strndup(id, idlen);
        _cleanup_free_ char *verb = slash ? gr_strndup(slash + 1, rlen - 2 - idlen) : gr_strdup("");
        if (!valid_grain_id(gid, idlen) || strchr(verb, '/'))
            rc = gw__send_json_error(req, 404, "Not Found", "no such grain");
        else
            rc = api_grain_verb(srv, req, &s, gid, verb);
    }
    gw__session_release(&s);
    return rc;
}
