"""Interop of the cp_ encoding with the reference implementation: messages
built by this library are decoded by `capnp decode` (plain and packed, one
segment and many with far pointers), and messages written by `capnp encode`
are read back by this library with every field checked (capnp_sample, over
tests/capnp/sample.h)."""
import os
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("GRANARY_ASAN_DIR", os.path.join(ROOT, "build-asan"))
SAMPLE = os.path.join(BUILD, "tests", "capnp", "capnp_sample")
SCHEMA = os.path.join(HERE, "test.capnp")
TEXT = os.path.join(HERE, "everything.txt")


def capnp(*args, data=None):
    return subprocess.run(["capnp", *args], input=data, capture_output=True, check=True).stdout


def sample(*args, data=None, check=True):
    if not os.path.exists(SAMPLE):
        pytest.fail(f"{SAMPLE} is missing: run `make asan` first")
    return subprocess.run([SAMPLE, *args], input=data, capture_output=True, check=check)


@pytest.fixture(scope="module")
def reference_text():
    """everything.txt as the reference prints it after a round trip."""
    with open(TEXT, "rb") as f:
        encoded = capnp("encode", SCHEMA, "Everything", data=f.read())
    return capnp("decode", SCHEMA, "Everything", data=encoded).decode()


def segments_of(stderr):
    line = [l for l in stderr.decode().splitlines() if l.startswith("segments:")][0]
    return int(line.split()[1])


@pytest.mark.parametrize("segment_words", [None, 1, 2, 3, 5, 8, 13, 64])
def test_reference_decodes_our_messages(reference_text, segment_words):
    args = ["write"] + (["--segment-words", str(segment_words)] if segment_words else [])
    out = sample(*args)
    if segment_words and segment_words < 8:
        assert segments_of(out.stderr) > 3  # far pointers, with landing pads
    assert capnp("decode", SCHEMA, "Everything", data=out.stdout).decode() == reference_text


def test_reference_decodes_our_packed_messages(reference_text):
    for seg in ("1024", "2"):
        out = sample("write", "--packed", "--segment-words", seg)
        text = capnp("decode", "--packed", SCHEMA, "Everything", data=out.stdout).decode()
        assert text == reference_text


def test_we_read_reference_messages():
    with open(TEXT, "rb") as f:
        text = f.read()
    plain = capnp("encode", SCHEMA, "Everything", data=text)
    r = sample("check", data=plain, check=False)
    assert r.returncode == 0, r.stderr.decode()
    packed = capnp("encode", "--packed", SCHEMA, "Everything", data=text)
    assert len(packed) < len(plain)
    r = sample("check", "--packed", data=packed, check=False)
    assert r.returncode == 0, r.stderr.decode()


def test_a_wrong_message_fails_the_check():
    # The checker must notice a single changed field, or the test above is empty.
    with open(TEXT, "rb") as f:
        text = f.read().replace(b"int16Field = -32768", b"int16Field = -32767")
    r = sample("check", data=capnp("encode", SCHEMA, "Everything", data=text), check=False)
    assert r.returncode == 1
    assert b"int16Field" in r.stderr


def test_copies_across_segments_stay_readable_by_both(reference_text):
    with open(TEXT, "rb") as f:
        plain = capnp("encode", SCHEMA, "Everything", data=f.read())
    copied = sample("copy", "--segment-words", "3", data=plain)
    assert segments_of(copied.stderr) > 3
    assert capnp("decode", SCHEMA, "Everything", data=copied.stdout).decode() == reference_text
    r = sample("check", data=copied.stdout, check=False)
    assert r.returncode == 0, r.stderr.decode()


def test_reference_follows_our_double_far_pointer():
    out = sample("doublefar").stdout
    text = capnp("decode", SCHEMA, "Inner", data=out).decode().strip()
    assert text == '(id = 42, name = "hi", flag = true)'


def test_hostile_frames_are_refused():
    # A truncated frame and an absurd segment count: an error, not a crash.
    good = sample("write").stdout
    for data in (good[:-8], good[:5], b"\xff\xff\xff\xff\x00\x00\x00\x00"):
        r = sample("check", data=data, check=False)
        assert r.returncode == 1
        assert b"capnp frame" in r.stderr


CAPNPC_C = os.path.join(BUILD, "src", "capnp", "capnpc-c")


def test_capnpc_c_as_a_plugin_and_on_bad_requests(tmp_path):
    # The plugin run by hand on a request equals what the build generated.
    request = capnp("compile", "-o-", "--src-prefix=" + HERE, SCHEMA)
    r = subprocess.run([CAPNPC_C], input=request, cwd=tmp_path, capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    with open(os.path.join(BUILD, "tests", "capnp", "test.capnp.h"), "rb") as f:
        assert (tmp_path / "test.capnp.h").read_bytes() == f.read()
    # A truncated or corrupted request is an error with a message, not a crash.
    for bad in (request[:len(request) // 2], request[:4], b"\x00" * 16,
                request[:8] + bytes(b ^ 0x5a for b in request[8:200]) + request[200:]):
        r = subprocess.run([CAPNPC_C], input=bad, cwd=tmp_path, capture_output=True)
        assert r.returncode in (0, 1), r.stderr.decode()
        assert b"Sanitizer" not in r.stderr and b"runtime error" not in r.stderr
        if r.returncode == 1:
            assert b"capnpc-c:" in r.stderr


def test_xor_defaults_agree_with_the_reference():
    # Our setters' XOR encoding, decoded by the reference.
    text = capnp("decode", SCHEMA, "Defaults", data=sample("defaults").stdout).decode()
    for expected in ("boolDefault = false", "int8Default = 0", "int16Default = -12345",
                     "int32Default = -12345678", "uint64Default = 1", "float64Default = 0.5",
                     "enumDefault = red", 'textDefault = "set"', "structDefault = (id = 5"):
        assert expected in text, text
    # The reference's encoding, read by our getters: absent fields give the
    # schema's defaults (pointer defaults included), set ones their values.
    encoded = capnp("encode", SCHEMA, "Defaults",
                    data=b'(int8Default = 5, float32Default = 0, textListDefault = [])')
    out = sample("check-defaults", data=encoded).stdout.decode().strip()
    assert out == ("bool=1 int8=5 int16=-12345 int32=-12345678 int64=-123456789012345 "
                   "uint8=234 uint16=45678 uint32=3456789012 uint64=12345678901234567890 "
                   "float32=0 float64=-1.23e+47 enum=2 text=foo\"bar\n data=6 struct=7/seven "
                   "ints=3 textList=0 structList=2 bools=4"), out
