"""The command surface: ``uuid_openai_s2s <uuid> <command> [args]`` -> one reply line.

Every entry point (the registered API, ``python openai_s2s ...``, the tests)
calls :func:`execute`. It answers ``+OK ...``, ``-ERR <reason>`` or
``-USAGE: <syntax>`` and never raises: a bug here must cost one command, not
the switch.
"""
from __future__ import annotations

import json
import re
import threading
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import orjson

from .. import process
from ..call import registry
from ..call.session import Session
from ..log import DEBUG, ERR, INFO, log, looks_like_key, redact
from ..realtime.endpoint import AUTH_TYPES, build_endpoint, key_refusal
from ..realtime.protocol import BETA, ClientEventError, generation_for_path
from . import config, metrics, webhooks
from .instructions import InstructionsError, read_instructions

API_NAME = "uuid_openai_s2s"
SYNTAX = (f"{API_NAME} <uuid> session.create <host> <path> <bearer|query|api-key> [api-key] | "
          f"{API_NAME} <uuid> client.event <json> | {API_NAME} <uuid> session.delete | "
          f"{API_NAME} <uuid> status | {API_NAME} <uuid> transcript | {API_NAME} status | "
          f"{API_NAME} <uuid> pause|resume | {API_NAME} <uuid> mute|unmute [user|model|all] | "
          f"{API_NAME} <uuid> barge-in | {API_NAME} metrics")
COMMANDS = ("session.create", "client.event", "session.delete", "status", "transcript",
            "pause", "resume", "mute", "unmute", "barge-in")


class CommandError(Exception):
    """Becomes ``-ERR <message>``."""


def _usage(syntax: str) -> str:
    return f"-USAGE: {API_NAME} {syntax}"


def split_args(line: str) -> Tuple[List[str], Optional[str]]:
    """Split on spaces, or on ``<c>`` after FreeSWITCH's ``^^<c>`` prefix.

    Returns the words and the separator used (None for whitespace), so a
    command can take "the rest of the line" exactly as it was sent.
    """
    if line.startswith("^^") and len(line) > 2:
        sep = line[2]
        return line[3:].split(sep), sep
    return line.split(), None


def _rest_after(line: str, words: List[str], sep: Optional[str], count: int) -> str:
    """The text after the first ``count`` words, untouched (JSON keeps its spaces)."""
    if sep is not None:
        return sep.join(line[3:].split(sep)[count:])
    rest = line.lstrip()
    for _ in range(count):
        rest = rest[len(rest.split(None, 1)[0]):].lstrip() if rest else rest
    return rest.rstrip("\r\n")


def execute(line: Union[str, bytes], switch: Any) -> str:
    """Run one command line; returns one reply line, with no key in it, except for
    ``metrics``, whose reply is the Prometheus text (labels from fixed sets only)."""
    if (line.strip() == b"metrics") if isinstance(line, bytes) else (line.strip() == "metrics"):
        try:
            return metrics.render().rstrip("\n")   # the caller ends the reply with a newline
        except Exception as exc:
            log(ERR, f"{API_NAME} metrics failed: {exc!r}\n{traceback.format_exc()}")
            return "-ERR internal error (details in the switch log)"
    return one_line(redact(_reply(line, switch)))


def _reply(line: Union[str, bytes], switch: Any) -> str:
    try:
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return f"-ERR arguments are not valid UTF-8 (byte {exc.start})"
        return _execute(line.strip(), switch)
    except CommandError as exc:
        return f"-ERR {exc}"
    except Exception as exc:
        log(ERR, f"{API_NAME} failed: {exc!r}\n{traceback.format_exc()}")
        return "-ERR internal error (details in the switch log)"


