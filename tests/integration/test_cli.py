"""The granary command line: help, version, and clear one-line errors with a
non-zero exit for every bad invocation (never a crash)."""
import os
import socket
import subprocess

import pytest

from granary_testing import Daemon, granary_bin, run_granary, sanitizer_env


def test_version():
    code, out, err = run_granary("--version")
    assert code == 0
    assert out.startswith("granary 0.")


def test_help_lists_commands():
    code, out, _ = run_granary("--help")
    assert code == 0
    assert "run" in out and "Usage: granary" in out


def test_run_help_lists_every_flag():
    code, out, _ = run_granary("run", "--help")
    assert code == 0
    for flag in ("--data", "--listen", "--base-url", "--wildcard-host", "--config"):
        assert flag in out


def test_no_command():
    code, out, err = run_granary()
    assert code == 2
    assert "Usage" in err


def test_unknown_command():
    code, _, err = run_granary("frobnicate")
    assert code == 2
    assert err.strip() == "granary: unknown command 'frobnicate' (see granary --help)"


@pytest.mark.parametrize("args, message", [
    (["--bogus", "1"], "unknown flag --bogus"),
    (["--listen", "nowhere"], "--listen: expected HOST:PORT"),
    (["--listen", "127.0.0.1:70000"], "--listen: bad port"),
    (["--base-url", "ftp://x"], "--base-url: 'ftp://x' must start with http"),
    (["--wildcard-host", "granary.localhost"], "--wildcard-host"),
    (["--data"], "--data needs a value"),
    (["--config", "/nonexistent/granary.conf"], "No such file or directory"),
])
def test_bad_flags_give_one_line(args, message, tmp_path):
    code, out, err = run_granary("run", "--data", str(tmp_path / "v"), *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("granary: ")
    assert message in lines[0]
    assert not (tmp_path / "v").exists() or args[0] != "--bogus"


def test_data_dir_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    code, _, err = run_granary("run", "--data", str(f), "--listen", "127.0.0.1:0")
    assert code == 1
    assert err.strip().splitlines() == [
        f"granary: cannot use data directory {f}: {f}: Not a directory"]


def test_data_dir_under_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    code, _, err = run_granary("run", "--data", str(f / "sub"), "--listen", "127.0.0.1:0")
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert "cannot use data directory" in err and "Not a directory" in err


def test_unreadable_data_dir_as_unprivileged_user(tmp_path):
    """Root bypasses permission bits, so the daemon runs as 'nobody' here."""
    if subprocess.run(["which", "setpriv"], capture_output=True).returncode != 0:
        pytest.skip("setpriv not available")
    import shutil
    import tempfile
    top = tempfile.mkdtemp(prefix="granary-perm-", dir="/tmp")  # traversable by nobody
    os.chmod(top, 0o755)
    d = os.path.join(top, "locked")
    os.mkdir(d, 0o000)
    try:
        p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        granary_bin(), "run", "--data", str(d), "--listen", "127.0.0.1:0"],
                           capture_output=True, text=True, timeout=30, env=sanitizer_env(),
                           cwd="/")
    finally:
        shutil.rmtree(top)
    assert p.returncode == 1, p.stderr
    assert p.stderr.strip().splitlines() == [
        f"granary: cannot use data directory {d}: Permission denied"]


def test_corrupt_store_is_refused(tmp_path):
    d = tmp_path / "var"
    d.mkdir()
    (d / "granary.sqlite").write_bytes(b"not a database at all\n" * 100)
    code, _, err = run_granary("run", "--data", str(d), "--listen", "127.0.0.1:0")
    assert code == 1
    assert "not a database" in err
    # Nothing was lost: the file is untouched.
    assert (d / "granary.sqlite").read_bytes() == b"not a database at all\n" * 100


def test_second_daemon_on_same_data_dir(tmp_path):
    d = Daemon(tmp_path / "var")
    try:
        code, _, err = run_granary("run", "--data", str(tmp_path / "var"), "--listen",
                                   "127.0.0.1:0")
        assert code == 1
        assert "another granary is already running" in err
    finally:
        d.stop()


def test_port_in_use(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        code, _, err = run_granary("run", "--data", str(tmp_path / "var"), "--listen",
                                   f"127.0.0.1:{port}")
        assert code == 1
        assert err.strip() == f"granary: listen on 127.0.0.1:{port}: address already in use"
    finally:
        s.close()


def test_config_file_in_working_directory(tmp_path):
    (tmp_path / "granary.conf").write_text(
        f"# test configuration\ndata = {tmp_path}/fromconf\nbase-url = http://shell.test:9\n")
    d = Daemon(tmp_path / "ignored", extra_args=(), cwd=str(tmp_path))
    try:
        # The --data flag given by the fixture wins over the file.
        resp, _ = d.request("GET", "/api/health", host="shell.test:9")
        assert resp.status == 200
        assert not (tmp_path / "fromconf").exists()
    finally:
        d.stop()


def test_config_file_error_names_the_line(tmp_path):
    conf = tmp_path / "g.conf"
    conf.write_text("data = /tmp/x\n\nlisten = 1.2.3.4\n")
    code, _, err = run_granary("run", "--config", str(conf))
    assert code == 2
    assert err.strip() == f"granary: {conf}:3: --listen: expected HOST:PORT, got '1.2.3.4'"
