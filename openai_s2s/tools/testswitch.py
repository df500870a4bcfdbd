"""A real FreeSWITCH for the real-switch tests and the benchmark, started from the project's
freeswitch_conf (a checkout's: it needs the repository, as the tests do).

It writes a minimal configuration of its own around the project's conf files
(loopback only, no SIP profiles, no stun, no default_password sleep), starts
``freeswitch -nonat -ncwait`` with its own conf/log/db/run directories, and
talks to it with fs_cli. Nothing here builds FreeSWITCH: it uses one that is
already installed (FREESWITCH_PREFIX, /usr/local/freeswitch or /usr).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]   # the checkout: openai_s2s/tools/ -> the repository
MODULES = ["mod_console", "mod_logfile", "mod_event_socket", "mod_commands", "mod_dptools",
           "mod_dialplan_xml", "mod_loopback", "mod_sndfile", "mod_tone_stream", "mod_python3"]
PASSWORD = "ClueCon"
SYSTEM_PATH = "/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"


def find_prefix() -> Optional[Path]:
    for candidate in (os.environ.get("FREESWITCH_PREFIX"), "/usr/local/freeswitch", "/usr"):
        if candidate and (Path(candidate) / "bin" / "freeswitch").exists():
            return Path(candidate)
    return None


def mod_dir(prefix: Path) -> Optional[Path]:
    for path in (prefix / "lib" / "freeswitch" / "mod", prefix / "lib" / "x86_64-linux-gnu" / "freeswitch" / "mod",
                 prefix / "mod"):
        if (path / "mod_python3.so").exists():
            return path
    return None


def missing_reason() -> Optional[str]:
    """Why the real-switch tests cannot run here, or None if they can."""
    prefix = find_prefix()
    if prefix is None:
        return "no FreeSWITCH found (set FREESWITCH_PREFIX, or install to /usr/local/freeswitch)"
    mods = mod_dir(prefix)
    if mods is None:
        return f"FreeSWITCH at {prefix} has no mod_python3"
    for mod in MODULES:
        if not (mods / f"{mod}.so").exists():
            return f"FreeSWITCH at {prefix} lacks {mod}"
    probe = subprocess.run(["/usr/bin/python3", "-c", "import websocket, orjson, samplerate"],
                           capture_output=True)
    if probe.returncode:
        return "the switch's Python (/usr/bin/python3) lacks websocket-client, orjson or samplerate"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _core_configs(workdir: Path, esl_port: int, modules: str) -> Dict[str, str]:
    """The switch's own configurations (everything but the project's files), by file name."""
    return {
        "switch.conf.xml": """<configuration name="switch.conf" description="core">
      <settings>
        <param name="colorize-console" value="false"/>
        <param name="max-sessions" value="2000"/>
        <param name="sessions-per-second" value="1000"/>
        <param name="loglevel" value="debug"/>
        <param name="rtp-start-port" value="40000"/>
        <param name="rtp-end-port" value="41000"/>
      </settings>
    </configuration>""",
        "modules.conf.xml": f"""<configuration name="modules.conf" description="modules">
      <modules>
{modules}
      </modules>
    </configuration>""",
        "console.conf.xml": """<configuration name="console.conf" description="console">
      <mappings><map name="all" value="console,debug,info,notice,warning,err,crit,alert"/></mappings>
      <settings><param name="colorize" value="false"/><param name="loglevel" value="info"/></settings>
    </configuration>""",
        "logfile.conf.xml": f"""<configuration name="logfile.conf" description="log file">
      <settings><param name="rotate-on-hup" value="true"/></settings>
      <profiles><profile name="default">
        <settings><param name="logfile" value="{workdir}/log/freeswitch.log"/></settings>
        <mappings><map name="all" value="debug,info,notice,warning,err,crit,alert"/></mappings>
      </profile></profiles>
    </configuration>""",
        "event_socket.conf.xml": f"""<configuration name="event_socket.conf" description="ESL">
      <settings>
        <param name="nat-map" value="false"/>
        <param name="listen-ip" value="127.0.0.1"/>
        <param name="listen-port" value="{esl_port}"/>
        <param name="password" value="{PASSWORD}"/>
      </settings>
    </configuration>""",
    }


def _document(configs: str, dialplan: str) -> str:
    return f"""<?xml version="1.0"?>
