/* App ids of re-keyed apps (wire facts 3.6): apps whose original signing key
 * was lost or leaked publish with a replacement key, and packages signed by
 * the replacement count as the original app. For a leaked key only the
 * listed package ids signed by it stay valid. The entries are Sandstorm's, so
 * both platforms give such apps the same id. */
#include "spk_internal.h"

typedef struct replacement {
    const char *original;
    const char *replacement;
    const char *const *keep; /* NULL: the original key was only lost */
} replacement;

static const char *const example_keep[] = {"b5bb9d8014a0f9b1d61e21e796d78dcc", NULL};
static const char *const drawio_keep[] = {"1450e0caa29b59ec938b3795bf17cb02",
                                          "738f0e56a9ca462e77245e3f392686d7", NULL};

static const replacement table[] = {
    /* Sandstorm's documented example app; its old key was published. */
    {"vjvekechd398fn1t1kn1dgdnmaekqq9jkjv3zsgzymc4z913ref0",
     "wq95qmutckc0yfmecv0ky96cqxgp156up8sv81yxvmery58q87jh", example_keep},
    /* Paperwork: key lost. */
    {"vxe8awcxvtj6yu0vgjpm1tsaeu7x8v8tfp71tyvnm6ykkephu9q0",
     "n8cn71407n4mezn7mg0k5kkm21juuphhecc24hdf9kf56zyxm4ah", NULL},
    /* draw.io: key possibly leaked; two versions were published with it. */
    {"nfqhx83vvzm80edpgkpax8mhqp176qj2vwg67rgq5e3kjc5r4cyh",
     "a3w50h1435gsxczugm16q0amwkqm9f4crykzea53sv61pt7phk8h", drawio_keep},
    /* Wekan and Gitweb: new maintainers publish with new keys. */
    {"m86q05rdvj14yvn78ghaxynqz7u2svw6rnttptxx49g1785cdv1h",
     "6jz1aawur7kga7tdsj9kgpxx1yzh6xz1qmrpnqukcp1rekprd9f0", NULL},
    {"6va4cjamc21j0znf5h5rrgnv0rpyvh1vaxurkrgknefvj0x63ash",
     "g1k27td96hm9fjnkn20jw5apkphhcd5wrcccdve9fuvykfz68650", NULL},
};

#define N_TABLE (sizeof(table) / sizeof(table[0]))

int spk_app_id_replace(char app_id[SPK_APP_ID_LEN + 1], const char *package_id, gr_error_t *err)
{
    for (size_t i = 0; i < N_TABLE; i++) {
        if (strcmp(app_id, table[i].original) != 0 || !table[i].keep)
            continue;
        bool kept = false;
        for (const char *const *k = table[i].keep; *k && !kept; k++)
            kept = strcasecmp(*k, package_id) == 0;
        if (!kept)
            return gr_make_error(err, 0,
                                 "package %s is signed by the revoked key of app %s and is "
                                 "not one of its known versions",
                                 package_id, app_id);
    }
    /* A replacement may itself have been replaced; the table is finite and
     * each step moves to an original, so this ends. */
    for (size_t steps = 0; steps <= N_TABLE; steps++) {
        size_t i = 0;
        while (i < N_TABLE && strcmp(app_id, table[i].replacement) != 0)
            i++;
        if (i == N_TABLE)
            return 0;
        memcpy(app_id, table[i].original, SPK_APP_ID_LEN + 1);
    }
    return 0;
}

const char *spk_app_id_replacement_of(const char *app_id)
{
    for (size_t i = 0; i < N_TABLE; i++)
        if (strcmp(app_id, table[i].original) == 0)
            return table[i].replacement;
    return NULL;
}
