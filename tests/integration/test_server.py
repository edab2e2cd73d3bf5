"""The daemon over real HTTP: host routing, the health endpoint, the static
shell, the 404 pages, hostile requests, and clean shutdown and restart."""
import json
import os
import re
import signal
import socket
import threading
import time

from granary_testing import (ADMIN, BASE_HOST, Client, Daemon, read_answer, setup_link_from_log,
                             slow_upload)


def test_health_is_json(daemon):
    resp, body = daemon.request("GET", "/api/health")
    assert resp.status == 200
    assert resp.getheader("Content-Type") == "application/json; charset=utf-8"
    assert resp.getheader("Cache-Control") == "no-store"
    h = json.loads(body)
    assert h["status"] == "ok"
    assert h["version"].startswith("0.")
    assert h["store"]["ok"] is True
    assert h["store"]["schema_version"] == h["store"]["schema_latest"] >= 1
    assert len(h["install_id"]) == 32
    assert h["uptime_seconds"] >= 0


def test_health_head_and_wrong_method(daemon):
    resp, body = daemon.request("HEAD", "/api/health")
    assert resp.status == 200 and body == b""
    resp, body = daemon.request("POST", "/api/health", body=b"{}")
    assert resp.status == 405
    assert resp.getheader("Allow") == "GET, HEAD"
    assert json.loads(body)["error"]


def test_host_is_case_insensitive(daemon):
    resp, _ = daemon.request("GET", "/api/health", host="GRANARY.LocalHost:6080")
    assert resp.status == 200


def test_unknown_api_endpoint(daemon):
    for path in ("/api/nope", "/api", "/api/health/extra"):
        resp, body = daemon.request("GET", path)
        assert resp.status == 404, path
        assert json.loads(body) == {"error": "no such API endpoint"}


def test_other_host_gets_clear_404(daemon):
    resp, body = daemon.request("GET", "/api/health", host="example.com")
    assert resp.status == 404
    assert resp.getheader("Content-Type").startswith("text/html")
    text = body.decode()
    assert "nothing at the host" in text and "example.com" in text
    assert "http://granary.localhost:6080/" in text  # points the user at the shell


def test_404_page_escapes_the_host(daemon):
    resp, body = daemon.request("GET", "/", host="<script>alert(1)</script>")
    assert resp.status in (400, 404)
    assert b"<script>" not in body


def test_grain_host_without_session(daemon):
    resp, body = daemon.request("GET", "/", host="ui-0123456789abcdef.granary.localhost:6080")
    assert resp.status == 404
    assert b"No grain session" in body


def test_bare_ip_host_is_not_the_shell(daemon):
    resp, _ = daemon.request("GET", "/api/health", host=f"127.0.0.1:{daemon.port}")
    assert resp.status == 404


def test_shell_index_and_assets(daemon):
    resp, body = daemon.request("GET", "/")
    assert resp.status == 200
    assert resp.getheader("Content-Type").startswith("text/html")
    csp = resp.getheader("Content-Security-Policy")
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert resp.getheader("X-Content-Type-Options") == "nosniff"
    assert resp.getheader("Server") is None
    html = body.decode()
    assert "<title>Granary</title>" in html
    # Every asset the page names is served, as immutable, with its MIME type.
    import re
    assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', html)
    assert assets
    for a in assets:
        r, data = daemon.request("GET", a)
        assert r.status == 200, a
        assert "immutable" in r.getheader("Cache-Control")
        want = "text/javascript" if a.endswith(".js") else "text/css"
        assert want in r.getheader("Content-Type") or "javascript" in r.getheader("Content-Type")
        assert len(data) > 0


def test_spa_routes_get_the_index(daemon):
    resp, body = daemon.request("GET", "/grains")
    assert resp.status == 200 and b"<title>Granary</title>" in body


def test_missing_file_and_hostile_paths(daemon):
    resp, _ = daemon.request("GET", "/assets/nope.js")
    assert resp.status == 404
    for path in ("/../../../../etc/passwd", "/assets/../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
                 "/.git/config", "/assets/..%2f..%2fetc%2fpasswd", "/a\\b.js"):
        resp, body = daemon.request("GET", path)
        assert b"root:" not in body, path
        assert resp.status in (200, 400, 404), path


def test_shell_rejects_writes(daemon):
    resp, _ = daemon.request("POST", "/", body=b"x")
    assert resp.status == 405