<document type="freeswitch/xml">
  <section name="configuration" description="test switch">
{configs}
    <X-PRE-PROCESS cmd="include" data="autoload_configs/*.xml"/>
  </section>
  <section name="dialplan" description="test dialplan">
    <context name="default">
{dialplan}
    </context>
  </section>
</document>
"""


# The module's channel, parked two ways: with silence written when idle (the media bug rides on
# what the channel writes) and without it, for media=unicast (park itself streams the audio).
PARK_EXTENSIONS = """
      <extension name="park"><condition field="destination_number" expression="^park$">
        <action application="set" data="send_silence_when_idle=-1"/>
        <action application="answer"/>
        <action application="park"/>
      </condition></extension>
      <extension name="park_unicast"><condition field="destination_number" expression="^park_unicast$">
        <action application="set" data="openai_s2s_media=unicast"/>
        <action application="answer"/>
        <action application="park"/>
      </condition></extension>"""


class RealSwitch:
    def __init__(self, workdir: Path, dialplan: str, env: Optional[Dict[str, str]] = None,
                 as_installed: bool = False, modules: Optional[List[str]] = None,
                 args: Sequence[str] = ()):
        """as_installed: lay the conf out as a vanilla switch's (one file per configuration,
        mod_python3 commented out, no openai_s2s files, no PYTHONPATH) for the installer to
        complete; otherwise the project's freeswitch_conf is included and PYTHONPATH is the repo.
        args: more of freeswitch's options (the benchmark's ``-np``, say)."""
        self.prefix = find_prefix()
        self.as_installed = as_installed
        self.workdir = workdir
        self.esl_port = free_port()
        self.dialplan = dialplan
        self.env = env or {}
        self.conf = workdir / "conf"
        self.modules = modules or MODULES   # the benchmark swaps in the original C module
        self.args = list(args)

    @property
    def log_path(self) -> Path:
        return self.workdir / "log" / "freeswitch.log"

    def write_conf(self) -> None:
        for sub in ("conf", "log", "db", "run", "temp", "storage", "recordings", "sounds", "scripts",
                    "conf/openai_s2s"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        autoload = self.conf / "autoload_configs"
        autoload.mkdir(exist_ok=True)
        modules = "\n".join(f'        <load module="{m}"/>' for m in self.modules)
        if self.as_installed:
            modules = modules.replace('<load module="mod_python3"/>', '<!-- <load module="mod_python3"/> -->')
        configs = _core_configs(self.workdir, self.esl_port, modules)
        if self.as_installed:
            for name, text in configs.items():
                (autoload / name).write_text(text + "\n")
            inline = ""
        else:
            # the project's own files: python.conf.xml (startup-script) and openai_s2s.conf.xml
            shutil.copytree(REPO / "freeswitch_conf" / "autoload_configs", autoload, dirs_exist_ok=True)
            inline = "\n".join(configs.values())
        (self.conf / "freeswitch.xml").write_text(_document(inline, self.dialplan))

    def set_module_params(self, **params: str) -> None:
        """Set settings in the written openai_s2s.conf.xml (names with dashes or underscores):
        a param the file has already gets the new value, others are added."""
        path = self.conf / "autoload_configs" / "openai_s2s.conf.xml"
        text = path.read_text()
        for key, value in params.items():
            name = key.replace("_", "-")
            # a param in force, at the start of its line (not one in a comment)
            text, found = re.subn(rf'^(\s*)<param name="{re.escape(name)}" value="[^"]*"/>',
                                  rf'\g<1><param name="{name}" value="{value}"/>', text, flags=re.MULTILINE)
            if not found:
                text = text.replace("  </settings>", f'    <param name="{name}" value="{value}"/>\n  </settings>', 1)
        path.write_text(text)

    def start(self, timeout: float = 60, write_conf: bool = True) -> None:
        if write_conf:
            self.write_conf()
        # The embedded Python finds its prefix through "python3" on PATH: a pyenv or venv
        # python3 first on PATH would give Debian's libpython another installation's stdlib.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYENV", "PYTHON", "VIRTUAL_ENV", "OPENAI", "http_proxy",
                                    "https_proxy", "all_proxy"))}
        env.update(PATH=SYSTEM_PATH, **self.env)
        if not self.as_installed:
            env["PYTHONPATH"] = str(REPO)
        d = self.workdir
        cmd = [str(self.prefix / "bin" / "freeswitch"), "-nonat", "-ncwait", *self.args,
               "-conf", str(d / "conf"), "-log", str(d / "log"), "-db", str(d / "db"), "-run", str(d / "run"),
               "-temp", str(d / "temp"), "-storage", str(d / "storage"), "-recordings", str(d / "recordings"),
               "-sounds", str(d / "sounds"), "-scripts", str(d / "scripts")]
        subprocess.run(cmd, env=env, timeout=timeout, check=True, capture_output=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.cli("status").startswith("UP"):
                return
            time.sleep(0.2)
        raise RuntimeError("FreeSWITCH did not come up:\n" + self.log_tail())

    @property
    def pid(self) -> Optional[int]:
        try:
            return int((self.workdir / "run" / "freeswitch.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def wait_for_api(self, timeout: float = 30) -> bool:
        """Wait until ``uuid_openai_s2s`` is registered (the startup script runs after start)."""
        deadline = time.monotonic() + timeout
        while "1 total" not in self.cli("show api uuid_openai_s2s"):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)
        return True

    def alive(self) -> bool:
        pid = self.pid
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]

    def cli(self, command: str, timeout: float = 20) -> str:
        out = subprocess.run([str(self.prefix / "bin" / "fs_cli"), "-H", "127.0.0.1", "-P", str(self.esl_port),
                              "-p", PASSWORD, "-x", command], capture_output=True, text=True, timeout=timeout)
        return out.stdout.strip()

    def stop(self, timeout: float = 30) -> bool:
        """fs_cli shutdown; True if the process exited by itself within the timeout."""
        pid = self.pid
        if pid is None:
            return True
        try:
            self.cli("shutdown", timeout=10)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return True
            time.sleep(0.2)
        try:
            os.kill(pid, 9)
        except OSError:
            pass
        return False

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class Esl:
    """The smallest inbound ESL client: auth, then blocking `api` commands."""

    def __init__(self, port: int, password: str):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""
        self._message()
        self.sock.sendall(f"auth {password}\n\n".encode())
        reply = self._message()[0]
        if "+OK" not in reply.get("Reply-Text", ""):
            raise RuntimeError(f"ESL auth failed: {reply}")

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("ESL closed")
            self.buf += chunk
        head, self.buf = self.buf.split(marker, 1)
        return head

    def _message(self):
        head = self._read_until(b"\n\n").decode()
        headers = dict(line.split(": ", 1) for line in head.splitlines() if ": " in line)
        body = b""
        length = int(headers.get("Content-Length", 0))
        while len(self.buf) < length:
            self.buf += self.sock.recv(65536)
        body, self.buf = self.buf[:length], self.buf[length:]
        return headers, body.decode(errors="replace")

    def close(self) -> None:
        """Hang up: the switch ends the connection's listener thread."""
        self.sock.close()

    def api(self, command: str) -> str:
        self.sock.sendall(f"api {command}\n\n".encode())
        while True:
            headers, body = self._message()
            if headers.get("Content-Type") == "api/response":
                return body.strip()
