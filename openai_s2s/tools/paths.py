"""Where a FreeSWITCH keeps its files, and reading its configuration.

Paths come from, in order: the command line, a running switch (``fs_cli -x 'global_getvar
conf_dir'``...), then the layout defaults (``debian`` for the FreeSWITCH Debian packages,
``source`` for a build installed under /usr/local/freeswitch).
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
from pathlib import Path
from typing import Dict, Optional, Sequence

SHIM_NAME = "openai_s2s_boot"
STARTUP_NAMES = (SHIM_NAME, "openai_s2s")
LAYOUTS: Dict[str, Dict[str, str]] = {
    "debian": {"conf_dir": "/etc/freeswitch", "script_dir": "/usr/share/freeswitch/scripts",
               "mod_dir": "/usr/lib/freeswitch/mod", "fs_cli": "/usr/bin/fs_cli"},
    "source": {"conf_dir": "/usr/local/freeswitch/etc/freeswitch",
               "script_dir": "/usr/local/freeswitch/share/freeswitch/scripts",
               "mod_dir": "/usr/local/freeswitch/lib/freeswitch/mod", "fs_cli": "/usr/local/freeswitch/bin/fs_cli"},
}

@dataclasses.dataclass
class Paths:
    conf_dir: Path
    script_dir: Path
    mod_dir: Path
    fs_cli: Path
    python: Path
    target: Optional[Path]


def fs_cli(paths: Paths, command: str, cli_args: Sequence[str] = ()) -> Optional[str]:
    """One fs_cli -x command, or None when no switch answers."""
    if not paths.fs_cli.exists():
        return None
    try:
        out = subprocess.run([str(paths.fs_cli), *cli_args, "-x", command], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = out.stdout.strip()
    if out.returncode or not text or text.startswith("[ERROR]"):
        return None
    return text


def resolve_paths(args: argparse.Namespace) -> Paths:
    layout = LAYOUTS[args.layout]
    fs_cli_path = Path(args.fs_cli or layout["fs_cli"])
    probe = Paths(Path(layout["conf_dir"]), Path(layout["script_dir"]), Path(layout["mod_dir"]),
                  fs_cli_path, Path(args.python), None)
    found: Dict[str, str] = {}
    if not args.no_switch:
        for name in ("conf_dir", "script_dir", "mod_dir"):
            value = fs_cli(probe, f"global_getvar {name}", args.cli_args)
            if value and not value.startswith("-ERR"):
                found[name] = value

    def pick(name: str) -> Path:
        return Path(getattr(args, name) or found.get(name) or layout[name])

    target = None if args.target in ("", "none") else Path(args.target)
    return Paths(pick("conf_dir"), pick("script_dir"), pick("mod_dir"), fs_cli_path, Path(args.python), target)


# -- what a configuration already has ------------------------------------------------------

def startup_script(python_conf_text: str) -> Optional[str]:
    for match in re.finditer(r"<param\s+name=\"startup-script\"\s+value=\"([^\"]*)\"\s*/>",
                             uncommented(python_conf_text)):
        if match.group(1).split(" ")[0] in STARTUP_NAMES:
            return match.group(1)
    return None


def loads_mod_python3(modules_text: str) -> bool:
    return re.search(r"<load\s+module=\"mod_python3\"\s*/>", uncommented(modules_text)) is not None


def uncommented(xml_text: str) -> str:
    return re.sub(r"<!--.*?-->", "", xml_text, flags=re.S)
