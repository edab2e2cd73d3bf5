"""The opt-in loopback redirect (`granary run --grain-loopback-redirect on`)
through the real daemon, sandbox, bridge and notes app: everything an HTTP
app does behind the bridge still works when the grain's loopback TCP is
redirected by the BPF programs, and the grain's network namespace then sends
no TCP segments per request (against two per request by default)."""
import hashlib
import http.client
import json
import os
import subprocess
import time

import pytest
import websocket

from granary_testing import granary_bin, tcp_out_segments
from test_grains import Grains, bridge_hwm_kib, download, grain_pid, note_once_served

REDIRECT = ("--grain-loopback-redirect", "on")


@pytest.fixture
def redirected(tmp_path):
    g = Grains(tmp_path, extra_args=REDIRECT)
    yield g
    g.stop()


def segments_per_request(grains, n=200):
    gid = grains.new_grain()
    host, cookie = grains.open(gid)
    assert grains.get(host, cookie, "/api/note", "PUT", b"counted")[0].status == 200
    pid = grain_pid(grains, gid)
    c = http.client.HTTPConnection("127.0.0.1", grains.d.port, timeout=30)
    before = tcp_out_segments(pid)
    for _ in range(n):
        c.request("GET", "/api/note", headers={"Host": host, "Cookie": cookie})
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["text"] == "counted"
    after = tcp_out_segments(pid)
    c.close()
    return (after - before) / n


def test_the_log_says_whether_the_redirect_is_on(redirected, tmp_path):
    assert "loopback redirect on" in redirected.d.read_log()


def test_requests_skip_the_grains_tcp_only_with_the_redirect(tmp_path):
    plain = Grains(tmp_path / "plain")
    try:
        assert "loopback redirect off" in plain.d.read_log()
        assert segments_per_request(plain) >= 1.9  # a request and a response segment
    finally:
        plain.stop()
    redirected = Grains(tmp_path / "redirected", extra_args=REDIRECT)
    try:
        assert segments_per_request(redirected) < 0.1  # only new connections' handshakes
    finally:
        redirected.stop()


def test_the_app_works_behind_the_redirect(redirected):
    gid = redirected.new_grain()
    host, cookie = redirected.open(gid)
    resp, body = redirected.get(host, cookie, "/")
    assert resp.status == 200 and b'data-can-write="true"' in body
    assert redirected.get(host, cookie, "/api/note", "PUT", b"through sockmap")[0].status == 200
    resp, body = redirected.get(host, cookie, "/api/note")
    assert json.loads(body)["text"] == "through sockmap"
    resp, _ = redirected.get(host, cookie, "/api/note",
                             headers={"If-None-Match": resp.getheader("ETag")})
    assert resp.status == 304
    for status in (201, 404, 500):
        resp, _ = redirected.get(host, cookie, f"/debug/status/{status}")
        assert resp.status == status


def test_large_bodies_stream_both_ways_behind_the_redirect(redirected):
    gid = redirected.new_grain()
    host, cookie = redirected.open(gid)
    size = 100 * 1024 * 1024
    assert download(redirected, host, cookie, f"/debug/big?bytes={size}") == size
    body = os.urandom(1 << 20) * 64
    resp, out = redirected.get(host, cookie, "/debug/upload", "POST", body,
                               headers={"Content-Type": "application/octet-stream"})
    assert resp.status == 200, out[:300]
    assert json.loads(out) == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    assert bridge_hwm_kib(redirected, gid) < 8 * 1024, "the bridge must still stream"


def test_websockets_behind_the_redirect(redirected):
    gid = redirected.new_grain()
    host, cookie = redirected.open(gid)
    ws = websocket.create_connection(f"ws://127.0.0.1:{redirected.d.port}/ws/echo", host=host,
                                     cookie=cookie, origin=f"http://{host}", timeout=20)
    payload = os.urandom(300000)
    for _ in range(3):
        ws.send_binary(payload)
        assert ws.recv() == payload
    ws.send("and text")
    assert ws.recv() == "and text"
    ws.close()
    live = websocket.create_connection(f"ws://127.0.0.1:{redirected.d.port}/ws/live", host=host,
                                       cookie=cookie, origin=f"http://{host}", timeout=20)
    time.sleep(0.2)
    assert redirected.get(host, cookie, "/api/note", "PUT", b"pushed")[0].status == 200
    assert json.loads(live.recv())["text"] == "pushed"
    live.close()


def test_two_grains_and_a_crash_behind_the_redirect(redirected):
    a, b = redirected.new_grain(), redirected.new_grain()
    (ha, ca), (hb, cb) = redirected.open(a), redirected.open(b)
    for i in range(20):  # interleaved, each grain keeps its own note
        assert redirected.get(ha, ca, "/api/note", "PUT", f"a{i}".encode())[0].status == 200
        assert redirected.get(hb, cb, "/api/note", "PUT", f"b{i}".encode())[0].status == 200
    assert json.loads(redirected.get(ha, ca, "/api/note")[1])["text"] == "a19"
    assert json.loads(redirected.get(hb, cb, "/api/note")[1])["text"] == "b19"
    # The app dies with connections open; the grain restarts and serves.
    resp, body = redirected.get(ha, ca, "/debug/crash")
    assert resp.status == 502, body
    resp, body = note_once_served(redirected, ha, ca)
    assert json.loads(body)["text"] == "a19"
    assert json.loads(redirected.get(hb, cb, "/api/note")[1])["text"] == "b19"


def test_a_bad_value_is_refused(tmp_path):
    p = subprocess.run([granary_bin(), "run", "--data", str(tmp_path / "var"),
                        "--listen", "127.0.0.1:0", "--grain-loopback-redirect", "maybe"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2
    assert "--grain-loopback-redirect: 'maybe' is not on or off" in p.stderr
    out = subprocess.run([granary_bin(), "run", "--help"], capture_output=True, text=True,
                         timeout=30).stdout
    assert "--grain-loopback-redirect on|off" in out
