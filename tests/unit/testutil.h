/* Helpers shared by the C unit tests: temporary directories. */
#ifndef GRANARY_TESTUTIL_H
#define GRANARY_TESTUTIL_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline int testutil_rm_one(const char *path, const struct stat *st, int flag,
                                  struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes a directory tree made by a test. */
static inline void testutil_rm_rf(const char *dir)
{
    nftw(dir, testutil_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
