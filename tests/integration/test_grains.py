"""Apps and grains through the real daemon, sandbox, bridge and notes app:
install, create, open at a fresh origin, use, idle stop and restart with the
data kept, crashes, and every refusal a stranger or a hostile page meets."""
import json
import os
import re
import socket
import time

import pytest

from granary_testing import (ADMIN, BASE_HOST, Client, Daemon, built, setup_link_from_log,
                             slow_upload)


def notes_spk():
    return built("apps", "notes", "notes.spk")


class Grains:
    """A daemon with an administrator, the notes app installed, and helpers
    to open grains as a browser would."""

    def __init__(self, tmp_path, idle=120, bridge=None, https=False, extra_args=()):
        extra = ("--grain-idle-seconds", str(idle),
                 "--log-level", os.environ.get("GRANARY_TEST_LOG", "info"), *extra_args)
        if bridge:  # a program to run in the bridge's place
            extra += ("--bridge", bridge)
        shell = BASE_HOST
        if https:  # behind a proxy that speaks https to browsers
            shell = "granary.test"
            extra += ("--base-url", "https://granary.test", "--wildcard-host", "*.granary.test")
        self.d = Daemon(tmp_path / "var", extra_args=extra)
        token = setup_link_from_log(self.d.read_log()).split("#token=")[1]
        self.admin = Client(self.d, host=shell, https=https)
        status, body, _ = self.admin.post("/api/setup", dict(ADMIN, token=token))
        assert status == 201, body
        with open(notes_spk(), "rb") as f:
            self.spk = f.read()
        status, body, _ = self.upload(self.admin, self.spk)
        assert status == 201, body
        self.package_id = body["package_id"]

    def upload(self, client, data):
        return client.call("POST", "/api/apps", raw=data,
                           headers={"Content-Type": "application/octet-stream"})

    def new_grain(self, client=None, title=None):
        client = client or self.admin
        body = {"package_id": self.package_id}
        if title:
            body["title"] = title
        status, out, _ = client.post("/api/grains", body)
        assert status == 201, out
        return out["grain"]["id"]

    def open(self, gid, client=None):
        """Opens the grain; returns (host, cookie header) of its new origin."""
        client = client or self.admin
        status, out, _ = client.post(f"/api/grains/{gid}/open", {"path": "/"})
        assert status == 200, out
        host, path = re.match(r"https?://([^/]+)(/.*)", out["url"]).groups()
        resp, _ = self.d.request("GET", path, host=host)
        assert resp.status == 303, resp.status
        cookie = resp.getheader("Set-Cookie").split(";")[0]
        return host, cookie

    def get(self, host, cookie, path, method="GET", body=None, headers=None):
        h = {"Cookie": cookie}
        h.update(headers or {})
        return self.d.request(method, path, host=host, body=body, headers=h)

    def stop(self):
        code, log = self.d.stop()
        assert code == 0, log
        assert "Sanitizer" not in log and "runtime error" not in log, log


@pytest.fixture
def grains(tmp_path):
    g = Grains(tmp_path)
    yield g
    g.stop()


def test_install_lists_the_app_and_its_action(grains):
    status, body, _ = grains.admin.get("/api/apps")
    assert status == 200
    [app] = body["apps"]
    assert app["title"] == "Notes" and app["version"] == 1
    assert app["actions"] == [{"index": 0, "title": "New note", "noun": "note"}]
    assert app["icon"] == f"/api/apps/{app['package_id']}/icon"
    resp, body = grains.d.request("GET", app["icon"],
                                  headers={"Cookie": f"granary_session={grains.admin.cookie}"})
    assert resp.status == 200 and resp.getheader("Content-Type") == "image/svg+xml"
    assert body.startswith(b"<svg")
    assert resp.getheader("Content-Security-Policy").startswith("default-src 'none'")
    for bad in ("/api/apps/../icon", "/api/apps/" + "0" * 32 + "/icon", "/api/apps/xyz/icon"):
        resp, _ = grains.d.request("GET", bad,
                                   headers={"Cookie": f"granary_session={grains.admin.cookie}"})
        assert resp.status == 404, bad
    assert grains.d.request("GET", app["icon"])[0].status == 401
    # The same package again is a no-op.
    status, body, _ = grains.upload(grains.admin, grains.spk)
    assert status == 200 and body["status"] == "already installed"


def test_bad_uploads_install_nothing(grains, tmp_path):
    for data, message in ((b"not a package", "magic"), (grains.spk[:-100], "")):
        status, body, _ = grains.upload(grains.admin, data)
        assert status == 400, body
        assert message in body["error"]
    status, body, _ = grains.admin.get("/api/apps")
    assert len(body["apps"]) == 1
    assert os.listdir(tmp_path / "var" / "tmp") == []  # no upload left behind


