"""The dialplan application: a whole voice agent on one channel, configured by channel variables.

    <action application="set" data="openai_s2s_instructions=You are the front desk of ACME."/>
    <action application="python" data="openai_s2s"/>

It runs the same commands an ESL program would (session.create, client.event,
session.delete) and fires the same events, so tool calls can still be answered
over ESL. It returns when the caller hangs up or the session ends.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import orjson

from .. import native
from ..call import registry
from ..call.callcontrol import declarations
from ..log import INFO, WARNING, log
from ..media.formats import BY_NAME
from ..realtime.protocol import LIVE, generation_for_path
from ..realtime.service import DEFAULT_MODEL, LIVE_PATH
from . import commands, config, webhooks
from .instructions import InstructionsError, read_instructions

GetVar = Callable[[str], Optional[str]]
P = config.VAR_PREFIX

DEFAULT_HOST = "api.openai.com"
DEFAULT_GREETING = "Greet the caller briefly and ask how you can help."
AGENT_VARIABLES = {
    "host": f"websocket host (default {DEFAULT_HOST})",
    "path": "URL path (default v1/realtime?model=<model>)",
    "model": f"model when no path is given (default {DEFAULT_MODEL}; a gpt-live model means GPT-Live)",
    "protocol": "live for GPT-Live (/v1/live/sessions) when no path is given",
    "auth": "bearer, query or api-key (default bearer)",
    "voice": "voice of the agent (default: the server's)",
    "instructions": "the agent's instructions",
    "instructions_file": "file (under instructions-dir) holding the instructions",
    "tools_file": "JSON file (under instructions-dir) holding a list of function tools",
    "greeting": f"instructions for a first response, or 'none' (default: {DEFAULT_GREETING!r})",
    "audio_format": "auto (G.711 mu-law on 8 kHz channels, else pcm), pcm, pcmu or pcma",
    "call_control": "built-in tools declared to the model: end_call, transfer_call, send_dtmf",
}


class AgentError(ValueError):
    pass


@dataclasses.dataclass
class AgentPlan:
    create_args: str
    events: List[Dict[str, Any]]


def plan(get_var: GetVar, rate: int, instructions_dir: Optional[str],
         destinations: Optional[Dict[str, Any]] = None) -> AgentPlan:
    """The commands that start the agent, from channel variables (pure: testable anywhere).
    ``destinations``: the config file's transfer destinations, named to the model."""
    var = lambda name: (get_var(P + name) or "").strip() or None  # noqa: E731
    model = var("model") or DEFAULT_MODEL
    live = var("protocol") == LIVE or model.startswith("gpt-live") \
        or var("path") is not None and generation_for_path(var("path") or "") == LIVE
    path = var("path") or (LIVE_PATH.lstrip("/") if live else f"v1/realtime?model={model}")
    auth = var("auth") or "bearer"
    session: Dict[str, Any] = {"type": "realtime"}
    if live and model.startswith("gpt-live"):
        session["model"] = model   # GPT-Live takes it in session.start, never in the URL
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
    tools: List[Dict[str, Any]] = []
    if var("tools_file"):
        # webhook tools (with a url) are registered by session.create, from the same variable
        try:
            tools = webhooks.load_tools(var("tools_file"), instructions_dir)[0]
        except webhooks.WebhookError as exc:
            raise AgentError(str(exc)) from None
    if var("call_control"):
        try:
            names = config.option("call_control").parse(var("call_control") or "")
        except ValueError as exc:
            raise AgentError(f"{P}call_control: {exc}") from None
        tools += [t for t in declarations(names, destinations or {})
                  if t["name"] not in {known["name"] for known in tools}]
    if tools:
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


