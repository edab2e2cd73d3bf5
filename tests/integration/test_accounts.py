"""The shell's accounts API over real HTTP: first-run setup, password and
email-link login, TOTP, sessions, CSRF, rate limiting, and every refusal."""
import json
import re
import sqlite3
import subprocess

import pytest

from granary_testing import ADMIN, Client, Daemon, run_granary, setup_link_from_log, totp_now


def test_anonymous_session_says_setup_is_needed(daemon):
    c = Client(daemon)
    status, body, _ = c.get("/api/session")
    assert status == 200
    assert body == {"account": None, "setup_needed": True}


def test_setup_creates_admin_and_logs_in(daemon):
    token = setup_link_from_log(daemon.read_log()).split("#token=")[1]
    c = Client(daemon)
    status, body, resp = c.post("/api/setup", dict(ADMIN, token=token))
    assert status == 201, body
    assert body["account"]["email"] == ADMIN["email"]
    assert body["account"]["is_admin"] is True
    cookie = c.set_cookie_header
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here
    status, body, _ = c.get("/api/session")
    assert body["account"]["name"] == "Ada Admin"
    # The link works once.
    other = Client(daemon)
    status, body, _ = other.post("/api/setup", dict(ADMIN, email="b@example.com", token=token))
    assert status == 403
    assert "setup link is invalid" in body["error"]
    assert Client(daemon).get("/api/session")[1]["setup_needed"] is False


@pytest.mark.parametrize("change, status, message", [
    ({"token": "0" * 64}, 403, "setup link is invalid"),
    ({"token": "xyz"}, 400, "setup link is not complete"),
    ({"password": "short"}, 400, "at least 8 characters"),
    ({"email": "not-an-email"}, 400, "not an email address"),
    ({"name": ""}, 400, "a name is required"),
    ({"name": "bad\nname"}, 400, "control characters"),
    ({"password": "x" * 2000}, 400, "at most 1024 bytes"),
])
def test_setup_refusals(daemon, change, status, message):
    token = setup_link_from_log(daemon.read_log()).split("#token=")[1]
    body = dict(ADMIN, token=token)
    body.update(change)
    got, out, _ = Client(daemon).post("/api/setup", body)
    assert got == status, out
    assert message in out["error"]


def test_setup_link_from_the_command_line(daemon):
    code, out, err = run_granary("admin", "setup-link", "--data", daemon.data_dir)
    assert code == 0, err
    link = out.strip()
    assert re.fullmatch(r"http://granary\.localhost:6080/setup#token=[0-9a-f]{64}", link)
    token = link.split("#token=")[1]
    status, body, _ = Client(daemon).post("/api/setup", dict(ADMIN, token=token))
    assert status == 201, body


def test_login_logout_and_wrong_password(admin, daemon):
    c = Client(daemon)
    status, body, _ = c.post("/api/login", {"email": ADMIN["email"], "password": "wrong password"})
    assert status == 401 and body["error"] == "wrong email or password"
    status, body, _ = c.post("/api/login", {"email": "nobody@example.com", "password": "whatever1"})
    assert status == 401 and body["error"] == "wrong email or password"  # same answer
    status, body, _ = c.post("/api/login", {"email": "ADMIN@example.com",
                                            "password": ADMIN["password"]})
    assert status == 200, body
    old_cookie = c.cookie
    assert c.get("/api/session")[1]["account"]["email"] == ADMIN["email"]
    status, body, _ = c.post("/api/logout", {})
    assert status == 200
    assert "Max-Age=0" in c.set_cookie_header
    # The old cookie is dead on the server, not only in the browser.
    stale = Client(daemon)
    stale.cookie = old_cookie
    assert stale.get("/api/session")[1]["account"] is None


def test_csrf_is_required_on_every_post(admin, daemon):
    for path in ("/api/logout", "/api/account/password", "/api/account/totp/begin",
                 "/api/admin/accounts"):
        status, body, _ = admin.post(path, {}, headers={"X-Granary-CSRF": "wrong"})
        assert status == 403, path
        assert "X-Granary-CSRF" in body["error"]
        resp, _ = daemon.request("POST", path, body=b"{}", headers={
            "Cookie": f"granary_session={admin.cookie}", "Content-Type": "application/json"})
        assert resp.status == 403, path
    # Anonymous endpoints need the header too.
    resp, _ = daemon.request("POST", "/api/login", body=b'{"email":"a@b.c","password":"x"}',
                             headers={"Content-Type": "application/json"})
    assert resp.status == 403
    # A cross-origin page is refused even with a header.
    status, body, _ = admin.post("/api/logout", {}, headers={"Origin": "http://evil.example"})
    assert status == 403 and body["error"] == "cross-origin request refused"
    # Still logged in after all that.
    assert admin.get("/api/session")[1]["account"] is not None


