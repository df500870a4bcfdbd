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

from openai_s2s.tools import testswitch as realswitch
from openai_s2s import native

REASON = realswitch.missing_reason()
pytestmark = [pytest.mark.realswitch, pytest.mark.skipif(REASON is not None, reason=str(REASON))]


def include_flags(prefix):
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    out = subprocess.run(["pkg-config", "--cflags", "freeswitch"], capture_output=True, text=True, env=env)
    if out.returncode == 0 and out.stdout.strip():
        return out.stdout.split()
    return ["-I" + str(prefix / "include" / "freeswitch")]


def checks():
    """(label, C expression printed as a long, the value ctypes has), for every declaration."""
    out = []
    for cls, c_name, whole in native.C_STRUCTS:
        for field, _ in cls._fields_:
            out.append((f"{c_name}.{field}", f"offsetof({c_name}, {field})", getattr(cls, field).offset))
        if whole:
            out.append((f"sizeof {c_name}", f"sizeof({c_name})", ctypes.sizeof(cls)))
    for name in native.C_CONSTANTS:
        out.append((f"const {name}", name, getattr(native, name)))
    return out


def c_program():
    lines = ["#include <switch.h>", "#include <stdio.h>", "#include <stddef.h>",
             "static volatile int argc_never = 0;", "int main(void) {"]
    for label, expr, _ in checks():
        lines.append(f'  printf("{label} %ld\\n", (long)({expr}));')
    lines.append("  if (argc_never) {")   # never runs: a wrong argument count does not compile
    for name, (_, argtypes) in native.PROTOTYPES.items():
        lines.append(f"    (void){name}({', '.join(['0'] * len(argtypes))});")
    return "\n".join(lines + ["  }", "  return 0;", "}"])


def expected():
    return [f"{label} {value}" for label, _, value in checks()]


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