def test_a_grain_serves_the_app_through_the_bridge(grains):
    gid = grains.new_grain()
    host, cookie = grains.open(gid)
    assert re.fullmatch(r"ui-[0-9a-f]{32}\.granary\.localhost:6080", host)
    resp, body = grains.get(host, cookie, "/")
    assert resp.status == 200, body
    assert b"<title>Notes</title>" in body and b'data-can-write="true"' in body
    csp = resp.getheader("Content-Security-Policy")
    assert "default-src 'none'" in csp and "frame-ancestors http://granary.localhost:6080" in csp
    assert resp.getheader("X-Content-Type-Options") == "nosniff"
    assert resp.getheader("Referrer-Policy") == "same-origin"
    assert resp.getheader("Server") is None  # nothing that names the software
    # Write, read back, and see the ETag round trip.
    resp, body = grains.get(host, cookie, "/api/note", "PUT", b"hello from the test")
    assert resp.status == 200, body
    resp, body = grains.get(host, cookie, "/api/note")
    assert json.loads(body)["text"] == "hello from the test"
    etag = resp.getheader("ETag")
    resp, body = grains.get(host, cookie, "/api/note", headers={"If-None-Match": etag})
    assert resp.status == 304


def test_small_bodies_carry_their_length(grains):
    # A body that came whole in the WebSession answer goes out with
    # Content-Length, not chunked; HEAD and 204 say no length of their own.
    gid = grains.new_grain()
    host, cookie = grains.open(gid)
    resp, body = grains.get(host, cookie, "/debug/status/200")
    assert resp.status == 200 and body == b"status 200\n"
    assert resp.getheader("Content-Length") == str(len(body))
    assert resp.getheader("Transfer-Encoding") is None
    resp, body = grains.get(host, cookie, "/debug/status/404")
    assert resp.status == 404 and resp.getheader("Content-Length") == str(len(body))
    resp, body = grains.get(host, cookie, "/debug/status/200", method="HEAD")
    assert resp.status == 200 and body == b""
    assert resp.getheader("Content-Length") in (None, str(len(b"status 200\n")))
    resp, body = grains.get(host, cookie, "/debug/status/204")
    assert resp.status == 204 and body == b"" and resp.getheader("Content-Length") is None


def test_view_info_comes_from_the_grain(grains):
    gid = grains.new_grain()
    status, body, _ = grains.admin.get(f"/api/grains/{gid}/view-info")
    assert status == 200, body
    assert [p["name"] for p in body["permissions"]] == ["read", "write"]
    assert [r["title"] for r in body["roles"]] == ["editor", "viewer"]
    assert body["roles"][1]["permissions"] == [True, False]
    assert f"grain {gid}: started" in grains.d.read_log()  # asked of the running grain
    assert Client(grains.d).get(f"/api/grains/{gid}/view-info")[0] == 401


def test_headers_the_app_sees(grains):
    gid = grains.new_grain()
    host, cookie = grains.open(gid)
    resp, body = grains.get(host, cookie, "/debug/headers",
                            headers={"Cookie": cookie + "; theme=dark",
                                     "Accept": "text/html, application/json;q=0.5",
                                     "Accept-Encoding": "gzip;q=0.8, br",
                                     "X-Requested-With": "XMLHttpRequest", "X-Evil": "1"})
    assert resp.status == 200, body
    seen = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert seen["x-sandstorm-username"] == "Ada%20Admin"
    assert seen["x-sandstorm-permissions"] == "read,write"
    assert re.fullmatch(r"[0-9a-f]{32}", seen["x-sandstorm-user-id"])
    assert re.fullmatch(r"[0-9a-f]{32}", seen["x-sandstorm-tab-id"])
    assert seen["x-sandstorm-base-path"] == f"http://{host}"
    assert seen["host"] == host
    assert seen["x-requested-with"] == "XMLHttpRequest"
    assert "x-evil" not in seen  # not whitelisted
    assert "text/html" in seen["accept"] and "application/json;q=0.5" in seen["accept"]
    assert "gzip;q=0.8" in seen["accept-encoding"] and "br" in seen["accept-encoding"]
    assert "theme=dark" in seen["cookie"]
    assert "granary_grain" not in seen.get("cookie", "")  # the platform's cookie stays home


def test_over_https_the_origin_cookie_has_the_host_prefix(tmp_path):
    """Behind an https base URL an origin's cookie is __Host-granary_grain:
    browsers refuse a cookie of that name that a grain's page sets for the
    parent domain, so no page can plant its own session's cookie where
    another origin's browser would carry it into the planter's session."""
    g = Grains(tmp_path, https=True)
    try:
        gid = g.new_grain()
        status, out, _ = g.admin.post(f"/api/grains/{gid}/open", {"path": "/"})
        host, path = re.match(r"https://([^/]+)(/.*)", out["url"]).groups()
        resp, _ = g.d.request("GET", path, host=host)
        set_cookie = resp.getheader("Set-Cookie")
        assert set_cookie.startswith("__Host-granary_grain="), set_cookie
        assert "; Path=/" in set_cookie and "Secure" in set_cookie and "Domain" not in set_cookie
        secret = set_cookie.split(";")[0].split("=", 1)[1]
        resp, body = g.get(host, f"__Host-granary_grain={secret}; granary_grain=x; theme=dark",
                           "/debug/headers", headers={"Origin": f"https://{host}"})
        assert resp.status == 200, body
        seen = {k.lower(): v for k, v in json.loads(body)["headers"]}
        assert seen["cookie"] == "theme=dark"  # neither name of the platform's cookie
        # The name without the prefix is anyone's over https: not a way in.
        resp, _ = g.get(host, f"granary_grain={secret}", "/debug/headers")
        assert resp.status == 403
    finally:
        g.stop()


