/* Unit tests for src/util: the error convention, buffers, strings, files. */
#include "testutil.h"
#include "util.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <setjmp.h>
#include <cmocka.h>

static int fails_with_errno(gr_error_t *err)
{
    return gr_make_error(err, ENOENT, "open %s", "/nope");
}

static int fails_and_adds_context(gr_error_t *err)
{
    if (fails_with_errno(err) < 0)
        return gr_error_prefix(err, "load config");
    return 0;
}

static void test_error_message_and_status(void **state)
{
    gr_error_t err = NULL;
    assert_int_equal(fails_and_adds_context(&err), -1);
    assert_non_null(err);
    assert_int_equal(err->status, ENOENT);
    assert_string_equal(gr_error_msg(err), "load config: open /nope: No such file or directory");
    gr_error_release(&err);
    assert_null(err);
    gr_error_release(&err); /* twice is fine */
    assert_string_equal(gr_error_msg(NULL), "(no error)");
}

static void test_error_without_status(void **state)
{
    _cleanup_error_ gr_error_t err = NULL;
    assert_int_equal(gr_make_error(&err, 0, "bad value %d", 7), -1);
    assert_string_equal(gr_error_msg(err), "bad value 7");
    /* A second error replaces the first without leaking it. */
    gr_make_error(&err, 0, "second");
    assert_string_equal(gr_error_msg(err), "second");
}

static void test_buf(void **state)
{
    gr_buf b = GR_BUF_INIT;
    for (int i = 0; i < 1000; i++)
        gr_buf_printf(&b, "%d,", i);
    assert_true(b.len > 1000);
    assert_int_equal(strlen(b.data), b.len);
    assert_true(gr_starts_with(b.data, "0,1,2,"));
    gr_buf_append(&b, "\0x", 2); /* binary data keeps its length */
    assert_int_equal(b.data[b.len - 2], '\0');
    char *s = gr_buf_steal(&b);
    assert_null(b.data);
    free(s);
    s = gr_buf_steal(&b); /* an empty buffer steals as "" */
    assert_string_equal(s, "");
    free(s);
}

static void test_utf8_next(void **state)
{
    uint32_t cp = 0;
    assert_int_equal(gr_utf8_next("A", 1, &cp), 1);
    assert_int_equal(cp, 'A');
    assert_int_equal(gr_utf8_next("\xc3\xa9", 2, &cp), 2);
    assert_int_equal(cp, 0xe9);
    assert_int_equal(gr_utf8_next("\xe2\x80\xae", 3, &cp), 3);
    assert_int_equal(cp, 0x202e);
    assert_int_equal(gr_utf8_next("\xf0\x9f\x98\x80", 4, &cp), 4);
    assert_int_equal(cp, 0x1f600);
    /* Not valid: a lone continuation byte, a cut sequence, an overlong
     * slash, a surrogate, past U+10FFFF, and bytes UTF-8 never uses. */
    assert_int_equal(gr_utf8_next("\x80", 1, &cp), 0);
    assert_int_equal(gr_utf8_next("\xc3", 1, &cp), 0);
    assert_int_equal(gr_utf8_next("\xe2\x80", 2, &cp), 0);
    assert_int_equal(gr_utf8_next("\xc0\xaf", 2, &cp), 0);
    assert_int_equal(gr_utf8_next("\xed\xa0\x80", 3, &cp), 0);
    assert_int_equal(gr_utf8_next("\xf4\x90\x80\x80", 4, &cp), 0);
    assert_int_equal(gr_utf8_next("\xff", 1, &cp), 0);
    assert_int_equal(gr_utf8_next("\xc3" "A", 2, &cp), 0);
}

static void test_strlcpy(void **state)
{
    char small[4];
    assert_int_equal(gr_strlcpy(small, "abc", sizeof(small)), 0);
    assert_string_equal(small, "abc");
    assert_int_equal(gr_strlcpy(small, "abcdef", sizeof(small)), -1);
    assert_string_equal(small, "abc");
    assert_int_equal(gr_strlcpy(small, "x", 0), -1);
}

