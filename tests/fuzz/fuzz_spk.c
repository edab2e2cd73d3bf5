/* libFuzzer target: the package reader. The first byte picks what the rest
 * is: 0 a decompressed Archive message (walked with every rule, its manifest
 * and bridge config read), 1 a Manifest message (wrapped here in an archive
 * as sandstorm-manifest), 2 a whole .spk file (magic, xz, signature), 3 an
 * Archive that is signed and compressed here, so the whole reading path runs
 * past the signature check. */
#include <lzma.h>
#include <sodium.h>

#include "spk_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_manifest_bytes(const uint8_t *data, size_t size, spk_info *info, gr_error_t *err,
                                 int *rc)
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

/* Makes a package of archive bytes signed by a fixed key. */
static bool make_package(const uint8_t *archive, size_t len, gr_buf *out)
{
    static uint8_t pk[32], sk[64];
    static bool have_key;
    if (!have_key) {
        uint8_t seed[32] = {1};
        if (sodium_init() < 0)
            abort();
        crypto_sign_seed_keypair(pk, sk, seed);
        have_key = true;
    }
    uint8_t hash[64], sig[128];
    unsigned long long siglen = 0;
    crypto_hash_sha512(hash, archive, len);
    crypto_sign(sig, &siglen, hash, sizeof(hash), sk);
    cp_message m;
    cp_message_init(&m, 0);
    Signature_B sb = Signature_init_root(&m);
    Signature_set_publicKey(sb, pk, 32);
    Signature_set_signature(sb, sig, (size_t)siglen);
    gr_buf plain = GR_BUF_INIT;
    cp_message_write(&m, &plain);
    cp_message_release(&m);
    gr_buf_append(&plain, archive, len);
    size_t cap = lzma_stream_buffer_bound(plain.len) + SPK_MAGIC_LEN;
    uint8_t *buf = gr_malloc(cap);
    memcpy(buf, SPK_MAGIC, SPK_MAGIC_LEN);
    size_t pos = SPK_MAGIC_LEN;
    lzma_ret rc = lzma_easy_buffer_encode(0, LZMA_CHECK_CRC32, NULL, (uint8_t *)plain.data,
                                          plain.len, buf, &pos, cap);
    gr_buf_release(&plain);
    if (rc != LZMA_OK) {
        free(buf);
        return false;
    }
    gr_buf_append(out, buf, pos);
    free(buf);
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    gr_log_set_level(GR_LOG_ERROR);
    const uint8_t *body = data + 1;
    size_t len = size - 1;
    int mode = data[0] % 4;
    gr_buf made = GR_BUF_INIT;
    if (mode == 3) {
        if (!make_package(body, len, &made))
            return 0;
        body = (const uint8_t *)made.data;
        len = made.len;
        mode = 2;
    }
    gr_error_t err = NULL;
    spk_info info;
    int rc;
    if (mode == 0) {
        rc = spk_check_archive(body, len, &info, &err);
    } else if (mode == 1) {
        check_manifest_bytes(body, len, &info, &err, &rc);
    } else {
        spk_package *pkg = NULL;
        rc = spk_package_open_mem(body, len, &pkg, &err);
        if (rc == 0) {
            info = *spk_package_info(pkg);
            info.title = info.marketing_version = NULL;
        }
        spk_package_free(pkg);
    }
    gr_buf_release(&made);
    if (rc < 0) {
        if (!err || gr_error_msg(err)[0] == '\0')
            abort(); /* every refusal must say why */
        gr_error_release(&err);
    } else {
        spk_info_release(&info);
    }
    return 0;
}