def test_the_same_user_has_a_stable_id_per_grain(grains):
    a, b = grains.new_grain(), grains.new_grain()
    ids = []
    for gid in (a, a, b):
        host, cookie = grains.open(gid)
        _, body = grains.get(host, cookie, "/debug/headers")
        ids.append({k.lower(): v for k, v in json.loads(body)["headers"]}["x-sandstorm-user-id"])
    assert ids[0] == ids[1] != ids[2]


def test_origin_cookie_and_init_link_are_checked(grains):
    gid = grains.new_grain()
    status, out, _ = grains.admin.post(f"/api/grains/{gid}/open", {})
    host, path = re.match(r"http://([^/]+)(/.*)", out["url"]).groups()
    resp, _ = grains.d.request("GET", path, host=host)
    cookie = resp.getheader("Set-Cookie").split(";")[0]
    resp, _ = grains.d.request("GET", path, host=host)
    assert resp.status == 403  # the init link works once
    resp, _ = grains.d.request("GET", "/", host=host)
    assert resp.status == 403  # no cookie
    resp, _ = grains.d.request("GET", "/", host=host, headers={"Cookie": "granary_grain=" + "0" * 64})
    assert resp.status == 403
    other_host, other_cookie = grains.open(gid)
    resp, _ = grains.get(host, other_cookie, "/")
    assert resp.status == 403  # one origin's cookie does not open another
    resp, _ = grains.get(host, cookie, "/api/note", "PUT", b"x",
                         headers={"Origin": "http://evil.example"})
    assert resp.status == 403
    resp, _ = grains.get(host, cookie, "/")
    assert resp.status == 200
    resp, _ = grains.d.request("GET", "/", host="ui-" + "0" * 32 + ".granary.localhost:6080")
    assert resp.status == 404


def test_many_sessions_each_find_their_origin_and_one_account_is_capped(grains):
    """Sessions are found by label in a table that grows past its first 64
    slots; one account keeps at most 256, losing the least recently used."""
    gid = grains.new_grain()
    opened = [grains.open(gid) for _ in range(256)]
    for host, cookie in opened[::15] + opened[-3:]:
        resp, _ = grains.get(host, cookie, "/debug/status/200")
        assert resp.status == 200, host
    # opened[1] is now the least recently used (opened[0] was just used).
    newest = grains.open(gid)  # the 257th: opened[1]'s origin closes
    resp, body = grains.get(*opened[1], "/debug/status/200")
    assert resp.status == 404 and b"No grain session is open" in body
    for host, cookie in (opened[0], opened[2], newest):
        resp, _ = grains.get(host, cookie, "/debug/status/200")
        assert resp.status == 200, host


def test_strangers_cannot_see_or_open_a_grain(grains):
    gid = grains.new_grain(title="Private plans")
    status, _, _ = grains.admin.post("/api/admin/accounts", {
        "email": "eve@example.com", "name": "Eve", "password": "eve's password"})
    assert status == 201
    eve = Client(grains.d)
    assert eve.post("/api/login", {"email": "eve@example.com", "password": "eve's password"})[0] == 200
    status, body, _ = eve.get("/api/grains")
    assert body["grains"] == []
    for verb in ("open", "rename", "trash", "restore", "delete"):
        status, body, _ = eve.post(f"/api/grains/{gid}/{verb}", {"title": "mine now"})
        assert status == 404 and body["error"] == "no such grain", verb
    assert eve.get(f"/api/grains/{gid}/log")[0] == 404
    status, body, _ = grains.upload(eve, grains.spk)
    assert status == 403  # only administrators install
    assert grains.admin.get("/api/grains")[1]["grains"][0]["title"] == "Private plans"
    anon = Client(grains.d)
    assert anon.get("/api/grains")[0] == 401
    assert anon.post(f"/api/grains/{gid}/open", {})[0] == 401