static void test_parse_long(void **state)
{
    long v = 0;
    gr_error_t err = NULL;
    assert_int_equal(gr_parse_long("6080", 0, 65535, &v, &err), 0);
    assert_int_equal(v, 6080);
    const char *bad[] = {"", "12x", " 12", "99999999999999999999999", "-1", "65536", "0x10"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(gr_parse_long(bad[i], 0, 65535, &v, &err), -1);
        assert_non_null(err);
        gr_error_release(&err);
    }
    gr_parse_long("70000", 0, 65535, &v, &err);
    assert_string_equal(gr_error_msg(err), "70000 is out of range (0 to 65535)");
    gr_error_release(&err);
}

static void test_strstrip_and_lower(void **state)
{
    char s[] = "  \tHello World \n";
    char *t = gr_strstrip(s);
    assert_string_equal(t, "Hello World");
    gr_ascii_lower(t);
    assert_string_equal(t, "hello world");
}

static void test_hex_and_random(void **state)
{
    unsigned char raw[3] = {0x00, 0xab, 0xff};
    char hex[7];
    gr_hex(raw, 3, hex);
    assert_string_equal(hex, "00abff");
    unsigned char a[16] = {0}, b[16] = {0};
    gr_error_t err = NULL;
    assert_int_equal(gr_random_bytes(a, sizeof(a), &err), 0);
    assert_int_equal(gr_random_bytes(b, sizeof(b), &err), 0);
    assert_memory_not_equal(a, b, sizeof(a));
}

/* Makes path, a directory with mode, as the test's user. */
static void mkdir_mode(const char *path, mode_t mode)
{
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(chmod(path, mode), 0);
}

/* The body of test_remove_tree, run as a user that DAC binds. */
static int remove_tree_as_owner(const char *dir, const char *outside)
{
    char p[512];
    /* Directories closed even to their owner, three deep, some files, a
     * link out of the tree that must not be followed. */
    snprintf(p, sizeof p, "%s/x", dir);
    if (mkdir(p, 0700) < 0)
        return 1;
    snprintf(p, sizeof p, "%s/x/y", dir);
    if (mkdir(p, 0700) < 0)
        return 2;
    snprintf(p, sizeof p, "%s/x/y/f", dir);
    FILE *f = fopen(p, "w");
    if (f == NULL)
        return 3;
    fclose(f);
    snprintf(p, sizeof p, "%s/x/link", dir);
    if (symlink(outside, p) < 0)
        return 4;
    snprintf(p, sizeof p, "%s/x/y", dir);
    chmod(p, 0);
    snprintf(p, sizeof p, "%s/x", dir);
    chmod(p, 0);
    chmod(dir, 0500);
    gr_error_t err = NULL;
    if (gr_remove_tree(dir, &err) < 0)
        return 5;
    struct stat st;
    if (lstat(dir, &st) == 0 || errno != ENOENT)
        return 6;
    if (gr_remove_tree(dir, &err) < 0) /* gone already: fine */
        return 7;
    return 0;
}

