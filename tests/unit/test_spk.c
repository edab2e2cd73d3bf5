/* Unit tests for the pure parts of src/spk: the base32 app id, the package
 * id, entry-name and symlink rules, and the archive checks and limits over
 * archives built here with the cp_ builder. */
#include "spk_internal.h"
#include "testutil.h"

#include <setjmp.h>
#include <cmocka.h>

static void test_app_id_vectors(void **state)
{
    (void)state;
    uint8_t key[32] = {0};
    char id[SPK_APP_ID_LEN + 1];
    spk_app_id_encode(key, id);
    assert_string_equal(id, "0000000000000000000000000000000000000000000000000000");
    memset(key, 0xff, sizeof(key));
    spk_app_id_encode(key, id);
    /* 256 one bits: 51 characters of 31, then one bit padded with four zeros. */
    assert_string_equal(id, "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzh");
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)(i * 37 + 1);
    spk_app_id_encode(key, id);
    /* Computed independently (Python, from the bit string of the bytes). */
    assert_string_equal(id, "04m4qw4prcgh8aafffdcvsh75j8re6y0wn52yp3tmv1yh39kaxy0");
    uint8_t back[32];
    gr_error_t err = NULL;
    assert_int_equal(spk_app_id_decode(id, back, &err), 0);
    assert_memory_equal(back, key, 32);
}

static void test_app_id_decode_rules(void **state)
{
    (void)state;
    uint8_t key[32], ref[32];
    gr_error_t err = NULL;
    char id[SPK_APP_ID_LEN + 1];
    for (int i = 0; i < 32; i++)
        ref[i] = (uint8_t)(0x80 | i);
    spk_app_id_encode(ref, id);
    /* Upper case and the look-alikes o->0, i/l->1, b->8 decode the same. */
    char alt[SPK_APP_ID_LEN + 1];
    memcpy(alt, id, sizeof(alt));
    for (size_t i = 0; alt[i]; i++) {
        if (alt[i] == '0')
            alt[i] = (i % 2) ? 'o' : 'O';
        else if (alt[i] == '1')
            alt[i] = (i % 2) ? 'l' : 'I';
        else if (alt[i] == '8')
            alt[i] = 'B';
        else if (alt[i] >= 'a' && alt[i] <= 'z')
            alt[i] = (char)(alt[i] - 'a' + 'A');
    }
    assert_int_equal(spk_app_id_decode(alt, key, &err), 0);
    assert_memory_equal(key, ref, 32);

    assert_int_equal(spk_app_id_decode("0000", key, &err), -1);
    assert_non_null(strstr(gr_error_msg(err), "4 characters, want 52"));
    gr_error_release(&err);
    char bad[SPK_APP_ID_LEN + 1];
    memcpy(bad, id, sizeof(bad));
    bad[10] = '-';
    assert_int_equal(spk_app_id_decode(bad, key, &err), -1);
    assert_non_null(strstr(gr_error_msg(err), "invalid character at 10"));
    gr_error_release(&err);
    memcpy(bad, id, sizeof(bad));
    bad[51] = 'z'; /* the last character carries four padding bits */
    assert_int_equal(spk_app_id_decode(bad, key, &err), -1);
    assert_non_null(strstr(gr_error_msg(err), "nonzero padding bits"));
    gr_error_release(&err);
}

static void test_package_id(void **state)
{
    (void)state;
    char id[SPK_PACKAGE_ID_LEN + 1];
    spk_package_id("abc", 3, id);
    /* SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a3... */
    assert_string_equal(id, "ba7816bf8f01cfea414140de5dae2223");
}

