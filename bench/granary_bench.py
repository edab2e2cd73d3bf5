"""Shared by the grain benchmarks: a release-build daemon on a free port with
an administrator, the notes app installed, and grains opened as a browser
would. Not a benchmark itself (not executable)."""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("GRANARY_RELEASE_DIR", os.path.join(ROOT, "build-release"))
GRANARY = os.path.join(BUILD, "src", "granary", "granary")
NOTES = os.path.join(BUILD, "apps", "notes", "notes")
SPK = os.path.join(BUILD, "apps", "notes", "notes.spk")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Platform:
    def __init__(self, idle_seconds=600, args=()):
        for p in (GRANARY, SPK):
            if not os.path.exists(p):
                raise SystemExit(f"{p} is missing: run make release")
        self.tmp = tempfile.mkdtemp(prefix="granary-bench-")
        # The log goes to a file: a pipe nobody reads would stall the daemon.
        self.log_path = self.tmp + "/granary.log"
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [GRANARY, "run", "--data", self.tmp + "/var", "--listen", "127.0.0.1:0",
             "--web-dir", os.path.join(ROOT, "web", "dist"),
             "--grain-idle-seconds", str(idle_seconds), *args],
            stdout=self.log_file, stderr=subprocess.STDOUT)
        self.log = ""
        deadline = time.time() + 20
        while "listening on" not in self.log:
            if time.time() > deadline or self.proc.poll() is not None:
                raise SystemExit("granary did not start:\n" + self.log)
            time.sleep(0.05)
            with open(self.log_path) as f:
                self.log = f.read()
        self.port = int(re.search(r"listening on [^ ]+:(\d+)\n", self.log).group(1))
        token = re.search(r"/setup#token=([0-9a-f]{64})", self.log).group(1)
        self.cookie = None
        self.csrf = "x"
        r = self.call("POST", "/api/setup", {"token": token, "name": "Bench", "email":
                                             "bench@example.com", "password": "bench password"})
        self.csrf = r["csrf"]
        with open(SPK, "rb") as f:
            r = self.call("POST", "/api/apps", raw=f.read(), ctype="application/octet-stream")
        self.package_id = r["package_id"]

    def call(self, method, path, body=None, raw=None, ctype="application/json"):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        h = {"Host": "granary.localhost:6080", "X-Granary-CSRF": self.csrf, "Content-Type": ctype}
        if self.cookie:
            h["Cookie"] = "granary_session=" + self.cookie
        c.request(method, path, body=raw if raw is not None else json.dumps(body or {}), headers=h)
        r = c.getresponse()
        data = r.read()
        for k, v in r.getheaders():
            if k.lower() == "set-cookie" and v.startswith("granary_session="):
                self.cookie = v.split(";")[0].split("=", 1)[1]
        c.close()
        if r.status >= 300:
            raise SystemExit(f"{method} {path}: {r.status} {data[:200]!r}")
        return json.loads(data)

    def new_grain(self):
        return self.call("POST", "/api/grains", {"package_id": self.package_id})["grain"]["id"]

    def open(self, gid):
        """Returns (host, cookie) of a fresh origin for the grain."""
        url = self.call("POST", f"/api/grains/{gid}/open", {})["url"]
        host, path = re.match(r"http://([^/]+)(/.*)", url).groups()
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        c.request("GET", path, headers={"Host": host})
        r = c.getresponse()
        r.read()
        c.close()
        return host, r.getheader("Set-Cookie").split(";")[0]

    def pid_rss_kib(self, pid):
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        subprocess.run(["rm", "-rf", self.tmp])


def percentile(values, p):
    v = sorted(values)
    if not v:
        return 0.0
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]
