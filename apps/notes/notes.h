/* The notes app's parts: the HTTP side (notes.c) and the WebSocket side
 * (ws.c), and the page it serves. */
#ifndef NOTES_H
#define NOTES_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct nt_conn nt_conn;

enum { NT_WS_ECHO = 1, NT_WS_LIVE = 2 };

/* notes.c */
void nt_write(nt_conn *c, const void *data, size_t len);
void nt_close(nt_conn *c);
void nt_respond(nt_conn *c, int status, const char *type, const char *extra_headers,
                const void *body, size_t len);
const char *nt_header(nt_conn *c, const char *name);
void nt_live_add(nt_conn *c);

/* Answers a request that route() left waiting (text/plain). */
void nt_respond_later(nt_conn *c, int status, const void *body, size_t len);

/* api.c: /debug/stay-awake and /debug/activity; c waits for the platform's
 * answer. */
#define NT_MAX_WAKE_LOCKS 100
void nt_stay_awake(uv_loop_t *loop, nt_conn *c, uint64_t ms, unsigned count);
void nt_post_activity(uv_loop_t *loop, nt_conn *c, const char *session_id);
/* c is closing: nothing may answer it any more. */
void nt_api_conn_closed(nt_conn *c);

/* ws.c: answers the upgrade (or refuses it) and switches c to frames. */
void nt_ws_accept(nt_conn *c, int kind);
/* Parses client frames; echoes, answers pings, closes on protocol errors. */
void nt_ws_feed(nt_conn *c, const char *data, size_t len);
/* Sends one unfragmented frame (opcode 1 text, 2 binary). */
void nt_ws_send(nt_conn *c, int opcode, const void *data, size_t len);

/* The page: one %s for "true"/"false" (may this session write?). Scripts
 * come from /app.js, as a grain's Content-Security-Policy allows. */
#define NT_PAGE_HTML                                                                            \
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"                        \
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"                 \
    "<title>Notes</title></head><body data-can-write=\"%s\">"                                  \
    "<main><h1>Notes</h1><label for=\"note\">Your note</label><br>"                            \
    "<textarea id=\"note\" rows=\"16\" cols=\"60\"></textarea><br>"                           \
    "<button id=\"save\" type=\"button\">Save</button> <span id=\"state\" role=\"status\">"    \
    "</span></main><script src=\"/app.js\"></script></body></html>\n"

#define NT_APP_JS                                                                               \
    "const note = document.getElementById('note');\n"                                         \
    "const save = document.getElementById('save');\n"                                         \
    "const state = document.getElementById('state');\n"                                       \
    "const canWrite = document.body.dataset.canWrite === 'true';\n"                           \
    "let etag = null;\n"                                                                       \
    "note.readOnly = !canWrite; save.hidden = !canWrite;\n"                                   \
    "if (!canWrite) state.textContent = 'Read only';\n"                                       \
    "function show(n) { if (document.activeElement !== note || !canWrite) note.value = "     \
    "n.text; etag = n.etag; }\n"                                                               \
    "fetch('/api/note').then(r => r.json()).then(show);\n"                                    \
    "save.addEventListener('click', async () => {\n"                                          \
    "  state.textContent = 'Saving…';\n"                                                      \
    "  const r = await fetch('/api/note', { method: 'PUT', body: note.value });\n"            \
    "  if (r.ok) { const n = await r.json(); etag = n.etag; state.textContent = 'Saved'; }\n" \
    "  else state.textContent = 'Not saved: ' + (await r.text());\n"                          \
    "});\n"                                                                                    \
    "const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + "       \
    "location.host + '/ws/live');\n"                                                           \
    "ws.onmessage = (ev) => { const n = JSON.parse(ev.data); note.value = n.text; "           \
    "etag = n.etag; };\n"

#endif
