"""native.py against the installed FreeSWITCH headers and library.

A C program generated from native.py's own declarations is compiled against the
switch's headers: it prints every declared field's offset, the size of each struct
declared whole, and each constant, and calls each prototype with the declared number of
arguments (a wrong count does not compile). The output is compared with ctypes' view.
"""
import ctypes
import os
import subprocess

import pytest

import realswitch
from openai_s2s import native

REASON = realswitch.missing_reason()
pytestmark = [pytest.mark.realswitch, pytest.mark.skipif(REASON is not None, reason=str(REASON))]


def include_flags(prefix):
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    out = subprocess.run(["pkg-config", "--cflags", "freeswitch"], capture_output=True, text=True, env=env)
    if out.returncode == 0 and out.stdout.strip():
        return out.stdout.split()
    return ["-I" + str(prefix / "include" / "freeswitch")]


def c_program():
    lines = ["#include <switch.h>", "#include <stdio.h>", "#include <stddef.h>", "int main(void) {"]
    for cls, c_name, whole in native.C_STRUCTS:
        for field, _ in cls._fields_:
            lines.append(f'  printf("{c_name}.{field} %zu\\n", offsetof({c_name}, {field}));')
        if whole:
            lines.append(f'  printf("sizeof {c_name} %zu\\n", sizeof({c_name}));')
    for name in native.C_CONSTANTS:
        lines.append(f'  printf("const {name} %ld\\n", (long)({name}));')
    lines.append("  if (argc_never) {")
    for name, (_, argtypes) in native.PROTOTYPES.items():
        lines.append(f"    (void){name}({', '.join(['0'] * len(argtypes))});")
    lines += ["  }", "  return 0;", "}"]
    return "\n".join(lines).replace("int main(void) {", "static volatile int argc_never = 0;\nint main(void) {")


def expected():
    out = []
    for cls, c_name, whole in native.C_STRUCTS:
        for field, _ in cls._fields_:
            out.append(f"{c_name}.{field} {getattr(cls, field).offset}")
        if whole:
            out.append(f"sizeof {c_name} {ctypes.sizeof(cls)}")
    for name in native.C_CONSTANTS:
        out.append(f"const {name} {getattr(native, name)}")
    return out


def test_structs_constants_and_prototypes_match_the_headers(tmp_path):
    prefix = realswitch.find_prefix()
    source = tmp_path / "layout.c"
    source.write_text(c_program())
    binary = tmp_path / "layout"
    libdir = prefix / "lib"
    build = subprocess.run(["gcc", "-o", str(binary), str(source), *include_flags(prefix),
                            f"-L{libdir}", f"-Wl,-rpath,{libdir}", "-lfreeswitch"],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    got = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout.split("\n")
    mismatches = [(want, have) for want, have in zip(expected(), got) if want != have]
    assert mismatches == [] and len(got) - 1 == len(expected())