static void test_remove_tree(void **state)
{
    char dir[] = "/tmp/granary-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    _cleanup_free_ char *tree = gr_asprintf("%s/tree", dir);
    _cleanup_free_ char *outside = gr_asprintf("%s/outside", dir);
    mkdir_mode(tree, 0700);
    mkdir_mode(outside, 0700);
    _cleanup_free_ char *kept = gr_asprintf("%s/kept", outside);
    FILE *f = fopen(kept, "w");
    fclose(f);
    /* Root passes every permission check, so the owner's case is tried as
     * nobody, who then owns the tree. */
    uid_t as = geteuid() == 0 ? 65534 : geteuid();
    assert_int_equal(chown(dir, as, as), 0);
    assert_int_equal(chown(tree, as, as), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(as) < 0 || setuid(as) < 0))
            _exit(99);
        _exit(remove_tree_as_owner(tree, outside));
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    struct stat st;
    assert_int_equal(stat(kept, &st), 0); /* the link's target is untouched */

    /* What cannot be removed is named, and the rest goes. */
    gr_error_t err = NULL;
    _cleanup_free_ char *t2 = gr_asprintf("%s/t2", dir);
    _cleanup_free_ char *sub = gr_asprintf("%s/t2/sub", dir);
    mkdir_mode(t2, 0700);
    mkdir_mode(sub, 0700);
    _cleanup_free_ char *gone = gr_asprintf("%s/t2/gone", dir);
    f = fopen(gone, "w");
    fclose(f);
    if (geteuid() == 0) {
        /* An immutable-free way to make removal fail for root: a mount. */
        if (mount("none", sub, "tmpfs", 0, NULL) == 0) {
            assert_int_equal(gr_remove_tree(t2, &err), -1);
            assert_non_null(strstr(gr_error_msg(err), "could not remove all of"));
            assert_non_null(strstr(gr_error_msg(err), sub));
            gr_error_release(&err);
            assert_int_equal(lstat(gone, &st), -1);
            assert_int_equal(umount(sub), 0);
        }
    }
    assert_int_equal(gr_remove_tree(t2, &err), 0);
    assert_int_equal(gr_remove_tree(dir, &err), 0);
    assert_int_equal(lstat(dir, &st), -1);
}

static void test_files(void **state)
{
    char dir[] = "/tmp/granary-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    gr_error_t err = NULL;
    _cleanup_free_ char *deep = gr_asprintf("%s/a/b/c", dir);
    assert_int_equal(gr_mkdir_p(deep, 0700, &err), 0);
    assert_int_equal(gr_mkdir_p(deep, 0700, &err), 0); /* existing is fine */

    _cleanup_free_ char *file = gr_asprintf("%s/f", dir);
    FILE *f = fopen(file, "w");
    fputs("hello", f);
    fclose(f);
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(gr_read_file(file, 100, &data, &len, &err), 0);
    assert_int_equal(len, 5);
    assert_string_equal(data, "hello");
    free(data);
    /* Over the limit, a directory, and a missing file are errors. */
    assert_int_equal(gr_read_file(file, 4, &data, &len, &err), -1);
    assert_non_null(strstr(gr_error_msg(err), "too large"));
    gr_error_release(&err);
    assert_int_equal(gr_read_file(dir, 100, &data, &len, &err), -1);
    assert_non_null(strstr(gr_error_msg(err), "not a regular file"));
    gr_error_release(&err);
    /* A file where a directory is wanted. */
    _cleanup_free_ char *under = gr_asprintf("%s/f/sub", dir);
    assert_int_equal(gr_mkdir_p(under, 0700, &err), -1);
    assert_int_equal(err->status, ENOTDIR);
    gr_error_release(&err);
    testutil_rm_rf(dir);
    assert_int_equal(access(dir, F_OK), -1);
}

static void test_log_levels(void **state)
{
    gr_log_level l;
    assert_int_equal(gr_log_parse_level("warn", &l), 0);
    assert_int_equal(l, GR_LOG_WARN);
    assert_int_equal(gr_log_parse_level("verbose", &l), -1);
}

/* Small zeroed blocks come from malloc and memset, large ones from calloc:
 * both must be zero however dirty the memory they reuse, and a size that
 * overflows must stop the program rather than give a short block. */
/* A stash gives back what it kept, last first, zeroed by zalloc; it keeps at
 * most GR_STASH_MAX and, full (or in a sanitizer build, which keeps none),
 * leaves the block to its caller. */
typedef struct linked {
    int v;
    gr_link link;
} linked;