def test_malformed_bodies(admin, daemon):
    c = Client(daemon)
    cases = [
        (b"{not json", 400), (b"[1,2]", 400), (b'{"email":"a@b.c","email":"x@y.z"}', 400),
        (b'{"email": 5, "password": []}', 400), (b"", 400), (b"x" * 100000, 413),
        (b'{"email":"a@b.c","password":"' + b"p" * 5000 + b'"}', 400),
    ]
    for raw, want in cases:
        status, body, _ = c.post("/api/login", raw=raw)
        assert status == want, (raw[:40], status, body)
        assert body["error"]
    status, _, _ = c.post("/api/login", raw=b"{}", headers={"Content-Type": "text/plain"})
    assert status == 415
    status, _, _ = c.get("/api/login")
    assert status == 405
    assert c.get("/api/session")[0] == 200  # the server is fine


def test_login_rate_limit(admin, daemon):
    c = Client(daemon)
    for _ in range(5):
        status, _, _ = c.post("/api/login", {"email": ADMIN["email"], "password": "bad password"})
        assert status == 401
    status, body, resp = c.post("/api/login", {"email": ADMIN["email"],
                                               "password": ADMIN["password"]})
    assert status == 429
    assert resp.getheader("Retry-After") == "300"
    assert "too many failed logins" in body["error"]
    # The limit is per account: another account is not locked out by it.
    status, _, _ = admin.post("/api/admin/accounts", {"email": "bob@example.com", "name": "Bob",
                                                      "password": "bob's password"})
    assert status == 201
    status, _, _ = c.post("/api/login", {"email": "bob@example.com", "password": "bob's password"})
    assert status == 200


def test_email_login_link(admin, daemon):
    c = Client(daemon)
    status, body, _ = c.post("/api/login/email", {"email": ADMIN["email"]})
    assert status == 202 and body == {"sent": True}
    m = re.search(r"login link for admin@example.com \(valid 15 minutes\): "
                  r"http://granary\.localhost:6080/login/email#token=([0-9a-f]{64})",
                  daemon.read_log())
    assert m
    status, body, _ = c.post("/api/login/email/redeem", {"token": m.group(1)})
    assert status == 200, body
    assert c.get("/api/session")[1]["account"]["email"] == ADMIN["email"]
    status, body, _ = Client(daemon).post("/api/login/email/redeem", {"token": m.group(1)})
    assert status == 403  # once only
    # An unknown address gets the same answer and no link.
    before = daemon.read_log().count("login link for")
    status, body, _ = c.post("/api/login/email", {"email": "stranger@example.com"})
    assert status == 202 and body == {"sent": True}
    assert daemon.read_log().count("login link for") == before
    for bad in ("", "../../etc", "f" * 64, None, 7):
        status, _, _ = Client(daemon).post("/api/login/email/redeem", {"token": bad})
        assert status == 403


def test_totp_second_factor(admin, daemon):
    status, body, _ = admin.post("/api/account/totp/begin", {})
    assert status == 200
    secret = body["secret"]
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    assert body["uri"].startswith("otpauth://totp/Granary:admin@example.com?secret=" + secret)
    status, body, _ = admin.post("/api/account/totp/enable", {"secret": secret, "code": "000000"
                                                              if totp_now(secret) != "000000"
                                                              else "111111"})
    assert status == 400
    status, body, _ = admin.post("/api/account/totp/enable", {"secret": secret,
                                                              "code": totp_now(secret)})
    assert status == 200 and body == {"totp": True}
    assert admin.get("/api/session")[1]["account"]["totp"] is True

    c = Client(daemon)
    creds = {"email": ADMIN["email"], "password": ADMIN["password"]}
    status, body, _ = c.post("/api/login", creds)
    assert status == 401 and body["totp_required"] is True
    assert c.cookie is None
    status, body, _ = c.post("/api/login", dict(creds, totp="12345"))
    assert status == 401
    status, body, _ = c.post("/api/login", dict(creds, totp=totp_now(secret)))
    assert status == 200, body
    # Email links ask for the code too, and stay usable until it comes.
    c.post("/api/login/email", {"email": ADMIN["email"]})
    token = re.findall(r"login/email#token=([0-9a-f]{64})", daemon.read_log())[-1]
    fresh = Client(daemon)
    status, body, _ = fresh.post("/api/login/email/redeem", {"token": token})
    assert status == 401 and body["totp_required"] is True
    status, body, _ = fresh.post("/api/login/email/redeem", {"token": token,
                                                             "totp": totp_now(secret)})
    assert status == 200
    # Turning it off needs a valid code.
    status, _, _ = admin.post("/api/account/totp/disable", {"code": "abcdef"})
    assert status == 403
    status, body, _ = admin.post("/api/account/totp/disable", {"code": totp_now(secret)})
    assert status == 200 and body == {"totp": False}


def test_password_change(admin, daemon):
    status, body, _ = admin.post("/api/account/password", {"current": "nope nope",
                                                           "new": "a brand new password"})
    assert status == 403
    status, body, _ = admin.post("/api/account/password", {"current": ADMIN["password"],
                                                           "new": "short"})
    assert status == 400
    status, body, _ = admin.post("/api/account/password", {"current": ADMIN["password"],
                                                           "new": "a brand new password"})
    assert status == 200, body
    c = Client(daemon)
    assert c.post("/api/login", {"email": ADMIN["email"], "password": ADMIN["password"]})[0] == 401
    assert c.post("/api/login", {"email": ADMIN["email"],
                                 "password": "a brand new password"})[0] == 200


