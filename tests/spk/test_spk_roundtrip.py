# Round trips through the real granary binary: keys, init, pack (whole tree,
# source maps with hidePaths, file lists and alwaysInclude), verify, unpack,
# install; the app id and package id checked against independent
# computations, and the package's bytes checked with Python's own xz, SHA-512
# and Ed25519.
import hashlib
import json
import lzma
import os
import sqlite3
import stat

import nacl.signing

from spk_helpers import (MAGIC, b32, capnp_decode, package_id, root_data_fields,
                         split_payload)

PKGDEF = """@0xc1a2b3c4d5e6f708;
using Spk = import "/sandstorm/package.capnp";
const pkgdef :Spk.PackageDefinition = (
  id = "%(id)s",
  manifest = (
    appTitle = (defaultText = "Round Trip"),
    appVersion = %(version)d,
    appMarketingVersion = (defaultText = "%(version)d.0"),
    actions = [(nounPhrase = (defaultText = "note"), command = .cmd)],
    continueCommand = .cmd,
    metadata = (website = "https://example.org/", license = (openSource = mit)),
  ),
  sourceMap = (searchPath = [%(maps)s]),
  %(extra)s
  bridgeConfig = (viewInfo = (permissions = [(name = "edit")])),
);
const cmd :Spk.Manifest.Command = (argv = ["/bin/sh", "start.sh"]);
"""


