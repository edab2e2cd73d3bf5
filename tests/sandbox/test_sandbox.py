"""The grain sandbox, end to end: `granary sandbox-run` (ASan build) runs the
static hostile program tests/sandbox/probe.c inside a grain, which tries
escapes one by one; plus limits, lifecycle, stdio, environment and logs."""
import hashlib
import os
import shutil
import tempfile
import pty
import signal
import socket
import subprocess
import time

import pytest

from granary_testing import tcp_out_segments

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("GRANARY_ASAN_DIR", os.path.join(ROOT, "build-asan"))
GRANARY = os.path.join(BUILD, "src", "granary", "granary")
PROBE = os.path.join(BUILD, "tests", "sandbox", "sandbox-probe")
BRIDGE = os.path.join(BUILD, "src", "bridge", "granary-http-bridge")
BUSYBOX = "/bin/busybox"


def probe_names():
    try:
        out = subprocess.run([PROBE, "list"], capture_output=True, text=True, timeout=30)
        return out.stdout.split()
    except OSError:
        return []


PROBES = probe_names()


@pytest.fixture
def package(tmp_path):
    pkg = tmp_path / "package"
    (pkg / "bin").mkdir(parents=True)
    (pkg / "etc").mkdir()
    (pkg / "etc" / "hostname").write_text("package\n")
    subprocess.run(["cp", PROBE, str(pkg / "bin" / "probe")], check=True)
    subprocess.run(["cp", BUSYBOX, str(pkg / "bin" / "busybox")], check=True)
    os.symlink("busybox", pkg / "bin" / "sh")
    # The package's own copy must be hidden by the platform's bridge.
    (pkg / "sandstorm-http-bridge").write_text("package copy\n")
    return pkg


@pytest.fixture
def var(tmp_path):
    v = tmp_path / "var"
    v.mkdir()
    return v


def cmd(package, var, *command, opts=()):
    return [GRANARY, "sandbox-run", "--package", str(package), "--var", str(var), *opts,
            "--", *command]