def one_line(text: str) -> str:
    """The reply as one printable line: anything else (CR, LF, NUL, ESC, U+2028, U+0085,
    zero-width characters, ...) becomes '?'."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else "?" for c in text)


# What a reply may repeat of an argument: a word shaped like what belongs there. A key typed
# into the wrong place (keys are long, mixed-case, with digits) must not come back.
_SHAPES = {
    "uuid": re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}|[A-Za-z0-9._-]{1,16}"),
    "word": re.compile(r"[a-z][a-z._-]{0,23}"),
}


def shown(arg: str, quote: bool = False, shape: str = "uuid") -> str:
    """``arg`` if it has the shape of what belongs in its place and cannot be a key, else a
    note that it is not shown."""
    if _SHAPES[shape].fullmatch(arg) and not looks_like_key(arg):
        return repr(arg) if quote else arg
    return "(not shown)"


def _execute(line: str, switch: Any) -> str:
    words, sep = split_args(line)
    if not words or words == [""]:
        return f"-USAGE: {SYNTAX}"
    if words[0] == "status" and len(words) == 1:
        threads = sum(t.name.startswith("s2s-") for t in threading.enumerate())
        return "+OK " + orjson.dumps({"sessions": [s.status() for s in registry.all_sessions()],
                                      "threads": threads, "python_gc": process.gc_stats(),
                                      "scheduling": process.scheduling()}).decode()
    if len(words) < 2:
        if words[0] in COMMANDS:
            return _usage(f"<uuid> {words[0]} ...")
        return f"-USAGE: {SYNTAX}"
    uuid, command = words[0], words[1]
    handler = _HANDLERS.get(command)
    if handler is None:
        raise CommandError(f"unknown command {shown(command, quote=True, shape='word')} (one of: {', '.join(COMMANDS)})")
    return handler(switch, uuid, words[2:], lambda: _rest_after(line, words, sep, 2))


def _session_for(uuid: str) -> Session:
    session = registry.get(uuid)
    if session is None:
        raise CommandError(f"no openai_s2s session on {shown(uuid)}")
    return session


# -- session.create ---------------------------------------------------------------
def _create(switch: Any, uuid: str, args: List[str], rest: Callable[[], str]) -> str:
    if len(args) not in (3, 4):
        return _usage("<uuid> session.create <host> <path> <bearer|query|api-key> [api-key]")
    host, path, auth_type = args[0], args[1], args[2].lower()
    if auth_type not in AUTH_TYPES:
        raise CommandError(f"unknown auth-type {shown(args[2], quote=True, shape='word')} (one of: {', '.join(AUTH_TYPES)})")
    if registry.get(uuid) is not None:
        raise CommandError(f"a session already exists on {shown(uuid)}; session.delete it first")
    call = switch.find_call(uuid)
    if call is None:
        raise CommandError(f"no such channel {shown(uuid)}")
    settings = config.Settings.from_xml(switch.config_xml())
    for warning in settings.warnings:
        log(INFO, f"openai_s2s.conf: {warning}")
    try:
        options = settings.for_call(call.variable)
    except config.ConfigError as exc:
        raise CommandError(str(exc)) from None
    call, options = _choose_media(call, options)
    from_command = len(args) == 4
    api_key = args[3] if from_command else (
        call.variable(config.VAR_PREFIX + "api_key") or options["api_key"]
        or config.key_from_environment())
    if not api_key:
        raise CommandError("no api-key: give one, or set openai_s2s_api_key, the config file's "
                           "api-key, or OPENAI_API_KEY in the switch's environment")
    generation = generation_for_path(path, options["protocol"])
    try:
        endpoint = build_endpoint(host, path, auth_type, api_key, beta=generation == BETA,
                                  extra_headers=options["headers"])
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    refusal = key_refusal(endpoint.url, options["key_hosts"], options["key_over_ws"], from_command)
    if refusal:
        raise CommandError(refusal)
    hooks = _webhook_tools(call, options)
    process.first_session()
    session = Session(switch, call, endpoint, options, generation, secret=api_key)
    webhooks.register(session, hooks, options)
    if not registry.add(uuid, session):
        session.forget_secrets()
        raise CommandError(f"a session already exists on {shown(uuid)}; session.delete it first")
    try:
        session.start()
    except Exception as exc:
        registry.remove(uuid, session)
        session.forget_secrets()
        raise CommandError(f"cannot attach to the call's media: {exc}") from None
    log(INFO, f"[{uuid}] session.create {endpoint.display_url} ({generation}, {auth_type})")
    return f"+OK connecting to {endpoint.display_url} ({generation})"


def _webhook_tools(call: Any, options: Dict[str, Any]) -> List[webhooks.WebhookTool]:
    """The webhook tools of the tools file the channel names (``openai_s2s_tools_file``, under
    instructions-dir): the session answers them itself. The other tools stay the application's."""
    name = (call.variable(config.VAR_PREFIX + "tools_file") or "").strip()
    if not name:
        return []
    try:
        return webhooks.load_tools(name, options["instructions_dir"])[1]
    except webhooks.WebhookError as exc:
        raise CommandError(str(exc)) from None


def _choose_media(call: Any, options: Dict[str, Any]) -> Tuple[Any, Dict[str, Any]]:
    """The call's media path: ``media`` as asked, ``auto`` resolved, and why, for ``status``."""
    unicast_media = getattr(call, "unicast_media", None)   # the switch layer's, where it has one
    media, why = options["media"], "media=" + options["media"]
    if media == "auto":
        auto = getattr(call, "auto_media", None)
        media, why = auto() if auto is not None and unicast_media is not None else (
            "bug", "this switch has no unicast mode")
    if media == "unicast":
        if unicast_media is None:
            raise CommandError("media=unicast is not available on this switch")
        call = unicast_media()
    return call, dict(options, media=media, media_why=why)


