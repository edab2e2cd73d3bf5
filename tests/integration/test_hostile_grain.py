"""A grain that attacks the gateway: tests/integration/hostile_grain.c runs
in the bridge's place and answers with what a malicious app could send over
fd 3. Each test says what it sends and what the gateway must do; the daemon
is the ASan build, and Daemon.stop fails a test on any sanitizer report."""
import os
import re
import socket
import time

import pytest
from granary_testing import built, read_answer
from test_grains import Grains


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    # Freed memory goes back at once, so that the daemon's RSS shows what it
    # holds (ASan's quarantine would keep 256 MiB of freed blocks).
    monkeypatch.setenv("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:quarantine_size_mb=0")
    g = Grains(tmp_path, bridge=os.path.abspath(built("tests", "integration", "hostile-grain")))
    gid = g.new_grain()
    g.host, g.cookie = g.open(gid)
    g.gid = gid
    yield g
    g.stop()


def raw(g, requests, timeout=5):
    """Sends requests (paths) on one keep-alive connection; returns all bytes
    read until the gateway closes it or goes quiet."""
    s = socket.create_connection(("127.0.0.1", g.d.port), timeout=timeout)
    for path in requests:
        s.sendall((f"GET {path} HTTP/1.1\r\nHost: {g.host}\r\nCookie: {g.cookie}\r\n\r\n").encode())
    out = b""
    try:
        while True:
            c = s.recv(65536)
            if not c:
                break
            out += c
    except socket.timeout:
        pass
    s.close()
    return out


@pytest.mark.parametrize("path", ["/split204", "/split304", "/split204stream"])
def test_a_body_on_a_bodiless_status_is_not_sent(hostile, path):
    """The app answers 204 or 304 with a body that is a whole HTTP response
    of its own. h2o frames such a response without a length, so the bytes
    would be read as the answer to the browser's next request on the
    connection, without the grain's CSP: none of them go out."""
    out = raw(hostile, [path, "/"])
    assert b"no CSP" not in out, out
    responses = re.findall(rb"HTTP/1\.1 (\d{3})", out)
    assert responses[:2] in ([b"204", b"200"], [b"304", b"200"]), out
    # The second response is the grain's own, with the platform's headers.
    second = out[out.index(b"HTTP/1.1 200"):]
    assert b"content-security-policy" in second.lower(), second
    assert second.endswith(b"hostile grain\n"), second


def test_control_bytes_in_an_apps_header_do_not_go_out(hostile):
    """A MIME type and an ETag with an escape sequence and a DEL: no such
    header goes to the browser (only visible ASCII, space and tab may)."""
    out = raw(hostile, ["/ctlmime"])
    assert out.startswith(b"HTTP/1.1 200"), out
    head = out.split(b"\r\n\r\n")[0]
    assert b"\x1b" not in head and b"\x7f" not in head, head
    assert b"text/html" not in head.lower(), head
    assert b"etag" not in head.lower(), head


def test_control_bytes_in_a_dav_extension_do_not_go_out(hostile):
    """OPTIONS: the app's DAV extensions go into the DAV header, but not one
    with an escape sequence and a DEL in it."""
    resp, _ = hostile.get(hostile.host, hostile.cookie, "/", method="OPTIONS")
    assert resp.status == 200
    assert resp.getheader("DAV") == "1, calendar-access", resp.getheaders()


@pytest.mark.parametrize("path", ["/dropstream", "/dropafter"])
def test_a_response_stream_the_app_lets_go_of_ends(hostile, path):
    """The app starts a streamed response and lets go of the stream without
    saying done: the response ends, as broken (the connection closes), and
    neither the request nor the stream is kept."""
    t0 = time.time()
    out = raw(hostile, [path], timeout=10)
    assert time.time() - t0 < 8, "the response never ended"
    assert out.startswith(b"HTTP/1.1 200"), out
    if path == "/dropafter":
        assert b"one write, then nothing" in out
    assert not out.endswith(b"0\r\n\r\n"), out  # not a whole chunked body
    # The gateway goes on serving the grain.
    assert hostile.get(hostile.host, hostile.cookie, "/")[0].status == 200


