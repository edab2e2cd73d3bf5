# Hostile packages, built here without granary (capnp encode with Granary's
# schema, Python's lzma, PyNaCl signatures, and a raw writer for messages too
# big to write as text). Each must be refused by `granary admin install` with
# the exact problem named, leaving nothing behind: no directory or temporary
# under apps/, no rows in the store.
import lzma
import os
import sqlite3
import struct

import pytest

from spk_helpers import (GOOD_MANIFEST, MAGIC, ArchiveWriter, Key, archive_bytes, file_entry,
                         manifest_bytes, signature_bytes, spk_bytes)

OK_FILES = [file_entry("start.sh", "executable", b"echo hi\n")]


def install(granary, tmp_path, spk, name="bad.spk"):
    path = tmp_path / name
    path.write_bytes(spk)
    data = tmp_path / "data"
    p = granary.run("admin", "install", str(path), "--data", str(data), check=False)
    return p, data


def assert_nothing_installed(data):
    apps = data / "apps"
    if apps.exists():
        assert os.listdir(apps) == []
    db = sqlite3.connect(str(data / "granary.sqlite"))
    try:
        assert db.execute("SELECT count(*) FROM packages").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM apps").fetchone() == (0,)
    finally:
        db.close()


def refused(granary, tmp_path, spk, message):
    p, data = install(granary, tmp_path, spk)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 1, err
    assert message in err, err
    assert "runtime error" not in err and "AddressSanitizer" not in err
    assert_nothing_installed(data)
    return err


def good_archive():
    return archive_bytes(OK_FILES)


def test_control_good_package_installs(granary, tmp_path):
    # The builders below make installable packages unless broken on purpose.
    key = Key()
    p, data = install(granary, tmp_path, spk_bytes(key, good_archive()), "good.spk")
    assert p.returncode == 0, p.stderr
    assert key.app_id in p.stdout.decode()
    assert len(os.listdir(data / "apps")) == 1


@pytest.mark.parametrize("spk,message", [
    (b"", "not a package: wrong magic number"),
    (b"\x8f\xc6\xcd", "not a package: wrong magic number"),
    (b"PK\x03\x04" + b"\0" * 60, "not a package: wrong magic number"),
    (MAGIC, "truncated xz stream"),
    (MAGIC + b"not xz at all", "not an xz stream"),
])
def test_bad_framing(granary, tmp_path, spk, message):
    refused(granary, tmp_path, spk, message)


