"""Shared pytest fixtures: paths of the built binaries and a running daemon.

Tests drive the real `granary` binary (the sanitizer build by default) over
real sockets on free ports, each with its own data directory."""
import http.client
import os
import re
import select
import signal
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


def sanitizer_env():
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env


class Daemon:
    """A `granary run` process on a free port, with its log collected."""

    def __init__(self, data_dir, extra_args=(), cwd=None, env=None):
        self.data_dir = str(data_dir)
        args = [granary_bin(), "run", "--data", self.data_dir, "--listen", "127.0.0.1:0",
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
