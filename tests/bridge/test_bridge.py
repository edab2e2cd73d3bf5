"""granary-http-bridge against real apps: the platform is played by
tests/bridge/platform.c (the bridge's fd 3 is its end of a socketpair), the
app is the real notes app or tests/bridge/hostile_app.py. Every result is one
JSON line from the platform; what the app saw comes back from notes'
/debug/headers."""
import calendar
import hashlib
import json
import os
import socket
import subprocess
import sys

import pytest

from granary_testing import ASAN_DIR, BUILD_DIR, free_port

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(os.path.dirname(os.path.dirname(HERE)), "schema", "sandstorm")
MB100 = 100 * 1024 * 1024
RSS_LIMIT_KB = 8 * 1024  # "a few MB" whatever the body size
IDENTITY = "a1b2c3d4e5f60718293a4b5c6d7e8f90" + "ff" * 16
TAB = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


BRIDGE = "static"


@pytest.fixture(params=["static", "sanitized"], autouse=True)
def bridge_variant(request):
    """Every test runs the static bridge that grains get, and the same code
    built with ASan+UBSan (which the RSS limits do not apply to)."""
    global BRIDGE
    BRIDGE = request.param
    yield


def bridge_bin(d):
    if BRIDGE == "static":
        return os.path.join(d, "src", "bridge", "granary-http-bridge")
    return os.path.join(d, "tests", "bridge", "granary-http-bridge-sanitized")


def check_rss(result):
    if BRIDGE == "static":
        assert result["vmHWMkB"] < RSS_LIMIT_KB, result


def build_dir():
    for d in (ASAN_DIR, BUILD_DIR):
        if os.path.exists(os.path.join(d, "tests", "bridge", "bridge-platform")):
            return d
    pytest.fail("no bridge-platform: run make asan")


def notes_app(tmp_path, port):
    return [os.path.join(build_dir(), "apps", "notes", "notes"), str(port)]


def hostile_app(tmp_path, port):
    return [sys.executable, os.path.join(HERE, "hostile_app.py"), str(port)]


def write_config(tmp_path):
    """A BridgeConfig with three permissions and a role, by `capnp encode`."""
    text = ('(viewInfo = (permissions = [(name = "read"), (name = "write"), (name = "admin")],'
            ' roles = [(title = (defaultText = "editor"), permissions = [true, true])]))')
    out = subprocess.run(["capnp", "encode", "-I", SCHEMA, os.path.join(SCHEMA, "package.capnp"),
                          "BridgeConfig"], input=text.encode(), capture_output=True, check=True)
    path = tmp_path / "bridge-config"
    path.write_bytes(out.stdout)
    return str(path)


def run(tmp_path, commands, app=notes_app, config=None, env_extra=None, timeout=120, argv=None,
        events=None):
    """Runs the platform with commands (dicts); returns (results, exit line, stderr).
    The lines the platform's own objects printed when the app reached them
    (stayAwake, activity, ...) go to events, a list, in order."""
    d = build_dir()
    port = free_port()
    env = dict(os.environ)
    env["NOTES_DIR"] = str(tmp_path)
    env["GRANARY_BRIDGE_CONFIG"] = config or str(tmp_path / "no-config")
    env["GRANARY_BRIDGE_API_SOCKET"] = env["NOTES_API_SOCKET"] = str(tmp_path / "sandstorm-api")
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    env.update(env_extra or {})
    cmd = [os.path.join(d, "tests", "bridge", "bridge-platform"),
           bridge_bin(d), str(port), "--",
           *(argv or app(tmp_path, port))]
    p = subprocess.run(cmd, input="".join(json.dumps(c) + "\n" for c in commands).encode(),
                       capture_output=True, env=env, timeout=timeout)
    lines = [json.loads(l) for l in p.stdout.decode().splitlines() if l.strip()]
    assert p.returncode == 0, p.stderr.decode()
    assert "Sanitizer" not in p.stderr.decode() and "runtime error" not in p.stderr.decode(), \
        p.stderr.decode()
    assert "bridgePid" in lines[0]
    exits = [l for l in lines if "bridgeExit" in l]
    assert len(exits) == 1, (lines, p.stderr.decode())
    results = [l for l in lines[1:] if "method" in l]
    if events is not None:
        events.extend(l for l in lines if "event" in l)
    return results, exits[0], p.stderr.decode()


ALICE = {"method": "session", "displayName": "Alice Smith é", "identityId": IDENTITY,
         "handle": "alice", "picture": "https://pics.example/a.png", "pronouns": 2,
         "permissions": [True, False, True], "tabId": TAB,
         "basePath": "https://ui-ab12.example:6080", "userAgent": "TestAgent/1.0",
         "languages": ["en-GB", "fr"]}


