"""What mod_python3's entry points do. Lives outside the package ``__init__`` because
mod_python3 reloads the module it is given on every call; this one is never reloaded.
"""
from __future__ import annotations

from typing import Any, Optional

from .. import log as logmod
from .. import process
from ..control import commands
from ..log import ERR, log

_switch: Optional[Any] = None


def switch() -> Any:
    """The process-wide FsSwitch, built on first use (inside the switch only)."""
    global _switch
    if _switch is None:
        from .host import FsSwitch, console_log
        logmod.set_sink(console_log)
        process.set_switch_interval()
        process.warn_without_realtime()
        _switch = FsSwitch()
    return _switch


def runtime(args: str) -> None:
    """python.conf.xml startup-script / pyrun: register ``uuid_openai_s2s`` and the events."""
    from . import registration
    try:
        registration.register(lambda line: commands.execute(line, switch()))
    except Exception as exc:
        log(ERR, f"openai_s2s: cannot register the API: {exc}")


def fsapi(session: Any, stream: Any, env: Any, args: str) -> None:
    """``python openai_s2s <uuid> <command> ...``: the same commands without registration."""
    try:
        reply = commands.execute(args or "", switch())
    except Exception as exc:  # FsSwitch could not be built: say so on the same line
        reply = f"-ERR openai_s2s unavailable: {exc}"
    stream.write(reply + "\n")


def handler(session: Any, args: str) -> None:
    """The dialplan application: a whole voice agent on this channel, from channel variables."""
    from ..control.agent import run_agent
    try:
        run_agent(session, switch(), args or "")
    except Exception as exc:
        log(ERR, f"openai_s2s agent failed: {exc!r}")