def test_rename_trash_restore_delete(grains, tmp_path):
    gid = grains.new_grain()
    host, cookie = grains.open(gid)
    assert grains.get(host, cookie, "/")[0].status == 200
    assert grains.admin.post(f"/api/grains/{gid}/rename", {"title": "Shopping"})[0] == 200
    assert grains.admin.post(f"/api/grains/{gid}/rename", {"title": ""})[0] == 400
    status, body, _ = grains.admin.post(f"/api/grains/{gid}/delete", {})
    assert status == 409  # only from the trash
    assert grains.admin.post(f"/api/grains/{gid}/trash", {})[0] == 200
    [g] = grains.admin.get("/api/grains")[1]["grains"]
    assert g["title"] == "Shopping" and g["trashed"] is True and g["running"] is False
    assert grains.get(host, cookie, "/")[0].status == 404  # its sessions are gone
    assert grains.admin.post(f"/api/grains/{gid}/open", {})[0] == 409
    assert grains.admin.post(f"/api/grains/{gid}/restore", {})[0] == 200
    host, cookie = grains.open(gid)
    assert grains.get(host, cookie, "/")[0].status == 200
    assert grains.admin.post(f"/api/grains/{gid}/trash", {})[0] == 200
    assert grains.admin.post(f"/api/grains/{gid}/delete", {})[0] == 200
    assert grains.admin.get("/api/grains")[1]["grains"] == []
    assert not os.path.exists(tmp_path / "var" / "grains" / gid)
    # A deleted grain is gone for every call.
    for verb in ("open", "rename", "restore", "keepalive"):
        status, body, _ = grains.admin.post(f"/api/grains/{gid}/{verb}", {"title": "x"})
        assert status == 404 and body["error"] == "no such grain", verb


def test_grain_api_refuses_bad_bodies(grains):
    gid = grains.new_grain()
    for path in ("/api/grains", f"/api/grains/{gid}/rename"):
        for raw, want in ((b"{not json", 400), (b"[]", 400), (b"x" * 100000, 413)):
            status, body, _ = grains.admin.post(path, raw=raw)
            assert status == want, (path, raw[:10], body)
    status, body, _ = grains.admin.post("/api/grains", {"package_id": "nope"})
    assert status == 404 and body["error"] == "no such app is installed"
    status, body, _ = grains.admin.post("/api/grains", {"package_id": grains.package_id, "action": 7})
    assert status == 400 and body["error"] == "the app has no such action"
    for title in ("bell\x07", "esc\x1b[31mred", "del\x7f"):
        status, body, _ = grains.admin.post("/api/grains", {"package_id": grains.package_id,
                                                            "title": title})
        assert status == 400 and "control characters" in body["error"], title
        status, body, _ = grains.admin.post(f"/api/grains/{gid}/rename", {"title": title})
        assert status == 400 and "control characters" in body["error"], title
    status, body, _ = grains.admin.post("/api/grains", {"package_id": grains.package_id,
                                                        "title": "a" * 300})
    assert status == 400
    for bad in ("short", "x" * 22 + "/../x", "%2e%2e", "a" * 23):
        status, _, _ = grains.admin.post(f"/api/grains/{bad}/open", {})
        assert status == 404, bad
    status, _, _ = grains.admin.post(f"/api/grains/{gid}/frobnicate", {})
    assert status == 404


def test_size_and_keepalive(tmp_path):
    # Keep-alives every 0.5 s for 4 s, two idle periods of 2 s: a slow
    # machine has 1.5 s of slack between two of them.
    g = Grains(tmp_path, idle=2)
    try:
        gid = g.new_grain()
        host, cookie = g.open(gid)
        g.get(host, cookie, "/api/note", "PUT", b"n" * 50000)
        [row] = g.admin.get("/api/grains")[1]["grains"]
        assert row["size_bytes"] >= 50000
        # An open view's keep-alive holds off the idle stop.
        for _ in range(8):
            time.sleep(0.5)
            status, body, _ = g.admin.post(f"/api/grains/{gid}/keepalive", {})
            assert status == 200 and body["running"] is True
        assert f"grain {gid}: idle" not in g.d.read_log()
        # The view's own origin stayed open too (sessions drop after three
        # idle periods without a request or a keep-alive).
        assert g.get(host, cookie, "/api/note")[0].status == 200
    finally:
        g.stop()


def test_the_log_holds_the_apps_output(grains):
    gid = grains.new_grain()
    host, cookie = grains.open(gid)
    grains.get(host, cookie, "/")
    deadline = time.time() + 10
    while True:
        resp, body = grains.d.request("GET", f"/api/grains/{gid}/log",
                                      headers={"Cookie": f"granary_session={grains.admin.cookie}"})
        if b"notes: serving" in body or time.time() > deadline:
            break
        time.sleep(0.1)
    assert resp.status == 200 and b"notes: serving /var/note.txt" in body


def note_once_served(grains, host, cookie):
    """GET /api/note until the grain serves it (it restarts after a crash)."""
    deadline = time.time() + 20
    while True:
        resp, body = grains.get(host, cookie, "/api/note")
        if resp.status == 200 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert resp.status == 200, body
    return resp, body


def test_a_crashing_app_restarts_on_the_next_request(grains):
    gid = grains.new_grain()
    host, cookie = grains.open(gid)
    grains.get(host, cookie, "/api/note", "PUT", b"survives crashes")
    resp, body = grains.get(host, cookie, "/debug/crash")
    assert resp.status == 502, body
    assert b"did not answer" in body
    resp, body = note_once_served(grains, host, cookie)
    assert json.loads(body)["text"] == "survives crashes"