def headers_of(result):
    assert result.get("kind") == "content", result
    seen = json.loads(result["body"])
    return seen, seen["headers"]


def test_view_info_and_session_headers(tmp_path):
    ctx = {"cookies": {"a": "1", "sess": "x y"},
           "accept": [["text/html", 1], ["application/json", 0.5]],
           "acceptEncoding": [["gzip", 1], ["br", 0.25]],
           "headers": [["X-Requested-With", "XMLHttpRequest"], ["X-Sandstorm-App-Thing", "t"],
                       ["X-Evil", "dropped"], ["Host", "evil.example"],
                       ["X-Sandstorm-User-Id", "forged"]],
           "precondition": {"kind": "matchesOneOf", "etags": [["v1", False], ["v2", True]]}}
    res, ex, _ = run(tmp_path, [{"method": "viewinfo"}, ALICE,
                                dict(method="get", path="debug/headers?q=1&r=%20", **ctx),
                                ALICE, {"method": "get", "path": "debug/headers"}],
                     config=write_config(tmp_path))
    assert res[0]["permissions"] == ["read", "write", "admin"] and res[0]["roles"] == 1
    assert res[1]["ok"]
    seen, hs = headers_of(res[2])
    assert seen["method"] == "GET" and seen["url"] == "/debug/headers?q=1&r=%20"
    assert hs == [
        ["Host", "ui-ab12.example:6080"],
        ["X-Forwarded-Proto", "https"],
        ["X-Sandstorm-Username", "Alice%20Smith%20%C3%A9"],
        ["X-Sandstorm-Tab-Id", TAB],
        ["X-Sandstorm-User-Id", IDENTITY[:32]],
        ["X-Sandstorm-Preferred-Handle", "alice"],
        ["X-Sandstorm-User-Picture", "https://pics.example/a.png"],
        ["X-Sandstorm-User-Pronouns", "female"],
        ["X-Sandstorm-Session-Type", "normal"],
        ["X-Sandstorm-Permissions", "read,admin"],
        ["X-Sandstorm-Base-Path", "https://ui-ab12.example:6080"],
        ["X-Sandstorm-Session-Id", "1"],
        ["User-Agent", "TestAgent/1.0"],
        ["Accept-Language", "en-GB,fr"],
        ["Accept", "text/html, application/json;q=0.5"],
        ["Accept-Encoding", "gzip, br;q=0.25"],
        ["Cookie", "a=1; sess=x y"],
        ["If-Match", '"v1", W/"v2"'],
        ["X-Requested-With", "XMLHttpRequest"],
        ["X-Sandstorm-App-Thing", "t"],
    ]
    # A second session gets the next id; a call with no context sends Accept: */*.
    _, hs2 = headers_of(res[4])
    assert ["X-Sandstorm-Session-Id", "2"] in hs2 and ["Accept", "*/*"] in hs2
    assert ex["bridgeExit"] == 128 + 9  # fd 3 closed: the app was killed


def test_anonymous_session_and_no_base_path(tmp_path):
    anon = {"method": "session", "handle": "nobody", "pronouns": 1, "picture": "p",
            "permissions": [True], "tabId": "00ff"}
    res, _, _ = run(tmp_path, [anon, {"method": "get", "path": "debug/headers"}],
                    config=write_config(tmp_path))
    _, hs = headers_of(res[1])
    names = [h[0] for h in hs]
    assert ["Host", "sandbox"] in hs and "X-Forwarded-Proto" not in names
    assert ["X-Sandstorm-Username", "Anonymous%20User"] in hs
    assert ["X-Sandstorm-Permissions", "read"] in hs
    assert ["X-Sandstorm-Tab-Id", "00ff"] in hs
    for absent in ("X-Sandstorm-User-Id", "X-Sandstorm-Preferred-Handle",
                   "X-Sandstorm-User-Picture", "X-Sandstorm-User-Pronouns", "Cookie"):
        assert absent not in names


def test_session_types(tmp_path):
    res, _, _ = run(tmp_path, [
        {"method": "session", "sessionType": 0x1234},
        dict(ALICE, type="request"), {"method": "get", "path": "debug/headers"},
        dict(ALICE, type="offer"), {"method": "get", "path": "debug/headers"},
    ])
    assert "not served by this bridge" in res[0]["error"]
    assert ["X-Sandstorm-Session-Type", "request"] in headers_of(res[2])[1]
    assert ["X-Sandstorm-Session-Type", "offer"] in headers_of(res[4])[1]