def make_tree(root):
    os.makedirs(root / "sub" / "deeper")
    (root / "start.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "start.sh", 0o755)
    (root / "sub" / "data.bin").write_bytes(os.urandom(70000))
    (root / "sub" / "deeper" / "text").write_text("hello " * 1000)
    (root / "empty").write_bytes(b"")
    os.symlink("../start.sh", root / "sub" / "link")
    os.symlink("deeper/text", root / "sub" / "rel")
    os.mkdir(root / "emptydir")
    (root / "secret").write_text("not for the package")


def snapshot(root, skip=()):
    """path -> (kind, exec bit, content or target) for every entry."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if rel.split("/")[0] in skip:
                continue
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", False, os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", False, None)
            else:
                with open(full, "rb") as f:
                    out[rel] = ("file", bool(st.st_mode & 0o100), f.read())
    return out


PACKER_ENTRIES = {"sandstorm-manifest", "sandstorm-http-bridge-config", "dev", "tmp", "var",
                  "proc"}


def keygen(granary):
    return granary.run("spk", "keygen").stdout.decode().strip()


def write_pkgdef(d, app_id, maps='(sourcePath = "app")', extra="", version=1):
    (d / "sandstorm-pkgdef.capnp").write_text(
        PKGDEF % {"id": app_id, "maps": maps, "extra": extra, "version": version})


def test_keygen_listkeys_getkey(granary, env, tmp_path):
    a, b = keygen(granary), keygen(granary)
    ring = os.path.join(env["HOME"], ".sandstorm-keyring")
    assert stat.S_IMODE(os.stat(ring).st_mode) == 0o600
    assert granary.run("spk", "listkeys").stdout.decode().split() == [a, b]
    data = open(ring, "rb").read()
    # Two KeyFile messages, each one segment of 0 data / 2 pointer words.
    pub_b, sec_b = root_data_fields(data[len(data) // 2:])
    assert len(pub_b) == 32 and len(sec_b) == 64 and sec_b[32:] == pub_b
    assert b32(pub_b) == b
    key = granary.run("spk", "getkey", b).stdout
    assert key == data[len(data) // 2:]
    # The secret key's second half is the public key (libsodium layout), and the
    # app id is the public key in Sandstorm's base32.
    other = tmp_path / "other-ring"
    other.write_bytes(key)
    assert granary.run("spk", "listkeys", "--keyring", str(other)).stdout.decode().split() == [b]
    bad = granary.run("spk", "getkey", "0" * 52, check=False)
    assert bad.returncode == 1 and b"has no key for app id" in bad.stderr
    # A damaged keyring is refused with where it went wrong.
    other.write_bytes(key[:-9])
    bad = granary.run("spk", "listkeys", "--keyring", str(other), check=False)
    assert bad.returncode == 1 and b"truncated key at byte 0" in bad.stderr
    other.write_bytes(data + b"\0" * 8)
    bad = granary.run("spk", "listkeys", "--keyring", str(other), check=False)
    assert bad.returncode == 1 and b"key at byte %d" % len(data) in bad.stderr
    missing = granary.run("spk", "listkeys", "--keyring", str(tmp_path / "none"), check=False)
    assert missing.returncode == 1 and b"No such file or directory" in missing.stderr


def test_pack_verify_unpack_whole_tree(granary, tmp_path):
    app_id = keygen(granary)
    proj = tmp_path / "proj"
    make_tree(proj / "app")
    write_pkgdef(proj, app_id)
    out = granary.run("spk", "pack", "--json", str(tmp_path / "a.spk"), cwd=proj)
    info = json.loads(out.stdout)
    spk = (tmp_path / "a.spk").read_bytes()

    # Independent checks of the bytes: magic, xz, two messages, signature.
    assert spk[:8] == MAGIC
    payload = lzma.decompress(spk[8:])
    sig_frame, archive = split_payload(payload)
    pub, signed = root_data_fields(sig_frame)
    assert len(pub) == 32 and len(signed) == 128
    opened = nacl.signing.VerifyKey(pub).verify(signed)
    assert opened == hashlib.sha512(archive).digest()
    assert b32(pub) == app_id == info["appId"]
    assert info["packageId"] == package_id(spk)
    assert info["title"] == "Round Trip" and info["version"] == 1

    v = json.loads(granary.run("spk", "verify", "--json", str(tmp_path / "a.spk")).stdout)
    assert v == info
    plain = granary.run("spk", "verify", str(tmp_path / "a.spk")).stdout.decode()
    assert "app id: %s" % app_id in plain and "package id: %s" % package_id(spk) in plain

    granary.run("spk", "unpack", str(tmp_path / "a.spk"), str(tmp_path / "out"))
    assert snapshot(tmp_path / "out", PACKER_ENTRIES) == snapshot(proj / "app")
    for d in ("dev", "tmp", "var"):
        assert os.listdir(tmp_path / "out" / d) == []
    assert (tmp_path / "out" / "proc" / "cpuinfo").read_bytes() == b""
    manifest = capnp_decode("Manifest", (tmp_path / "out" / "sandstorm-manifest").read_bytes())
    assert 'appTitle = (defaultText = "Round Trip")' in manifest
    assert "openSource = mit" in manifest
    bridge = capnp_decode("BridgeConfig",
                          (tmp_path / "out" / "sandstorm-http-bridge-config").read_bytes())
    assert 'name = "edit"' in bridge
    # mtimes survive.
    src = os.lstat(proj / "app" / "sub" / "data.bin").st_mtime_ns
    assert os.lstat(tmp_path / "out" / "sub" / "data.bin").st_mtime_ns == src

    # Unpacking onto an existing directory is refused and leaves no temporary.
    again = granary.run("spk", "unpack", str(tmp_path / "a.spk"), str(tmp_path / "out"),
                        check=False)
    assert again.returncode == 1 and b"File exists" in again.stderr
    assert sorted(os.listdir(tmp_path)) == ["a.spk", "home", "out", "proj"]
    # Without DIR, FOO.spk unpacks into FOO, as with Sandstorm's spk.
    granary.run("spk", "unpack", str(tmp_path / "a.spk"))
    assert snapshot(tmp_path / "a", PACKER_ENTRIES) == snapshot(proj / "app")


def test_source_map_hide_and_layering(granary, tmp_path):
    app_id = keygen(granary)
    proj = tmp_path / "proj"
    make_tree(proj / "app")
    os.makedirs(proj / "extra" / "bin")
    (proj / "extra" / "bin" / "tool").write_text("tool")
    (proj / "extra" / "start.sh").write_text("shadowed")
    maps = ('(sourcePath = "app", hidePaths = ["secret", "sub/deeper"]), '
            '(sourcePath = "extra"), (packagePath = "opt/x", sourcePath = "extra/bin")')
    write_pkgdef(proj, app_id, maps=maps)
    granary.run("spk", "pack", str(tmp_path / "a.spk"), cwd=proj)
    granary.run("spk", "unpack", str(tmp_path / "a.spk"), str(tmp_path / "out"))
    snap = snapshot(tmp_path / "out", PACKER_ENTRIES)
    assert "secret" not in snap and "sub/deeper" not in snap and "sub/deeper/text" not in snap
    assert snap["start.sh"][2].startswith(b"#!/bin/sh")  # the first mapping wins
    assert snap["bin/tool"] == ("file", False, b"tool")
    assert snap["opt/x/tool"] == ("file", False, b"tool")
    assert snap["opt"] == ("dir", False, None)


def test_file_list_and_always_include(granary, tmp_path):
    app_id = keygen(granary)
    proj = tmp_path / "proj"
    make_tree(proj / "app")
    (proj / "files.list").write_text("# made by hand\n  start.sh  \n\n/sub/deeper/text # a comment\n"
                                     "sandstorm-manifest\nproc/cpuinfo\nsandstorm-http-bridge\n")
    write_pkgdef(proj, app_id, extra='fileList = "files.list", alwaysInclude = ["emptydir"],')
    granary.run("spk", "pack", "-p", str(proj / "sandstorm-pkgdef.capnp"),
                str(tmp_path / "a.spk"), cwd=tmp_path)
    granary.run("spk", "unpack", str(tmp_path / "a.spk"), str(tmp_path / "out"))
    assert sorted(snapshot(tmp_path / "out", PACKER_ENTRIES)) == [
        "emptydir", "start.sh", "sub", "sub/deeper", "sub/deeper/text"]


def test_pack_refuses_escaping_symlink_and_unknown_key(granary, tmp_path):
    app_id = keygen(granary)
    proj = tmp_path / "proj"
    make_tree(proj / "app")
    os.symlink("/etc/passwd", proj / "app" / "bad")
    write_pkgdef(proj, app_id)
    p = granary.run("spk", "pack", str(tmp_path / "a.spk"), cwd=proj, check=False)
    assert p.returncode == 1 and b'symlink target "/etc/passwd" is absolute' in p.stderr
    os.unlink(proj / "app" / "bad")
    write_pkgdef(proj, b32(os.urandom(32)))
    p = granary.run("spk", "pack", str(tmp_path / "a.spk"), cwd=proj, check=False)
    assert p.returncode == 1 and b"has no key for app id" in p.stderr
    assert not (tmp_path / "a.spk").exists()
    assert [n for n in os.listdir(tmp_path) if ".tmp-" in n] == []


def test_init_then_pack(granary, env, tmp_path):
    # Without GRANARY_SCHEMA_DIR: the binary finds the schema it was built with.
    del env["GRANARY_SCHEMA_DIR"]
    proj = tmp_path / "p"
    proj.mkdir()
    app_id = granary.run("spk", "init", "-p", "8000", "--", "node", "main.js",
                         cwd=proj).stdout.decode().strip()
    assert granary.run("spk", "listkeys").stdout.decode().split() == [app_id]
    (proj / "main.js").write_text("console.log(1)")
    out = json.loads(granary.run("spk", "pack", "--json", str(tmp_path / "i.spk"),
                                 cwd=proj).stdout)
    assert out["appId"] == app_id and out["title"] == "Example App"
    granary.run("spk", "unpack", str(tmp_path / "i.spk"), str(tmp_path / "o"))
    man = capnp_decode("Manifest", (tmp_path / "o" / "sandstorm-manifest").read_bytes())
    assert '"/sandstorm-http-bridge", "8000", "--", "node", "main.js"' in man
    again = granary.run("spk", "init", cwd=proj, check=False)
    assert again.returncode == 1 and b"already exists" in again.stderr


def rows(data):
    db = sqlite3.connect(str(data / "granary.sqlite"))
    try:
        return (db.execute("SELECT app_id FROM apps").fetchall(),
                db.execute("SELECT package_id, app_id, version, marketing_version, title "
                           "FROM packages ORDER BY version").fetchall())
    finally:
        db.close()


def test_install_once_then_upgrade_candidate(granary, tmp_path):
    app_id = keygen(granary)
    proj = tmp_path / "proj"
    make_tree(proj / "app")
    data = tmp_path / "data"
    write_pkgdef(proj, app_id, version=1)
    granary.run("spk", "pack", str(tmp_path / "v1.spk"), cwd=proj)
    pid1 = package_id((tmp_path / "v1.spk").read_bytes())
    out = granary.run("admin", "install", str(tmp_path / "v1.spk"), "--data", str(data))
    assert out.stdout.decode().startswith("installed: %s" % pid1)
    assert snapshot(data / "apps" / pid1, PACKER_ENTRIES) == snapshot(proj / "app")
    assert rows(data) == ([(app_id,)], [(pid1, app_id, 1, "1.0", "Round Trip")])

    out = granary.run("admin", "install", str(tmp_path / "v1.spk"), "--data", str(data))
    assert out.stdout.decode().startswith("already installed: %s" % pid1)
    assert os.listdir(data / "apps") == [pid1]

    write_pkgdef(proj, app_id, version=2)
    granary.run("spk", "pack", str(tmp_path / "v2.spk"), cwd=proj)
    pid2 = package_id((tmp_path / "v2.spk").read_bytes())
    out = granary.run("admin", "install", str(tmp_path / "v2.spk"), "--data", str(data))
    assert out.stdout.decode().startswith("installed as an upgrade candidate: %s" % pid2)
    assert "newer than installed version 1" in out.stdout.decode()
    assert sorted(os.listdir(data / "apps")) == sorted([pid1, pid2])
    assert rows(data)[1] == [(pid1, app_id, 1, "1.0", "Round Trip"),
                             (pid2, app_id, 2, "2.0", "Round Trip")]
    # The package tree is readable by others (grains mount it) but nothing
    # is group- or world-writable.
    for dirpath, dirs, files in os.walk(data / "apps" / pid2):
        for n in dirs + files:
            m = os.lstat(os.path.join(dirpath, n)).st_mode
            if not stat.S_ISLNK(m):
                assert m & 0o022 == 0


def test_pack_refuses_oversized_file(granary, tmp_path):
    # A Data field holds at most 2^29 - 1 bytes, so a file of 512 MiB cannot
    # be packed; the packer says so before reading it (the file is sparse).
    app_id = keygen(granary)
    proj = tmp_path / "proj"
    make_tree(proj / "app")
    with open(proj / "app" / "huge", "wb") as f:
        f.truncate(512 * 1024 * 1024)
    write_pkgdef(proj, app_id)
    p = granary.run("spk", "pack", str(tmp_path / "a.spk"), cwd=proj, check=False)
    assert p.returncode == 1
    assert b"huge: 536870912 bytes, over the limit of 536870911 bytes" in p.stderr
    assert not (tmp_path / "a.spk").exists()


FULL_PKGDEF = """@0xd2c3b4a5968778f9;
using Spk = import "/sandstorm/package.capnp";
using Util = import "/sandstorm/util.capnp";

const pkgdef :Spk.PackageDefinition = (
  id = "%(id)s",
  manifest = (
    appTitle = (defaultText = "Notebook", localizations = [(locale = "de", text = "Notizbuch")]),
    appVersion = 5,
    minUpgradableAppVersion = 2,
    appMarketingVersion = (defaultText = "1.4.0"),
    actions = [
      ( input = (none = void),
        title = (defaultText = "New Notebook"),
        nounPhrase = (defaultText = "notebook"),
        command = .mainCommand ),
    ],
    continueCommand = .mainCommand,
    metadata = (
      icons = (appGrid = (svg = embed "meta/icon.svg"), grain = (svg = embed "meta/icon.svg"),
               market = (png = (dpi1x = embed "meta/shot.png"))),
      website = "https://example.org",
      codeUrl = "https://example.org/src",
      license = (openSource = apache2, notices = (defaultText = "see NOTICE")),
      categories = [productivity, office],
      author = (contactEmail = "dev@example.org", upstreamAuthor = "Someone Else"),
      description = (defaultText = embed "meta/description.md"),
      shortDescription = (defaultText = "Notes"),
      screenshots = [(width = 448, height = 336, png = embed "meta/shot.png")],
      changeLog = (defaultText = embed "meta/CHANGELOG.md"),
    ),
  ),
  sourceMap = (
    searchPath = [
      (sourcePath = "app", hidePaths = ["secret"]),
      (packagePath = "opt/app", sourcePath = "app"),
    ]
  ),
  fileList = "sandstorm-files.list",
  alwaysInclude = ["opt/app"],
  bridgeConfig = (
    viewInfo = (
      permissions = [(name = "edit", title = (defaultText = "edit"),
                      description = (defaultText = "may edit")),
                     (name = "view", title = (defaultText = "view"))],
      roles = [(title = (defaultText = "editor"), permissions = [true, true],
                verbPhrase = (defaultText = "can edit"), default = true),
               (title = (defaultText = "viewer"), permissions = [false, true],
                verbPhrase = (defaultText = "can view"))],
      eventTypes = [(name = "edited", verbPhrase = (defaultText = "edited the notebook"),
                     requiredPermission = (permissionIndex = 1), notifySubscribers = true)],
    ),
    apiPath = "/api",
    saveIdentityCaps = true,
    powerboxApis = [(name = "notes-api", displayInfo = (title = (defaultText = "Notes API")),
                     path = "/api", tag = (canonicalUrl = "https://example.org/api",
                                           oauthScopes = [(name = "read")]),
                     permissions = [false, true])],
  ),
);

const mainCommand :Spk.Manifest.Command = (
  argv = ["/sandstorm-http-bridge", "8000", "--", "/opt/app/start.sh"],
  environ = [(key = "PATH", value = "/usr/local/bin:/usr/bin:/bin"), (key = "HOME", value = "/var")]
);
"""


def test_full_pkgdef_in_sandstorm_style(granary, tmp_path):
    # A package definition written the way real apps write theirs: imports by
    # absolute path, embeds, metadata, a file list, a bridge config with roles,
    # event types and powerbox APIs. Evaluated against Granary's schema.
    app_id = keygen(granary)
    proj = tmp_path / "proj"
    make_tree(proj / "app")
    os.makedirs(proj / "meta")
    (proj / "meta" / "icon.svg").write_text("<svg/>")
    (proj / "meta" / "shot.png").write_bytes(b"\x89PNG fake")
    (proj / "meta" / "description.md").write_text("A notebook.")
    (proj / "meta" / "CHANGELOG.md").write_text("1.4.0: things")
    (proj / "sandstorm-files.list").write_text("start.sh\nsub/data.bin\n")
    (proj / "sandstorm-pkgdef.capnp").write_text(FULL_PKGDEF % {"id": app_id})
    info = json.loads(granary.run("spk", "pack", "--json", str(tmp_path / "n.spk"),
                                  cwd=proj).stdout)
    assert (info["title"], info["version"], info["marketingVersion"],
            info["minUpgradableAppVersion"]) == ("Notebook", 5, "1.4.0", 2)
    granary.run("spk", "unpack", str(tmp_path / "n.spk"), str(tmp_path / "o"))
    snap = snapshot(tmp_path / "o", PACKER_ENTRIES)
    # The file list picks from the first mapping (which hides secret);
    # alwaysInclude brings the whole second mapping in under opt/app.
    assert {"start.sh", "sub", "sub/data.bin"} <= set(snap)
    assert "secret" not in snap and "sub/link" not in snap
    assert snap["opt/app/secret"][2] == b"not for the package"
    assert snap["opt/app/sub/link"] == ("link", False, "../start.sh")
    man = capnp_decode("Manifest", (tmp_path / "o" / "sandstorm-manifest").read_bytes())
    for piece in ['localizations = [(locale = "de", text = "Notizbuch")]',
                  "categories = [productivity, office]", "openSource = apache2",
                  'svg = "<svg/>"', 'description = (defaultText = "A notebook.")',
                  'upstreamAuthor = "Someone Else"', 'environ = [(key = "PATH"',
                  "width = 448"]:
        assert piece in man, piece
    bridge = capnp_decode("BridgeConfig",
                          (tmp_path / "o" / "sandstorm-http-bridge-config").read_bytes())
    for piece in ['apiPath = "/api"', "saveIdentityCaps = true", "default = true",
                  'canonicalUrl = "https://example.org/api"', "permissionIndex = 1",
                  'oauthScopes = [(name = "read")]']:
        assert piece in bridge, piece


def test_pack_leaves_out_its_own_output(granary, tmp_path):
    proj = tmp_path / "p"
    proj.mkdir()
    granary.run("spk", "init", cwd=proj)
    (proj / "start.sh").write_text("true")
    granary.run("spk", "pack", "app.spk", cwd=proj)
    p = granary.run("spk", "pack", "app.spk", cwd=proj)
    assert b"it is the package being written" in p.stderr
    granary.run("spk", "unpack", str(proj / "app.spk"), str(tmp_path / "o"))
    assert sorted(snapshot(tmp_path / "o", PACKER_ENTRIES)) == [
        "sandstorm-pkgdef.capnp", "start.sh"]


def test_install_repairs_interrupted_installs(granary, tmp_path):
    import shutil
    app_id = keygen(granary)
    proj = tmp_path / "proj"
    make_tree(proj / "app")
    write_pkgdef(proj, app_id)
    granary.run("spk", "pack", str(tmp_path / "a.spk"), cwd=proj)
    pid = package_id((tmp_path / "a.spk").read_bytes())
    data = tmp_path / "data"
    granary.run("admin", "install", str(tmp_path / "a.spk"), "--data", str(data))
    # The tree went missing but the row is there: the tree is restored.
    shutil.rmtree(data / "apps" / pid)
    out = granary.run("admin", "install", str(tmp_path / "a.spk"), "--data", str(data))
    assert out.stdout.decode().startswith("already installed")
    assert snapshot(data / "apps" / pid, PACKER_ENTRIES) == snapshot(proj / "app")
    # A tree without a row (died before the commit), here with junk in it:
    # removed and installed afresh.
    db = sqlite3.connect(str(data / "granary.sqlite"))
    db.execute("DELETE FROM packages")
    db.execute("DELETE FROM apps")
    db.commit()
    db.close()
    (data / "apps" / pid / "junk").write_text("x")
    out = granary.run("admin", "install", str(tmp_path / "a.spk"), "--data", str(data))
    assert out.stdout.decode().startswith("installed: %s" % pid)
    assert b"left by an unfinished install" in out.stderr
    assert not (data / "apps" / pid / "junk").exists()
    assert rows(data)[1] == [(pid, app_id, 1, "1.0", "Round Trip")]


def test_concurrent_installs_of_one_package(granary, tmp_path):
    import subprocess
    from spk_helpers import BINARY
    app_id = keygen(granary)
    proj = tmp_path / "proj"
    make_tree(proj / "app")
    write_pkgdef(proj, app_id)
    granary.run("spk", "pack", str(tmp_path / "a.spk"), cwd=proj)
    pid = package_id((tmp_path / "a.spk").read_bytes())
    data = tmp_path / "data"
    granary.run("admin", "install", str(tmp_path / "a.spk"), "--data", str(tmp_path / "warm"))
    # Ten times: a new data directory opened by four at once was refused
    # "database is locked" about one time in four.
    for attempt in range(10):
        d = data / str(attempt)
        procs = [subprocess.Popen([BINARY, "admin", "install", str(tmp_path / "a.spk"), "--data",
                                   str(d)], env=granary.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE) for _ in range(4)]
        outs = [(p.wait(timeout=120), p.stdout.read().decode(), p.stderr.read().decode())
                for p in procs]
        assert all(rc == 0 for rc, _, _ in outs), outs
        assert sum(o.startswith("installed: ") for _, o, _ in outs) == 1, outs
        assert os.listdir(d / "apps") == [pid]
        assert rows(d)[1] == [(pid, app_id, 1, "1.0", "Round Trip")]


def test_listed_file_missing_is_an_error(granary, tmp_path):
    app_id = keygen(granary)
    proj = tmp_path / "proj"
    make_tree(proj / "app")
    (proj / "files.list").write_text("start.sh\nnot/there\n")
    write_pkgdef(proj, app_id, extra='fileList = "files.list",')
    p = granary.run("spk", "pack", str(tmp_path / "a.spk"), cwd=proj, check=False)
    assert p.returncode == 1 and b"no file in the source map for not/there" in p.stderr
    write_pkgdef(proj, app_id, extra='alwaysInclude = ["nope"],')
    p = granary.run("spk", "pack", str(tmp_path / "a.spk"), cwd=proj, check=False)
    assert p.returncode == 1 and b"no file in the source map for nope" in p.stderr
    assert not (tmp_path / "a.spk").exists()


def test_pkg_def_with_constant_name_and_import_path(granary, tmp_path):
    # Sandstorm's `-p FILE:CONSTANT` (what vagrant-spk passes) and `-I DIR`.
    app_id = keygen(granary)
    proj = tmp_path / "proj"
    make_tree(proj / "app")
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "shared.capnp").write_text(
        '@0xa1b2c3d4e5f60718;\nconst title :Text = "Imported Title";\n')
    text = PKGDEF % {"id": app_id, "maps": '(sourcePath = "app")', "extra": "", "version": 4}
    text = text.replace("const pkgdef :", 'using Shared = import "/shared.capnp";\nconst other :')
    text = text.replace('appTitle = (defaultText = "Round Trip")', "appTitle = (defaultText = Shared.title)")
    (proj / "defs.capnp").write_text(text)
    p = granary.run("spk", "pack", "-k", os.path.join(granary.env["HOME"], ".sandstorm-keyring"),
                    "-q", "-I", str(tmp_path / "inc"), "-p", str(proj / "defs.capnp") + ":other",
                    "--json", str(tmp_path / "c.spk"))
    info = json.loads(p.stdout)
    assert info["title"] == "Imported Title" and info["version"] == 4
    bad = granary.run("spk", "pack", "-p", str(proj / "defs.capnp") + ":missing",
                      str(tmp_path / "d.spk"), check=False)
    assert bad.returncode == 1 and b"eval of" in bad.stderr