def test_an_app_crashing_at_every_start_is_held_back(grains):
    """Crash after crash soon after starting, the grain waits before it is
    started again (1 s after the third, then 2, 4...): a broken app cannot
    make every request cost a sandbox start. The wait is said once, in the
    log, and on the error page."""
    gid = grains.new_grain()
    host, cookie = grains.open(gid)
    for n in range(3):
        deadline = time.time() + 20
        while True:  # the grain (re)starts, then crashes
            resp, body = grains.get(host, cookie, "/debug/crash")
            if resp.status == 502 or time.time() > deadline:
                break
            time.sleep(0.05)
        assert resp.status == 502, (n, body)
        deadline = time.time() + 20
        while f"grain {gid}: exited unexpectedly" not in grains.d.read_log()[-2000:] and \
                time.time() < deadline:
            time.sleep(0.05)
    log = grains.d.read_log()
    deadline = time.time() + 20
    while "the 3rd time in a row soon after starting" not in log and time.time() < deadline:
        time.sleep(0.05)
        log = grains.d.read_log()
    assert (f"grain {gid}: exited unexpectedly with status") in log
    assert "the 3rd time in a row soon after starting; it is not started again for 1 s" in log, log
    resp, body = grains.get(host, cookie, "/api/note")
    if resp.status == 503:  # within the second
        assert b"its app crashed 3 times in a row soon after starting" in body, body
    # Then it starts again, and serves.
    resp, body = note_once_served(grains, host, cookie)


def test_idle_grains_stop_and_come_back_with_their_data(tmp_path):
    # Idle periods of 2 s: the grain stops 2 to 4 s after the PUT, while the
    # session (closed after three idle periods, 6 s) is still open, with room
    # to spare on a slow machine.
    g = Grains(tmp_path, idle=2)
    try:
        gid = g.new_grain()
        host, cookie = g.open(gid)
        assert g.get(host, cookie, "/api/note", "PUT", b"written before the stop")[0].status == 200
        deadline = time.time() + 20
        while "stopping it" not in g.d.read_log() and time.time() < deadline:
            time.sleep(0.1)
        assert f"grain {gid}: idle" in g.d.read_log()
        while g.admin.get("/api/grains")[1]["grains"][0]["running"] and time.time() < deadline:
            time.sleep(0.1)
        assert g.admin.get("/api/grains")[1]["grains"][0]["running"] is False
        resp, body = g.get(host, cookie, "/api/note")
        assert resp.status == 200, body
        assert json.loads(body)["text"] == "written before the stop"
        assert g.d.read_log().count(f"grain {gid}: started") == 2
    finally:
        g.stop()


def test_an_app_holding_a_wake_lock_is_not_stopped_for_being_idle(tmp_path):
    # The app calls, on its API socket /tmp/sandstorm-api in the grain,
    # SandstormHttpBridge.getSandstormApi() and on that SandstormApi.stayAwake():
    # the call crosses the bridge and fd 3 to the platform, and the handle
    # it returns keeps the grain running until the app drops it.
    g = Grains(tmp_path, idle=1)
    try:
        gid = g.new_grain()
        host, cookie = g.open(gid)
        resp, body = g.get(host, cookie, "/debug/stay-awake?ms=4000")
        assert resp.status == 200, body
        assert body == b"kept awake for 4000 ms\n"
        took = time.time()
        assert f'grain {gid}: kept awake for "a test asked notes to stay awake"' in g.d.read_log()
        # Three idle periods without a request: the lock holds it.
        time.sleep(3)
        log = g.d.read_log()
        assert f"grain {gid}: idle" not in log, log
        [row] = g.admin.get("/api/grains")[1]["grains"]
        assert row["running"] is True
        assert row["kept_awake"] == ["a test asked notes to stay awake"], row
        # Once the app drops the handle (after 4 s), the grain goes idle.
        deadline = time.time() + 20
        while f"grain {gid}: idle" not in g.d.read_log() and time.time() < deadline:
            time.sleep(0.1)
        log = g.d.read_log()
        assert (f'grain {gid}: no longer kept awake for "a test asked notes to stay awake" '
                "(the app dropped it)") in log
        assert f"grain {gid}: idle" in log, log
        assert time.time() - took >= 4
        assert log.index("no longer kept awake") < log.index(f"grain {gid}: idle")
        assert "kept_awake" not in g.admin.get("/api/grains")[1]["grains"][0]
    finally:
        g.stop()


