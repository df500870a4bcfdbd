"""Where a FreeSWITCH keeps its files, and reading its configuration.

Each path comes from, in order: the command line; a running switch (``fs_cli -x
'global_getvar conf_dir'``...), which knows best; then a layout: ``--layout``, else the one
the configuration directory's place implies, else the one found on disk (``package``:
/etc/freeswitch and /usr/share/freeswitch, as the FreeSWITCH packages install; ``source``:
everything under /usr/local/freeswitch, as ``make install`` does). Nothing here creates a
configuration directory: when none can be found the operator is asked for one
(:class:`PathError`), because files written where the switch does not look only make it
seem installed.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

SHIM_NAME = "openai_s2s_boot"
STARTUP_NAMES = (SHIM_NAME, "openai_s2s")
DIR_NAMES = ("conf_dir", "script_dir", "mod_dir", "log_dir")
FLAGS = {"conf_dir": "--conf-dir", "script_dir": "--scripts-dir", "mod_dir": "--mod-dir"}


def source_layout(prefix: str) -> Dict[str, str]:
    """What ``make install`` lays out under ``--prefix`` (default /usr/local/freeswitch)."""
    return {"conf_dir": f"{prefix}/etc/freeswitch", "script_dir": f"{prefix}/share/freeswitch/scripts",
            "mod_dir": f"{prefix}/lib/freeswitch/mod", "log_dir": f"{prefix}/var/log/freeswitch"}


LAYOUTS: Dict[str, Dict[str, str]] = {
    "package": {"conf_dir": "/etc/freeswitch", "script_dir": "/usr/share/freeswitch/scripts",
                "mod_dir": "/usr/lib/freeswitch/mod", "log_dir": "/var/log/freeswitch"},
    "source": source_layout("/usr/local/freeswitch"),
}
LAYOUT_ALIASES = {"debian": "package"}
# fs_cli is often not on PATH (a source build puts it in /usr/local/freeswitch/bin)
FS_CLI_DIRS: Tuple[str, ...] = ("/usr/local/freeswitch/bin", "/usr/bin", "/opt/freeswitch/bin", "/usr/local/bin")


class PathError(Exception):
    """No usable path, in one line that says what to pass."""


@dataclasses.dataclass
class Paths:
    conf_dir: Path
    script_dir: Path
    mod_dir: Path
    fs_cli: Optional[Path]
    python: Path
    target: Optional[Path]
    log_dir: Optional[Path] = None
    run_dir: Optional[Path] = None
    # where each path came from, e.g. "from --conf-dir"; a path with none was given outright
    sources: Dict[str, str] = dataclasses.field(default_factory=dict)

    def provenance(self) -> List[str]:
        """One line per path: its value and where it came from."""
        lines = []
        for name in ("fs_cli",) + DIR_NAMES + ("run_dir",):
            value = getattr(self, name)
            if value is not None or name in self.sources:
                lines.append(f"{name} {value if value is not None else '-'} ({self.sources.get(name, 'given')})")
        return lines


def fs_cli(paths: Paths, command: str, cli_args: Sequence[str] = ()) -> Optional[str]:
    """One fs_cli -x command, or None when no switch answers."""
    return run_fs_cli(paths.fs_cli, command, cli_args)


def run_fs_cli(program: Optional[Path], command: str, cli_args: Sequence[str] = ()) -> Optional[str]:
    if program is None or not program.exists():
        return None
    try:
        out = subprocess.run([str(program), *cli_args, "-x", command], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = out.stdout.strip()
    if out.returncode or not text or text.startswith("[ERROR]"):
        return None
    return text


def find_fs_cli(given: Optional[str]) -> Tuple[Optional[Path], str]:
    """fs_cli and where it was found: --fs-cli, else PATH, else the usual install prefixes."""
    if given:
        return Path(given), "from --fs-cli"
    on_path = shutil.which("fs_cli")
    if on_path:
        return Path(on_path), "on PATH"
    for directory in FS_CLI_DIRS:
        candidate = Path(directory) / "fs_cli"
        if os.access(candidate, os.X_OK) and candidate.is_file():
            return candidate, f"found on disk in {directory}"
    return None, "not on PATH, nor in " + ", ".join(FS_CLI_DIRS) + ": pass --fs-cli"


def ask_switch(program: Optional[Path], cli_args: Sequence[str]) -> Dict[str, str]:
    """The paths a running switch reports (``global_getvar NAME`` prints the value); {} if none answers."""
    found: Dict[str, str] = {}
    for name in DIR_NAMES + ("run_dir",):
        value = run_fs_cli(program, f"global_getvar {name}", cli_args)
        if value is None and not found:
            return {}   # nothing answers: don't wait for fs_cli's connect timeout four more times
        if value and not value.startswith("-ERR") and value.startswith("/"):
            found[name] = value
    return found


def layout_of(conf_dir: Path) -> Optional[Tuple[str, Dict[str, str]]]:
    """The layout a configuration directory belongs to: a known one, or a source build under
    another prefix (PREFIX/etc/freeswitch); None if its shape says nothing."""
    for name, layout in LAYOUTS.items():
        if Path(layout["conf_dir"]) == conf_dir:
            return name, layout
    if conf_dir.parts[-2:] == ("etc", "freeswitch") and len(conf_dir.parts) > 3:
        prefix = conf_dir.parent.parent
        return f"source under {prefix}", source_layout(str(prefix))
    return None


def is_configuration(conf_dir: Path) -> bool:
    # freeswitch.xml is the root every configuration has; a bare directory may be one a
    # mistaken install created
    return (conf_dir / "freeswitch.xml").is_file()


def layout_on_disk(asked: str = "") -> Tuple[str, Dict[str, str]]:
    """The one layout with a configuration on this machine."""
    found = [(name, layout) for name, layout in LAYOUTS.items() if is_configuration(Path(layout["conf_dir"]))]
    if len(found) == 1:
        return found[0]
    if found:
        where = " and ".join(layout["conf_dir"] for _, layout in found)
        raise PathError(f"FreeSWITCH configurations at both {where}: pass --layout or --conf-dir")
    where = " or ".join(layout["conf_dir"] for layout in LAYOUTS.values())
    raise PathError(f"no FreeSWITCH configuration at {where}{asked}: pass --conf-dir")


def _layout_for(args: argparse.Namespace, chosen: Dict[str, str],
                asked: str) -> Optional[Tuple[Dict[str, str], str]]:
    """The layout for the paths neither given nor reported, and why it is that one."""
    if args.layout:
        return LAYOUTS[LAYOUT_ALIASES.get(args.layout, args.layout)], f"from --layout {args.layout}"
    if "conf_dir" in chosen:   # the other paths go with the configuration, not with the disk
        match = layout_of(Path(chosen["conf_dir"]))
        return (match[1], f"{match[0]} layout, matching conf_dir") if match else None
    name, layout = layout_on_disk(asked)
    return layout, f"found on disk: {name} layout"


def resolve_paths(args: argparse.Namespace) -> Paths:
    """Every path install and doctor use, each with where it came from; PathError if there is
    no configuration directory to use (none is ever created)."""
    sources: Dict[str, str] = {}
    program, sources["fs_cli"] = find_fs_cli(args.fs_cli)
    reported = {} if args.no_switch else ask_switch(program, args.cli_args)
    chosen: Dict[str, str] = {}
    for name in DIR_NAMES + ("run_dir",):
        given = getattr(args, name, None)
        if given:
            chosen[name], sources[name] = given, f"from {FLAGS[name]}"
        elif name in reported:
            chosen[name], sources[name] = reported[name], f"from the running switch: global_getvar {name}"
    # a directory the operator names or the switch reports is trusted if it exists; one a
    # layout supplies must hold a configuration
    trusted = "conf_dir" in chosen
    if trusted and not Path(chosen["conf_dir"]).is_dir():
        raise PathError(f"no FreeSWITCH configuration at {chosen['conf_dir']} ({sources['conf_dir']}): "
                        "pass --conf-dir")
    missing = [name for name in DIR_NAMES if name not in chosen]
    if missing:
        asked = "" if args.no_switch else (", and no running switch answers fs_cli" if program
                                           else ", and no fs_cli was found")
        found = _layout_for(args, chosen, asked)
        if found is not None:
            for name in missing:
                chosen[name], sources[name] = found[0][name], found[1]
        elif any(name in FLAGS for name in missing):
            flags = " and ".join(FLAGS[name] for name in missing if name in FLAGS)
            raise PathError(f"cannot tell where the FreeSWITCH configured in {chosen['conf_dir']} keeps "
                            f"its other files: pass {flags}")
    conf = Path(chosen["conf_dir"])
    if not trusted and not is_configuration(conf):
        raise PathError(f"no FreeSWITCH configuration at {conf} ({sources['conf_dir']}): pass --conf-dir")
    optional = lambda name: Path(chosen[name]) if name in chosen else None  # noqa: E731
    return Paths(conf, Path(chosen["script_dir"]), Path(chosen["mod_dir"]), program, Path(args.python),
                 None if args.target in ("", "none") else Path(args.target),
                 log_dir=optional("log_dir"), run_dir=optional("run_dir"), sources=sources)


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