def test_malformed_requests_do_not_kill_the_server(daemon):
    garbage = [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: " + b"a" * 100000 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 5000 + b"\r\n",
        b"GET /api/health HTTP/1.1\r\nHost: granary.localhost:6080\r\nContent-Length: -5\r\n\r\n",
        b"\x00\x01\x02\xff" * 1000,
        b"GET /api/health HTTP/1.1\r\nHost: granary.localhost:6080\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ]
    for g in garbage:
        s = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
        try:
            s.sendall(g)
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass
        except OSError:
            pass
        finally:
            s.close()
    resp, _ = daemon.request("GET", "/api/health")
    assert resp.status == 200


def test_keep_alive_and_concurrency(daemon):
    import http.client
    errors = []

    def worker():
        try:
            c = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
            for _ in range(20):
                c.request("GET", "/api/health", headers={"Host": BASE_HOST})
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    errors.append(r.status)
            c.close()
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_sigterm_is_clean_and_restart_keeps_the_store(tmp_path):
    d = Daemon(tmp_path / "var")
    _, body = d.request("GET", "/api/health")
    first = json.loads(body)["install_id"]
    code, log = d.stop(signal.SIGTERM)
    assert code == 0
    assert "received SIGTERM, shutting down" in log and "stopped" in log
    assert os.path.exists(tmp_path / "var" / "granary.sqlite")

    d2 = Daemon(tmp_path / "var")
    _, body = d2.request("GET", "/api/health")
    assert json.loads(body)["install_id"] == first
    code, log = d2.stop(signal.SIGINT)
    assert code == 0
    assert "received SIGINT" in log


def test_sigterm_with_open_connection(tmp_path):
    d = Daemon(tmp_path / "var")
    s = socket.create_connection(("127.0.0.1", d.port))
    s.sendall(b"GET /api/health HTTP/1.1\r\nHost: granary.localhost:6080\r\n\r\n")
    s.recv(4096)
    code, log = d.stop(signal.SIGTERM)
    s.close()
    assert code == 0, log


def test_missing_web_build_is_explained(tmp_path):
    d = Daemon(tmp_path / "var", extra_args=("--web-dir", str(tmp_path / "nowhere")))
    try:
        resp, body = d.request("GET", "/")
        assert resp.status == 503
        assert b"has not been built" in body
        resp, _ = d.request("GET", "/api/health")  # the API still works
        assert resp.status == 200
    finally:
        d.stop()


def _status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def test_unfinished_uploads_wait_on_disk_not_in_memory(daemon, admin):
    """h2o reads a request's whole body before the gateway sees the request.
    Beyond 1 MiB a body waits in a deleted file under the data directory:
    six uploads of an administrator's, holding 24 MiB each, add files
    there, not 144 MiB to the daemon's heap."""
    pid = daemon.proc.pid
    before = _status_kib(pid, "RssAnon")
    chunk = b"x" * (1 << 20)
    socks = []
    try:
        for _ in range(6):
            s = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
            s.sendall(b"POST /api/apps HTTP/1.1\r\nHost: " + BASE_HOST.encode() +
                      b"\r\nCookie: granary_session=" + admin.cookie.encode() +
                      b"\r\nContent-Length: 100000000\r\n\r\n")
            for _ in range(24):
                s.sendall(chunk)
            socks.append(s)
        # The daemon has read what was sent once its files hold it all.
        tmp = os.path.realpath(os.path.join(daemon.data_dir, "tmp"))
        deadline = time.monotonic() + 20
        while True:
            held = []
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith(tmp + "/") and target.endswith("(deleted)"):
                    held.append(os.stat(f"/proc/{pid}/fd/{fd}").st_size)
            if len(held) == 6 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        grown = _status_kib(pid, "RssAnon") - before
        assert grown < 32 * 1024, f"the daemon's heap grew by {grown} KiB"
        assert len(held) == 6, f"bodies held in files under {tmp}: {held}"
    finally:
        for s in socks:
            s.close()
    # The files go with their connections, and the daemon still answers.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = [fd for fd in os.listdir(f"/proc/{pid}/fd")
                if os.path.realpath(f"/proc/{pid}/fd/{fd}").startswith(tmp + "/")]
        if not left:
            break
        time.sleep(0.1)
    assert not left
    resp, _ = daemon.request("GET", "/api/health")
    assert resp.status == 200