def test_every_method(tmp_path):
    calls = [
        {"method": "get", "path": "debug/headers", "ignoreBody": True},
        {"method": "post", "path": "debug/headers", "body": "a=1", "mimeType": "application/x-www-form-urlencoded"},
        {"method": "put", "path": "debug/headers", "body": "put body", "mimeType": "text/plain", "encoding": "gzip"},
        {"method": "patch", "path": "debug/headers", "body": "{}", "mimeType": "application/json"},
        {"method": "delete", "path": "debug/headers"},
        {"method": "propfind", "path": "debug/headers", "depth": "1", "xml": "<propfind/>"},
        {"method": "propfind", "path": "debug/headers", "depth": "0"},
        {"method": "propfind", "path": "debug/headers"},
        {"method": "proppatch", "path": "debug/headers", "xml": "<propertyupdate/>"},
        {"method": "mkcol", "path": "debug/headers", "body": "", "mimeType": ""},
        {"method": "copy", "path": "debug/headers", "destination": "dir/b.txt", "noOverwrite": True, "shallow": True},
        {"method": "move", "path": "debug/headers", "destination": "c.txt"},
        {"method": "lock", "path": "debug/headers", "xml": "<lockinfo/>", "shallow": True},
        {"method": "unlock", "path": "debug/headers", "lockToken": "urn:uuid:1234"},
        {"method": "acl", "path": "debug/headers", "xml": "<acl/>"},
        {"method": "report", "path": "debug/headers", "body": "<report/>", "mimeType": "text/xml"},
    ]
    res, _, _ = run(tmp_path, [ALICE] + calls)
    res = res[1:]
    head = res[0]
    assert head["kind"] == "content" and head["bodyBytes"] == 0
    got = {}
    for call, r in zip(calls[1:], res[1:]):
        seen, hs = headers_of(r)
        got.setdefault(call["method"], []).append((seen, dict(hs)))
    post, = got["post"]
    assert post[0]["method"] == "POST" and post[0]["body_bytes"] == 3
    assert post[1]["Content-Type"] == "application/x-www-form-urlencoded"
    assert post[1]["Content-Length"] == "3"
    put, = got["put"]
    assert put[0]["method"] == "PUT" and put[1]["Content-Encoding"] == "gzip"
    assert got["patch"][0][0]["method"] == "PATCH"
    assert got["delete"][0][0]["method"] == "DELETE"
    depths = [h["Depth"] for _, h in got["propfind"]]
    assert depths == ["1", "0", "infinity"]
    assert got["propfind"][0][1]["Content-Type"] == "application/xml; charset=utf-8"
    assert got["propfind"][0][0]["body_bytes"] == len("<propfind/>")
    assert got["proppatch"][0][0]["method"] == "PROPPATCH"
    assert got["mkcol"][0][0]["method"] == "MKCOL"
    copy_seen, copy_h = got["copy"][0]
    assert copy_seen["method"] == "COPY"
    assert copy_h["Destination"] == "https://ui-ab12.example:6080/dir/b.txt"
    assert copy_h["Overwrite"] == "F" and copy_h["Depth"] == "0"
    move_h = got["move"][0][1]
    assert move_h["Overwrite"] == "T" and move_h["Destination"].endswith("/c.txt")
    assert got["lock"][0][1]["Depth"] == "0" and got["lock"][0][0]["method"] == "LOCK"
    assert got["unlock"][0][1]["Lock-Token"] == "<urn:uuid:1234>"
    assert got["acl"][0][0]["method"] == "ACL"
    assert got["report"][0][0]["method"] == "REPORT"


def test_options_dav(tmp_path):
    res, _, _ = run(tmp_path, [ALICE, {"method": "options", "path": "dav"},
                               {"method": "options", "path": "missing"}], app=hostile_app)
    assert res[1]["davClass1"] and res[1]["davClass2"] and not res[1]["davClass3"]
    assert res[1]["davExtensions"] == ["extended-mkcol"]
    assert "HTTP 404" in res[2]["error"]


