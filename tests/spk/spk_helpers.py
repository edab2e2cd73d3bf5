# Helpers for the package tests: run granary, and build packages
# independently of it (capnp encode with Granary's schema, Python's lzma and
# hashlib, PyNaCl for Ed25519), including hostile ones.
import hashlib
import lzma
import os
import struct
import subprocess

import nacl.signing

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCHEMA_DIR = os.path.join(ROOT, "schema")
PACKAGE_CAPNP = os.path.join(SCHEMA_DIR, "sandstorm", "package.capnp")
BUILD = os.environ.get("GRANARY_ASAN_DIR", os.path.join(ROOT, "build-asan"))
BINARY = os.path.join(BUILD, "src", "granary", "granary")
MAGIC = bytes.fromhex("8fc6cdef451aea96")
ALPHABET = "0123456789acdefghjkmnpqrstuvwxyz"


class Granary:
    def __init__(self, env):
        self.env = env

    def run(self, *args, cwd=None, check=True, stdin=None):
        p = subprocess.run([BINARY, *args], cwd=cwd, env=self.env, capture_output=True,
                           timeout=600, input=stdin)
        if check and p.returncode != 0:
            raise AssertionError("granary %s failed (%d): %s" % (
                " ".join(args), p.returncode, p.stderr.decode(errors="replace")))
        return p


def b32(data):
    """Sandstorm's base32: alphabet above, MSB first, no padding."""
    bits = "".join(format(b, "08b") for b in data)
    bits += "0" * (-len(bits) % 5)
    return "".join(ALPHABET[int(bits[i:i + 5], 2)] for i in range(0, len(bits), 5))


def package_id(spk_bytes):
    return hashlib.sha256(spk_bytes).hexdigest()[:32]


