"""``python3 -m openai_s2s install``: put openai_s2s into a FreeSWITCH.

It installs the package for the switch's embedded Python (``pip --target`` into a directory
of its own, so Debian's Python packages are left alone), writes a small boot shim into the
switch's scripts directory, and places the conf files. Nothing here runs inside the switch.
"""
from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable, List, Optional

from .paths import SHIM_NAME, Paths, PathError, loads_mod_python3, startup_script

PACKAGE_DIR = Path(__file__).resolve().parent.parent   # openai_s2s/
DEFAULT_TARGET = "/usr/local/lib/openai_s2s"

SHIM = '''"""openai_s2s boot shim, written by `python3 -m openai_s2s install`.

mod_python3 puts the scripts directory on sys.path; this puts openai_s2s's own library
directory there too and hands every entry point to the package. Because the switch has one
interpreter, `python openai_s2s ...` works as well once this has run at startup.
"""
import sys

LIB = {target!r}
if LIB and LIB not in sys.path:
    sys.path.insert(0, LIB)

import openai_s2s as _pkg  # noqa: E402


def runtime(args):
    _pkg.runtime(args)


def fsapi(session, stream, env, args):
    _pkg.fsapi(session, stream, env, args)


def handler(session, args):
    _pkg.handler(session, args)
'''


@dataclasses.dataclass
class Step:
    describe: str
    apply: Callable[[], None]


def _write(path: Path, text: str) -> Callable[[], None]:
    def apply() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return apply


def _edit(path: Path, text: str) -> Callable[[], None]:
    def apply() -> None:
        shutil.copy2(path, path.with_name(path.name + ".orig-openai_s2s"))
        path.write_text(text)
    return apply


def project_root() -> Optional[Path]:
    """The checkout this package runs from, if any (pip installs from it)."""
    root = PACKAGE_DIR.parent
    return root if (root / "setup.cfg").exists() and (root / "freeswitch_conf").is_dir() else None


def conf_source() -> Path:
    root = project_root()
    if root is None:
        raise SystemExit("-ERR run the installer from an openai_s2s checkout (its freeswitch_conf is needed)")
    return root / "freeswitch_conf"


def plan_install(paths: Paths, pip: bool = True, dialplan: bool = False) -> List[Step]:
    """Every change the installer would make, in order; nothing is touched here."""
    if not paths.conf_dir.is_dir():
        # a configuration written where no switch reads one only looks installed
        raise PathError(f"no FreeSWITCH configuration at {paths.conf_dir}: pass --conf-dir")
    src = conf_source()
    steps: List[Step] = []
    if pip:
        root = project_root()
        cmd = [str(paths.python), "-m", "pip", "install", "--upgrade", "--quiet"]
        cmd += ["--target", str(paths.target)] if paths.target else ["--break-system-packages"]
        cmd.append(str(root))

        def run_pip(cmd: List[str] = cmd) -> None:
            subprocess.run(cmd, check=True)
        steps.append(Step("pip: " + " ".join(cmd), run_pip))

    shim = paths.script_dir / f"{SHIM_NAME}.py"
    steps.append(Step(f"write the boot shim {shim}",
                      _write(shim, SHIM.format(target=str(paths.target) if paths.target else ""))))

    autoload = paths.conf_dir / "autoload_configs"
    ours = autoload / "openai_s2s.conf.xml"
    if not ours.exists():
        steps.append(Step(f"write {ours}", _write(ours, (src / "autoload_configs" / "openai_s2s.conf.xml").read_text())))
    instructions = paths.conf_dir / "openai_s2s"
    if not instructions.exists():
        steps.append(Step(f"create the instructions directory {instructions}",
                          lambda: instructions.mkdir(parents=True, exist_ok=True)))

    python_conf = autoload / "python.conf.xml"
    if not python_conf.exists():
        text = (src / "autoload_configs" / "python.conf.xml").read_text().replace(
            'value="openai_s2s"', f'value="{SHIM_NAME}"')
        steps.append(Step(f"write {python_conf} (startup-script {SHIM_NAME})", _write(python_conf, text)))
    else:
        text = python_conf.read_text()
        if startup_script(text) is None:
            line = f'    <param name="startup-script" value="{SHIM_NAME}"/>\n  '
            new = re.sub(r"</settings>", line + "</settings>", text, count=1)
            if new == text:
                raise SystemExit(f"-ERR {python_conf} has no <settings> element; add the startup-script by hand")
            steps.append(Step(f"add startup-script {SHIM_NAME} to {python_conf}", _edit(python_conf, new)))

    modules = autoload / "modules.conf.xml"
    if modules.exists():
        text = modules.read_text()
        if not loads_mod_python3(text):
            new, n = re.subn(r"<!--\s*(<load module=\"mod_python3\"\s*/>)\s*-->", r"\1", text, count=1)
            if not n:
                new = re.sub(r"</modules>", '  <load module="mod_python3"/>\n  </modules>', text, count=1)
            steps.append(Step(f"load mod_python3 in {modules}", _edit(modules, new)))
    else:
        steps.append(Step(f"(no {modules}: add <load module=\"mod_python3\"/> to your modules list)", lambda: None))

    if dialplan:
        target = paths.conf_dir / "dialplan" / "default" / "openai_s2s_agent.xml"
        if not target.exists():
            steps.append(Step(f"write the sample agent extension {target}",
                              _write(target, (src / "dialplan" / "openai_s2s_agent.xml").read_text())))
    return steps
