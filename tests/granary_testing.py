"""Shared helpers and fixtures: paths of the built binaries, a running daemon,

Tests drive the real `granary` binary (the sanitizer build by default) over
real sockets on free ports, each with its own data directory."""
import http.client
import json
import os
import re
import select
import signal
import socket
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASAN_DIR = os.environ.get("GRANARY_ASAN_DIR", os.path.join(ROOT, "build-asan"))
BUILD_DIR = os.environ.get("GRANARY_BUILD_DIR", os.path.join(ROOT, "build"))
WEB_DIST = os.path.join(ROOT, "web", "dist")
BASE_HOST = "granary.localhost:6080"


def granary_bin():
    """The daemon under test: the ASan+UBSan build when present."""
    for d in (ASAN_DIR, BUILD_DIR):
        p = os.path.join(d, "src", "granary", "granary")
        if os.path.exists(p):
            return p
    pytest.fail("no granary binary: run `make asan` (or make test)")


def free_port():
    """A port nothing listens on now (tests that need a fixed one for a
    child process; the daemon itself takes port 0)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def built(*path):
    """A file of the build (the sanitizer build first, else the plain one),
    e.g. built("apps", "notes", "notes.spk")."""
    for d in (ASAN_DIR, BUILD_DIR):
        p = os.path.join(d, *path)
        if os.path.exists(p):
            return p
    pytest.fail(f"{os.path.join(*path)} is not built: run make asan")


def tcp_out_segments(pid):
    """TCP segments sent so far in the network namespace of pid (a grain's,
    read from the host through /proc/PID/net)."""
    with open(f"/proc/{pid}/net/snmp") as f:
        tcp = [line.split() for line in f if line.startswith("Tcp:")]
    return int(tcp[1][tcp[0].index("OutSegs")])


def sanitizer_env():
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env


class Daemon:
    """A `granary run` process on a free port, with its log collected."""

    def __init__(self, data_dir, extra_args=(), cwd=None, env=None, wrap=()):
        """wrap: a command that runs the daemon's (say, in namespaces)."""
        self.data_dir = str(data_dir)
        args = [*wrap, granary_bin(), "run", "--data", self.data_dir, "--listen", "127.0.0.1:0",
                "--web-dir", WEB_DIST, *extra_args]
        self.proc = subprocess.Popen(args, cwd=cwd or ROOT, env=env or sanitizer_env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.log = ""
        self.port = None
        deadline = time.monotonic() + 20
        while self.port is None:
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"granary did not start listening:\n{self.log}")
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 65536).decode(errors="replace")
                if chunk == "":
                    self.proc.wait()
                    pytest.fail(f"granary exited with {self.proc.returncode}:\n{self.log}")
                self.log += chunk
                m = re.search(r"listening on [^ ]+:(\d+)\n", self.log)
                if m:
                    self.port = int(m.group(1))

    def request(self, method, path, host=BASE_HOST, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        h = {"Host": host}
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp, data

    def read_log(self):
        """Drains whatever the daemon has written so far."""
        while True:
            r, _, _ = select.select([self.proc.stdout], [], [], 0)
            if not r:
                break
            chunk = os.read(self.proc.stdout.fileno(), 65536).decode(errors="replace")
            if not chunk:
                break
            self.log += chunk
        return self.log

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Signals the daemon and returns its exit status and full log."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"granary did not stop after {sig}:\n{self.log}")
        self.log += out.decode(errors="replace")
        return self.proc.returncode, self.log

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path / "var")
    yield d
    if d.proc.poll() is None:
        code, log = d.stop()
        # A sanitizer report or a crash at shutdown fails the test that used it.
        assert code == 0, log
        assert "Sanitizer" not in log and "runtime error" not in log, log


def run_granary(*args, cwd=None, timeout=30, env=None):
    """Runs the granary CLI to completion; returns (exit status, stdout, stderr)."""
    p = subprocess.run([granary_bin(), *args], cwd=cwd or ROOT, env=env or sanitizer_env(),
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


class Client:
    """A browser-like JSON client for the shell API: keeps the session cookie
    and sends the CSRF header the way the web shell does."""

    def __init__(self, daemon, host=BASE_HOST, https=False):
        """host and https: the shell's, when the daemon's base URL is another."""
        self.daemon = daemon
        self.host = host
        self.cookie_name = "__Host-granary_session" if https else "granary_session"
        self.cookie = None
        self.csrf = None

    def call(self, method, path, body=None, headers=None, raw=None):
        h = {"Accept": "application/json"}
        if self.cookie:
            h["Cookie"] = f"{self.cookie_name}={self.cookie}"
        if method == "POST":
            h["Content-Type"] = "application/json"
            h["X-Granary-CSRF"] = self.csrf or "anonymous"
        h.update(headers or {})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        resp, out = self.daemon.request(method, path, host=self.host, body=data, headers=h)
        for name, value in resp.getheaders():
            if name.lower() == "set-cookie" and value.startswith(self.cookie_name + "="):
                self.set_cookie_header = value
                token = value.split(";", 1)[0].split("=", 1)[1]
                self.cookie = token or None
        try:
            parsed = json.loads(out) if out else None
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and parsed.get("csrf"):
            self.csrf = parsed["csrf"]
        return resp.status, parsed, resp

    def post(self, path, body=None, **kw):
        return self.call("POST", path, body, **kw)

    def get(self, path, **kw):
        return self.call("GET", path, **kw)


def setup_link_from_log(log):
    m = re.search(r"open this link \(valid 24 hours\): (\S+)", log)
    assert m, log
    return m.group(1)


def totp_now(secret_b32, at=None):
    """RFC 6238 (SHA-1, 6 digits, 30 s), computed independently of Granary."""
    import base64
    import hashlib
    import hmac
    import struct
    pad = "=" * (-len(secret_b32) % 8)
    key = base64.b32decode(secret_b32.upper() + pad)
    step = int((time.time() if at is None else at) // 30)
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 1000000
    return f"{code:06d}"


ADMIN = {"email": "admin@example.com", "name": "Ada Admin", "password": "correct horse battery"}


@pytest.fixture
def admin(daemon):
    """A daemon whose first administrator has been set up; returns its client."""
    token = setup_link_from_log(daemon.read_log()).split("#token=")[1]
    c = Client(daemon)
    status, body, _ = c.post("/api/setup", dict(ADMIN, token=token))
    assert status == 201, body
    return c


def slow_upload(port, head, body, first, pause):
    """Sends a request head and the first bytes of its body, then waits up
    to pause seconds for an answer (the gateway's clock looks meanwhile);
    without one, sends the rest. Returns (what came back, whole: the head
    and as much of the body as its Content-Length says, or all until the
    end; whether all was sent)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(head)
    s.sendall(body[:first])
    sent_all = False
    if not select.select([s], [], [], pause)[0]:
        try:
            s.sendall(body[first:])
            sent_all = True
        except OSError:
            pass
    answer = read_answer(s)
    s.close()
    return answer, sent_all


def read_answer(s):
    """Reads one HTTP answer from socket s: its head and as much of its body
    as its Content-Length says, or all until the end (or a reset)."""
    answer = b""
    try:
        while True:
            got = s.recv(65536)
            if not got:
                break
            answer += got
            top, _, rest = answer.partition(b"\r\n\r\n")
            m = re.search(rb"content-length: (\d+)", top.lower())
            if m and len(rest) >= int(m.group(1)):
                break
    except OSError:
        pass
    return answer
