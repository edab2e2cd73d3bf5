# Granary's schema against the wire facts: every struct of schema/sandstorm/
# that the spec's tables describe must have the same data/pointer section
# sizes, and each field the same ordinal and slot, as `capnp compile -ocapnp`
# reports. The spec lives in the project's shared/ folder beside the clone.
import os
import re
import subprocess

import pytest

from spk_helpers import ROOT, SCHEMA_DIR

SPEC_CANDIDATES = [os.path.join(ROOT, "..", "shared", "spec", "sandstorm-wire-facts.md"),
                   "/work/shared/spec/sandstorm-wire-facts.md"]
FILES = ["util", "powerbox", "identity", "activity", "grain", "web-session", "ip", "api-session",
         "package"]


def compiled_structs():
    text = ""
    for f in FILES:
        text += subprocess.run(["capnp", "compile", "-ocapnp", "-I" + SCHEMA_DIR,
                                os.path.join(SCHEMA_DIR, "sandstorm", f + ".capnp")],
                               capture_output=True, text=True, check=True).stdout
    structs, stack = {}, []
    for line in text.splitlines():
        m = re.match(r"\s*struct (\w+) @(0x[0-9a-f]+)(?: \(.*?\))? \{  # (\d+) bytes, (\d+) ptrs",
                     line)
        if m:
            structs[m.group(2)] = (int(m.group(3)) // 8, int(m.group(4)), {})
            stack.append(("struct", m.group(2)))
            continue
        m = re.match(r"\s*(\w+) :(?:group|union) \{", line)
        if m:
            stack.append(("group", m.group(1)))
            continue
        if re.match(r"\s*union \{", line):
            stack.append(("union", None))
            continue
        if re.match(r"\s*(interface|enum) ", line) and line.rstrip().endswith("{"):
            stack.append(("other", None))
            continue
        if line.strip() == "}":
            if stack:
                stack.pop()
            continue
        m = re.match(r"\s*(\w+) @(\d+) :.*?;  # (.*)", line)
        if not m or not stack:
            continue
        top = max(i for i, e in enumerate(stack) if e[0] in ("struct", "other"))
        if stack[top][0] != "struct":
            continue
        path = [e[1] for e in stack[top + 1:] if e[0] == "group"]
        ptr = re.search(r"ptr\[(\d+)\]", m.group(3))
        bits = re.search(r"bits\[(\d+), (\d+)\)", m.group(3))
        if ptr:
            slot = "p" + ptr.group(1)
        elif bits and bits.group(1) != bits.group(2):
            slot = "d" + bits.group(1)
        else:
            slot = "—"
        structs[stack[top][1]][2][".".join(path + [m.group(1)])] = (int(m.group(2)), slot)
    return structs


def test_struct_layouts_match_the_wire_facts():
    spec_path = next((p for p in SPEC_CANDIDATES if os.path.exists(p)), None)
    if spec_path is None:
        pytest.skip("shared/spec not beside this checkout")
    spec = open(spec_path).read()
    ours = compiled_structs()
    checked, problems = 0, []
    for sec in re.split(r"\n#### ", spec):
        m = re.match(r"`([\w.]+)` · struct · `(0x[0-9a-f]+)`", sec)
        if not m or m.group(2) not in ours:
            continue
        checked += 1
        dw, pw, fields = ours[m.group(2)]
        lm = re.search(r"Layout: (\d+) data word\(s\), (\d+) pointer", sec)
        if (int(lm.group(1)), int(lm.group(2))) != (dw, pw):
            problems.append((m.group(1), "layout", lm.groups(), (dw, pw)))
        for name, ordinal, slot in re.findall(r"^\| ([\w.]+) \| (\d+) \| `[^|]*` \| (\S+) \|",
                                              sec, re.M):
            if fields.get(name) != (int(ordinal), slot):
                problems.append((m.group(1), name, (ordinal, slot), fields.get(name)))
    assert problems == []
    assert checked >= 61  # every struct of these files that the wire facts describe


def test_interface_methods_match_the_wire_facts():
    # A method's param and result struct IDs derive from its interface's ID and
    # its ordinal, so finding every one the wire facts list proves both.
    spec_path = next((p for p in SPEC_CANDIDATES if os.path.exists(p)), None)
    if spec_path is None:
        pytest.skip("shared/spec not beside this checkout")
    spec = open(spec_path).read()
    req = subprocess.run(["capnp", "compile", "-o-", "-I" + SCHEMA_DIR] +
                         [os.path.join(SCHEMA_DIR, "sandstorm", f + ".capnp") for f in FILES],
                         capture_output=True, check=True).stdout
    text = subprocess.run(["capnp", "decode", "--short", "/usr/include/capnp/schema.capnp",
                           "CodeGeneratorRequest"], input=req, capture_output=True,
                          check=True).stdout.decode()
    ids = {int(x) for x in re.findall(r"\bid = (\d+)", text)}
    checked, missing = 0, []
    for sec in re.split(r"\n#### ", spec):
        m = re.match(r"`([\w.]+)` · interface · `(0x[0-9a-f]+)`", sec)
        if not m or int(m.group(2), 16) not in ids:
            continue
        for params, results in re.findall(
                r"\| (0x[0-9a-f]+) (?:auto|explicit) / (0x[0-9a-f]+) (?:auto|explicit) \|", sec):
            checked += 1
            if int(params, 16) not in ids or int(results, 16) not in ids:
                missing.append((m.group(1), params, results))
    assert missing == []
    assert checked >= 68