def run_agent(core_session: Any, switch: Any, args: str) -> None:
    """Run on the channel's own thread (mod_python3 ``handler``) until hangup or session end.

    With ``media`` auto or unicast the application parks its own channel and the session uses
    the switch's unicast mode (no Python on the media thread); the commands are driven from a
    thread of the module's meanwhile. Otherwise (``media=bug``, a channel with
    send_silence_when_idle, a switch without unicast) it takes the media bug and drives the
    commands from this thread."""
    uuid = core_session.getVariable("uuid")
    if not core_session.answered():
        core_session.answer()
    call = switch.find_call(uuid)
    if call is None:
        log(WARNING, f"[{uuid}] openai_s2s agent: the channel has no media")
        return
    settings = config.Settings.from_xml(switch.config_xml())
    try:
        agent = plan(call.variable, call.rate, settings.values["instructions_dir"],
                     settings.values["transfer_destinations"])
        options = settings.for_call(call.variable)
    except (AgentError, config.ConfigError) as exc:
        log(WARNING, f"[{uuid}] openai_s2s agent: {exc}")
        return
    if options["dtmf"] is None:   # auto: the agent hears the caller's digits
        core_session.setVariable(P + "dtmf", "true")
        options["dtmf"] = True
    if _parks(call, options):
        _run_parked(call, uuid, switch, agent, options["connect_timeout"])
        return
    # A media bug's WRITE_REPLACE fires only when the channel writes: make it write silence.
    core_session.setVariable("send_silence_when_idle", "-1")
    # Sleeping takes no digits from the channel (park does): take them, so that they are heard.
    take_dtmf = getattr(call, "take_dtmf", None) if options["dtmf"] else None

    def pause() -> None:
        if take_dtmf is not None:
            take_dtmf()
        core_session.sleep(20)

    _drive(uuid, switch, agent, options["connect_timeout"], pause, core_session.ready)
    _delete(uuid, switch)


def _parks(call: Any, options: Dict[str, Any]) -> bool:
    if options["media"] == "bug" or not (hasattr(call, "park") and hasattr(call, "unicast_media")):
        return False
    silence = (call.variable("send_silence_when_idle") or "").strip()
    return options["media"] == "unicast" or silence in ("", "0")


def _run_parked(call: Any, uuid: str, switch: Any, agent: AgentPlan, connect_timeout: float) -> None:
    hung_up = threading.Event()

    def drive() -> None:
        try:
            if not _wait(call.parked, 2.0, lambda: hung_up.wait(0.01)):
                log(WARNING, f"[{uuid}] openai_s2s agent: the channel did not park")
                return
            native.name_thread(threading.current_thread().name)
            # Until the session ends, wait on it rather than poll: at 100 calls a 20 ms poll
            # per call took 12-34 % of a core. A hangup ends the session too (unicast sees it).
            _drive(uuid, switch, agent, connect_timeout, lambda: hung_up.wait(0.02),
                   lambda: not hung_up.is_set(), idle=lambda session: session.wait_closed(0.5))
        except Exception as exc:
            log(WARNING, f"[{uuid}] openai_s2s agent: {exc!r}")
        finally:
            _delete(uuid, switch)
            if not hung_up.is_set():
                call.unpark()   # the session ended first: the dialplan goes on

    runner = threading.Thread(target=drive, daemon=True, name=f"s2s-agent-{uuid[:8]}")
    runner.start()
    call.park()          # until hangup, or drive() unparks
    hung_up.set()
    runner.join(connect_timeout + 5)
    _delete(uuid, switch)


def _wait(done: Callable[[], bool], timeout: float, pause: Callable[[], Any]) -> bool:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        pause()
    return done()


def _drive(uuid: str, switch: Any, agent: AgentPlan, connect_timeout: float,
           pause: Callable[[], Any], alive: Callable[[], bool],
           idle: Optional[Callable[[Any], Any]] = None) -> None:
    """session.create, wait for the connection (the session's own connect_timeout), the plan's
    client events, then wait until the session ends or the call does."""
    reply = commands.execute(f"{uuid} session.create {agent.create_args}", switch)
    log(INFO, f"[{uuid}] openai_s2s agent: {reply}")
    if not reply.startswith("+OK"):
        return
    session = registry.get(uuid)
    if session is None or not _wait(lambda: session.state != "connecting" or not alive(),
                                    connect_timeout + 1.0, pause) or session.state != "connected":
        log(WARNING, f"[{uuid}] openai_s2s agent: not connected")
        return
    for event in agent.events:
        reply = commands.execute(f"{uuid} client.event {orjson.dumps(event).decode()}", switch)
        if not reply.startswith("+OK"):
            log(WARNING, f"[{uuid}] openai_s2s agent: {event['type']}: {reply}")
    while alive() and registry.get(uuid) is session:
        if idle is not None:
            idle(session)
        else:
            pause()


def _delete(uuid: str, switch: Any) -> None:
    if registry.get(uuid) is not None:
        commands.execute(f"{uuid} session.delete", switch)
