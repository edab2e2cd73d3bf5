/* The notes app's WebSockets (RFC 6455), server side: the handshake, client
 * frames (masked, at most 1 MiB a message, control frames answered), and
 * server frames. /ws/echo sends every message back; /ws/live receives the
 * note whenever it changes. */
#include <openssl/evp.h>
#include <strings.h>

#include "notes.h"
#include "util.h"

#define WS_MAX_MESSAGE (1 << 20)
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* The connection fields this file uses; the struct is defined in notes.c. */
int nt_ws__kind(nt_conn *c);
gr_buf *nt_ws__in(nt_conn *c);
gr_buf *nt_ws__message(nt_conn *c);
int *nt_ws__opcode(nt_conn *c);
void nt_ws__set_kind(nt_conn *c, int kind);

void nt_ws_accept(nt_conn *c, int kind)
{
    const char *key = nt_header(c, "Sec-WebSocket-Key");
    const char *version = nt_header(c, "Sec-WebSocket-Version");
    const char *upgrade = nt_header(c, "Upgrade");
    if (key == NULL || strlen(key) > 64 || version == NULL || strcmp(version, "13") != 0 ||
        upgrade == NULL || strcasecmp(upgrade, "websocket") != 0) {
        nt_respond(c, 400, "text/plain", NULL, "not a WebSocket handshake\n", 26);
        return;
    }
    _cleanup_free_ char *joined = gr_asprintf("%s%s", key, WS_GUID);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_Digest(joined, strlen(joined), md, &n, EVP_sha1(), NULL);
    unsigned char accept[64];
    EVP_EncodeBlock(accept, md, (int)n);
    char head[256];
    int len = snprintf(head, sizeof(head),
                       "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                       accept);
    nt_write(c, head, (size_t)len);
    nt_ws__set_kind(c, kind);
    if (kind == NT_WS_LIVE)
        nt_live_add(c);
}

void nt_ws_send(nt_conn *c, int opcode, const void *data, size_t len)
{
    unsigned char head[10];
    size_t hl = 2;
    head[0] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        head[1] = (unsigned char)len;
    } else if (len < 65536) {
        head[1] = 126;
        head[2] = (unsigned char)(len >> 8);
        head[3] = (unsigned char)len;
        hl = 4;
    } else {
        head[1] = 127;
        for (int i = 0; i < 8; i++)
            head[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
        hl = 10;
    }
    gr_buf b = GR_BUF_INIT;
    gr_buf_append(&b, head, hl);
    gr_buf_append(&b, data, len);
    nt_write(c, b.data, b.len);
    gr_buf_release(&b);
}

static void ws_fail(nt_conn *c, int code)
{
    unsigned char body[2] = {(unsigned char)(code >> 8), (unsigned char)code};
    nt_ws_send(c, 8, body, 2);
    nt_close(c);
}

/* Handles one complete frame; returns false when the connection ended. */
static bool ws_frame(nt_conn *c, bool fin, int opcode, const unsigned char *payload, size_t len)
{
    gr_buf *msg = nt_ws__message(c);
    int *mop = nt_ws__opcode(c);
    if (opcode >= 8) { /* control frames: never fragmented, at most 125 bytes */
        if (!fin || len > 125) {
            ws_fail(c, 1002);
            return false;
        }
        if (opcode == 8) {
            nt_ws_send(c, 8, payload, len >= 2 ? 2 : 0);
            nt_close(c);
            return false;
        }
        if (opcode == 9)
            nt_ws_send(c, 10, payload, len);
        return true;
    }
    if (opcode == 0 && *mop == 0) { /* a continuation of nothing */
        ws_fail(c, 1002);
        return false;
    }
    if (opcode != 0 && *mop != 0) { /* a new message inside a fragmented one */
        ws_fail(c, 1002);
        return false;
    }
    if (opcode != 0 && opcode != 1 && opcode != 2) {
        ws_fail(c, 1003);
        return false;
    }
    if (opcode)
        *mop = opcode;
    if (msg->len + len > WS_MAX_MESSAGE) {
        ws_fail(c, 1009);
        return false;
    }
    gr_buf_append(msg, payload, len);
    if (fin) {
        if (nt_ws__kind(c) == NT_WS_ECHO)
            nt_ws_send(c, *mop, msg->data, msg->len);
        gr_buf_release(msg);
        *mop = 0;
    }
    return true;
}

void nt_ws_feed(nt_conn *c, const char *data, size_t len)
{
    gr_buf *in = nt_ws__in(c);
    gr_buf_append(in, data, len);
    size_t off = 0;
    for (;;) {
        const unsigned char *p = (const unsigned char *)in->data + off;
        size_t avail = in->len - off;
        if (avail < 2)
            break;
        bool fin = p[0] & 0x80;
        int opcode = p[0] & 0x0f;
        if (p[0] & 0x70) { /* no extensions were negotiated */
            ws_fail(c, 1002);
            return;
        }
        if (!(p[1] & 0x80)) { /* clients must mask */
            ws_fail(c, 1002);
            return;
        }
        uint64_t plen = p[1] & 0x7f;
        size_t hl = 2;
        if (plen == 126) {
            if (avail < 4)
                break;
            plen = ((uint64_t)p[2] << 8) | p[3];
            hl = 4;
        } else if (plen == 127) {
            if (avail < 10)
                break;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = (plen << 8) | p[2 + i];
            hl = 10;
        }
        if (plen > WS_MAX_MESSAGE) {
            ws_fail(c, 1009);
            return;
        }
        if (avail < hl + 4 + plen)
            break;
        const unsigned char *mask = p + hl;
        unsigned char *payload = (unsigned char *)in->data + off + hl + 4;
        for (uint64_t i = 0; i < plen; i++)
            payload[i] ^= mask[i % 4];
        off += hl + 4 + (size_t)plen;
        if (!ws_frame(c, fin, opcode, payload, (size_t)plen))
            return;
    }
    /* Keep only the unparsed tail. */
    memmove(in->data, in->data + off, in->len - off);
    in->len -= off;
    in->data[in->len] = '\0';
}