def run(package, var, *command, opts=(), **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("timeout", 120)
    return subprocess.run(cmd(package, var, *command, opts=opts), text=True, **kw)


def descendants(pid):
    """Host pids of every process below pid, from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def start_ready(package, var, *command, opts=()):
    p = subprocess.Popen(cmd(package, var, *command, opts=opts), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    assert line.strip() == "ready", (line, p.stderr.read() if p.poll() is not None else "")
    return p


# ---- the escape suite

@pytest.fixture(scope="module", params=["plain", "loopback-redirect"])
def probe_results(tmp_path_factory, request):
    """Runs every probe once in one grain with a terminal as stdin (for the
    TIOCSTI probe) and a host abstract socket to reach for; once as grains
    run by default and once with the opt-in loopback redirect, whose BPF
    programs see every socket the probes make."""
    base = tmp_path_factory.mktemp("probes")
    pkg = base / "package"
    (pkg / "bin").mkdir(parents=True)
    (pkg / "etc").mkdir()
    (pkg / "etc" / "hostname").write_text("package\n")
    subprocess.run(["cp", PROBE, str(pkg / "bin" / "probe")], check=True)
    v = base / "var"
    v.mkdir()
    name = "granary-sandbox-test-%d" % os.getpid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + name)
    listener.listen(1)
    master, slave = pty.openpty()
    try:
        extra = ["--loopback-redirect"] if request.param == "loopback-redirect" else []
        p = run(pkg, v, "/bin/probe", "probes", str(os.getpid()), name,
                opts=["--bridge", BRIDGE, "--env", "GRANARY_PROBE=1", *extra], stdin=slave,
                timeout=300)
    finally:
        os.close(slave)
        os.close(master)
        listener.close()
    results = {}
    for line in p.stdout.splitlines():
        word, _, rest = line.partition(" ")
        probe, _, detail = rest.partition(" ")
        results[probe] = (word, detail)
    return p, results, v


def test_probe_count():
    assert len(PROBES) >= 50, PROBES


def test_probes_ran(probe_results):
    p, results, _ = probe_results
    assert p.returncode == 0, p.stderr
    assert sorted(results) == sorted(PROBES)


@pytest.mark.parametrize("name", PROBES)
def test_probe(probe_results, name):
    _, results, _ = probe_results
    assert name in results, "probe did not report"
    word, detail = results[name]
    assert word == "PASS", detail


def test_var_written_by_grain_persists(probe_results):
    _, results, v = probe_results
    assert results["allow_write_var"][0] == "PASS"
    assert (v / "data").read_text() == "kept"
    # Files the grain makes belong to the service user outside.
    assert (v / "data").stat().st_uid == os.geteuid()


# ---- process interface

def test_exit_status(package, var):
    assert run(package, var, "/bin/probe", "exit", "42").returncode == 42
    assert run(package, var, "/bin/probe", "exit", "0").returncode == 0


def test_env_exactly_as_given(package, var):
    p = run(package, var, "/bin/probe", "env", opts=["--env", "A=1", "--env", "B=two words"])
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["A=1", "B=two words"]
    p = run(package, var, "/bin/probe", "env")
    assert p.stdout == ""


def test_secrets_not_inherited(package, var):
    env = dict(os.environ, GRANARY_SECRET="hunter2")
    p = run(package, var, "/bin/probe", "env", env=env)
    assert "hunter2" not in p.stdout


def test_stdio(package, var):
    p = run(package, var, "/bin/probe", "cat", input="hello grain\n")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "hello grain\n"
    assert p.stderr == "to stderr\n"


def test_fds(package, var, tmp_path):
    leak = open(tmp_path / "leak", "w")
    os.set_inheritable(leak.fileno(), True)
    try:
        p = run(package, var, "/bin/probe", "fds", close_fds=False)
    finally:
        leak.close()
    lines = p.stdout.splitlines()
    assert lines[3] == "3 socket", lines
    assert [int(x.split()[0]) for x in lines] == [0, 1, 2, 3], lines


def test_shell_script(package, var):
    (var / "script.sh").write_text(
        "echo start > /tmp/out\n"
        "/bin/busybox printf 'from %s\\n' \"$1\" >> /tmp/out\n"
        "/bin/busybox cat /tmp/out\n"
        "/bin/busybox cp /tmp/out /var/copied\n"
        "exit 5\n")
    p = run(package, var, "/bin/sh", "/var/script.sh", "script")
    assert p.returncode == 5, p.stderr
    assert p.stdout == "start\nfrom script\n"
    assert (var / "copied").read_text() == "start\nfrom script\n"


def test_bridge_replaces_package_copy(package, var):
    p = run(package, var, "/bin/busybox", "md5sum", "/sandstorm-http-bridge",
            opts=["--bridge", BRIDGE])
    assert p.returncode == 0, p.stderr
    with open(BRIDGE, "rb") as f:
        assert p.stdout.split()[0] == hashlib.md5(f.read()).hexdigest()
    # The package was not written to: its own copy is untouched.
    assert (package / "sandstorm-http-bridge").read_text() == "package copy\n"


def test_command_not_found(package, var):
    p = run(package, var, "/bin/missing")
    assert p.returncode == 125
    assert "execve /bin/missing" in p.stderr


@pytest.mark.parametrize("bad", [
    ["--package", "/nonexistent", "--var", "/tmp"],
    ["--package", "/tmp", "--var", "/tmp", "--env", "NOEQUALS"],
    ["--package", "/tmp", "--var", "/tmp", "--memory", "12"],
])
def test_bad_arguments(bad):
    p = subprocess.run([GRANARY, "sandbox-run", *bad, "--", "/bin/probe"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode in (2, 125), p
    assert "granary sandbox-run:" in p.stderr


def test_relative_command(package, var):
    p = run(package, var, "bin/probe")
    assert p.returncode == 125
    assert "absolute path" in p.stderr


# ---- lifecycle

def test_grain_killed_as_a_whole(package, var):
    p = start_ready(package, var, "/bin/probe", "tree")
    pids = descendants(p.pid)
    assert len(pids) == 7, pids  # pid 1, three children, three grandchildren
    p.send_signal(signal.SIGTERM)  # sandbox-run kills the grain's PID namespace
    assert p.wait(timeout=60) == 128 + signal.SIGKILL
    assert wait_gone(pids)


def test_grain_dies_with_sandbox_run(package, var):
    p = start_ready(package, var, "/bin/probe", "tree")
    pids = descendants(p.pid)
    assert len(pids) == 7, pids
    p.kill()
    p.wait(timeout=60)
    assert wait_gone(pids), [q for q in pids if alive(q)]


# ---- limits

def limits_mode():
    return subprocess.run([GRANARY, "sandbox-run", "--limits-mode"], capture_output=True,
                          text=True, timeout=60).stdout.strip()


def test_limits_mode_known():
    assert limits_mode() in ("cgroup-v1", "cgroup-v2", "rlimit")


def leftover_cgroups():
    out = []
    for top, dirs, _ in os.walk("/sys/fs/cgroup"):
        out += [d for d in dirs if d.startswith("granary-grain-")]
    return out


def test_memory_hog_is_stopped(package, var):
    before = leftover_cgroups()
    p = run(package, var, "/bin/probe", "hog", opts=["--memory", str(64 << 20)])
    if limits_mode() == "rlimit":
        assert p.returncode == 3 and "malloc failed" in p.stdout  # RLIMIT_AS
    else:
        assert p.returncode == 128 + signal.SIGKILL, (p.stdout, p.stderr)  # the OOM killer
    # The host is fine and the grain's cgroups are gone.
    assert run(package, var, "/bin/probe", "exit", "0").returncode == 0
    assert set(leftover_cgroups()) <= set(before)  # nothing left behind


def test_fork_bomb_is_stopped(package, var):
    before = leftover_cgroups()
    p = run(package, var, "/bin/probe", "forkbomb", opts=["--pids", "32"])
    assert p.returncode == 0, (p.stdout, p.stderr)
    made = int(p.stdout.split("fork failed after ")[1].split(":")[0])
    assert made < 32
    assert "Resource temporarily unavailable" in p.stdout
    assert run(package, var, "/bin/probe", "exit", "0").returncode == 0
    assert set(leftover_cgroups()) <= set(before)  # nothing left behind


def test_limits_do_not_leak_between_grains(package, var):
    run(package, var, "/bin/probe", "forkbomb", opts=["--pids", "8"])
    p = run(package, var, "/bin/probe", "forkbomb", opts=["--pids", "64"])
    made = int(p.stdout.split("fork failed after ")[1].split(":")[0])
    assert 8 < made < 64


# ---- logs

def test_log_rotation(package, var, tmp_path):
    log = tmp_path / "grain.log"
    p = run(package, var, "/bin/probe", "spam", "1500", opts=["--log", str(log)])
    assert p.returncode == 0, p.stderr
    assert p.stdout == ""
    old = tmp_path / "grain.log.1"
    assert log.stat().st_size <= 512 * 1024
    assert old.exists() and old.stat().st_size <= 512 * 1024
    lines = log.read_text().splitlines()
    assert lines[-1].startswith("line %08d" % (1500 * 16 - 1))
    # Nothing was lost between the two files' boundary.
    prev = old.read_text().splitlines()[-1]
    assert int(prev.split()[1]) + 1 == int(lines[0].split()[1])


# ---- as an unprivileged service user (the production setup)

SERVICE_UID = 64000


@pytest.fixture
def service_dirs():
    """A package and var dir usable by an unprivileged uid (pytest's own
    tmp_path is private to root)."""
    base = tempfile.mkdtemp(prefix="granary-sbx-user-")
    os.chmod(base, 0o755)
    pkg, v = os.path.join(base, "package"), os.path.join(base, "var")
    os.makedirs(os.path.join(pkg, "bin"))
    os.makedirs(os.path.join(pkg, "etc"))
    with open(os.path.join(pkg, "etc", "hostname"), "w") as f:
        f.write("package\n")
    subprocess.run(["cp", PROBE, os.path.join(pkg, "bin", "probe")], check=True)
    os.makedirs(v)
    os.chown(v, SERVICE_UID, SERVICE_UID)
    yield pkg, v
    shutil.rmtree(base)


def as_service_user(argv):
    return ["setpriv", "--reuid=%d" % SERVICE_UID, "--regid=%d" % SERVICE_UID,
            "--clear-groups", *argv]


def test_unprivileged_probes(service_dirs):
    """Every probe also holds when the daemon is an ordinary user: the user
    namespace maps 1000 to that uid, and limits fall back to rlimits."""
    pkg, v = service_dirs
    name = "granary-sandbox-user-%d" % os.getpid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + name)
    listener.listen(1)
    master, slave = pty.openpty()
    try:
        p = subprocess.run(as_service_user(cmd(pkg, v, "/bin/probe", "probes", str(os.getpid()),
                                               name, opts=["--env", "GRANARY_PROBE=1"])),
                           stdin=slave, capture_output=True, text=True, timeout=300)
    finally:
        os.close(slave)
        os.close(master)
        listener.close()
    assert p.returncode == 0, p.stderr
    failed = [l for l in p.stdout.splitlines() if not l.startswith("PASS ")]
    assert failed == []
    assert len(p.stdout.splitlines()) == len(PROBES)
    assert os.stat(os.path.join(v, "data")).st_uid == SERVICE_UID


def test_unprivileged_rlimit_fallback(service_dirs):
    pkg, v = service_dirs
    mode = subprocess.run(as_service_user([GRANARY, "sandbox-run", "--limits-mode"]),
                          capture_output=True, text=True, timeout=60).stdout.strip()
    assert mode == "rlimit"  # a plain uid may not create cgroups here
    p = subprocess.run(as_service_user(cmd(pkg, v, "/bin/probe", "hog",
                                           opts=["--memory", str(64 << 20)])),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 3 and "malloc failed" in p.stdout, (p.stdout, p.stderr)  # RLIMIT_AS
    p = subprocess.run(as_service_user(cmd(pkg, v, "/bin/probe", "forkbomb",
                                           opts=["--pids", "32"])),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert int(p.stdout.split("fork failed after ")[1].split(":")[0]) < 32  # RLIMIT_NPROC


def test_grain_runs_inside_its_cgroups(package, var):
    """Every process of the grain is in the grain's cgroups, with the limits
    asked for, from the start (Sandstorm's app could escape its cgroup)."""
    if limits_mode() != "cgroup-v1":
        pytest.skip("this check reads the cgroup v1 layout")
    p = start_ready(package, var, "/bin/probe", "tree",
                    opts=["--memory", str(256 << 20), "--pids", "50", "--cpu", "50"])
    try:
        pids = sorted(descendants(p.pid))
        assert len(pids) == 7
        dirs = {}
        for top, subdirs, _ in os.walk("/sys/fs/cgroup"):
            for d in subdirs:
                if d.startswith("granary-grain-%d-" % p.pid):
                    dirs[top.split("/")[4]] = os.path.join(top, d)
        assert sorted(dirs) == ["cpu", "memory", "pids"], dirs

        def read(ctl, name):
            with open(os.path.join(dirs[ctl], name)) as f:
                return f.read().split()

        assert read("memory", "memory.limit_in_bytes") == [str(256 << 20)]
        assert read("pids", "pids.max") == ["50"]
        assert read("cpu", "cpu.cfs_quota_us") == ["50000"]
        for ctl in dirs:
            assert sorted(int(x) for x in read(ctl, "cgroup.procs")) == pids
    finally:
        p.kill()  # no reaping by sandbox-run: its grain's cgroups stay behind
        p.wait(timeout=60)
    assert wait_gone(pids)
    # The next sandbox removes cgroups whose daemon is gone.
    assert run(package, var, "/bin/probe", "exit", "0").returncode == 0
    assert not any(os.path.exists(d) for d in dirs.values()), dirs


def test_cpu_limit_throttles(package, var):
    """A grain over its CPU share is throttled by the scheduler, not killed."""
    if limits_mode() != "cgroup-v1":
        pytest.skip("this check reads the cgroup v1 layout")
    p = start_ready(package, var, "/bin/probe", "spin", opts=["--cpu", "10"])
    try:
        cpu = [os.path.join("/sys/fs/cgroup/cpu", d) for d in os.listdir("/sys/fs/cgroup/cpu")
               if d.startswith("granary-grain-%d-" % p.pid)]
        assert len(cpu) == 1, cpu
        stat = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open(os.path.join(cpu[0], "cpu.stat")) as f:
                stat = dict(line.split() for line in f)
            if int(stat["nr_throttled"]) >= 2:
                break
            time.sleep(0.1)
        assert int(stat["nr_throttled"]) >= 2, stat
        assert p.poll() is None  # still running
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=60) == 128 + signal.SIGKILL


@pytest.mark.parametrize("probe", ["capabilities", "no_new_privs", "setuid", "mount", "unshare",
                                   "chown", "ptrace_attach"])
def test_file_capabilities_and_setuid_bit_gain_nothing(package, var, probe):
    """A package binary that is setuid and carries file capabilities (what a
    hostile package could ship) runs with no privileges at all."""
    binary = package / "bin" / "probe"
    subprocess.run(["setcap", "cap_sys_admin,cap_net_admin,cap_dac_override,cap_setuid+eip",
                    str(binary)], check=True)
    os.chmod(binary, 0o4755)
    assert "cap_sys_admin" in subprocess.run(["getcap", str(binary)], capture_output=True,
                                             text=True).stdout
    p = run(package, var, "/bin/probe", "probes", str(os.getpid()), "none", probe,
            opts=["--env", "GRANARY_PROBE=1"])
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"PASS {probe}\n"


# ---- the opt-in loopback redirect

def lopair_in_two_grains(tmp_path, package, opts):
    """Runs `probe lopair` in two grains at once: each talks to itself over
    127.0.0.1:40000 -> 127.0.0.1:8000, the same four-tuple in both. Returns
    each grain's output and the TCP segments its namespace sent."""
    tmp_path.mkdir(exist_ok=True)
    procs = []
    for tag in ("a", "b"):
        v = tmp_path / f"var-{tag}"
        v.mkdir()
        procs.append(subprocess.Popen(cmd(package, v, "/bin/probe", "lopair", tag, "40", "5",
                                          opts=opts),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs, segs = [], []
    for p in procs:
        out = ""
        for line in p.stdout:
            out += line
            if line.strip() == "waiting" or "FAIL" in line:
                break
        inside = descendants(p.pid)
        segs.append(tcp_out_segments(inside[0]) if inside else None)
        outs.append(out)
    for p in procs:
        p.terminate()  # sandbox-run stops the grain and removes its cgroups
        p.wait(timeout=30)
    return outs, segs


def test_loopback_redirect_skips_tcp_and_keeps_grains_apart(package, tmp_path):
    # By default every message is a TCP segment on the grain's loopback.
    outs, segs = lopair_in_two_grains(tmp_path / "plain", package, [])
    assert outs == ["lopair ok\nwaiting\n"] * 2, outs
    assert all(s > 100 for s in segs), segs
    # With the redirect the same traffic skips TCP (the handshakes and the
    # closes remain), and two grains holding the same four-tuple at the same
    # time each get exactly their own bytes (probe lopair checks every one).
    outs, segs = lopair_in_two_grains(tmp_path / "redirect", package, ["--loopback-redirect"])
    assert outs == ["lopair ok\nwaiting\n"] * 2, outs
    assert all(s is not None and s < 20 for s in segs), segs


def test_loopback_redirect_leaves_no_cgroup_behind(package, var):
    before = set(leftover_cgroups())
    p = run(package, var, "/bin/probe", "exit", "3", opts=["--loopback-redirect"])
    assert p.returncode == 3, p.stderr
    assert not set(leftover_cgroups()) - before


def test_loopback_redirect_refused_to_an_unprivileged_daemon(service_dirs):
    """Asked for and not possible (an ordinary user may not load these BPF
    programs or make cgroups) is a clear error, and no grain starts."""
    pkg, v = service_dirs
    p = subprocess.run(as_service_user(cmd(pkg, v, "/bin/probe", "exit", "0",
                                           opts=["--loopback-redirect"])),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "loopback redirect:" in p.stderr, p.stderr


def test_socket_calls_apps_make_behind_the_loopback_redirect(package, var):
    """FIONREAD, MSG_PEEK, read, sendfile, the order of bytes sent before
    the peer's socket existed (TCP_DEFER_ACCEPT) or by TCP Fast Open
    without a cookie (off with the redirect: the client falls back to
    connect), a half-close, a new
    connection on the four-tuple of a dead one whose descriptor is still
    open, and writes to a peer that closed behave the same with the redirect
    on; splice out of a socket does not
    see redirected data (a
    blocking splice would wait forever), the difference docs/sandbox.md
    states, which keeps the redirect opt-in."""
    plain = run(package, var, "/bin/probe", "sockapi", timeout=60)
    assert plain.returncode == 0, plain.stderr
    redirected = run(package, var, "/bin/probe", "sockapi", opts=["--loopback-redirect"],
                     timeout=60)
    assert redirected.returncode == 0, redirected.stderr
    same = ["fionread 7", "peek peek-me", "read peek-me", "sendfile 4096 received 4096"]
    closed = ["order AAAABBBB", "fastopen order AAAABBBB", "half-close two",
              "reused four-tuple request",
              "write after close taken", "write after close Broken pipe"]
    assert plain.stdout.splitlines() == same + ["splice ok"] + closed
    assert redirected.stdout.splitlines() == same + ["splice refused"] + closed


def test_loopback_redirect_queues_only_up_to_the_grains_memory_limit(package, var):
    """The redirect has no receive window: a writer whose peer never reads
    is stopped only by memory. The grain's memory cgroup (v1: its
    memory.kmem.tcp limit) bounds what it can queue, so it cannot pin the
    host's TCP memory; TCP itself stops the writer at a few MiB."""
    tcp = run(package, var, "/bin/probe", "flood", timeout=120)
    assert tcp.returncode == 0, tcp.stderr
    mib = int(tcp.stdout.split()[1])
    assert mib < 32 and "Resource temporarily unavailable" in tcp.stdout, tcp.stdout
    if limits_mode() == "rlimit":
        pytest.skip("no memory cgroup on this host")
    limited = run(package, var, "/bin/probe", "flood",
                  opts=["--loopback-redirect", "--memory", str(64 << 20)], timeout=120)
    assert limited.returncode == 0, limited.stderr
    mib = int(limited.stdout.split()[1])
    assert 32 <= mib <= 64 and "Cannot allocate memory" in limited.stdout, limited.stdout