# -- client.event -------------------------------------------------------------------
def _client_event(switch: Any, uuid: str, args: List[str], rest: Callable[[], str]) -> str:
    text = rest()
    if not text:
        return _usage("<uuid> client.event <json>")
    session = _session_for(uuid)
    limit = session.options["max_event_bytes"]
    if len(text.encode("utf-8", "surrogatepass")) > limit:
        raise CommandError(f"client.event larger than {limit} bytes")
    try:
        event = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CommandError(f"client.event is not valid JSON: {exc}") from None
    if not isinstance(event, dict):
        raise CommandError("client.event must be a JSON object")
    if not isinstance(event.get("type"), str) or not event["type"]:
        raise CommandError('client.event needs a string "type"')
    try:   # what cannot be sent must be refused now, before any state changes
        orjson.dumps(event)
    except orjson.JSONEncodeError as exc:
        raise CommandError(f"client.event cannot be sent: {exc}") from None
    if _LONG_DIGITS.search(text):
        _refuse_wide_integers(text)
    _resolve_instructions(event, session.options.get("instructions_dir"))
    try:
        session.client_event(event, len(text))
    except ClientEventError as exc:
        raise CommandError(str(exc)) from None
    except RuntimeError as exc:
        raise CommandError(str(exc)) from None
    log(DEBUG, f"[{uuid}] client.event {event['type']} queued")
    return f"+OK {event['type']} queued"


_LONG_DIGITS = re.compile(r"\d{20}")


def _wide(literal: str) -> int:
    value = int(literal)
    if not -(1 << 63) <= value < 1 << 64:
        raise CommandError(f"client.event holds an integer JSON cannot carry exactly ({literal[:24]}...)")
    return value


def _refuse_wide_integers(text: str) -> None:
    """orjson reads an integer past 64 bits as a float, so the server would get another number:
    refuse it. Only the (rare) events with a run of 20 digits are read a second time."""
    json.loads(text, parse_int=_wide)


def _resolve_instructions(event: Dict[str, Any], directory: Optional[str]) -> None:
    """``instructions: "file://NAME"`` -> the file's text, from the configured directory only."""
    for key in ("session", "response"):
        holder = event.get(key)
        if not isinstance(holder, dict):
            continue
        value = holder.get("instructions")
        if isinstance(value, str) and value.startswith("file://"):
            try:
                holder["instructions"] = read_instructions(value[len("file://"):], directory)
            except InstructionsError as exc:
                raise CommandError(str(exc)) from None


# -- the rest ---------------------------------------------------------------------------
def _delete(switch: Any, uuid: str, args: List[str], rest: Callable[[], str]) -> str:
    _session_for(uuid).close("session.delete")
    return "+OK session deleted"


def _status(switch: Any, uuid: str, args: List[str], rest: Callable[[], str]) -> str:
    return "+OK " + orjson.dumps(_session_for(uuid).status()).decode()


def _transcript(switch: Any, uuid: str, args: List[str], rest: Callable[[], str]) -> str:
    if args:
        return _usage("<uuid> transcript")
    return "+OK " + orjson.dumps(_session_for(uuid).transcript.entries()).decode()


def _pause(paused: bool) -> Callable[..., str]:
    def run(switch: Any, uuid: str, args: List[str], rest: Callable[[], str]) -> str:
        _session_for(uuid).set_paused(paused)
        return "+OK paused" if paused else "+OK resumed"
    return run


def _mute(muted: bool) -> Callable[..., str]:
    def run(switch: Any, uuid: str, args: List[str], rest: Callable[[], str]) -> str:
        who = args[0].lower() if args else "all"
        if who not in ("user", "model", "all") or len(args) > 1:
            return _usage(f"<uuid> {'mute' if muted else 'unmute'} [user|model|all]")
        _session_for(uuid).set_muted(who, muted)
        return f"+OK {'muted' if muted else 'unmuted'} {who}"
    return run


def _barge_in(switch: Any, uuid: str, args: List[str], rest: Callable[[], str]) -> str:
    if args:
        return _usage("<uuid> barge-in")
    session = _session_for(uuid)
    if session.stopping:
        raise CommandError("the session is ending")
    if session.barge_in():
        return "+OK barged in"
    return "+OK nothing to interrupt"


_HANDLERS: Dict[str, Callable[..., str]] = {
    "session.create": _create,
    "client.event": _client_event,
    "session.delete": _delete,
    "status": _status,
    "transcript": _transcript,
    "pause": _pause(True),
    "resume": _pause(False),
    "mute": _mute(True),
    "unmute": _mute(False),
    "barge-in": _barge_in,
}