def test_truncated_xz(granary, tmp_path):
    spk = spk_bytes(Key(), good_archive())
    refused(granary, tmp_path, spk[:len(spk) // 2], "truncated xz stream")
    refused(granary, tmp_path, spk[:-1], "truncated xz stream")


def test_corrupt_xz(granary, tmp_path):
    # Damage anywhere after the xz stream header (blocks, index, footer) is
    # reported as such, not as whatever the damaged bytes decode to.
    # A fixed key: the damaged positions below must give the same answer every run.
    good = spk_bytes(Key(b"\x07" * 32), good_archive())
    spk = bytearray(good)
    spk[8] ^= 0x55  # the xz magic
    refused(granary, tmp_path, bytes(spk), "not an xz stream")
    for pos in list(range(20, len(good), max(1, (len(good) - 20) // 12))) + [len(good) - 1]:
        spk = bytearray(good)
        spk[pos] ^= 0x55
        refused(granary, tmp_path, bytes(spk), "corrupt xz data")


def test_bytes_after_xz_stream(granary, tmp_path):
    refused(granary, tmp_path, spk_bytes(Key(), good_archive()) + b"x",
            "bytes after the xz stream")
    two = spk_bytes(Key(), good_archive()) + lzma.compress(b"more")
    refused(granary, tmp_path, two, "bytes after the xz stream")


def test_data_after_archive(granary, tmp_path):
    refused(granary, tmp_path, spk_bytes(Key(), good_archive(), after=b"\0" * 8),
            "data after the archive in the xz stream")


def test_archive_truncated_inside_xz(granary, tmp_path):
    key = Key()
    archive = good_archive()
    sig = signature_bytes(key, archive)
    spk = MAGIC + lzma.compress(sig + archive[:-16])
    refused(granary, tmp_path, spk, "package truncated in the archive")


def test_tampered_archive(granary, tmp_path):
    key = Key()
    archive = good_archive()
    sig = signature_bytes(key, archive)
    evil = archive_bytes([file_entry("start.sh", "executable", b"rm -rf /\n")])
    refused(granary, tmp_path, spk_bytes(key, evil, sig=sig),
            "bad signature: the archive does not match what was signed")


def test_signature_by_another_key(granary, tmp_path):
    signer, claimed = Key(), Key()
    refused(granary, tmp_path, spk_bytes(signer, good_archive(), public=claimed.public),
            "bad signature: not made by the package's key")


def test_corrupt_signature_bytes(granary, tmp_path):
    key = Key()
    archive = good_archive()
    sig = bytearray(signature_bytes(key, archive))
    # The signature's data sits near the end of its message: flip a bit of it.
    sig[-70] ^= 1
    refused(granary, tmp_path, spk_bytes(key, archive, sig=bytes(sig)),
            "bad signature: not made by the package's key")


def test_signature_wrong_sizes(granary, tmp_path):
    from spk_helpers import capnp_encode, data_lit
    key = Key()
    sig = capnp_encode("Signature", "(publicKey = %s, signature = %s)" % (
        data_lit(key.public[:31]), data_lit(b"\0" * 128)))
    refused(granary, tmp_path, spk_bytes(key, good_archive(), sig=sig),
            "signature: public key of 31 bytes and signature of 128 bytes, want 32 and 128")


@pytest.mark.parametrize("name,message", [
    ("", "archive entry /: empty file name"),
    (".", 'file name "." is not allowed'),
    ("..", 'file name ".." is not allowed'),
    ("a/b", 'file name "a/b" contains "/"'),
    ("../../etc/cron.d/x", 'contains "/"'),
    ("a\0b", "file name contains NUL"),
    ("x" * 256, "file name of 256 bytes is longer than 255"),
])
def test_bad_names(granary, tmp_path, name, message):
    archive = archive_bytes(OK_FILES + [file_entry(name, "regular", b"x")])
    refused(granary, tmp_path, spk_bytes(Key(), archive), message)


def test_bad_name_in_subdirectory(granary, tmp_path):
    sub = file_entry("d", "directory", [file_entry("..", "regular", b"x")])
    archive = archive_bytes(OK_FILES + [sub])
    refused(granary, tmp_path, spk_bytes(Key(), archive),
            'archive entry d/..: file name ".." is not allowed')


def test_duplicate_names(granary, tmp_path):
    archive = archive_bytes(OK_FILES + [file_entry("start.sh", "regular", b"again")])
    refused(granary, tmp_path, spk_bytes(Key(), archive),
            'archive directory / has two entries named "start.sh"')
    sub = file_entry("d", "directory", [file_entry("x", "regular", b""),
                                        file_entry("x", "symlink", "y")])
    refused(granary, tmp_path, spk_bytes(Key(), archive_bytes(OK_FILES + [sub])),
            'archive directory d has two entries named "x"')
    two_manifests = archive_bytes(OK_FILES + [
        file_entry("sandstorm-manifest", "regular", manifest_bytes())])
    refused(granary, tmp_path, spk_bytes(Key(), two_manifests),
            'two entries named "sandstorm-manifest"')


@pytest.mark.parametrize("where,target,message", [
    ([], "/etc/passwd", 'symlink target "/etc/passwd" is absolute'),
    ([], "..", 'symlink target ".." leaves the package'),
    ([], "../outside", 'symlink target "../outside" leaves the package'),
    ([], "a/../../x", 'symlink target "a/../../x" leaves the package'),
    (["d"], "../../x", 'symlink target "../../x" leaves the package'),
    (["d", "e"], "./.././../../x", "leaves the package"),
    ([], "", "empty symlink target"),
    ([], "a\0b", "symlink target contains NUL"),
])
def test_escaping_symlinks(granary, tmp_path, where, target, message):
    entry = file_entry("link", "symlink", target)
    for d in reversed(where):
        entry = file_entry(d, "directory", [entry])
    archive = archive_bytes(OK_FILES + [entry])
    refused(granary, tmp_path, spk_bytes(Key(), archive), message)


def test_contained_symlinks_are_fine(granary, tmp_path):
    inner = file_entry("d", "directory", [file_entry("up", "symlink", "../start.sh"),
                                          file_entry("deep", "symlink", "e/../../d/x/.."),
                                          file_entry("dangling", "symlink", "nowhere")])
    p, data = install(granary, tmp_path, spk_bytes(Key(), archive_bytes(OK_FILES + [inner])))
    assert p.returncode == 0, p.stderr
    pid = os.listdir(data / "apps")[0]
    assert os.readlink(data / "apps" / pid / "d" / "up") == "../start.sh"


def test_manifest_problems(granary, tmp_path):
    key = Key()
    cases = [
        (archive_bytes(OK_FILES, manifest=False), "package has no sandstorm-manifest"),
        (archive_bytes(OK_FILES + [file_entry("sandstorm-manifest", "directory", [])],
                       manifest=False), "sandstorm-manifest is not a regular file"),
        (archive_bytes(OK_FILES + [file_entry("sandstorm-manifest", "executable",
                                              manifest_bytes())], manifest=False),
         "sandstorm-manifest is not a regular file"),
        (archive_bytes(OK_FILES + [file_entry("sandstorm-manifest", "regular", b"garbage!")],
                       manifest=False), "sandstorm-manifest"),
    ]
    for text, message in [
        (GOOD_MANIFEST.replace('appTitle = (defaultText = "Hostile Test"),', ""),
         "manifest has no appTitle"),
        (GOOD_MANIFEST.replace('continueCommand = (argv = ["/bin/sh", "start.sh"])',
                               "appVersion = 3"), "manifest has no continueCommand"),
        (GOOD_MANIFEST.replace('continueCommand = (argv = ["/bin/sh", "start.sh"])',
                               "continueCommand = ()"), "manifest continueCommand has no command"),
        (GOOD_MANIFEST.replace('command = (argv = ["/bin/sh", "start.sh"])', ""),
         "manifest action 0 has no command"),
        (GOOD_MANIFEST.replace("actions = [", "actions = [], xx = [").replace(
            "xx = [", "").replace("continueCommand", "metadata = (), continueCommand")
         if False else None, None),
        (GOOD_MANIFEST.replace("appVersion = 3,", "appVersion = 3, minApiVersion = 1,"),
         "manifest needs API version 1; Granary supports 0"),
        (GOOD_MANIFEST.replace("appVersion = 3,",
                               'appVersion = 3, metadata = (website = "javascript:alert(1)"),'),
         "manifest website and codeUrl must start with http:// or https://"),
    ]:
        if text is None:
            continue
        entry = file_entry("sandstorm-manifest", "regular", manifest_bytes(text))
        cases.append((archive_bytes(OK_FILES + [entry], manifest=False), message))
    no_actions = GOOD_MANIFEST.split("actions = [")[0] + "continueCommand = (argv = [\"x\"]))"
    entry = file_entry("sandstorm-manifest", "regular", manifest_bytes(no_actions))
    cases.append((archive_bytes(OK_FILES + [entry], manifest=False), "manifest has no actions"))
    for archive, message in cases:
        refused(granary, tmp_path, spk_bytes(key, archive), message)


def test_oversized_manifest(granary, tmp_path):
    w = ArchiveWriter()
    archive = w.message([(b"sandstorm-manifest", 0, 8 * 1024 * 1024 + 8)])
    refused(granary, tmp_path, spk_bytes(Key(), archive),
            "sandstorm-manifest is 8388616 bytes, more than the limit of 8388608")


def test_absurd_nesting(granary, tmp_path):
    entry = file_entry("leaf", "regular", b"")
    for i in range(70):
        entry = file_entry("d%d" % i, "directory", [entry])
    refused(granary, tmp_path, spk_bytes(Key(), archive_bytes(OK_FILES + [entry])),
            "directories nested deeper than 64")


def test_too_many_files(granary, tmp_path):
    w = ArchiveWriter()
    entries = [(b"sandstorm-manifest", 0, manifest_bytes())]
    entries += [(b"f%06d" % i, 0, b"") for i in range(200000)]
    refused(granary, tmp_path, spk_bytes(Key(), w.message(entries)),
            "archive has more than 200000 entries")


def test_oversized_archive(granary, tmp_path):
    # A segment table that promises more than 1 GiB is refused before any of
    # it is read or allocated.
    key = Key()
    table = struct.pack("<II", 0, (1 << 27) + 1)
    archive = table + b"\0" * 64
    refused(granary, tmp_path, spk_bytes(key, archive, sig=signature_bytes(key, b"x")),
            "archive is 1073741840 bytes, more than the limit of 1073741824")
    many = struct.pack("<I", 0x7fffffff) + b"\0" * 64
    refused(granary, tmp_path, spk_bytes(key, many, sig=signature_bytes(key, b"x")),
            "archive has 2147483648 segments, more than the limit of 201024")
    big_sig = struct.pack("<I", 100) + b"\0" * 404
    refused(granary, tmp_path, MAGIC + lzma.compress(big_sig),
            "signature has 101 segments, more than the limit of 16")


def test_unknown_entry_kind(granary, tmp_path):
    w = ArchiveWriter()
    archive = w.message([(b"sandstorm-manifest", 0, manifest_bytes()), (b"odd", 9, b"")])
    refused(granary, tmp_path, spk_bytes(Key(), archive),
            "archive entry odd: unknown entry kind 9")


def test_failed_install_keeps_earlier_install(granary, tmp_path):
    key = Key()
    p, data = install(granary, tmp_path, spk_bytes(key, good_archive()), "good.spk")
    assert p.returncode == 0
    before = sorted(os.listdir(data / "apps"))
    bad = archive_bytes(OK_FILES + [file_entry("l", "symlink", "/x")])
    p, _ = install(granary, tmp_path, spk_bytes(key, bad))
    assert p.returncode == 1 and b"is absolute" in p.stderr
    assert sorted(os.listdir(data / "apps")) == before


def test_names_and_titles_cannot_drive_the_terminal(granary, tmp_path):
    escape = "\x1b]0;owned\x07\x1b[2J"
    archive = archive_bytes(OK_FILES + [file_entry("a/" + escape, "regular", b"")])
    err = refused(granary, tmp_path, spk_bytes(Key(), archive), "contains")
    assert "\x1b" not in err and "\\x1b]0;owned\\x07" in err
    text = GOOD_MANIFEST.replace('"Hostile Test"', '"Evil\\x1b[2J Title"')
    entry = file_entry("sandstorm-manifest", "regular", manifest_bytes(text))
    p, _ = install(granary, tmp_path, spk_bytes(Key(), archive_bytes(OK_FILES + [entry],
                                                                      manifest=False)))
    assert p.returncode == 0, p.stderr
    assert b"\x1b" not in p.stdout and b"Evil?[2J Title" in p.stdout


def test_sandstorm_layout_one_segment_per_file(granary, tmp_path):
    # Sandstorm's packer references each file's contents as a segment of its
    # own; such packages have thousands of segments and must install.
    w = ArchiveWriter(far=True)
    files = [(b"f%04d" % i, i % 2, os.urandom(1 + i % 50)) for i in range(1500)]
    archive = w.message([(b"sandstorm-manifest", 0, manifest_bytes())] + files)
    assert struct.unpack_from("<I", archive)[0] + 1 > 1500
    p, data = install(granary, tmp_path, spk_bytes(Key(), archive), "many.spk")
    assert p.returncode == 0, p.stderr
    root = data / "apps" / os.listdir(data / "apps")[0]
    for name, which, content in files:
        path = root / name.decode()
        assert path.read_bytes() == content
        assert bool(os.stat(path).st_mode & 0o100) == (which == 1)