static void test_names(void **state)
{
    (void)state;
    gr_error_t err = NULL;
    assert_int_equal(spk_check_name("ok.txt", 6, &err), 0);
    assert_int_equal(spk_check_name("...", 3, &err), 0);
    assert_int_equal(spk_check_name(".hidden", 7, &err), 0);
    const struct {
        const char *name;
        size_t len;
        const char *msg;
    } bad[] = {
        {"", 0, "empty file name"},         {".", 1, "\".\" is not allowed"},
        {"..", 2, "\"..\" is not allowed"}, {"a/b", 3, "contains \"/\""},
        {"/", 1, "contains \"/\""},         {"a\0b", 3, "contains NUL"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        assert_int_equal(spk_check_name(bad[i].name, bad[i].len, &err), -1);
        assert_non_null(strstr(gr_error_msg(err), bad[i].msg));
        gr_error_release(&err);
    }
    char longname[300];
    memset(longname, 'x', sizeof(longname));
    assert_int_equal(spk_check_name(longname, 255, &err), 0);
    assert_int_equal(spk_check_name(longname, 256, &err), -1);
    gr_error_release(&err);
}

static void test_symlinks(void **state)
{
    (void)state;
    gr_error_t err = NULL;
    const struct {
        const char *t;
        unsigned depth;
        bool ok;
    } cases[] = {
        {"a", 0, true},
        {"a/b/../c", 0, true},
        {"..", 1, true},
        {"../..", 1, false},
        {"..", 0, false},
        {"/abs", 3, false},
        {"./././..", 0, false},
        {"a/../..", 0, false},
        {"a//..//..", 1, true},
        {"x/../../..", 2, true},
        {"x/../../../..", 2, false},
        {"", 0, false},
        {"../sub/../..", 2, true},
        {"../../../a/b", 2, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        int rc = spk_check_symlink(cases[i].t, strlen(cases[i].t), cases[i].depth, &err);
        if (cases[i].ok)
            assert_int_equal(rc, 0);
        else
            assert_int_equal(rc, -1);
        gr_error_release(&err);
    }
}

static void test_app_id_replacements(void **state)
{
    (void)state;
    gr_error_t err = NULL;
    char id[SPK_APP_ID_LEN + 1];
    /* A replacement key's packages belong to the original app. */
    memcpy(id, "n8cn71407n4mezn7mg0k5kkm21juuphhecc24hdf9kf56zyxm4ah", sizeof(id));
    assert_int_equal(spk_app_id_replace(id, "00000000000000000000000000000000", &err), 0);
    assert_string_equal(id, "vxe8awcxvtj6yu0vgjpm1tsaeu7x8v8tfp71tyvnm6ykkephu9q0");
    /* A lost (not revoked) original key still signs for its app. */
    assert_int_equal(spk_app_id_replace(id, "00000000000000000000000000000000", &err), 0);
    assert_string_equal(id, "vxe8awcxvtj6yu0vgjpm1tsaeu7x8v8tfp71tyvnm6ykkephu9q0");
    /* A revoked key: only the known versions pass. */
    memcpy(id, "nfqhx83vvzm80edpgkpax8mhqp176qj2vwg67rgq5e3kjc5r4cyh", sizeof(id));
    assert_int_equal(spk_app_id_replace(id, "738f0e56a9ca462e77245e3f392686d7", &err), 0);
    assert_string_equal(id, "nfqhx83vvzm80edpgkpax8mhqp176qj2vwg67rgq5e3kjc5r4cyh");
    assert_int_equal(spk_app_id_replace(id, "738f0e56a9ca462e77245e3f392686d8", &err), -1);
    assert_non_null(strstr(gr_error_msg(err), "signed by the revoked key of app nfqhx83v"));
    gr_error_release(&err);
    /* Anything else is left alone. */
    memcpy(id, "0000000000000000000000000000000000000000000000000000", sizeof(id));
    assert_int_equal(spk_app_id_replace(id, "b5bb9d8014a0f9b1d61e21e796d78dcc", &err), 0);
    assert_string_equal(id, "0000000000000000000000000000000000000000000000000000");
    assert_string_equal(
        spk_app_id_replacement_of("m86q05rdvj14yvn78ghaxynqz7u2svw6rnttptxx49g1785cdv1h"),
        "6jz1aawur7kga7tdsj9kgpxx1yzh6xz1qmrpnqukcp1rekprd9f0");
    assert_null(spk_app_id_replacement_of("0000000000000000000000000000000000000000000000000000"));
    /* Every id in the table is a valid app id. */
    uint8_t key[32];
    assert_int_equal(
        spk_app_id_decode("g1k27td96hm9fjnkn20jw5apkphhcd5wrcccdve9fuvykfz68650", key, &err), 0);
}

/* ---- archives built here ------------------------------------------------- */

static void set_manifest(Archive_File_B f)
{
    cp_message m;
    cp_message_init(&m, 0);
    Manifest_B man = Manifest_init_root(&m);
    LocalizedText_set_defaultText(Manifest_init_appTitle(man), "T", 1);
    Manifest_set_appVersion(man, 7);
    Manifest_Command_B c = Manifest_init_continueCommand(man);
    cp_list_builder argv = cp_ptr_init_list(Manifest_Command_ptr_argv(c), CP_ELEM_POINTER, 1);
    cp_ptr_set_text(cp_list_ptr_at(argv, 0), "x", 1);
    Manifest_Action_LB acts = Manifest_init_actions(man, 1);
    Manifest_Command_B ac = Manifest_Action_init_command(Manifest_Action_list_at(acts, 0));
    argv = cp_ptr_init_list(Manifest_Command_ptr_argv(ac), CP_ELEM_POINTER, 1);
    cp_ptr_set_text(cp_list_ptr_at(argv, 0), "x", 1);
    gr_buf b = GR_BUF_INIT;
    cp_message_write(&m, &b);
    Archive_File_set_name(f, "sandstorm-manifest", 18);
    Archive_File_set_regular(f, b.data, b.len);
    gr_buf_release(&b);
    cp_message_release(&m);
}

/* An archive of the manifest plus `extra` files at the root, and a chain of
 * `depth` nested directories. */
static int check_built(uint32_t extra, unsigned depth, spk_info *info, gr_error_t *err)
{
    cp_message m;
    cp_message_init(&m, 0);
    Archive_B ar = Archive_init_root(&m);
    Archive_File_LB files = Archive_init_files(ar, 2 + extra);
    set_manifest(Archive_File_list_at(files, 0));
    Archive_File_B d = Archive_File_list_at(files, 1);
    Archive_File_set_name(d, "d", 1);
    for (unsigned i = 0; i < depth; i++) {
        Archive_File_LB sub = Archive_File_init_directory(d, 1);
        d = Archive_File_list_at(sub, 0);
        Archive_File_set_name(d, "d", 1);
    }
    Archive_File_set_regular(d, "leaf", 4);
    for (uint32_t i = 0; i < extra; i++) {
        char name[16];
        int n = snprintf(name, sizeof(name), "f%u", i);
        Archive_File_B f = Archive_File_list_at(files, 2 + i);
        Archive_File_set_name(f, name, (size_t)n);
        Archive_File_set_executable(f, "", 0);
    }
    gr_buf b = GR_BUF_INIT;
    cp_message_write(&m, &b);
    cp_message_release(&m);
    int rc = spk_check_archive(b.data, b.len, info, err);
    gr_buf_release(&b);
    return rc;
}

static void test_archive_limits(void **state)
{
    (void)state;
    gr_error_t err = NULL;
    spk_info info;
    assert_int_equal(check_built(10, 3, &info, &err), 0);
    assert_string_equal(info.title, "T");
    assert_int_equal(info.version, 7);
    assert_int_equal(info.files, 2 + 10 + 3);
    spk_info_release(&info);

    assert_int_equal(check_built(0, SPK_MAX_DEPTH, &info, &err), 0);
    spk_info_release(&info);
    assert_int_equal(check_built(0, SPK_MAX_DEPTH + 1, &info, &err), -1);
    assert_non_null(strstr(gr_error_msg(err), "directories nested deeper than 64"));
    gr_error_release(&err);

    assert_int_equal(check_built(SPK_MAX_ENTRIES - 2 - 1, 1, &info, &err), 0);
    spk_info_release(&info);
    assert_int_equal(check_built(SPK_MAX_ENTRIES - 2, 1, &info, &err), -1);
    assert_non_null(strstr(gr_error_msg(err), "more than 200000 entries"));
    gr_error_release(&err);
}

static void test_archive_garbage(void **state)
{
    (void)state;
    gr_error_t err = NULL;
    spk_info info;
    static const uint8_t junk[] = {0,    0,    0,    0,    2, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
                                   0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5,    6,    7,    8};
    assert_int_equal(spk_check_archive(junk, sizeof(junk), &info, &err), -1);
    assert_non_null(err);
    gr_error_release(&err);
    assert_int_equal(spk_check_archive(junk, 3, &info, &err), -1);
    gr_error_release(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_app_id_vectors),  cmocka_unit_test(test_app_id_decode_rules),
        cmocka_unit_test(test_package_id),      cmocka_unit_test(test_names),
        cmocka_unit_test(test_symlinks),        cmocka_unit_test(test_archive_limits),
        cmocka_unit_test(test_archive_garbage), cmocka_unit_test(test_app_id_replacements),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
