/* A table from strings to values, chained, a power of two of slots, grown to
 * keep about one entry per slot: the daemon's per-request lookups (a grain
 * session by its origin's label, a running grain by its id) stay constant in
 * time however many there are. */
#include "util.h"

struct gr_index_entry {
    const char *key;
    void *value;
    struct gr_index_entry *next;
};

static size_t slot_of(size_t nslots, const char *key)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const char *p = key; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
    return (size_t)(h ^ (h >> 29)) & (nslots - 1);
}

static void grow(gr_index *ix)
{
    size_t n = ix->nslots ? ix->nslots * 2 : 64;
    struct gr_index_entry **slots = gr_calloc(n, sizeof(*slots));
    for (size_t i = 0; i < ix->nslots; i++)
        for (struct gr_index_entry *e = ix->slots[i], *next; e; e = next) {
            next = e->next;
            size_t k = slot_of(n, e->key);
            e->next = slots[k];
            slots[k] = e;
        }
    free(ix->slots);
    ix->slots = slots;
    ix->nslots = n;
}

void gr_index_add(gr_index *ix, const char *key, void *value)
{
    if (ix->count + 1 > ix->nslots)
        grow(ix);
    struct gr_index_entry *e = gr_malloc(sizeof(*e));
    size_t k = slot_of(ix->nslots, key);
    e->key = key;
    e->value = value;
    e->next = ix->slots[k];
    ix->slots[k] = e;
    ix->count++;
}

bool gr_index_remove(gr_index *ix, const char *key, const void *value)
{
    if (ix->nslots == 0)
        return false;
    for (struct gr_index_entry **p = &ix->slots[slot_of(ix->nslots, key)]; *p; p = &(*p)->next)
        if ((*p)->value == value) {
            struct gr_index_entry *e = *p;
            *p = e->next;
            free(e);
            ix->count--;
            return true;
        }
    return false;
}

void *gr_index_find(const gr_index *ix, const char *key, bool (*accept)(const void *value))
{
    if (ix->nslots == 0)
        return NULL;
    for (struct gr_index_entry *e = ix->slots[slot_of(ix->nslots, key)]; e; e = e->next)
        if (strcmp(e->key, key) == 0 && (accept == NULL || accept(e->value)))
            return e->value;
    return NULL;
}

void gr_index_release(gr_index *ix)
{
    for (size_t i = 0; i < ix->nslots; i++)
        for (struct gr_index_entry *e = ix->slots[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    free(ix->slots);
    memset(ix, 0, sizeof(*ix));
}