static void test_link(void **state)
{
    (void)state;
    gr_link *head = NULL;
    linked a = {1, {0}}, b = {2, {0}}, c = {3, {0}};
    gr_link_push(&head, &a.link);
    gr_link_push(&head, &b.link);
    gr_link_push(&head, &c.link);
    assert_int_equal(gr_container_of(head, linked, link)->v, 3);
    gr_link_remove(&b.link); /* the middle */
    gr_link_remove(&b.link); /* again: nothing */
    assert_ptr_equal(head, &c.link);
    assert_ptr_equal(c.link.next, &a.link);
    assert_ptr_equal(a.link.prev, &c.link.next);
    gr_link_remove(&c.link); /* the head */
    assert_ptr_equal(head, &a.link);
    gr_link_remove(&a.link);
    assert_null(head);
    assert_null(a.link.prev);
}

static void test_stash(void **state)
{
    (void)state;
    static gr_stash s;
    assert_null(gr_stash_take(&s));
    void *blocks[GR_STASH_MAX + 1];
    for (int i = 0; i <= GR_STASH_MAX; i++) {
        blocks[i] = gr_malloc(48);
        memset(blocks[i], 0x5a, 48);
    }
    for (int i = 0; i < GR_STASH_MAX; i++)
        assert_true(gr_stash_keep(&s, blocks[i]));
    assert_false(gr_stash_keep(&s, blocks[GR_STASH_MAX])); /* full: the caller frees it */
    free(blocks[GR_STASH_MAX]);
    if (GR_STASH_MAX) {
        unsigned char *z = gr_stash_zalloc(&s, 48);
        assert_ptr_equal(z, blocks[GR_STASH_MAX - 1]);
        for (int k = 0; k < 48; k++)
            assert_int_equal(z[k], 0);
        assert_ptr_equal(gr_stash_take(&s), blocks[GR_STASH_MAX - 2]);
        gr_stash_free(&s, z); /* kept again: room for one more */
        assert_ptr_equal(gr_stash_take(&s), z);
        free(z);
        free(blocks[GR_STASH_MAX - 2]);
    }
    gr_stash_free(&s, NULL);
    for (void *p; (p = gr_stash_take(&s)) != NULL;)
        free(p);
    unsigned char *fresh = gr_stash_zalloc(&s, 32); /* empty: a new zeroed block */
    for (int k = 0; k < 32; k++)
        assert_int_equal(fresh[k], 0);
    free(fresh);

    /* Buffers on blocks: one that stayed a block goes back to the stash, one
     * that grew past it is freed, and a buffer given a block is empty. */
    static gr_stash bufs;
    gr_buf b = GR_BUF_INIT;
    gr_buf_from_stash(&b, &bufs, 64);
    assert_int_equal(b.cap, 64);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    gr_buf_puts(&b, "GET / HTTP/1.1\r\n");
    char *first = b.data;
    gr_buf_release_to(&b, &bufs, 64);
    assert_null(b.data);
    assert_int_equal(b.cap, 0);
    gr_buf_from_stash(&b, &bufs, 64);
    if (GR_STASH_MAX)
        assert_ptr_equal(b.data, first); /* the kept block, made empty */
    assert_string_equal(b.data, "");
    for (int i = 0; i < 10; i++)
        gr_buf_puts(&b, "0123456789");
    assert_true(b.cap > 64);
    gr_buf_release_to(&b, &bufs, 64); /* grown: freed, not kept */
    assert_null(gr_stash_take(&bufs));
}