def test_logged_out_calls_are_refused(daemon):
    c = Client(daemon)
    for path in ("/api/account/password", "/api/account/totp/begin", "/api/admin/accounts"):
        status, body, _ = c.post(path, {})
        assert status == 401 and body["error"] == "log in first"


def test_admin_creates_accounts_others_cannot(admin, daemon):
    status, body, _ = admin.post("/api/admin/accounts", {"email": "carol@example.com",
                                                         "name": "Carol",
                                                         "password": "carol's secret"})
    assert status == 201 and body["account"]["is_admin"] is False
    status, body, _ = admin.post("/api/admin/accounts", {"email": "CAROL@example.com",
                                                         "name": "Carol 2"})
    assert status == 409 and "already exists" in body["error"]
    carol = Client(daemon)
    assert carol.post("/api/login", {"email": "carol@example.com",
                                     "password": "carol's secret"})[0] == 200
    status, body, _ = carol.post("/api/admin/accounts", {"email": "eve@example.com",
                                                         "name": "Eve"})
    assert status == 403 and body["error"] == "only an administrator can do that"


def test_secrets_are_not_stored_in_clear(admin, daemon):
    db = sqlite3.connect(f"{daemon.data_dir}/granary.sqlite")
    dump = "\n".join(db.iterdump())
    db.close()
    assert admin.cookie not in dump
    assert ADMIN["password"] not in dump
    assert "$argon2id$" in dump


def test_concurrent_logins_do_not_block_the_server(admin, daemon):
    """Password hashing runs off the event loop: health answers meanwhile."""
    import threading
    import time
    results = []

    def login():
        results.append(Client(daemon).post("/api/login", {"email": ADMIN["email"],
                                                          "password": ADMIN["password"]})[0])

    threads = [threading.Thread(target=login) for _ in range(4)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    resp, _ = daemon.request("GET", "/api/health")
    health_time = time.monotonic() - t0
    for t in threads:
        t.join()
    assert resp.status == 200
    assert results == [200] * 4
    assert health_time < 5  # generous: only that it was not queued behind all hashes


def test_a_planted_second_session_cookie_signs_nobody_in(admin, daemon):
    """A grain's page (a subdomain of the shell's host) can set a cookie named
    granary_session for the parent domain, with a longer path so that the
    browser sends it first. With two session cookies the shell cannot tell
    which is its own, so it takes neither: the user is not signed in as the
    attacker who planted one (nor as themself, until the plant is gone)."""
    status, body, _ = admin.post("/api/admin/accounts", {"email": "mallory@example.com",
                                                         "name": "Mallory",
                                                         "password": "mallory's secret"})
    assert status == 201
    mallory = Client(daemon)
    assert mallory.post("/api/login", {"email": "mallory@example.com",
                                       "password": "mallory's secret"})[0] == 200
    for order in ((mallory.cookie, admin.cookie), (admin.cookie, mallory.cookie)):
        resp, body = daemon.request("GET", "/api/session", headers={
            "Cookie": f"granary_session={order[0]}; granary_session={order[1]}"})
        assert resp.status == 200, body
        assert json.loads(body).get("account") is None, body
    assert "a request carried two granary_session cookies" in daemon.read_log()
    # One cookie, as before: each is who they are.
    resp, body = daemon.request("GET", "/api/session",
                                headers={"Cookie": f"granary_session={admin.cookie}"})
    assert json.loads(body)["account"]["email"] == ADMIN["email"], body


def test_over_https_the_session_cookie_has_the_host_prefix(tmp_path):
    """Behind an https base URL the cookie is __Host-granary_session (Secure,
    Path=/, no Domain): browsers refuse a cookie of that name from a grain
    page for the parent domain, so none can be planted beside it."""
    d = Daemon(tmp_path / "var", extra_args=("--base-url", "https://granary.test",
                                             "--wildcard-host", "*.granary.test"))
    try:
        token = setup_link_from_log(d.read_log()).split("#token=")[1]
        resp, body = d.request("POST", "/api/setup", host="granary.test",
                               body=json.dumps(dict(ADMIN, token=token)),
                               headers={"Content-Type": "application/json",
                                        "Origin": "https://granary.test",
                                        "X-Granary-CSRF": "anonymous"})
        assert resp.status == 201, body
        cookie = resp.getheader("Set-Cookie")
        assert cookie.startswith("__Host-granary_session="), cookie
        assert "Secure" in cookie and "Path=/" in cookie and "Domain" not in cookie
        value = cookie.split(";")[0].split("=", 1)[1]
        resp, body = d.request("GET", "/api/session", host="granary.test",
                               headers={"Cookie": f"__Host-granary_session={value}"})
        assert json.loads(body)["account"]["email"] == ADMIN["email"], body
        # The name without the prefix is not ours there.
        resp, body = d.request("GET", "/api/session", host="granary.test",
                               headers={"Cookie": f"granary_session={value}"})
        assert json.loads(body)["account"] is None, body
    finally:
        code, log = d.stop()
        assert code == 0, log
