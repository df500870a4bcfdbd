"""The dialplan application: a whole voice agent on one channel, configured by channel variables.

    <action application="set" data="openai_s2s_instructions=You are the front desk of ACME."/>
    <action application="python" data="openai_s2s"/>

It runs the same commands an ESL program would (session.create, client.event,
session.delete) and fires the same events, so tool calls can still be answered
over ESL. It returns when the caller hangs up or the session ends.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Dict, List, Optional

import orjson

from ..call import registry
from ..log import INFO, WARNING, log
from ..media.formats import BY_NAME
from ..realtime.service import DEFAULT_MODEL
from . import commands, config
from .instructions import InstructionsError, read_instructions

GetVar = Callable[[str], Optional[str]]
P = config.VAR_PREFIX

DEFAULT_HOST = "api.openai.com"
DEFAULT_GREETING = "Greet the caller briefly and ask how you can help."
AGENT_VARIABLES = {
    "host": f"websocket host (default {DEFAULT_HOST})",
    "path": "URL path (default v1/realtime?model=<model>)",
    "model": f"model when no path is given (default {DEFAULT_MODEL})",
    "auth": "bearer, query or api-key (default bearer)",
    "voice": "voice of the agent (default: the server's)",
    "instructions": "the agent's instructions",
    "instructions_file": "file (under instructions-dir) holding the instructions",
    "tools_file": "JSON file (under instructions-dir) holding a list of function tools",
    "greeting": f"instructions for a first response, or 'none' (default: {DEFAULT_GREETING!r})",
    "audio_format": "auto (G.711 mu-law on 8 kHz channels, else pcm), pcm, pcmu or pcma",
}


class AgentError(ValueError):
    pass


@dataclasses.dataclass
class AgentPlan:
    create_args: str
    events: List[Dict[str, Any]]


def plan(get_var: GetVar, rate: int, instructions_dir: Optional[str]) -> AgentPlan:
    """The commands that start the agent, from channel variables (pure: testable anywhere)."""
    var = lambda name: (get_var(P + name) or "").strip() or None  # noqa: E731
    model = var("model") or DEFAULT_MODEL
    path = var("path") or f"v1/realtime?model={model}"
    auth = var("auth") or "bearer"
    session: Dict[str, Any] = {"type": "realtime"}
    instructions = var("instructions")
    if var("instructions_file"):
        instructions = _read(var("instructions_file"), instructions_dir)
    if instructions:
        session["instructions"] = instructions
    fmt = (var("audio_format") or "auto").lower()
    if fmt == "auto":
        fmt = "pcmu" if rate == 8000 else "pcm"
    if fmt not in ("pcm", "pcmu", "pcma"):
        raise AgentError(f"{P}audio_format must be auto, pcm, pcmu or pcma, not {fmt!r}")
    wire = BY_NAME[fmt].ga
    output: Dict[str, Any] = {"format": wire}
    if var("voice"):
        output["voice"] = var("voice")
    session["audio"] = {"input": {"format": wire, "turn_detection": {"type": "server_vad"}},
                        "output": output}
    if var("tools_file"):
        tools = _tools(_read(var("tools_file"), instructions_dir), var("tools_file"))
        session["tools"], session["tool_choice"] = tools, "auto"
    events: List[Dict[str, Any]] = [{"type": "session.update", "session": session}]
    greeting = var("greeting") or DEFAULT_GREETING
    if greeting.lower() != "none":
        events.append({"type": "response.create", "response": {"instructions": greeting}})
    host = var("host") or DEFAULT_HOST
    return AgentPlan(f"{host} {path} {auth}", events)


def _read(name: str, directory: Optional[str]) -> str:
    try:
        return read_instructions(name, directory)
    except InstructionsError as exc:
        raise AgentError(str(exc)) from None


def _tools(text: str, name: str) -> List[Dict[str, Any]]:
    try:
        tools = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise AgentError(f"tools file {name!r} is not JSON: {exc}") from None
    if not isinstance(tools, list) or not all(isinstance(t, dict) and t.get("name") for t in tools):
        raise AgentError(f"tools file {name!r} must hold a list of tools, each with a name")
    return [dict(t, type=t.get("type", "function")) for t in tools]


def run_agent(core_session: Any, switch: Any, args: str, connect_timeout: float = 15.0) -> None:
    """Run on the channel's own thread (mod_python3 ``handler``) until hangup or session end."""
    uuid = core_session.getVariable("uuid")
    if not core_session.answered():
        core_session.answer()
    # A media bug's WRITE_REPLACE fires only when the channel writes: make it write silence.
    core_session.setVariable("send_silence_when_idle", "-1")
    call = switch.find_call(uuid)
    if call is None:
        log(WARNING, f"[{uuid}] openai_s2s agent: the channel has no media")
        return
    settings = config.Settings.from_xml(switch.config_xml())
    try:
        agent = plan(call.variable, call.rate, settings.values["instructions_dir"])
    except AgentError as exc:
        log(WARNING, f"[{uuid}] openai_s2s agent: {exc}")
        return
    reply = commands.execute(f"{uuid} session.create {agent.create_args}", switch)
    log(INFO, f"[{uuid}] openai_s2s agent: {reply}")
    if not reply.startswith("+OK"):
        return
    session = registry.get(uuid)
    deadline = time.monotonic() + connect_timeout
    while session is not None and session.state == "connecting" and time.monotonic() < deadline \
            and core_session.ready():
        core_session.sleep(20)   # releases the GIL and keeps the channel's media moving
    if session is None or session.state != "connected":
        log(WARNING, f"[{uuid}] openai_s2s agent: not connected")
        _delete(uuid, switch)
        return
    for event in agent.events:
        reply = commands.execute(f"{uuid} client.event {orjson.dumps(event).decode()}", switch)
        if not reply.startswith("+OK"):
            log(WARNING, f"[{uuid}] openai_s2s agent: {event['type']}: {reply}")
    while core_session.ready() and registry.get(uuid) is session:
        core_session.sleep(100)
    _delete(uuid, switch)


def _delete(uuid: str, switch: Any) -> None:
    if registry.get(uuid) is not None:
        commands.execute(f"{uuid} session.delete", switch)