def test_the_owner_lets_a_grain_kept_awake_sleep(tmp_path):
    g = Grains(tmp_path, idle=1)
    try:
        gid = g.new_grain()
        host, cookie = g.open(gid)
        resp, body = g.get(host, cookie, "/debug/stay-awake?ms=600000")
        assert resp.status == 200, body
        # Nobody but the owner may.
        assert g.admin.post("/api/admin/accounts", {"name": "Eve", "email": "eve@example.com",
                                                    "password": "eve's password"})[0] == 201
        eve = Client(g.d)
        assert eve.post("/api/login", {"email": "eve@example.com",
                                       "password": "eve's password"})[0] == 200
        assert eve.post(f"/api/grains/{gid}/let-sleep", {})[0] == 404
        time.sleep(2)
        assert f"grain {gid}: idle" not in g.d.read_log()
        status, body, _ = g.admin.post(f"/api/grains/{gid}/let-sleep", {})
        assert status == 200 and body == {"cancelled": 1}, body
        # An app that takes a wake lock again at once gets none, until the
        # grain's next start.
        resp, body = g.get(host, cookie, "/debug/stay-awake?ms=600000")
        assert resp.status == 500, body
        assert b"the grain's owner let it sleep" in body, body
        deadline = time.time() + 20
        while f"grain {gid}: idle" not in g.d.read_log() and time.time() < deadline:
            time.sleep(0.1)
        log = g.d.read_log()
        assert (f'grain {gid}: no longer kept awake for "a test asked notes to stay awake" '
                "(its owner let it sleep)") in log, log
        assert f"grain {gid}: idle" in log, log
        # The app was told, through its OngoingNotification.
        resp, text = g.d.request("GET", f"/api/grains/{gid}/log",
                                 headers={"Cookie": f"granary_session={g.admin.cookie}"})
        assert b"notes: the platform cancelled the wake lock" in text, text
        # Nothing left to cancel.
        assert g.admin.post(f"/api/grains/{gid}/let-sleep", {})[1] == {"cancelled": 0}
    finally:
        g.stop()


def test_an_app_cannot_take_more_than_64_wake_locks(tmp_path):
    g = Grains(tmp_path, idle=1)
    try:
        gid = g.new_grain()
        host, cookie = g.open(gid)
        resp, body = g.get(host, cookie, "/debug/stay-awake?ms=600000&count=65")
        assert resp.status == 500, body  # the app's 502: a WebSession serverError
        assert (b"64 of 65 stayAwake calls succeeded; the first failure: "
                b"a grain may hold at most 64 stayAwake handles") in body, body
        # Only the first 16 are logged at info: a looping app cannot flood the log.
        log = g.d.read_log()
        assert log.count(f"grain {gid}: kept awake for ") == 16, log
        assert "(further wake locks are logged at debug)" in log
        # The app let go of all of them; the grain sleeps as usual.
        deadline = time.time() + 20
        while f"grain {gid}: idle" not in g.d.read_log() and time.time() < deadline:
            time.sleep(0.1)
        assert f"grain {gid}: idle" in g.d.read_log()
        # 64 are allowed; the list shows the first 8 captions.
        resp, body = g.get(host, cookie, "/debug/stay-awake?ms=600000&count=64")
        assert resp.status == 200, body
        [row] = g.admin.get("/api/grains")[1]["grains"]
        assert row["kept_awake"] == ["a test asked notes to stay awake"] * 8, row
        assert g.admin.post(f"/api/grains/{gid}/let-sleep", {})[1] == {"cancelled": 64}
    finally:
        g.stop()


def test_websocket_through_the_platform(grains):
    import websocket
    gid = grains.new_grain()
    host, cookie = grains.open(gid)
    ws = websocket.create_connection(f"ws://127.0.0.1:{grains.d.port}/ws/echo", host=host,
                                     cookie=cookie, origin=f"http://{host}", timeout=20)
    ws.send("hello through the grain")
    assert ws.recv() == "hello through the grain"
    payload = os.urandom(300000)
    ws.send_binary(payload)
    assert ws.recv() == payload
    ws.close()
    # The live view: a change made over HTTP is pushed to an open socket.
    live = websocket.create_connection(f"ws://127.0.0.1:{grains.d.port}/ws/live", host=host,
                                       cookie=cookie, origin=f"http://{host}", timeout=20)
    time.sleep(0.2)
    assert grains.get(host, cookie, "/api/note", "PUT", b"pushed")[0].status == 200
    assert json.loads(live.recv())["text"] == "pushed"
    live.close()
    # Without the origin's cookie there is no socket.
    with pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection(f"ws://127.0.0.1:{grains.d.port}/ws/echo", host=host,
                                    timeout=20)


