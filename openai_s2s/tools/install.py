"""Operator tooling: install openai_s2s into a FreeSWITCH, and check an installation.

``python3 -m openai_s2s install`` installs the package for the switch's embedded Python
(``pip --target`` into a directory of its own, so Debian's Python packages are left alone),
writes a small boot shim into the switch's scripts directory, and places the conf files.
``python3 -m openai_s2s doctor`` says what is missing. Nothing here runs inside the switch.

Paths come from, in order: the command line, a running switch (``fs_cli -x 'global_getvar
conf_dir'``...), then the layout defaults (``debian`` for the FreeSWITCH Debian packages,
``source`` for a build installed under /usr/local/freeswitch).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..control.config import KEY_ENV_VARS

PACKAGE_DIR = Path(__file__).resolve().parent.parent   # openai_s2s/
SHIM_NAME = "openai_s2s_boot"
STARTUP_NAMES = (SHIM_NAME, "openai_s2s")
LAYOUTS: Dict[str, Dict[str, str]] = {
    "debian": {"conf_dir": "/etc/freeswitch", "script_dir": "/usr/share/freeswitch/scripts",
               "mod_dir": "/usr/lib/freeswitch/mod", "fs_cli": "/usr/bin/fs_cli"},
    "source": {"conf_dir": "/usr/local/freeswitch/etc/freeswitch",
               "script_dir": "/usr/local/freeswitch/share/freeswitch/scripts",
               "mod_dir": "/usr/local/freeswitch/lib/freeswitch/mod", "fs_cli": "/usr/local/freeswitch/bin/fs_cli"},
}
DEFAULT_TARGET = "/usr/local/lib/openai_s2s"

SHIM = '''"""openai_s2s boot shim, written by `python3 -m openai_s2s install`.