static void test_calloc_zeroes_and_overflow_aborts(void **state)
{
    (void)state;
    static const size_t sizes[] = {0, 1, 24, 1023, 1024, 1025, 65536};
    for (int round = 0; round < 2; round++)
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            unsigned char *dirty = gr_malloc(sizes[i] + 1);
            memset(dirty, 0xa5, sizes[i] + 1);
            free(dirty); /* the next block of this size may well be this one */
            unsigned char *p = gr_calloc(1, sizes[i]);
            for (size_t k = 0; k < sizes[i]; k++)
                assert_int_equal(p[k], 0);
            free(p);
            p = gr_calloc(sizes[i], 1);
            for (size_t k = 0; k < sizes[i]; k++)
                assert_int_equal(p[k], 0);
            free(p);
        }
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO); /* the line that says why */
        void *volatile p = gr_calloc(SIZE_MAX / 2, 4);
        (void)p;
        _exit(0); /* not reached */
    }
    close(fds[1]);
    char said[256] = "";
    ssize_t n = read(fds[0], said, sizeof(said) - 1);
    close(fds[0]);
    said[n > 0 ? n : 0] = '\0';
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    assert_non_null(strstr(said, "allocation size overflows"));
}

typedef struct {
    char key[16];
    int n;
    bool live;
} indexed;

static bool indexed_live(const void *v)
{
    return ((const indexed *)v)->live;
}

/* Thousands of entries through several growths, a key held twice (a dead
 * grain and its live successor), removal of one value of a key. */
static void test_index(void **state)
{
    (void)state;
    enum { N = 3000 };
    gr_index ix = {0};
    assert_null(gr_index_find(&ix, "nothing", NULL));
    assert_false(gr_index_remove(&ix, "nothing", &ix));
    indexed *v = gr_calloc(N, sizeof(*v));
    for (int i = 0; i < N; i++) {
        snprintf(v[i].key, sizeof(v[i].key), "k%d", i % (N - 1)); /* the last repeats k0 */
        v[i].n = i;
        v[i].live = i != 0;
        gr_index_add(&ix, v[i].key, &v[i]);
    }
    assert_int_equal(ix.count, N);
    assert_true(ix.nslots >= N);
    for (int i = 1; i < N - 1; i++) {
        indexed *f = gr_index_find(&ix, v[i].key, NULL);
        assert_non_null(f);
        assert_int_equal(f->n, i);
    }
    indexed *live = gr_index_find(&ix, "k0", indexed_live);
    assert_ptr_equal(live, &v[N - 1]); /* not the dead v[0] under the same key */
    assert_true(gr_index_remove(&ix, "k0", &v[N - 1]));
    assert_null(gr_index_find(&ix, "k0", indexed_live));
    assert_ptr_equal(gr_index_find(&ix, "k0", NULL), &v[0]);
    assert_false(gr_index_remove(&ix, "k0", &v[N - 1])); /* only once */
    assert_false(gr_index_remove(&ix, "k5", &v[6]));     /* a value under another key */
    assert_null(gr_index_find(&ix, "k", NULL));
    assert_int_equal(ix.count, N - 1);
    gr_index_release(&ix);
    assert_int_equal(ix.count, 0);
    assert_null(gr_index_find(&ix, "k1", NULL));
    free(v);
}

static void test_cleanup_and_steal(void **state)
{
    char *kept;
    {
        _cleanup_free_ char *p = gr_strdup("owned");
        kept = gr_steal_pointer(&p);
        assert_null(p);
    }
    assert_string_equal(kept, "owned");
    free(kept);
    int fd;
    {
        _cleanup_close_ int f = dup(0);
        fd = gr_steal_fd(&f);
        assert_int_equal(f, -1);
    }
    assert_int_equal(close(fd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_message_and_status),
        cmocka_unit_test(test_error_without_status),
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_utf8_next),
        cmocka_unit_test(test_strlcpy),
        cmocka_unit_test(test_parse_long),
        cmocka_unit_test(test_strstrip_and_lower),
        cmocka_unit_test(test_hex_and_random),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_remove_tree),
        cmocka_unit_test(test_log_levels),
        cmocka_unit_test(test_calloc_zeroes_and_overflow_aborts),
        cmocka_unit_test(test_link),
        cmocka_unit_test(test_stash),
        cmocka_unit_test(test_index),
        cmocka_unit_test(test_cleanup_and_steal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
