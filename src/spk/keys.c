/* The keyring: Sandstorm's layout, a KeyFile message (standard framing) per
 * Ed25519 key, appended one after another to a mode-0600 file. */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spk_internal.h"

#define KEYRING_MAX_BYTES (16u << 20)

char *spk_default_keyring(void)
{
    const char *home = getenv("HOME");
    return gr_asprintf("%s/.sandstorm-keyring", home && *home ? home : ".");
}

void spk_key_write(const spk_key *key, gr_buf *out)
{
    cp_message m;
    cp_message_init(&m, 0);
    KeyFile_B kf = KeyFile_init_root(&m);
    KeyFile_set_publicKey(kf, key->public_key, 32);
    KeyFile_set_privateKey(kf, key->secret_key, 64);
    cp_message_write(&m, out);
    /* The builder's copy of the secret goes with the message. */
    for (uint32_t i = 0; i < m.nsegs; i++)
        sodium_memzero(m.segs[i].words, (size_t)m.segs[i].cap * 8);
    cp_message_release(&m);
}

int spk_keygen(const char *path, spk_key *out, gr_error_t *err)
{
    if (sodium_init() < 0)
        return gr_make_error(err, 0, "libsodium failed to initialise");
    crypto_sign_keypair(out->public_key, out->secret_key);
    _cleanup_close_ int fd =
        open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return gr_make_error(err, errno, "open keyring %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return gr_make_error(err, errno, "stat keyring %s", path);
    if (st.st_mode & 077) {
        if (fchmod(fd, 0600) < 0)
            return gr_make_error(err, errno, "chmod keyring %s", path);
        gr_warn("keyring %s was readable by others; now mode 0600", path);
    }
    gr_buf b = GR_BUF_INIT;
    spk_key_write(out, &b);
    size_t off = 0;
    while (off < b.len) {
        ssize_t w = write(fd, b.data + off, b.len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            sodium_memzero(b.data, b.len);
            gr_buf_release(&b);
            return gr_make_error(err, e, "write keyring %s", path);
        }
        off += (size_t)w;
    }
    sodium_memzero(b.data, b.len);
    gr_buf_release(&b);
    if (fsync(fd) < 0)
        return gr_make_error(err, errno, "fsync keyring %s", path);
    return 0;
}

void spk_keys_free(spk_key *keys, size_t n)
{
    if (!keys)
        return;
    sodium_memzero(keys, n * sizeof(*keys));
    free(keys);
}

int spk_keyring_read(const char *path, spk_key **keys, size_t *n, gr_error_t *err)
{
    char *buf = NULL;
    size_t len = 0;
    if (gr_read_file(path, KEYRING_MAX_BYTES, &buf, &len, err) < 0)
        return gr_error_prefix(err, "keyring");
    spk_key *out = NULL;
    size_t count = 0, off = 0;
    int rc = 0;
    while (off < len) {
        size_t need = 0;
        int r = cp_frame_size(buf + off, len - off, KEYRING_MAX_BYTES, NULL, &need, err);
        if (r == 0 || (r == 1 && need > len - off)) {
            rc = gr_make_error(err, 0, "keyring %s: truncated key at byte %zu", path, off);
            break;
        }
        if (r < 0) {
            rc = gr_error_prefix(err, "keyring %s: key at byte %zu", path, off);
            break;
        }
        cp_message m;
        if (cp_message_read(&m, buf + off, need, NULL, err) < 0) {
            rc = gr_error_prefix(err, "keyring %s: key at byte %zu", path, off);
            break;
        }
        KeyFile_R kf = KeyFile_root(&m);
        cp_data pub = KeyFile_get_publicKey(kf), sec = KeyFile_get_privateKey(kf);
        if (cp_message_check(&m, err) < 0 || pub.len != 32 || sec.len != 64) {
            if (!*err)
                gr_make_error(err, 0, "key sizes %zu/%zu, want 32/64", pub.len, sec.len);
            for (uint32_t i = 0; i < m.nsegs; i++)
                sodium_memzero(m.segs[i].words, (size_t)m.segs[i].len * 8);
            cp_message_release(&m);
            rc = gr_error_prefix(err, "keyring %s: key at byte %zu", path, off);
            break;
        }
        out = gr_realloc(out, (count + 1) * sizeof(*out));
        memcpy(out[count].public_key, pub.ptr, 32);
        memcpy(out[count].secret_key, sec.ptr, 64);
        count++;
        for (uint32_t i = 0; i < m.nsegs; i++)
            sodium_memzero(m.segs[i].words, (size_t)m.segs[i].len * 8);
        cp_message_release(&m);
        off += need;
    }
    sodium_memzero(buf, len);
    free(buf);
    if (rc < 0) {
        spk_keys_free(out, count);
        return -1;
    }
    *keys = out;
    *n = count;
    return 0;
}

int spk_keyring_find(const char *path, const char *app_id, spk_key *out, gr_error_t *err)
{
    uint8_t pub[32];
    if (spk_app_id_decode(app_id, pub, err) < 0)
        return -1;
    spk_key *keys = NULL;
    size_t n = 0;
    if (spk_keyring_read(path, &keys, &n, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(keys[i].public_key, pub, 32) == 0) {
            *out = keys[i];
            spk_keys_free(keys, n);
            return 0;
        }
    }
    spk_keys_free(keys, n);
    return gr_make_error(err, 0, "keyring %s has no key for app id %s", path, app_id);
}