mod_python3 puts the scripts directory on sys.path; this puts openai_s2s's own library
directory there too and hands every entry point to the package. Because the switch has one
interpreter, `python openai_s2s ...` works as well once this has run at startup.
"""

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
class Paths:
    conf_dir: Path
    script_dir: Path
    mod_dir: Path
    fs_cli: Path
    python: Path
    target: Optional[Path]


# -- talking to a running switch ------------------------------------------------------------

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


# -- install ---------------------------------------------------------------------------------

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


# -- doctor ------------------------------------------------------------------------------------

def startup_script(python_conf_text: str) -> Optional[str]:
    for match in re.finditer(r"<param\s+name=\"startup-script\"\s+value=\"([^\"]*)\"\s*/>",
                             _uncommented(python_conf_text)):
        if match.group(1).split(" ")[0] in STARTUP_NAMES:
            return match.group(1)
    return None


def loads_mod_python3(modules_text: str) -> bool:
    return re.search(r"<load\s+module=\"mod_python3\"\s*/>", _uncommented(modules_text)) is not None


def _uncommented(xml_text: str) -> str:
    return re.sub(r"<!--.*?-->", "", xml_text, flags=re.S)


def linked_python(mod_python3: Path) -> Optional[str]:
    """The libpython mod_python3.so was built against, e.g. '3.11' (from its DT_NEEDED string)."""
    try:
        data = mod_python3.read_bytes()
    except OSError:
        return None
    match = re.search(rb"libpython(3\.\d+)", data)
    return match.group(1).decode() if match else None


def switch_pid(run_dir: Optional[Path] = None) -> Optional[int]:
    """The running switch's pid: from its run_dir's pid file, else the first 'freeswitch' process."""
    if run_dir is not None:
        try:
            return int((run_dir / "freeswitch.pid").read_text().strip())
        except (OSError, ValueError):
            pass
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "comm").read_text().strip() == "freeswitch":
                    return int(proc.name)
            except OSError:
                continue
    return None


def switch_environ(pid: int) -> Optional[Dict[str, str]]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


Check = Tuple[str, str, str]   # (status: ok | FAIL | warn | skip, what, hint)


def doctor(paths: Paths, cli_args: Sequence[str] = ()) -> List[Check]:
    checks: List[Check] = []
    add = lambda status, what, hint="": checks.append((status, what, hint))  # noqa: E731

    mod = paths.mod_dir / "mod_python3.so"
    if mod.exists():
        add("ok", f"mod_python3 is built: {mod}")
    else:
        add("FAIL", f"no mod_python3.so in {paths.mod_dir}", "build FreeSWITCH with languages/mod_python3 "
            "(or pass --mod-dir)")

    autoload = paths.conf_dir / "autoload_configs"
    modules = autoload / "modules.conf.xml"
    if modules.exists():
        if loads_mod_python3(modules.read_text()):
            add("ok", f"{modules} loads mod_python3")
        else:
            add("FAIL", f"{modules} does not load mod_python3", 'add <load module="mod_python3"/>')
    else:
        add("warn", f"no {modules}", "make sure your configuration loads mod_python3")

    python_conf = autoload / "python.conf.xml"
    script = startup_script(python_conf.read_text()) if python_conf.exists() else None
    if script:
        add("ok", f"{python_conf} runs startup-script {script}")
    else:
        add("FAIL", f"{python_conf} has no startup-script for openai_s2s",
            f'add <param name="startup-script" value="{SHIM_NAME}"/> (python3 -m openai_s2s install does)')

    want = linked_python(mod) if mod.exists() else None
    try:
        have = subprocess.run([str(paths.python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=20).stdout.strip()
    except OSError:
        have = ""
    if not have:
        add("FAIL", f"{paths.python} does not run", "pass --python, the Python mod_python3 was built with")
    elif want and want != have:
        add("FAIL", f"mod_python3 embeds Python {want} but {paths.python} is {have}",
            "pass --python /usr/bin/python" + want)
    else:
        add("ok", f"{paths.python} is Python {have}" + (", as mod_python3 embeds" if want else ""))

    shim = paths.script_dir / f"{SHIM_NAME}.py"
    if script and script.startswith(SHIM_NAME):
        add("ok" if shim.exists() else "FAIL", f"boot shim {shim}" + ("" if shim.exists() else " is missing"),
            "" if shim.exists() else "run python3 -m openai_s2s install")

    if have:
        path = [str(paths.target)] if paths.target else []
        path.append(str(paths.script_dir))
        # freeswitch.py imports _freeswitch, which only exists inside the switch: find it, don't import it
        code = ("import importlib, importlib.util\nmissing = []\n"
                "for name in ('openai_s2s', 'websocket', 'orjson', 'samplerate', 'numpy'):\n"
                "    try:\n        importlib.import_module(name)\n"
                "    except Exception as exc:\n        missing.append('%s (%s)' % (name, exc))\n"
                "if importlib.util.find_spec('freeswitch') is None:\n"
                "    missing.append('freeswitch (no freeswitch.py: it comes with mod_python3)')\n"
                "print('; '.join(missing))")
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": os.pathsep.join(path)}
        # cwd "/": run from a checkout, "-c" would find the package in the current directory
        out = subprocess.run([str(paths.python), "-c", code], capture_output=True, text=True, env=env,
                             timeout=60, cwd="/")
        missing = out.stdout.strip()
        if out.returncode:
            missing = (out.stderr.strip().splitlines() or ["the import check crashed"])[-1]
        if missing:
            add("FAIL", f"the switch's Python cannot import: {missing}",
                "run python3 -m openai_s2s install (freeswitch.py comes with mod_python3's make install)")
        else:
            add("ok", "the switch's Python imports openai_s2s, websocket-client, orjson, samplerate, freeswitch")

    run_dir = fs_cli(paths, "global_getvar run_dir", cli_args)
    pid = switch_pid(Path(run_dir) if run_dir else None)
    environ = switch_environ(pid) if pid else None
    key_conf = autoload / "openai_s2s.conf.xml"
    conf_key = key_conf.exists() and re.search(r"<param\s+name=\"api-key\"\s+value=\"[^\"]+\"",
                                                _uncommented(key_conf.read_text()))
    if conf_key:
        add("ok", f"an api-key is set in {key_conf}")
    elif environ is not None and any(environ.get(name) for name in KEY_ENV_VARS):
        add("ok", "the running switch has an API key in its environment")
    elif environ is not None:
        add("warn", "no API key configured", f"set {KEY_ENV_VARS[1]} in the switch's environment, api-key in "
            "openai_s2s.conf.xml, or the channel variable openai_s2s_api_key per call")
    else:
        add("skip", "API key: cannot read a running switch's environment", "")

    if environ is not None:
        python3 = shutil.which("python3", path=environ.get("PATH", ""))
        if python3 and Path(python3).resolve() != paths.python.resolve():
            add("warn", f"the switch's PATH finds {python3} first",
                "the embedded Python may take that installation's standard library; start the switch "
                "with a PATH without pyenv or a virtualenv")

    if fs_cli(paths, "status", cli_args) is None:
        add("skip", "no running switch answers fs_cli", "start FreeSWITCH to check the live module")
    else:
        if (fs_cli(paths, "module_exists mod_python3", cli_args) or "") == "true":
            add("ok", "mod_python3 is loaded in the running switch")
        else:
            add("FAIL", "mod_python3 is not loaded in the running switch", "fs_cli -x 'load mod_python3'")
        listing = fs_cli(paths, "show api uuid_openai_s2s", cli_args) or ""
        if "1 total" in listing:
            add("ok", "uuid_openai_s2s is registered")
        else:
            add("FAIL", "uuid_openai_s2s is not registered",
                "check the switch's log for 'openai_s2s' errors, or run fs_cli -x 'pyrun openai_s2s_boot'")
    return checks


# -- command line ------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 -m openai_s2s", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("install", "doctor"):
        p = sub.add_parser(name)
        p.add_argument("--layout", choices=sorted(LAYOUTS), default="debian",
                       help="defaults for paths not given and not read from a running switch (default debian)")
        p.add_argument("--conf-dir", dest="conf_dir")
        p.add_argument("--scripts-dir", dest="script_dir")
        p.add_argument("--mod-dir", dest="mod_dir")
        p.add_argument("--fs-cli", dest="fs_cli")
        p.add_argument("--cli-arg", dest="cli_args", action="append", default=[],
                       help="extra fs_cli argument (repeat), e.g. --cli-arg=-P --cli-arg=8022")
        p.add_argument("--python", default="/usr/bin/python3", help="the Python mod_python3 embeds")
        p.add_argument("--target", default=DEFAULT_TARGET,
                       help=f"directory to pip-install the package into (default {DEFAULT_TARGET}; "
                            "'none' installs into the switch's Python itself)")
        p.add_argument("--no-switch", action="store_true", help="do not ask a running switch for its paths")
        if name == "install":
            p.add_argument("--no-pip", action="store_true", help="place files only; do not run pip")
            p.add_argument("--dialplan", action="store_true", help="also place the sample agent extension")
            p.add_argument("--dry-run", action="store_true", help="print what would be done")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    paths = resolve_paths(args)
    if args.command == "install":
        steps = plan_install(paths, pip=not args.no_pip, dialplan=args.dialplan)
        for step in steps:
            print(("would " if args.dry_run else "") + step.describe)
            if not args.dry_run:
                step.apply()
        if not args.dry_run:
            print("done; restart FreeSWITCH (or fs_cli -x 'reload mod_python3'), then: python3 -m openai_s2s doctor")
        return 0
    failed = False
    for status, what, hint in doctor(paths, args.cli_args):
        failed |= status == "FAIL"
        print(f"[{status:^4}] {what}" + (f"\n       -> {hint}" if hint and status != "ok" else ""))
    return 1 if failed else 0
