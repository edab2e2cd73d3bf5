"""The example notes app, run directly (outside any sandbox) over real HTTP
and WebSockets: permissions, persistence, ETags, the debug endpoints the
platform's tests rely on, streaming without buffering, and hostile input."""
import hashlib
import http.client
import json
import os
import socket
import subprocess
import time

import pytest
import websocket

from granary_testing import built, free_port

WRITE = {"X-Sandstorm-Permissions": "read,write"}


def notes_bin():
    return built("apps", "notes", "notes")


class Notes:
    def __init__(self, data_dir):
        self.dir = str(data_dir)
        self.port = free_port()
        self.proc = subprocess.Popen([notes_bin(), str(self.port)], env={"NOTES_DIR": self.dir},
                                     stderr=subprocess.PIPE)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise AssertionError("notes did not start")

    def request(self, method, path, body=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r, data

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def notes(tmp_path):
    n = Notes(tmp_path)
    yield n
    alive = n.proc.poll() is None
    n.stop()
    assert alive, "the app must not have died"


def test_page_and_script(notes):
    r, body = notes.request("GET", "/", headers=WRITE)
    assert r.status == 200 and b'data-can-write="true"' in body
    assert b"<script src=\"/app.js\">" in body and b"<script>" not in body  # CSP-friendly
    r, body = notes.request("GET", "/")
    assert b'data-can-write="false"' in body
    r, js = notes.request("GET", "/app.js")
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/javascript")


def test_write_needs_the_permission(notes):
    r, body = notes.request("PUT", "/api/note", body=b"sneaky")
    assert r.status == 403
    r, body = notes.request("PUT", "/api/note", body=b"sneaky",
                            headers={"X-Sandstorm-Permissions": "read,writer"})
    assert r.status == 403
    r, body = notes.request("PUT", "/api/note", body=b"first note", headers=WRITE)
    assert r.status == 200 and json.loads(body)["text"] == "first note"
    r, body = notes.request("GET", "/api/note")
    assert json.loads(body)["text"] == "first note"


def test_note_survives_a_restart_and_saves_atomically(tmp_path):
    n = Notes(tmp_path)
    n.request("PUT", "/api/note", body="ünïcode\nand lines".encode(), headers=WRITE)
    n.stop()
    assert sorted(os.listdir(tmp_path)) == ["note.txt"]  # no temporary file left
    n2 = Notes(tmp_path)
    r, body = n2.request("GET", "/api/note")
    assert json.loads(body)["text"] == "ünïcode\nand lines"
    n2.stop()


def test_etags(notes):
    notes.request("PUT", "/api/note", body=b"v1", headers=WRITE)
    r, body = notes.request("GET", "/api/note")
    etag = r.getheader("ETag")
    assert etag and etag.startswith('"')
    r, body = notes.request("GET", "/api/note", headers={"If-None-Match": etag})
    assert r.status == 304 and body == b""
    r, _ = notes.request("PUT", "/api/note", body=b"v2", headers={**WRITE, "If-Match": '"stale"'})
    assert r.status == 412
    r, _ = notes.request("PUT", "/api/note", body=b"v2", headers={**WRITE, "If-Match": etag})
    assert r.status == 200


def test_note_size_limit(notes):
    r, _ = notes.request("PUT", "/api/note", body=b"x" * ((1 << 20) + 1), headers=WRITE)
    assert r.status == 413


def test_headers_echo(notes):
    r, body = notes.request("POST", "/debug/headers?x=1", body=b"abc",
                            headers={"X-Sandstorm-Username": "Ada%20Admin", "Cookie": "a=b"})
    h = json.loads(body)
    assert h["method"] == "POST" and h["url"] == "/debug/headers?x=1" and h["body_bytes"] == 3
    names = {k.lower(): v for k, v in h["headers"]}
    assert names["x-sandstorm-username"] == "Ada%20Admin" and names["cookie"] == "a=b"


def test_headers_in_pieces_empty_and_per_request(notes):
    """Headers arriving a byte at a time, an empty value, and a second request
    on the connection: each request sees exactly its own headers."""
    s = socket.create_connection(("127.0.0.1", notes.port), timeout=10)
    first = (b"GET /debug/headers HTTP/1.1\r\nHost: x\r\nX-Empty:\r\n"
             b"X-Sandstorm-Permissions: edit\r\nX-Long: " + b"v" * 300 + b"\r\n\r\n")
    for i in range(len(first)):
        s.sendall(first[i:i + 1])
    second = b"GET /debug/headers HTTP/1.1\r\nHost: y\r\nX-Second: 2\r\n\r\n"
    s.sendall(second)
    data = b""
    while data.count(b"}") < 2 or not data.rstrip().endswith(b"}"):
        chunk = s.recv(65536)
        assert chunk
        data += chunk
    s.close()
    bodies = [json.loads(part[part.index(b"{"):]) for part in data.split(b"HTTP/1.1 200 OK")[1:]]
    assert [[k, v] for k, v in bodies[0]["headers"]] == [
        ["Host", "x"], ["X-Empty", ""], ["X-Sandstorm-Permissions", "edit"], ["X-Long", "v" * 300]]
    assert [[k, v] for k, v in bodies[1]["headers"]] == [["Host", "y"], ["X-Second", "2"]]


@pytest.mark.parametrize("status", [200, 201, 204, 301, 302, 303, 304, 307, 308, 400, 403, 404,
                                    409, 418, 500, 503])
def test_any_status(notes, status):
    r, body = notes.request("GET", f"/debug/status/{status}")
    assert r.status == status
    if 300 <= status < 400 and status != 304:
        assert r.getheader("Location") == "/debug/landed"


def test_large_download_streams(notes):
    size = 100 * 1024 * 1024
    c = http.client.HTTPConnection("127.0.0.1", notes.port, timeout=60)
    c.request("GET", f"/debug/big?bytes={size}")
    r = c.getresponse()
    assert int(r.getheader("Content-Length")) == size
    got = 0
    while True:
        chunk = r.read(1 << 20)
        if not chunk:
            break
        got += len(chunk)
    c.close()
    assert got == size
    assert notes.rss_kib() < 32 * 1024, "the app must stream, not buffer 100 MB"


def test_large_upload_streams(notes):
    size = 100 * 1024 * 1024
    block = os.urandom(1 << 20)
    h = hashlib.sha256()
    c = http.client.HTTPConnection("127.0.0.1", notes.port, timeout=60)
    c.putrequest("POST", "/debug/upload")
    c.putheader("Content-Length", str(size))
    c.endheaders()
    for _ in range(size // len(block)):
        c.send(block)
        h.update(block)
    r = c.getresponse()
    out = json.loads(r.read())
    c.close()
    assert out == {"bytes": size, "sha256": h.hexdigest()}
    assert notes.rss_kib() < 32 * 1024


def test_keep_alive_and_pipelining(notes):
    s = socket.create_connection(("127.0.0.1", notes.port), timeout=10)
    s.sendall(b"GET /debug/big?bytes=200000 HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /debug/status/418 HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"status 418" not in data:
        chunk = s.recv(65536)
        assert chunk
        data += chunk
    s.close()
    first = data.index(b"HTTP/1.1 200 OK")
    second = data.index(b"HTTP/1.1 418")
    assert first < second  # answered in order, after the whole stream


def test_websocket_echo(notes):
    ws = websocket.create_connection(f"ws://127.0.0.1:{notes.port}/ws/echo", timeout=10)
    ws.send("hello")
    assert ws.recv() == "hello"
    payload = os.urandom(200000)
    ws.send_binary(payload)
    assert ws.recv() == payload
    ws.send_frame(websocket.ABNF.create_frame("frag", websocket.ABNF.OPCODE_TEXT, fin=0))
    ws.send_frame(websocket.ABNF.create_frame("mented", websocket.ABNF.OPCODE_CONT, fin=1))
    assert ws.recv() == "fragmented"
    ws.ping("p")
    op, data = ws.recv_data(control_frame=True)
    assert op == websocket.ABNF.OPCODE_PONG and data == b"p"
    ws.close()


def test_websocket_live_view(notes):
    ws = websocket.create_connection(f"ws://127.0.0.1:{notes.port}/ws/live", timeout=10)
    time.sleep(0.1)
    notes.request("PUT", "/api/note", body=b"pushed to you", headers=WRITE)
    assert json.loads(ws.recv())["text"] == "pushed to you"
    ws.close()


def test_websocket_protocol_errors(notes):
    # An unmasked client frame is a protocol error: close 1002, connection gone.
    s = socket.create_connection(("127.0.0.1", notes.port), timeout=10)
    s.sendall(b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    resp = s.recv(4096)
    assert b"101 Switching Protocols" in resp
    assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in resp  # RFC 6455's worked example
    s.sendall(b"\x81\x05hello")
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    assert data == b"\x88\x02\x03\xea"  # close, 1002
    s.close()
    # A declared length past the limit is refused before any payload arrives.
    ws = websocket.create_connection(f"ws://127.0.0.1:{notes.port}/ws/echo", timeout=10)
    ws.sock.sendall(b"\x82\xff" + (2 << 40).to_bytes(8, "big") + b"mask")
    op, data = ws.recv_data(control_frame=True)
    assert op == websocket.ABNF.OPCODE_CLOSE and data[:2] == b"\x03\xf1"  # 1009
    # Not a WebSocket handshake at all.
    r, _ = notes.request("GET", "/ws/echo", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
    assert r.status == 400


def test_hostile_http(notes):
    for junk in (b"NOT HTTP AT ALL\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: " + b"y" * 70000
                 + b"\r\n\r\n", b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\n\r\n",
                 b"POST /api/note HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n"):
        s = socket.create_connection(("127.0.0.1", notes.port), timeout=10)
        s.sendall(junk)
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        s.close()
        assert data == b"" or data.startswith(b"HTTP/1.1 400"), data[:100]
    r, _ = notes.request("GET", "/api/note")
    assert r.status == 200


def test_crash_endpoint_kills_the_app(tmp_path):
    n = Notes(tmp_path)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        n.request("GET", "/debug/crash")
    assert n.proc.wait(timeout=10) != 0