def capnp_encode(type_name, text):
    p = subprocess.run(["capnp", "encode", "-I" + SCHEMA_DIR, PACKAGE_CAPNP, type_name],
                       input=text.encode(), capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout


def capnp_decode(type_name, data):
    p = subprocess.run(["capnp", "decode", "--short", "-I" + SCHEMA_DIR, PACKAGE_CAPNP, type_name],
                       input=data, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout.decode()


def text_lit(s):
    out = '"'
    for ch in s.encode():
        if ch in (0x22, 0x5c) or ch < 0x20 or ch > 0x7e:
            out += "\\x%02x" % ch
        else:
            out += chr(ch)
    return out + '"'


def data_lit(b):
    return '0x"%s"' % b.hex() if b else '""'


GOOD_MANIFEST = """(
  appTitle = (defaultText = "Hostile Test"),
  appVersion = 3,
  appMarketingVersion = (defaultText = "1.2.3"),
  actions = [(nounPhrase = (defaultText = "thing"),
              command = (argv = ["/bin/sh", "start.sh"]))],
  continueCommand = (argv = ["/bin/sh", "start.sh"])
)"""


def manifest_bytes(text=GOOD_MANIFEST):
    return capnp_encode("Manifest", text)


def file_entry(name, kind="regular", value=b"", mtime=0):
    """Text form of one Archive.File. value: bytes, str target, or list."""
    if kind in ("regular", "executable"):
        body = "%s = %s" % (kind, data_lit(value))
    elif kind == "symlink":
        body = "symlink = %s" % text_lit(value)
    else:
        body = "directory = [%s]" % ", ".join(value)
    return "(name = %s, %s, lastModificationTimeNs = %d)" % (text_lit(name), body, mtime)


def archive_text(entries, manifest=True):
    if manifest:
        entries = [file_entry("sandstorm-manifest", "regular", manifest_bytes())] + entries
    return "(files = [%s])" % ", ".join(entries)


def archive_bytes(entries, manifest=True):
    return capnp_encode("Archive", archive_text(entries, manifest))


class Key:
    def __init__(self, seed=None):
        self.sk = nacl.signing.SigningKey(seed or os.urandom(32))
        self.public = bytes(self.sk.verify_key)

    @property
    def app_id(self):
        return b32(self.public)


def signature_bytes(key, archive, public=None):
    signed = key.sk.sign(hashlib.sha512(archive).digest())  # 64 sig + 64 msg
    assert len(bytes(signed)) == 128
    return capnp_encode("Signature", "(publicKey = %s, signature = %s)" % (
        data_lit(public if public is not None else key.public), data_lit(bytes(signed))))


def spk_bytes(key, archive, public=None, sig=None, magic=MAGIC, after=b""):
    sig = sig if sig is not None else signature_bytes(key, archive, public)
    return magic + lzma.compress(sig + archive + after, preset=0)


def split_payload(payload):
    """Splits the decompressed payload into (signature frame, archive bytes)."""
    nsegs = struct.unpack_from("<I", payload, 0)[0] + 1
    sizes = struct.unpack_from("<%dI" % nsegs, payload, 4)
    table = 4 + 4 * nsegs
    table += -table % 8
    end = table + 8 * sum(sizes)
    return payload[:end], payload[end:]


# ---- a minimal single-segment writer, for archives too big for capnp encode --

class ArchiveWriter:
    """Writes Archive messages of flat or big content in one segment."""

    def __init__(self, far=False):
        self.buf = bytearray(8)  # root pointer
        self.far = far
        self.extra = []  # further segments

    def alloc(self, words):
        off = len(self.buf) // 8
        self.buf += bytes(8 * words)
        return off

    def put_ptr(self, at, value):
        struct.pack_into("<Q", self.buf, at * 8, value)

    def list_ptr(self, at, target, elem, count):
        self.put_ptr(at, ((target - at - 1) << 2 & 0xffffffff) | 1 | elem << 32 | count << 35)

    def bytes_at(self, at, data, nul):
        """data: bytes, or an int for that many zero bytes (not copied)."""
        size = data if isinstance(data, int) else len(data)
        n = size + (1 if nul else 0)
        t = self.alloc((n + 7) // 8)
        if not isinstance(data, int):
            self.buf[t * 8:t * 8 + size] = data
        self.list_ptr(at, t, 2, n)

    def far_bytes(self, at, data):
        """Puts data in a segment of its own, reached through a far pointer
        to a landing pad, as Sandstorm's packer lays out file contents."""
        seg = bytearray(8 + len(data) + (-len(data) % 8))
        struct.pack_into("<Q", seg, 0, 1 | 2 << 32 | len(data) << 35)  # offset 0
        seg[8:8 + len(data)] = data
        self.extra.append(seg)
        self.put_ptr(at, 2 | 0 << 3 | len(self.extra) << 32)

    def files(self, at, entries):
        """entries: list of (name bytes, which, content bytes)."""
        n = len(entries)
        tag = self.alloc(1 + 4 * n)
        self.put_ptr(tag, (n << 2) | 2 << 32 | 2 << 48)
        self.list_ptr(at, tag, 7, 4 * n)
        for i, (name, which, content) in enumerate(entries):
            e = tag + 1 + 4 * i
            struct.pack_into("<H", self.buf, e * 8, which)
            self.bytes_at(e + 2, name, True)
            if content and self.far and which != 2:
                self.far_bytes(e + 3, content)
            elif content:
                self.bytes_at(e + 3, content, which == 2)

    def message(self, entries):
        root = self.alloc(1)
        self.put_ptr(0, (root - 0 - 1) << 2 | 0 << 32 | 1 << 48)
        self.files(root, entries)
        segs = [bytes(self.buf)] + [bytes(x) for x in self.extra]
        table = struct.pack("<I", len(segs) - 1) + b"".join(
            struct.pack("<I", len(x) // 8) for x in segs)
        table += bytes(-len(table) % 8)
        return table + b"".join(segs)


def root_data_fields(frame):
    """The Data/Text pointer fields of a one-segment message's root struct
    (enough for Signature and KeyFile), read independently of granary."""
    nsegs = struct.unpack_from("<I", frame, 0)[0] + 1
    assert nsegs == 1
    seg = frame[8:]

    def word(i):
        return struct.unpack_from("<Q", seg, 8 * i)[0]

    root = word(0)
    assert root & 3 == 0
    start = 1 + ((root >> 2) & 0x3fffffff)
    dw, pw = (root >> 32) & 0xffff, root >> 48
    out = []
    for p in range(pw):
        at = start + dw + p
        v = word(at)
        if v == 0:
            out.append(None)
            continue
        assert v & 3 == 1 and (v >> 32) & 7 == 2
        target = at + 1 + ((v >> 2) & 0x3fffffff)
        out.append(bytes(seg[8 * target:8 * target + (v >> 35)]))
    return out
