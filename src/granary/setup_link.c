/* First-run setup links: a one-time token, stored as its hash, that lets
 * whoever holds the link create an administrator account. */
#include "auth.h"
#include "commands.h"

#define SETUP_LINK_SECONDS (24 * 3600)

char *gr_setup_link_new(st_store *st, const char *base_url, gr_error_t *err)
{
    if (au_init(err) < 0)
        return NULL;
    char token[AU_TOKEN_HEX], hash[AU_TOKEN_HEX];
    au_token_new(token);
    au_token_hash(token, hash);
    if (st_login_token_create(st, hash, "setup", NULL, gr_now_unix() + SETUP_LINK_SECONDS, err) <
        0)
        return NULL;
    /* In the fragment, so the token never reaches a server log or a Referer. */
    return gr_asprintf("%s/setup#token=%s", base_url, token);
}