# status → (kind, statusCode, extra fields)
STATUS_TABLE = {
    200: ("content", 0, {}), 201: ("content", 1, {}), 202: ("content", 2, {}),
    206: ("content", 4, {}), 207: ("content", 5, {}),
    204: ("noContent", None, {"shouldResetForm": False}),
    205: ("noContent", None, {"shouldResetForm": True}),
    301: ("redirect", None, {"isPermanent": True, "switchToGet": True}),
    302: ("redirect", None, {"isPermanent": False, "switchToGet": True}),
    303: ("redirect", None, {"isPermanent": False, "switchToGet": True}),
    307: ("redirect", None, {"isPermanent": False, "switchToGet": False}),
    308: ("redirect", None, {"isPermanent": True, "switchToGet": False}),
    304: ("preconditionFailed", None, {}), 412: ("preconditionFailed", None, {}),
    400: ("clientError", 0, {}), 403: ("clientError", 1, {}), 404: ("clientError", 2, {}),
    405: ("clientError", 3, {}), 406: ("clientError", 4, {}), 409: ("clientError", 5, {}),
    410: ("clientError", 6, {}), 413: ("clientError", 7, {}), 414: ("clientError", 8, {}),
    415: ("clientError", 9, {}), 418: ("clientError", 10, {}), 422: ("clientError", 12, {}),
    401: ("clientError", 0, {}), 429: ("clientError", 0, {}), 451: ("clientError", 0, {}),
    500: ("serverError", None, {}), 502: ("serverError", None, {}), 599: ("serverError", None, {}),
    203: ("serverError", None, {}), 300: ("serverError", None, {}),
}


def test_status_mapping(tmp_path):
    codes = sorted(STATUS_TABLE)
    res, _, _ = run(tmp_path, [ALICE] + [{"method": "get", "path": f"debug/status/{c}"} for c in codes])
    for code, r in zip(codes, res[1:]):
        kind, sc, extra = STATUS_TABLE[code]
        assert r["kind"] == kind, (code, r)
        if sc is not None:
            assert r["statusCode"] == sc, (code, r)
        for k, v in extra.items():
            assert r[k] == v, (code, r)
        if kind == "redirect":
            assert r["location"] == "/debug/landed"
        if kind == "content":
            assert r["body"] == f"status {code}\n"
        if kind in ("clientError", "serverError"):
            assert r["nonHtmlBody"] == f"status {code}\n" and r["mimeType"] == "text/plain"


def test_cookies_etags_and_response_headers(tmp_path):
    res, _, _ = run(tmp_path, [
        ALICE,
        {"method": "get", "path": "cookies"},
        {"method": "get", "path": "etag"},
        {"method": "get", "path": "etag", "precondition": {"kind": "matchesNoneOf", "etags": [["abc", False]]}},
        {"method": "get", "path": "etag", "precondition": {"kind": "doesntExist"}},
        {"method": "put", "path": "etag", "precondition": {"kind": "matchesOneOf", "etags": [["zzz", False]]}},
        {"method": "put", "path": "etag", "precondition": {"kind": "exists"}},
        {"method": "get", "path": "html500"},
        {"method": "get", "path": "redirect"},
        {"method": "get", "path": "interim"},
    ], app=hostile_app)
    c = res[1]
    assert c["kind"] == "content" and c["body"] == "cookies set"
    assert c["mimeType"] == "text/plain; charset=utf-8"
    assert c["language"] == "fr" and c["encoding"] == "identity"
    assert c["download"] == "report.txt"
    assert c["etag"] == {"value": "v1", "weak": True}
    assert c["headers"] == [["x-sandstorm-app-note", "kept"]]
    sid, theme = c["cookies"]
    assert sid == {"name": "sid", "value": "abc", "path": "/app", "httpOnly": True, "relative": 60}
    assert theme["name"] == "theme" and not theme["httpOnly"]
    assert theme["absolute"] == calendar.timegm((2037, 10, 21, 7, 28, 0))
    assert res[2]["etag"] == {"value": "abc", "weak": False} and res[2]["body"] == "tagged"
    assert res[3]["kind"] == "preconditionFailed" and res[3]["etag"]["value"] == "abc"
    assert res[4]["kind"] == "preconditionFailed"
    assert res[5]["kind"] == "preconditionFailed"
    assert res[6]["kind"] == "content"
    assert res[7]["kind"] == "serverError"
    assert res[7]["descriptionHtml"] == "<p>broken <b>badly</b></p>"
    assert res[8]["kind"] == "redirect" and res[8]["location"] == "/there?x=1"
    assert res[9]["kind"] == "content" and res[9]["statusCode"] == 1 and res[9]["body"] == "new"


def test_download_names(tmp_path):
    """Content-Disposition's name comes to the platform as UTF-8: filename*=
    first (RFC 6266), in UTF-8 or ISO-8859-1, else filename=, unquoted and
    unescaped; control characters and marks that reorder text dropped; an
    inline disposition is no download."""
    kinds = ["ext", "both", "latin1", "escaped", "control", "othercharset", "inline",
             "inquotes", "prefixed", "c1", "badutf8", "tab", "latin1c1"]
    res, _, _ = run(tmp_path, [ALICE] + [{"method": "get", "path": f"download/{k}"} for k in kinds],
                    app=hostile_app)
    got = {k: r.get("download") for k, r in zip(kinds, res[1:])}
    assert got == {"ext": "résumé v2.pdf", "both": "résumé.pdf", "latin1": "£ rates.txt",
                   "escaped": 'a "b".txt', "control": "abc.txt", "othercharset": "plain.txt",
                   "inline": None,
                   # neither parameter is found inside another's value or name
                   "inquotes": "x filename*=UTF-8''evil.exe", "prefixed": "z.txt",
                   # no C1 controls or reordering marks; invalid UTF-8 is not read
                   "c1": "abgpj.exe", "badutf8": "fallback.txt", "tab": "ab.txt",
                   "latin1c1": "ab.txt"}, got


