"""Writes a C header holding a file's bytes as a static array, for a BPF
object built into the binary: embed_bytes.py NAME INPUT OUTPUT."""
import sys

name, src, dst = sys.argv[1:4]
data = open(src, "rb").read()
with open(dst, "w") as out:
    out.write(f"/* Generated from {src.rsplit('/', 1)[-1]} by embed_bytes.py. */\n")
    out.write(f"static const unsigned char {name}[{len(data)}] = {{\n")
    for i in range(0, len(data), 16):
        out.write("    " + ", ".join(str(b) for b in data[i:i + 16]) + ",\n")
    out.write("};\n")