def test_a_slow_upload_is_answered(daemon):
    """An upload that takes longer than h2o's 10 s for a whole request (a
    package over a home line, say) is read to the end and answered; h2o
    alone closed the connection at 10 s without a word."""
    s = socket.create_connection(("127.0.0.1", daemon.port), timeout=30)
    body = 14 * 16 * 1024
    s.sendall(b"POST /api/apps HTTP/1.1\r\nHost: " + BASE_HOST.encode() +
              b"\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % body)
    for _ in range(14 * 4):  # 16 KiB a second for 14 s
        s.sendall(b"x" * 4096)
        time.sleep(0.25)
    answer = b""
    while b"\r\n\r\n" not in answer:
        got = s.recv(65536)
        assert got, f"the connection was closed without an answer: {answer!r}"
        answer += got
    s.close()
    assert answer.startswith(b"HTTP/1.1 401") or answer.startswith(b"HTTP/1.1 403"), answer[:200]


def test_slow_heads_idle_connections_and_stalled_uploads_are_closed(daemon):
    """The other side of a slow upload being allowed: a head trickled in is
    cut 10 s after its first byte, a kept-alive connection idle for 10 s is
    closed, and an upload from which nothing comes for 30 s is closed and
    logged. Run side by side; each socket notes when it saw its end."""
    host = BASE_HOST.encode()
    closed = {}

    def wait_closed(name, s, trickle=None):
        start = time.monotonic()
        s.settimeout(1)
        while time.monotonic() - start < 45:
            try:
                if s.recv(65536) == b"":
                    break
            except socket.timeout:
                pass
            except OSError:
                break
            if trickle:
                try:
                    s.sendall(trickle)
                except OSError:
                    break
        closed[name] = time.monotonic() - start
        s.close()

    head = socket.create_connection(("127.0.0.1", daemon.port))
    head.sendall(b"GET /api/health HTTP/1.1\r\nHost: " + host + b"\r\nX-Slow: ")
    idle = socket.create_connection(("127.0.0.1", daemon.port))
    idle.sendall(b"GET /api/health HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert idle.recv(65536).startswith(b"HTTP/1.1 200")
    stalled = socket.create_connection(("127.0.0.1", daemon.port))
    stalled.sendall(b"POST /api/apps HTTP/1.1\r\nHost: " + host +
                    b"\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 300000)
    threads = [threading.Thread(target=wait_closed, args=("head", head, b"a")),
               threading.Thread(target=wait_closed, args=("idle", idle)),
               threading.Thread(target=wait_closed, args=("stalled", stalled))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 8 < closed["head"] < 14, closed
    assert 8 < closed["idle"] < 14, closed
    assert 28 < closed["stalled"] < 35, closed
    time.sleep(0.5)
    assert "an upload stopped coming for 30 s after" in daemon.read_log()
    resp, _ = daemon.request("GET", "/api/health")
    assert resp.status == 200


def test_one_address_may_hold_256_connections(daemon):
    """Connections past 256 from one address are closed as they come (each
    holds a descriptor the grains need too); 127.0.0.1, where a proxy in
    front would connect from, is not counted."""
    def connect(src):
        s = socket.socket()
        s.bind((src, 0))
        s.connect(("127.0.0.1", daemon.port))
        return s

    held = [connect("127.0.0.2") for _ in range(256)]
    try:
        extra = connect("127.0.0.2")
        extra.settimeout(5)
        try:
            assert extra.recv(1) == b""
        except ConnectionResetError:
            pass
        extra.close()
        deadline = time.monotonic() + 5
        while "127.0.0.2 already has 256 connections open" not in daemon.read_log():
            assert time.monotonic() < deadline, daemon.log
            time.sleep(0.05)
        # The ones held still work, and so does everyone else.
        held[0].sendall(b"GET /api/health HTTP/1.1\r\nHost: " + BASE_HOST.encode() + b"\r\n\r\n")
        assert held[0].recv(65536).startswith(b"HTTP/1.1 200")
        local = [connect("127.0.0.1") for _ in range(300)]
        local[-1].sendall(b"GET /api/health HTTP/1.1\r\nHost: " + BASE_HOST.encode() + b"\r\n\r\n")
        assert local[-1].recv(65536).startswith(b"HTTP/1.1 200")
        for s in local:
            s.close()
        # A place freed is a place taken.
        held.pop().close()
        time.sleep(0.3)
        again = connect("127.0.0.2")
        again.sendall(b"GET /api/health HTTP/1.1\r\nHost: " + BASE_HOST.encode() + b"\r\n\r\n")
        again.settimeout(5)
        assert again.recv(65536).startswith(b"HTTP/1.1 200")
        again.close()
    finally:
        for s in held:
            s.close()


def test_an_upload_that_would_fill_the_disk_is_refused(tmp_path):
    """h2o allocates a big body's file as its buffer doubles, so uploads can
    take the disk the store and the grains write to. Here the data
    directory is a 34 MiB tmpfs (in a user and mount namespace of the
    test's own): once an upload's file leaves less than a tenth of it free,
    the upload is answered 507 and cut, and the daemon goes on."""
    data = tmp_path / "var"
    data.mkdir()
    wrap = ["unshare", "-Urm", "--", "sh", "-c",
            'mount -t tmpfs -o size=34m granary-test "$0" && exec "$@"', str(data)]
    d = Daemon(data, wrap=wrap)
    try:
        token = setup_link_from_log(d.read_log()).split("#token=")[1]
        admin = Client(d)
        status, body, _ = admin.post("/api/setup", dict(ADMIN, token=token))
        assert status == 201, body
        upload_head = (b"POST /api/apps HTTP/1.1\r\nHost: " + BASE_HOST.encode() +
                       b"\r\nCookie: granary_session=" + admin.cookie.encode() +
                       b"\r\nContent-Length: %d\r\n\r\n")
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        s.sendall(upload_head % 100000000)
        chunk = b"x" * (1 << 20)
        sent = 0
        answer = b""
        try:
            for _ in range(64):  # 2 MiB a second, slower than the clock looks
                s.sendall(chunk)
                sent += 1
                time.sleep(0.5)
        except OSError:
            try:
                answer = s.recv(65536)
            except OSError:
                pass  # the answer is best effort: a reset may overtake it
        s.close()
        assert sent < 30, f"{sent} MiB went into a 34 MiB disk"
        deadline = time.monotonic() + 5
        while "was refused for want of disk space" not in d.read_log():
            assert d.proc.poll() is None, d.log
            assert time.monotonic() < deadline, d.log
            time.sleep(0.1)
        assert "under the 3 MiB kept free" in d.log, d.log
        assert answer == b"" or answer.startswith(b"HTTP/1.1 507"), answer
        # Room again once the cut upload's file is gone, and no file kept open.
        deadline = time.monotonic() + 5
        while "has room for uploads again" not in d.read_log():
            assert time.monotonic() < deadline, d.log
            time.sleep(0.1)
        pid = d.proc.pid
        held = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        assert not [h for h in held if "body-" in h], held
        # A disk filled by something else: new uploads past 1 MiB are refused
        # at once, and none leaves a file open (h2o 2.2 would leak one each).
        filler = f"/proc/{pid}/root{data}/filler"
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(chunk)
                    f.flush()
            except OSError:
                pass
        # With no connection open the clock sleeps; the next connection wakes it.
        time.sleep(1.5)
        assert d.read_log().count("uploads past 1 MiB are refused") == 1, d.log
        resp, _ = d.request("GET", "/api/health")
        assert resp.status == 200
        deadline = time.monotonic() + 5
        while d.read_log().count("uploads past 1 MiB are refused") < 2:
            assert time.monotonic() < deadline, d.log
            time.sleep(0.1)
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
            s.sendall(upload_head % 4000000)
            try:
                for _ in range(4):
                    s.sendall(chunk)
                s.recv(1)
            except OSError:
                pass
            s.close()
        time.sleep(0.5)
        held = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        assert not [h for h in held if "body-" in h], d.read_log()
        os.unlink(filler)
        resp, _ = d.request("GET", "/api/health")
        assert resp.status == 200
    finally:
        code, log = d.stop()
    assert code == 0, log
    assert "Sanitizer" not in log and "runtime error" not in log, log


def test_a_head_after_a_quick_answer_is_timed_too(daemon):
    """A request answered between two looks of the clock must not lend its
    finished head to the next one: a head trickled after it is cut 10 s on."""
    host = BASE_HOST.encode()
    s = socket.create_connection(("127.0.0.1", daemon.port), timeout=2)
    s.sendall(b"GET /api/health HTTP/1.1\r\nHost: " + host + b"\r\nContent-Length: 10\r\n\r\n12345")
    time.sleep(1.6)  # the clock sees this head done, its body coming
    s.sendall(b"67890GET /api/health HTTP/1.1\r\nHost: " + host + b"\r\nX-Long: " + b"a" * 330)
    start = time.monotonic()
    got = b""
    while time.monotonic() - start < 30:
        try:
            chunk = s.recv(65536)
            if chunk == b"":
                break
            got += chunk
        except socket.timeout:
            pass
        except OSError:
            break
        try:
            s.sendall(b"a")
        except OSError:
            break
    took = time.monotonic() - start
    s.close()
    assert got.startswith(b"HTTP/1.1 200"), got[:100]
    assert took < 14, f"the trickled head was held {took:.1f} s"


def test_no_http2_over_plain_tcp(daemon):
    """h2o would take a "PRI *" preface (or an h2c upgrade) as HTTP/2, whose
    connections the gateway's clock does not watch; browsers never use it."""
    s = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    start = time.monotonic()
    answer = read_answer(s)
    assert time.monotonic() - start < 3
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:100]
    s.close()
    s = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
    s.sendall(b"GET /api/health HTTP/1.1\r\nHost: " + BASE_HOST.encode() +
              b"\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
              b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
    answer = s.recv(65536)
    s.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:100]


def test_connections_per_address_is_a_setting(tmp_path):
    d = Daemon(tmp_path / "var", extra_args=["--connections-per-address", "2"])
    try:
        def connect():
            s = socket.socket()
            s.bind(("127.0.0.3", 0))
            s.connect(("127.0.0.1", d.port))
            s.settimeout(5)
            return s
        a, b, c = connect(), connect(), connect()
        try:
            assert c.recv(1) == b""
        except ConnectionResetError:
            pass
        a.sendall(b"GET /api/health HTTP/1.1\r\nHost: " + BASE_HOST.encode() + b"\r\n\r\n")
        assert a.recv(65536).startswith(b"HTTP/1.1 200")
        for s in (a, b, c):
            s.close()
        assert "see --connections-per-address" in d.read_log()
    finally:
        code, log = d.stop()
    assert code == 0, log


def test_an_idle_daemon_sleeps(daemon):
    """The gateway's reading clock runs only while connections are open: a
    daemon nobody talks to is not woken every second."""
    resp, _ = daemon.request("GET", "/api/health")  # opens and closes one
    assert resp.status == 200
    time.sleep(2.5)  # the clock's last tick, after the connection closed

    def wakeups():
        with open(f"/proc/{daemon.proc.pid}/status") as f:
            return int(re.search(r"\nvoluntary_ctxt_switches:\s+(\d+)", f.read()).group(1))

    before = wakeups()
    time.sleep(4)
    assert wakeups() - before <= 1


def test_a_large_body_from_nobody_signed_in_is_refused_early(daemon, admin):
    """A body past 1 MiB is taken only from an administrator's session on
    the shell's package upload (or with a grain origin's cookie): anyone
    else's is answered 403 as soon as the clock sees it, not held whole
    until a handler could refuse it. The head is read as h2o read it:
    methods it takes that other parsers refuse, a head without Host, and
    lines ending in a bare LF change nothing."""
    host = BASE_HOST.encode()
    body = b"x" * (64 << 20)
    refused = [
        b"POST /api/apps HTTP/1.1\r\nHost: " + host + b"\r\n",
        b"POST /api/apps HTTP/1.1\r\nHost: " + host + b"\r\nCookie: granary_session=" +
        b"0" * 64 + b"\r\n",
        b"FOO /api/apps HTTP/1.1\r\nHost: " + host + b"\r\n",
        b"post /api/apps HTTP/1.1\r\nHost: " + host + b"\r\n",
        b"POST /api/apps HTTP/1.1\nHost: " + host + b"\n",
        b"POST /api/apps HTTP/1.1\r\n",
        # signed in, but nothing else on the shell takes such a body
        b"POST /api/login HTTP/1.1\r\nHost: " + host + b"\r\nCookie: granary_session=" +
        admin.cookie.encode() + b"\r\n",
    ]
    for head in refused:
        end = b"\n" if head.endswith(b"\n") and not head.endswith(b"\r\n") else b"\r\n"
        answer, sent_all = slow_upload(
            daemon.port, head + b"Content-Length: %d" % len(body) + end + end, body, 2 << 20, 5)
        assert not sent_all and answer.startswith(b"HTTP/1.1 403"), (head, answer[:200])
        assert b"taken only from" in answer, answer
    assert "an upload past 1 MiB from nobody signed in was refused" in daemon.read_log()
    # An administrator's slow upload is read to the end and answered.
    small = 3 << 20
    answer, sent_all = slow_upload(
        daemon.port, b"POST /api/apps HTTP/1.1\r\nHost: " + host +
        b"\r\nCookie: granary_session=" + admin.cookie.encode() +
        b"\r\nX-Granary-CSRF: " + admin.csrf.encode() +
        b"\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % small,
        b"x" * small, 2 << 20, 2)
    assert sent_all
    assert answer.startswith(b"HTTP/1.1 400"), answer[:300]  # not a package: the handler said so
