"""``python3 -m openai_s2s doctor``: what an installation lacks, one line each."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .. import process
from ..control.config import KEY_ENV_VARS
from . import models
from .paths import SHIM_NAME, Paths, uncommented, fs_cli, loads_mod_python3, startup_script


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

    pid = switch_pid(paths.run_dir)
    environ = switch_environ(pid) if pid else None
    key_conf = autoload / "openai_s2s.conf.xml"
    conf_key = key_conf.exists() and re.search(r"<param\s+name=\"api-key\"\s+value=\"[^\"]+\"",
                                                uncommented(key_conf.read_text()))
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

    if environ is not None:
        sched = process.scheduling(pid)
        if sched is None:
            add("skip", "cannot read the running switch's scheduling", "")
        elif process.realtime(sched):
            add("ok", f"the running switch has realtime scheduling (SCHED_{sched['policy'].upper()} {sched['priority']})")
        else:
            add("warn", f"the running switch has no realtime scheduling (SCHED_{sched['policy'].upper()})",
                "media frames and the uplink fall behind under load: start FreeSWITCH as root without -np "
                "or -lp (it takes SCHED_FIFO itself, and keeps it with -u/-g), or give it CAP_SYS_NICE; "
                "see docs/operations.md")

    checks.extend(model_checks(paths.conf_dir))

    log_file = f"{paths.log_dir}/freeswitch.log" if paths.log_dir else "the switch's log"
    if paths.fs_cli is None:
        add("skip", "no fs_cli found to ask a running switch", "pass --fs-cli")
    elif fs_cli(paths, "status", cli_args) is None:
        add("skip", f"no running switch answers {paths.fs_cli}", "start FreeSWITCH to check the live module "
            "(--cli-arg for another event socket host, port or password)")
    else:
        if (fs_cli(paths, "module_exists mod_python3", cli_args) or "") == "true":
            add("ok", "mod_python3 is loaded in the running switch")
        else:
            add("FAIL", "mod_python3 is not loaded in the running switch",
                f"once modules.conf.xml loads it, restart FreeSWITCH; {log_file} says why a load failed")
        listing = fs_cli(paths, "show api uuid_openai_s2s", cli_args) or ""
        if "1 total" in listing:
            add("ok", "uuid_openai_s2s is registered")
        else:
            add("FAIL", "uuid_openai_s2s is not registered",
                f"look for 'openai_s2s' in {log_file}; after a fix, restart FreeSWITCH "
                "(mod_python3 cannot be unloaded or reloaded)")
    return checks


def model_checks(conf_dir: Path) -> List[Check]:
    """A warning for each model in use that the installed openai package marks deprecated."""
    version, deprecated = models.installed_deprecations()
    if version is None:
        return []
    if deprecated is None:
        return [("skip", f"deprecated models: openai {version} does not list them in a shape this reads", "")]
    checks: List[Check] = []
    for name, where in models.configured_models(conf_dir):
        if name in deprecated:
            checks.append(("warn", f"model {name} ({where}) is deprecated in openai {version}",
                           f"choose another; openai says: {deprecated[name]}"))
    return checks