def test_injection_refused(tmp_path):
    res, ex, _ = run(tmp_path, [
        ALICE,
        {"method": "get", "path": "debug/headers", "cookies": {"a": "1; admin=1"}},
        {"method": "get", "path": "debug/headers", "cookies": {"a=b": "1"}},
        {"method": "get", "path": "debug/headers", "headers": [["X-Requested-With", "a\r\nX-Sandstorm-User-Id: 00"]]},
        {"method": "get", "path": "debug/headers", "headers": [["X-Sandstorm-App-\r\nEvil", "1"]]},
        {"method": "get", "path": "debug/headers HTTP/1.1\r\nX-Evil: 1\r\n\r\nGET /"},
        {"method": "get", "path": "debug/headers", "precondition": {"kind": "matchesOneOf", "etags": [['a"\r\nX: 1', False]]}},
        {"method": "post", "path": "debug/headers", "mimeType": "text/plain\r\nX-Evil: 1", "body": "x"},
        {"method": "copy", "path": "debug/headers", "destination": "a\r\nX-Evil: 1"},
        {"method": "unlock", "path": "debug/headers", "lockToken": "t>\r\nX-Evil: 1"},
        dict(ALICE, displayName="Eve\r\nX-Sandstorm-Permissions: admin"),
        dict(ALICE, basePath="https://a.example\r\nX-Evil: 1"),
        {"method": "get", "path": "debug/headers"},
    ])
    for r in res[1:12]:
        assert "error" in r, r
    _, hs = headers_of(res[12])
    assert ["X-Sandstorm-Username", "Alice%20Smith%20%C3%A9"] in hs
    assert "X-Evil" not in [h[0] for h in hs]