def test_a_streamed_response_nothing_is_written_to_is_given_up(tmp_path):
    """The app answers with a streamed body whose Handle is the gateway's own
    responseStream, handed back, and lets go of everything: only the
    gateway holds the stream now, so nobody can write to it or end it, not
    even the grain's stopping. After five idle periods (here 1 s each)
    without a write the response is cut, as for a call never answered;
    before, it stayed open for good, and with it the browser's connection."""
    g = Grains(tmp_path, idle=1, bridge=os.path.abspath(built("tests", "integration",
                                                              "hostile-grain")))
    try:
        gid = g.new_grain()
        g.host, g.cookie = g.open(gid)
        t0 = time.time()
        out = raw(g, ["/selfhandle"], timeout=20)
        waited = time.time() - t0
        assert out.startswith(b"HTTP/1.1 200"), out
        assert 4 <= waited < 15, waited
        assert not out.endswith(b"0\r\n\r\n"), out  # cut, not a whole body
        assert "nothing was written to a streamed response for 5 s; cutting it" in g.d.read_log()
        host, cookie = g.open(gid)  # the idle session is gone by now
        assert g.get(host, cookie, "/")[0].status == 200
    finally:
        g.stop()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def flood_unread(g, head, logged):
    """Sends the request head, reads nothing, and waits for the gateway to
    log that it cut the grain off; its memory must not have grown with the
    grain's 200 MiB (the RPC reader holds a frame or two while it parses)."""
    before = rss_kib(g.d.proc.pid)
    s = socket.create_connection(("127.0.0.1", g.d.port), timeout=10)
    s.sendall((head + f"Host: {g.host}\r\nCookie: {g.cookie}\r\n\r\n").encode())
    deadline = time.time() + 30
    while logged not in g.d.read_log() and time.time() < deadline:
        time.sleep(0.1)
    assert logged in g.d.read_log()
    time.sleep(1)
    grew = rss_kib(g.d.proc.pid) - before
    s.close()
    assert grew < 80 * 1024, f"the gateway grew by {grew} KiB"


def test_an_app_writing_far_ahead_of_the_browser_is_cut_off(hostile):
    """The app writes 200 MiB to a response without waiting for its writes'
    answers, while the browser reads nothing: the gateway keeps at most
    4 MiB of it, cuts the response, and says why in the log."""
    flood_unread(hostile, "GET /flood/200 HTTP/1.1\r\n",
                 "the app wrote more than 4 MiB ahead of the browser")
    assert hostile.get(hostile.host, hostile.cookie, "/")[0].status == 200


def test_an_app_sending_far_ahead_on_a_websocket_is_cut_off(hostile):
    """The same on a WebSocket: 200 sendBytes of 1 MiB to a browser that
    reads nothing. The gateway closes the socket past 4 MiB."""
    flood_unread(hostile, f"GET /wsflood/200 HTTP/1.1\r\nOrigin: http://{hostile.host}\r\n"
                 "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
                 "the app sent more than 4 MiB ahead of the browser")


WS_HEAD = ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")