def test_a_websocket_the_app_refuses(grains):
    """The bridge refuses an upgrade whose headers it cannot carry (an ETag
    with a backslash) and lets go of the gateway's stream as it answers:
    the browser gets a 502, and the gateway (ASan build) uses nothing freed."""
    gid = grains.new_grain()
    host, cookie = grains.open(gid)
    s = socket.create_connection(("127.0.0.1", grains.d.port), timeout=10)
    s.sendall((f"GET /ws/echo HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n"
               "Origin: http://" + host + "\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               'If-None-Match: "a\\b"\r\n\r\n').encode())
    head = s.recv(65536)
    s.close()
    assert head.startswith(b"HTTP/1.1 502"), head
    assert b"The app refused the WebSocket." in head or b"refused" in head, head
    # The gateway is fine, and so is the grain.
    assert grains.get(host, cookie, "/api/note")[0].status == 200


def test_a_crash_is_reported_to_the_owner(grains):
    gid = grains.new_grain()
    host, cookie = grains.open(gid)
    grains.get(host, cookie, "/")
    assert "crashed" not in grains.admin.get("/api/grains")[1]["grains"][0]
    grains.get(host, cookie, "/debug/crash")
    deadline = time.time() + 10
    while time.time() < deadline:
        [g] = grains.admin.get("/api/grains")[1]["grains"]
        if "crashed" in g:
            break
        time.sleep(0.1)
    assert g["crashed"]["status"] != 0 and g["crashed"]["at"] > 0
    # Stopping a grain on purpose (trash) is not a crash.
    other = grains.new_grain()
    h2, c2 = grains.open(other)
    grains.get(h2, c2, "/")
    grains.admin.post(f"/api/grains/{other}/trash", {})
    time.sleep(0.5)
    g2 = [x for x in grains.admin.get("/api/grains")[1]["grains"] if x["id"] == other][0]
    assert "crashed" not in g2


def test_concurrent_requests_start_a_stopped_grain_once(grains):
    import threading
    gid = grains.new_grain()
    hosts = [grains.open(gid) for _ in range(8)]
    results = []

    def hit(host, cookie):
        results.append(grains.get(host, cookie, "/api/note")[0].status)

    threads = [threading.Thread(target=hit, args=hc) for hc in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 8
    assert grains.d.read_log().count(f"grain {gid}: started") == 1


def test_no_grain_outlives_a_killed_daemon(tmp_path):
    import signal
    import subprocess
    g = Grains(tmp_path)
    gid = g.new_grain()
    host, cookie = g.open(gid)
    assert g.get(host, cookie, "/")[0].status == 200
    m = re.search(rf"grain {gid}: started \(pid (\d+)\)", g.d.read_log())
    pid = int(m.group(1))
    os.kill(pid, 0)  # the grain runs
    g.d.proc.send_signal(signal.SIGKILL)
    g.d.proc.wait()
    deadline = time.time() + 10
    alive = True
    while alive and time.time() < deadline:
        try:
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as f:
                alive = f.read().split()[2] != "Z"
        except (ProcessLookupError, FileNotFoundError):
            alive = False
        time.sleep(0.05)
    assert not alive, "the grain survived its daemon"
    out = subprocess.run(["ps", "-e", "-o", "comm="], capture_output=True, text=True).stdout
    # A restart on the same data starts clean and can run the grain again.
    g.d = Daemon(tmp_path / "var")
    g.admin.daemon = g.d
    h2, c2 = g.open(gid)
    assert g.get(h2, c2, "/")[0].status == 200
    g.stop()


def grain_pid(grains, gid):
    """The host pid of the grain's first process (the bridge), from the log."""
    return int(re.findall(rf"grain {gid}: started \(pid (\d+)\)", grains.d.read_log())[-1])


def bridge_hwm_kib(grains, gid):
    with open(f"/proc/{grain_pid(grains, gid)}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))


def download(grains, host, cookie, path):
    """GETs path through the platform in 1 MiB reads; returns the bytes
    counted (nothing is kept)."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", grains.d.port, timeout=120)
    c.request("GET", path, headers={"Host": host, "Cookie": cookie})
    r = c.getresponse()
    assert r.status == 200
    got = 0
    while chunk := r.read(1 << 20):
        got += len(chunk)
    c.close()
    return got


def test_large_download_and_upload_stream_through_the_platform(grains):
    import hashlib
    gid = grains.new_grain()
    host, cookie = grains.open(gid)
    size = 100 * 1024 * 1024
    assert download(grains, host, cookie, f"/debug/big?bytes={size}") == size
    assert bridge_hwm_kib(grains, gid) < 8 * 1024, "the bridge must stream, not buffer"
    body = os.urandom(1 << 20) * 100
    resp, out = grains.get(host, cookie, "/debug/upload", "POST", body,
                           headers={"Content-Type": "application/octet-stream"})
    assert resp.status == 200, out[:300]
    assert json.loads(out) == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    assert bridge_hwm_kib(grains, gid) < 8 * 1024
    # A small body still goes inside the call.
    resp, out = grains.get(host, cookie, "/debug/upload", "PUT", b"small",
                           headers={"Content-Type": "text/plain"})
    assert json.loads(out)["bytes"] == 5


@pytest.mark.parametrize("method, headers, body", [
    ("PROPFIND", {"Depth": "1"}, b"<?xml version='1.0'?><propfind xmlns='DAV:'><allprop/></propfind>"),
    ("PROPPATCH", {}, b"<propertyupdate xmlns='DAV:'/>"),
    ("MKCOL", {}, b""),
    ("REPORT", {"Content-Type": "text/xml"}, b"<report/>"),
    ("LOCK", {"Depth": "0"}, b"<lockinfo xmlns='DAV:'/>"),
    ("UNLOCK", {"Lock-Token": "<opaquelocktoken:abc>"}, b""),
    ("ACL", {}, b"<acl xmlns='DAV:'/>"),
    ("COPY", {"Destination": "/debug/copied", "Overwrite": "F"}, b""),
    ("MOVE", {"Destination": "DEST"}, b""),
])
def test_webdav_methods_reach_the_app(grains, method, headers, body):
    gid = grains.new_grain()
    host, cookie = grains.open(gid)
    if headers.get("Destination") == "DEST":
        headers = dict(headers, Destination=f"http://{host}/debug/moved")
    resp, out = grains.get(host, cookie, "/debug/headers", method, body, headers=headers)
    assert resp.status == 200, out[:300]
    seen = json.loads(out)
    assert seen["method"] == method
    names = {k.lower(): v for k, v in seen["headers"]}
    if method == "PROPFIND":
        assert names["depth"] == "1" and seen["body_bytes"] == len(body)
    if method == "COPY":
        assert names["overwrite"] == "F" and names["destination"].endswith("/debug/copied")
    if method == "UNLOCK":
        assert names["lock-token"] == "<opaquelocktoken:abc>"


def test_webdav_refusals_and_options(grains):
    gid = grains.new_grain()
    host, cookie = grains.open(gid)
    resp, _ = grains.get(host, cookie, "/debug/headers", "MOVE",
                         headers={"Destination": "http://evil.example/x"})
    assert resp.status == 400  # not a path of this grain
    resp, _ = grains.get(host, cookie, "/debug/headers", "COPY")
    assert resp.status == 400  # no Destination
    resp, _ = grains.get(host, cookie, "/debug/headers", "OPTIONS")
    assert resp.status == 200 and "PROPFIND" in resp.getheader("Allow")
    resp, _ = grains.get(host, cookie, "/", "BREW")
    assert resp.status in (400, 405)


def test_a_large_upload_to_a_grain_needs_its_origin_cookie(grains):
    """On a grain origin a body past 1 MiB is taken only with that origin's
    cookie: without it the upload is answered 403 as soon as the gateway's
    clock sees it; with it, a slow upload is read to the end and reaches the
    app."""
    import hashlib
    gid = grains.new_grain()
    host, cookie = grains.open(gid)
    body = os.urandom(3 << 20)

    def upload(cookie_line, then=""):
        head = (f"POST /debug/upload HTTP/1.1\r\nHost: {host}\r\n{cookie_line}{then}"
                f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n")
        return slow_upload(grains.d.port, head.encode(), body, 2 << 20, 3)[0]

    for refused in (upload(""), upload("Cookie: granary_grain=" + "0" * 64 + "\r\n"),
                    # h2o takes the last Host: this one goes to the shell
                    upload(f"Cookie: {cookie}\r\n", "Host: granary.localhost:6080\r\n")):
        assert refused.startswith(b"HTTP/1.1 403"), refused[:200]
        assert b"taken only from" in refused, refused
    answer = upload(f"Cookie: {cookie}\r\n")
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    out = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert out == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def grain_cgroup_files(pid):
    """{file: value} of the limits of the cgroups pid is in (v1 or v2)."""
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            roots = [f"/sys/fs/cgroup/{c}" for c in controllers.split(",") if c] or \
                ["/sys/fs/cgroup"]
            for root in roots:
                for name in ("memory.limit_in_bytes", "memory.kmem.tcp.limit_in_bytes",
                             "memory.max", "pids.max"):
                    p = root + path + "/" + name
                    if os.path.exists(p) and "granary-grain-" in path:
                        out[name] = open(p).read().strip()
    return out


@pytest.mark.parametrize("flags, memory, pids", [
    ((), 1 << 30, 1024),
    (("--grain-memory", "256M", "--grain-pids", "64"), 256 << 20, 64),
])
def test_grains_run_under_per_grain_limits(tmp_path, flags, memory, pids):
    """By default every grain the daemon starts has a memory limit (socket
    buffers included) and a process limit of its own; a fork bomb or a
    memory hog in one grain cannot take the host."""
    g = Grains(tmp_path, extra_args=flags)
    try:
        if "limits by rlimit" in g.d.read_log():
            pytest.skip("this host gives the daemon no cgroups: no per-grain limits")
        gid = g.new_grain()
        host, cookie = g.open(gid)
        assert g.get(host, cookie, "/api/note")[0].status == 200
        files = grain_cgroup_files(grain_pid(g, gid))
        if "memory.max" in files:  # cgroup v2
            assert files["memory.max"] == str(memory)
        else:
            assert files["memory.limit_in_bytes"] == str(memory)
            if "memory.kmem.tcp.limit_in_bytes" in files:
                assert files["memory.kmem.tcp.limit_in_bytes"] == str(memory)
        assert files["pids.max"] == str(pids)
        assert f"memory {memory >> 20} MiB, {pids} processes per grain" in g.d.read_log()
    finally:
        g.stop()


def test_limits_can_be_turned_off(tmp_path):
    g = Grains(tmp_path, extra_args=("--grain-memory", "0", "--grain-pids", "0"))
    try:
        gid = g.new_grain()
        host, cookie = g.open(gid)
        assert g.get(host, cookie, "/api/note")[0].status == 200
        assert grain_cgroup_files(grain_pid(g, gid)) == {}  # no grain cgroup at all
    finally:
        g.stop()
