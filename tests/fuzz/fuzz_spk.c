/* libFuzzer target: the package reader. The first byte picks what the rest
 * is: 0 a decompressed Archive message (walked with every rule, its manifest
 * and bridge config read), 1 a Manifest message (wrapped here in an archive
 * as sandstorm-manifest), 2 a whole .spk file (magic, xz, signature). */
#include "spk_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_manifest_bytes(const uint8_t *data, size_t size, spk_info *info,
                                 gr_error_t *err, int *rc)
{
    cp_message m;
    cp_message_init(&m, 0);
    Archive_File_LB files = Archive_init_files(Archive_init_root(&m), 2);
    Archive_File_B f = Archive_File_list_at(files, 0);
    Archive_File_set_name(f, "sandstorm-manifest", 18);
    Archive_File_set_regular(f, data, size);
    f = Archive_File_list_at(files, 1);
    Archive_File_set_name(f, "sandstorm-http-bridge-config", 28);
    Archive_File_set_regular(f, data, size);
    gr_buf b = GR_BUF_INIT;
    cp_message_write(&m, &b);
    cp_message_release(&m);
    *rc = spk_check_archive(b.data, b.len, info, err);
    gr_buf_release(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    gr_log_set_level(GR_LOG_ERROR);
    gr_error_t err = NULL;
    spk_info info;
    int rc;
    switch (data[0] % 3) {
    case 0:
        rc = spk_check_archive(data + 1, size - 1, &info, &err);
        break;
    case 1:
        check_manifest_bytes(data + 1, size - 1, &info, &err, &rc);
        break;
    default: {
        spk_package *pkg = NULL;
        rc = spk_package_open_mem(data + 1, size - 1, &pkg, &err);
        if (rc == 0) {
            info = *spk_package_info(pkg);
            info.title = info.marketing_version = NULL;
        }
        spk_package_free(pkg);
        break;
    }
    }
    if (rc < 0) {
        if (!err || gr_error_msg(err)[0] == '\0')
            abort(); /* every refusal must say why */
        gr_error_release(&err);
    } else {
        spk_info_release(&info);
    }
    return 0;
}