def test_a_websocket_looped_back_to_the_browser_is_cut_off_safely(hostile):
    """The app answers openWebSocket with the gateway's own clientStream as
    its serverStream (so the browser's bytes are sent back to the browser
    inside the gateway) and sends 4 MiB to a browser that reads nothing.
    The browser's next bytes go past the 4 MiB the gateway keeps for it: the
    tunnel closes, from inside the send of those bytes, and the gateway
    goes on (it used its freed flow control before)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", hostile.d.port))
    s.sendall((f"GET /wsloop HTTP/1.1\r\nHost: {hostile.host}\r\nCookie: {hostile.cookie}\r\n"
               f"Origin: http://{hostile.host}\r\n" + WS_HEAD + "\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    time.sleep(1)  # the app's 4 MiB wait in the gateway
    s.sendall(b"\x81\x05hello")
    logged = "the app sent more than 4 MiB ahead of the browser"
    deadline = time.time() + 10
    while logged not in hostile.d.read_log() and time.time() < deadline:
        time.sleep(0.1)
    assert logged in hostile.d.read_log()
    s.close()
    assert hostile.get(hostile.host, hostile.cookie, "/")[0].status == 200


def test_control_bytes_in_an_apps_websocket_protocol_do_not_go_out(hostile):
    """The app accepts a WebSocket with a subprotocol that carries an
    escape sequence and a DEL: the upgrade is answered without it."""
    s = socket.create_connection(("127.0.0.1", hostile.d.port), timeout=10)
    s.sendall((f"GET /wsproto HTTP/1.1\r\nHost: {hostile.host}\r\nCookie: {hostile.cookie}\r\n"
               f"Origin: http://{hostile.host}\r\nSec-WebSocket-Protocol: chat\r\n" +
               WS_HEAD + "\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        got = s.recv(1)
        assert got, head
        head += got
    s.close()
    assert head.startswith(b"HTTP/1.1 101"), head
    assert b"\x1b" not in head and b"\x7f" not in head, head
    assert b"sec-websocket-protocol" not in head.lower(), head


def test_a_websocket_the_app_never_accepts_is_given_up(tmp_path):
    """The app never answers openWebSocket. As for any other call, after
    five idle periods (here 1 s each) the browser gets 504, the call is
    cancelled and the grain is no longer held for it: it stops for being
    idle. Before, the upgrade waited, and held the grain, for good."""
    g = Grains(tmp_path, idle=1, bridge=os.path.abspath(built("tests", "integration",
                                                              "hostile-grain")))
    try:
        gid = g.new_grain()
        host, cookie = g.open(gid)
        s = socket.create_connection(("127.0.0.1", g.d.port), timeout=20)
        t0 = time.time()
        s.sendall((f"GET /wshang HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n"
                   f"Origin: http://{host}\r\n" + WS_HEAD + "\r\n").encode())
        out = read_answer(s)
        waited = time.time() - t0
        s.close()
        assert out.startswith(b"HTTP/1.1 504"), out
        assert 4 <= waited < 15, waited
        deadline = time.time() + 20
        while f"grain {gid}: idle" not in g.d.read_log() and time.time() < deadline:
            time.sleep(0.1)
        assert f"grain {gid}: idle" in g.d.read_log()
    finally:
        g.stop()


def test_a_refused_session_is_asked_for_again(hostile):
    """newSession fails for the first request (the app refuses its User-Agent):
    that request gets 502, and the next one asks the grain for a session
    again instead of reusing the broken one until the grain restarts."""
    resp, body = hostile.get(hostile.host, hostile.cookie, "/",
                             headers={"User-Agent": "refuse-session/1.0"})
    assert resp.status == 502, body
    resp, body = hostile.get(hostile.host, hostile.cookie, "/")
    assert resp.status == 200 and body == b"hostile grain\n", body


def test_a_request_the_app_never_answers_is_given_up(tmp_path):
    """The app never answers. After five idle periods (here 1 s each) the
    gateway answers 504 and cancels the call, so the grain is no longer held
    for it and stops for being idle, as any other."""
    g = Grains(tmp_path, idle=1, bridge=os.path.abspath(built("tests", "integration",
                                                              "hostile-grain")))
    try:
        gid = g.new_grain()
        host, cookie = g.open(gid)
        t0 = time.time()
        resp, body = g.get(host, cookie, "/hang")
        waited = time.time() - t0
        assert resp.status == 504, body
        assert b"The app did not answer in time." in body
        assert 4 <= waited < 15, waited
        assert "the app did not answer a request for 5 s; giving up on it" in g.d.read_log()
        deadline = time.time() + 20
        while f"grain {gid}: idle" not in g.d.read_log() and time.time() < deadline:
            time.sleep(0.1)
        assert f"grain {gid}: idle" in g.d.read_log()
    finally:
        g.stop()


def test_a_download_name_cannot_break_the_header(hostile):
    """The app's download name goes out as filename= in plain ASCII and,
    having letters beyond it, as filename*= in UTF-8: quotes and
    backslashes never as they are; a line break that would start a header
    of its own, a DEL, a mark that reorders text and a byte that is not
    UTF-8 not at all."""
    out = raw(hostile, ["/download"])
    assert out.startswith(b"HTTP/1.1 200"), out
    head = out.split(b"\r\n\r\n")[0]
    lines = head.split(b"\r\n")
    assert not any(line.lower().startswith(b"x-injected") for line in lines), head
    disp = [line for line in lines if line.lower().startswith(b"content-disposition:")]
    assert len(disp) == 1, head
    assert disp[0].split(b": ", 1)[1] == (
        b"attachment; filename=\"r_sum_ _q__X-Injected: 1;.txt\"; "
        b"filename*=UTF-8''r%C3%A9sum%C3%A9%20%22q%22%5CX-Injected%3A%201%3B.txt")
    assert b"\x7f" not in head


def test_an_app_cannot_set_the_platforms_cookie(hostile):
    """Neither name of the origin's cookie (granary_grain, and over https
    __Host-granary_grain) can be set by the app; its own cookies can."""
    out = raw(hostile, ["/platformcookies"])
    assert out.startswith(b"HTTP/1.1 200"), out
    head = out.split(b"\r\n\r\n")[0].lower()
    cookies = [line for line in head.split(b"\r\n") if line.startswith(b"set-cookie:")]
    assert len(cookies) == 1 and cookies[0].startswith(b"set-cookie: mine=planted"), head
