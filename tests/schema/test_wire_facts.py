"""Granary's Sandstorm-compatible schemas against the wire facts.

Compiles each schema in schema/sandstorm/ with the capnp compiler's
`-ocapnp` output (which prints every struct's size and every field's slot)
and compares, for every type the facts document lists for that file and the
schema defines: the type ID, the struct layout (data words, pointers), every
field's slot and union discriminant position, every method's ordinal, and
every enumerant's ordinal. A type the facts list but the schema does not yet
define is reported, not failed (the schemas grow with the API); a type that is
defined must match exactly."""
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA = os.path.join(ROOT, "schema", "sandstorm")
SHARED = os.environ.get("GRANARY_SHARED_DIR", os.path.join(os.path.dirname(ROOT), "shared"))
FACTS = os.path.join(SHARED, "spec", "sandstorm-wire-facts.md")


def parse_facts():
    """{file: {type path: {kind, id, layout, fields: {name: slot}, methods, enumerants}}}"""
    files, current, t = {}, None, None
    section = re.compile(r"^## \d+\. (\S+\.capnp)")
    header = re.compile(r"^#### `([\w.]+)` · (struct|interface|enum) · `(0x[0-9a-f]+)`")
    with open(FACTS) as f:
        for line in f:
            m = section.match(line)
            if m:
                current = files.setdefault(m.group(1), {})
                t = None
                continue
            if line.startswith("## "):
                current, t = None, None
                continue
            m = header.match(line)
            if m and current is not None:
                t = current[m.group(1)] = {"kind": m.group(2), "id": int(m.group(3), 16),
                                           "fields": {}, "methods": {}, "enumerants": {}}
                continue
            if t is None:
                continue
            m = re.match(r"^Layout: (\d+) data word\(s\), (\d+) pointer\(s\)", line)
            if m:
                t["layout"] = (int(m.group(1)), int(m.group(2)))
                continue
            m = re.match(r"^Enumerants: (.*)", line)
            if m:
                for name, n in re.findall(r"`(\w+)`=(\d+)", m.group(1)):
                    t["enumerants"][name] = int(n)
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
            if len(cells) < 2 or not re.fullmatch(r"\d+|—", cells[1] or "x"):
                continue
            if t["kind"] == "struct" and len(cells) >= 4 and cells[1] != "—":
                t["fields"][cells[0]] = cells[3]
            elif t["kind"] == "interface" and cells[1].isdigit():
                t["methods"][cells[0]] = int(cells[1])
            elif t["kind"] == "enum" and cells[1].isdigit():
                t["enumerants"][cells[0]] = int(cells[1])
    return files


def parse_compiled(path):
    """The same shape, read from `capnp compile -ocapnp`."""
    out = subprocess.run(["capnp", "compile", "-I" + os.path.join(ROOT, "schema"), "-I/usr/include",
                          "--src-prefix=" + SCHEMA, "-ocapnp", path],
                         capture_output=True, text=True, check=True).stdout
    types, stack = {}, []

    def type_path():
        return ".".join(n for k, n in stack if k in ("struct", "interface", "enum"))

    def group_path():
        names = []
        for k, n in reversed(stack):
            if k in ("struct", "interface", "enum"):
                break
            if k == "group":
                names.append(n)
        return ".".join(reversed(names))

    for line in out.splitlines():
        s = line.strip()
        m = re.match(r"^(struct|interface|enum) (\w+) @(0x[0-9a-f]+)", s)
        if m:
            stack.append((m.group(1), m.group(2)))
            t = types[type_path()] = {"kind": m.group(1), "id": int(m.group(3), 16), "fields": {},
                                      "methods": {}, "enumerants": {}}
            lm = re.search(r"# (\d+) bytes, (\d+) ptrs", s)
            if lm:
                t["layout"] = (int(lm.group(1)) // 8, int(lm.group(2)))
            if not s.endswith("{") and "{" not in s:
                stack.pop()
            continue
        m = re.match(r"^(\w+) :group \{", s)
        if m:
            stack.append(("group", m.group(1)))
            continue
        if s.startswith("union {"):
            stack.append(("union", None))
            m = re.search(r"tag bits \[(\d+), ", s)
            if m:
                types[type_path()]["fields"]["<tag " + group_path() + ">"] = "d" + m.group(1)
            continue
        if s.startswith("}"):
            if stack:
                stack.pop()
            continue
        if not stack:
            continue
        kind = stack[-1][0] if stack[-1][0] != "union" and stack[-1][0] != "group" else "struct"
        owner = types.get(type_path())
        if owner is None:
            continue
        m = re.match(r"^(\w+) @(\d+)", s)
        if not m:
            continue
        name, ordinal = m.group(1), int(m.group(2))
        if owner["kind"] == "interface":
            owner["methods"][name] = ordinal
        elif owner["kind"] == "enum":
            owner["enumerants"][name] = ordinal
        else:
            g = group_path()
            full = f"{g}.{name}" if g else name
            sm = re.search(r"# (?:bits\[(\d+), (\d+)\)|ptr\[(\d+)\])", s)
            if sm and sm.group(3) is not None:
                slot = "p" + sm.group(3)
            elif sm and sm.group(1) != sm.group(2):
                slot = "d" + sm.group(1)
            else:
                slot = "—"
            owner["fields"][full] = slot
    return types


FILES = sorted(f for f in os.listdir(SCHEMA) if f.endswith(".capnp")) if os.path.isdir(SCHEMA) else []


@pytest.fixture(scope="module")
def facts():
    if not os.path.exists(FACTS):
        pytest.skip(f"the wire facts are not beside the project ({FACTS})")
    return parse_facts()


@pytest.mark.parametrize("name", FILES)
def test_schema_matches_wire_facts(facts, name):
    documented = facts.get(name)
    if documented is None:
        pytest.skip(f"{name} is not described by the facts")
    compiled = parse_compiled(os.path.join(SCHEMA, name))
    problems, checked, missing = [], 0, []
    for path, fact in documented.items():
        ours = compiled.get(path)
        if ours is None:
            missing.append(path)
            continue
        checked += 1
        if ours["id"] != fact["id"]:
            problems.append(f"{path}: id {ours['id']:#x}, facts say {fact['id']:#x}")
        if fact["kind"] == "struct":
            if "layout" in fact and ours.get("layout") != fact["layout"]:
                problems.append(f"{path}: layout {ours.get('layout')}, facts say {fact['layout']}")
            for field, slot in fact["fields"].items():
                got = ours["fields"].get(field)
                if got is None:
                    problems.append(f"{path}.{field}: missing")
                elif slot.startswith(("d", "p")) and got != slot:
                    problems.append(f"{path}.{field}: slot {got}, facts say {slot}")
        for key in ("methods", "enumerants"):
            for member, ordinal in fact[key].items():
                if ours[key].get(member) != ordinal:
                    problems.append(f"{path}.{member}: ordinal {ours[key].get(member)}, "
                                    f"facts say {ordinal}")
    print(f"{name}: {checked} types checked, not yet defined: {', '.join(missing) or 'none'}")
    assert checked > 0, f"{name}: none of the documented types is defined"
    assert problems == [], "\n".join(problems)