def test_download_100mb_streams_in_little_memory(tmp_path):
    res, _, _ = run(tmp_path, [ALICE, {"method": "get", "path": f"debug/big?bytes={MB100}"},
                               {"method": "rss"}, {"method": "get", "path": "debug/headers"}])
    big = res[1]
    assert big["streamed"] and big["streamDone"], big
    pattern = bytes(ord("a") + i % 26 for i in range(64 * 1024))
    h = hashlib.sha256()
    for _ in range(MB100 // len(pattern)):
        h.update(pattern)
    assert big["bodyBytes"] == MB100 and big["sha256"] == h.hexdigest()
    check_rss(res[2])
    headers_of(res[3])  # the connection is usable afterwards


def test_upload_100mb_streams_in_little_memory(tmp_path):
    res, _, _ = run(tmp_path, [ALICE,
                               {"method": "postStreaming", "path": "debug/upload", "bodyBytes": MB100},
                               {"method": "rss"},
                               {"method": "putStreaming", "path": "debug/upload", "bodyBytes": 70000},
                               {"method": "postStreaming", "path": "debug/headers", "bodyBytes": 10,
                                "mimeType": "text/csv"}])
    up = res[1]
    assert up["kind"] == "content", up
    chunk = bytes(ord("A") + i % 23 for i in range(64 * 1024))
    h = hashlib.sha256()
    for _ in range(MB100 // len(chunk)):
        h.update(chunk)
    assert json.loads(up["body"]) == {"bytes": MB100, "sha256": h.hexdigest()}
    check_rss(res[2])
    assert json.loads(res[3]["body"])["bytes"] == 70000
    seen, hs = headers_of(res[4])
    assert seen["method"] == "POST"
    assert ["Transfer-Encoding", "chunked"] in hs and ["Content-Type", "text/csv"] in hs


def test_websocket_echo(tmp_path):
    long_msg = "x" * 300
    res, _, _ = run(tmp_path, [ALICE,
                               {"method": "websocket", "path": "ws/echo", "send": ["hello", "wörld", long_msg],
                                "protocols": ["chat", "superchat"]},
                               {"method": "websocket", "path": "debug/headers", "send": []},
                               {"method": "get", "path": "debug/headers"}])
    ws = res[1]
    assert "error" not in ws and not ws.get("timeout"), ws
    assert ws["messages"] == ["hello", "wörld", long_msg]
    assert "refused the WebSocket upgrade" in res[2]["error"] and "404" in res[2]["error"]
    headers_of(res[3])


def test_crashing_app(tmp_path):
    res, ex, _ = run(tmp_path, [ALICE, {"method": "get", "path": "debug/headers"},
                                {"method": "get", "path": "debug/crash"}])
    headers_of(res[1])
    assert "error" in res[2]
    assert ex["bridgeExit"] == 128 + 6  # the app's SIGABRT, as the bridge's status


def test_app_that_never_listens(tmp_path):
    res, ex, err = run(tmp_path, [ALICE, {"method": "get", "path": "x"}, {"method": "get", "path": "y"}],
                       argv=["/bin/sleep", "60"],
                       env_extra={"GRANARY_BRIDGE_LISTEN_TIMEOUT_MS": "300"}, timeout=30)
    for r in res[1:]:
        assert "did not listen on 127.0.0.1:" in r["error"] and "within 300 ms" in r["error"], r
    assert ex["bridgeExit"] == 128 + 9  # killed when fd 3 closed


def test_app_exit_status_environment_and_fd3(tmp_path):
    script = ('[ "$BRIDGE_TEST_VAR" = "passed through" ] || exit 4; '
              '[ -e /proc/self/fd/3 ] && exit 3; exit 7')
    _, ex, _ = run(tmp_path, [{"method": "waitExit"}], argv=["/bin/sh", "-c", script],
                   env_extra={"BRIDGE_TEST_VAR": "passed through"})
    assert ex["bridgeExit"] == 7


def test_hostile_app(tmp_path):
    bad = ["badstatus", "hugeheaders", "manyheaders", "badchunk", "crlf", "nul", "nohead", "cut"]
    res, ex, _ = run(tmp_path, [ALICE] + [{"method": "get", "path": p} for p in bad] + [
        {"method": "get", "path": "cutstream"},
        {"method": "get", "path": "unknown-length"},
        {"method": "get", "path": "folded"},
        {"method": "get", "path": "ok"}], app=hostile_app)
    for p, r in zip(bad, res[1:]):
        # Refused before answering, or (a body of unknown length already
        # streaming) the stream dropped without done().
        assert "error" in r or (r.get("streamed") and r.get("streamError")), (p, r)
        assert "evil" not in json.dumps(r.get("cookies", [])), (p, r)
    reasons = {p: r.get("error", "") for p, r in zip(bad, res[1:])}
    assert "too large" in reasons["hugeheaders"]
    assert "too many headers" in reasons["manyheaders"]
    assert "closed the connection without answering" in reasons["nohead"]
    assert "middle of its response" in reasons["cut"]
    assert "not valid HTTP" in reasons["badstatus"] and "not valid HTTP" in reasons["crlf"]
    assert res[4]["streamError"] and res[4]["bodyBytes"] == 0  # badchunk
    cut = res[len(bad) + 1]
    assert cut["streamed"] and not cut["streamDone"] and cut["streamError"], cut
    unk = res[len(bad) + 2]
    assert unk["streamed"] and unk["streamDone"] and unk["bodyBytes"] == 100000
    # An obsolete folded header is one line (RFC 9112 5.2): no cookie is injected.
    folded = res[len(bad) + 3]
    assert folded["cookies"] == [] and folded["headers"] == [["x-sandstorm-app-a", "x Set-Cookie: evil=1"]]
    assert res[-1]["body"] == "fine"
    assert ex["bridgeExit"] == 128 + 9  # still running until fd 3 closed


def test_bodiless_statuses_end_at_their_head(tmp_path):
    """A 204 or 304 ends at its blank line whatever Content-Length or
    Transfer-Encoding it announces, and so does a 1xx (RFC 9112 6.3): the
    call is answered at once (not when the app gives up on the body it
    never sends), the next call goes on a fresh connection, and the bytes
    after a 100 Continue are the real response, not its body."""
    res, _, _ = run(tmp_path, [
        ALICE,
        {"method": "get", "path": "bodiless/304/length"}, {"method": "get", "path": "ok"},
        {"method": "get", "path": "bodiless/204/chunked"}, {"method": "get", "path": "ok"},
        {"method": "get", "path": "interim-length"}], app=hostile_app, timeout=60)
    assert res[1].get("kind") == "preconditionFailed" and res[1]["etag"] == {"value": "abc", "weak": False}, res[1]
    assert res[2]["body"] == "fine", res[2]
    assert res[3].get("kind") == "noContent", res[3]
    assert res[4]["body"] == "fine", res[4]
    assert res[5]["kind"] == "content" and res[5]["body"] == "ok", res[5]


def test_announced_body_that_cannot_follow_closes_the_connection(tmp_path):
    """A HEAD answer (or a 204 or 304) whose head announces a body ends at
    its head; a body the app sends anyway must not become the answer to the
    next call, so such a connection is not reused."""
    res, _, _ = run(tmp_path, [ALICE, {"method": "get", "path": "late-head-body", "ignoreBody": True},
                               {"method": "get", "path": "ok"}], app=hostile_app, timeout=60)
    assert res[1].get("kind") == "content" and res[1]["bodyBytes"] == 0, res[1]
    assert res[2].get("body") == "fine" and res[2]["cookies"] == [], res[2]


def test_trailers_are_not_headers(tmp_path):
    """Fields in a chunked body's trailer section are not merged into the
    response (RFC 9110 6.5.1): no cookie, header or Location comes from
    them, even for a response answered only at the end of its body."""
    res, _, _ = run(tmp_path, [ALICE, {"method": "get", "path": "trailers"},
                               {"method": "get", "path": "ok"}], app=hostile_app)
    assert res[1]["kind"] == "serverError" and res[1]["nonHtmlBody"] == "fail", res[1]
    assert res[1]["cookies"] == [] and res[1]["headers"] == [], res[1]
    assert res[2]["body"] == "fine"


def test_unread_request_body_cannot_smuggle_a_request(tmp_path):
    """An app that answers a POST without reading its body leaves the body
    in the connection, where it would be read as the next request: a user
    could forge X-Sandstorm-* headers and capture the next user's request.
    A connection that carried a request body is therefore never reused."""
    smuggled = ("POST /smuggled HTTP/1.1\r\nX-Sandstorm-Username: Admin\r\n"
                "Content-Length: 100\r\n\r\n")
    res, _, _ = run(tmp_path, [ALICE, {"method": "post", "path": "early-answer", "body": smuggled},
                               {"method": "session", "displayName": "Bob"},
                               {"method": "get", "path": "whoami"}], app=hostile_app, timeout=60)
    assert res[1]["kind"] == "clientError", res[1]
    assert res[3].get("body") == "/whoami for Bob", res[3]


def test_tiny_chunks_stream_whole(tmp_path):
    """A body of a million one-byte chunks streams whole: what one read
    from the app brings goes to the platform as one write, not one per
    chunk (which went past the connection's 10000 unanswered calls and cut
    the body, and every other stream of the grain with it)."""
    res, _, log = run(tmp_path, [ALICE, {"method": "get", "path": "tinychunks"}, {"method": "rss"},
                                 {"method": "get", "path": "ok"}], app=hostile_app, timeout=120)
    assert res[1]["streamDone"] and res[1]["bodyBytes"] == 1 << 20, \
        ({k: v for k, v in res[1].items() if k != "body"}, log[-2000:])
    assert res[1]["sha256"] == hashlib.sha256(b"z" * (1 << 20)).hexdigest()
    check_rss(res[2])
    assert res[3]["body"] == "fine"


def test_keep_alive_pool(tmp_path):
    """Calls one after another share one kept-alive connection; one the app
    closed while idle is not used again (or is retried once, fresh)."""
    ka = {"method": "get", "path": "keepalive"}
    res, _, _ = run(tmp_path, [ALICE, ka, ka, ka, dict(ka, path="keepalive?close=1"), ka, ka, ka,
                               dict(ka, path="keepalive?dropnext=1"), ka, ka],
                    app=hostile_app, timeout=60)
    bodies = [r["body"] for r in res[1:]]
    # The first connection is the bridge's probe of the app (never used for
    # a request, so the app counts it when its first request arrives).
    first = bodies[0].split()[1]
    assert bodies[:4] == [f"conn {first} req {i}" for i in (1, 2, 3, 4)]
    second = bodies[4].split()[1]
    assert second != first and bodies[4:6] == [f"conn {second} req 1", f"conn {second} req 2"]
    assert bodies[6] == f"conn {second} req 3"
    # The app hangs up on the next request unanswered: it goes again, on a
    # fresh connection, and that one is kept.
    assert bodies[7] == f"conn {second} req 4"
    third = bodies[8].split()[1]
    assert third not in (first, second)
    assert bodies[8:] == [f"conn {third} req 1", f"conn {third} req 2"]


def test_canceled_call_hangs_up_on_the_app(tmp_path):
    res, _, _ = run(tmp_path, [ALICE, {"method": "get", "path": "hang", "cancelAfterMs": 300},
                               {"method": "get", "path": "hungup"}, {"method": "get", "path": "ok"}],
                    app=hostile_app, timeout=60)
    assert res[1]["canceled"]
    assert res[2]["body"] == "closed"
    assert res[3]["body"] == "fine"


def test_dropped_body_handle_stops_the_download(tmp_path):
    """The platform drops content.body.stream's Handle mid-body (the browser
    went away): the bridge hangs up on the app and serves the next call."""
    res, _, log = run(tmp_path, [ALICE,
                                 {"method": "get", "path": f"debug/big?bytes={MB100}",
                                  "dropHandleAfterBytes": 1 << 20},
                               {"method": "get", "path": "debug/headers"}, {"method": "rss"}])
    assert res[1]["handleDropped"] and res[1]["bodyBytes"] < MB100
    assert "the platform dropped the response body's handle" in log
    headers_of(res[2])
    check_rss(res[3])


def test_malformed_config_stops_the_bridge(tmp_path):
    bad = tmp_path / "bad-config"
    bad.write_bytes(b"\xff\xff\xff\x7fnot a capnp message")
    res, ex, log = run(tmp_path, [{"method": "viewinfo"}], config=str(bad), timeout=30)
    assert ex["bridgeExit"] != 0
    assert f"config {bad}" in log
    assert "error" in res[0]


def test_websocket_handshake_checked(tmp_path):
    res, _, _ = run(tmp_path, [ALICE, {"method": "websocket", "path": "ws-badaccept", "send": []},
                               {"method": "get", "path": "ok"}], app=hostile_app)
    assert "Sec-WebSocket-Accept does not answer" in res[1]["error"]
    assert res[2]["body"] == "fine"


def test_download_paced_by_a_slow_reader(tmp_path):
    """The platform returns each ByteStream.write only after the previous one
    (as the gateway does, at the browser's pace): the bridge waits for its
    window rather than buffering, and the body arrives whole."""
    size = 10 * 1024 * 1024
    res, _, _ = run(tmp_path, [ALICE, {"method": "get", "path": f"debug/big?bytes={size}",
                                       "slowSinkMs": 1}, {"method": "rss"}])
    assert res[1]["streamDone"] and res[1]["bodyBytes"] == size
    check_rss(res[2])


def test_the_app_api_socket(tmp_path):
    """The app reaches the platform through the bridge's API socket:
    SandstormHttpBridge.getSandstormApi() gives the platform's SandstormApi
    (stayAwake crosses to the platform, and the handle goes back when the
    app drops it); getSessionContext(X-Sandstorm-Session-Id) gives the
    context the platform passed to newSession, calls on it reach the
    platform, and it is released with its session; a session without one,
    or an id no session has, is refused with the reason."""
    events = []
    res, _, err = run(tmp_path, [
        dict(ALICE, context=True),
        {"method": "get", "path": "debug/stay-awake?ms=200"},
        {"method": "sleep", "ms": 600},
        {"method": "get", "path": "debug/activity"},
        {"method": "session", "displayName": "Bob"},
        {"method": "sleep", "ms": 200},
        {"method": "get", "path": "debug/activity"},
        {"method": "get", "path": "debug/activity?session=99"},
    ], events=events)
    assert res[1]["kind"] == "content" and res[1]["body"] == "kept awake for 200 ms\n", res[1]
    assert res[3]["kind"] == "content" and res[3]["body"] == "activity posted\n", res[3]
    assert res[6]["kind"] == "serverError", res[6]
    assert "the platform gave session 2 no context" in res[6]["nonHtmlBody"], res[6]
    assert res[7]["kind"] == "serverError", res[7]
    assert 'no session has the id "99"' in res[7]["nonHtmlBody"], res[7]
    assert [e["event"] for e in events] == ["stayAwake", "handleDropped", "activity",
                                            "contextDropped"], events
    assert events[0] == {"event": "stayAwake", "caption": "a test asked notes to stay awake",
                         "notification": True}
    assert events[2]["path"] == "debug/activity"


def test_without_its_api_socket_the_app_still_runs(tmp_path):
    """A bridge that cannot make the API socket says why and serves the app;
    the app's calls to the platform fail with the reason."""
    res, _, err = run(tmp_path, [
        ALICE,
        {"method": "get", "path": "debug/status/200"},
        {"method": "get", "path": "debug/stay-awake?ms=10"},
    ], env_extra={"GRANARY_BRIDGE_API_SOCKET": str(tmp_path / "no" / "such" / "dir" / "api"),
                  "NOTES_API_SOCKET": str(tmp_path / "no" / "such" / "dir" / "api")})
    assert "the app runs without it" in err and "no/such/dir/api" in err, err
    assert res[1]["kind"] == "content" and res[1]["body"] == "status 200\n", res[1]
    assert res[2]["kind"] == "serverError" and "the API socket" in res[2]["nonHtmlBody"], res[2]
