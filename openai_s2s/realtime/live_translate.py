"""Realtime-shaped client events -> GPT-Live's.

An ESL application written for the Realtime API (and the module's own agent) sends
``session.update``, ``conversation.item.create`` and ``response.create``. On a GPT-Live session
each goes where GPT-Live keeps the same thing, or is refused by name where GPT-Live has nothing
like it. Native GPT-Live events are never passed through here. The choices, and which of them
are unverified against the live service, are in the README's table.

GPT-Live fixes the model, the instructions, the voice and the audio format at ``session.start``
(one format for both directions); text history goes in its ``input``; afterwards context is
appended (``session.instructions.append``, ``session.thinking.append``); function tools run in a
Responses backend (``delegation: {"type": "responses"}``), whose results go back as
``response.item.create`` and ``response.create``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from . import translate
from ..media.formats import AudioFormat, live_format_from_wire

Notes = List[str]

# Client events of the GPT-Live API (openai.types.live.ClientEvent): passed through as they are.
LIVE_CLIENT_EVENTS = frozenset({
    "session.start", "session.update", "session.input_audio.append", "session.input_audio.mute",
    "session.input_audio.unmute", "session.output_audio.fixture.play", "session.instructions.append",
    "session.thinking.append", "session.commentary.append", "decision.create", "decision.item.create",
    "decision.item.delete", "response.item.create", "response.create", "session.close",
})
# the keys of a GPT-Live session.update (SessionUpdateConfig)
LIVE_UPDATE_KEYS = frozenset({"delegation", "triggers"})
MAX_INPUT_ITEMS = 128      # GPT-Live's startup history holds at most this many messages

# Realtime session fields with no GPT-Live counterpart: dropped, and said so.
_NO_COUNTERPART = ("type", "output_modalities", "tool_choice", "max_output_tokens", "tracing", "truncation",
                   "prompt", "include", "speed", "turn_detection", "transcription", "noise_reduction",
                   "client_secret", "expires_at", "object", "id")
# Realtime events GPT-Live has nothing like, and what to say instead.
REFUSED = {
    "response.cancel": "GPT-Live has no response.cancel: the server decides itself when to stop talking",
    "conversation.item.truncate": "GPT-Live has no truncate: the server mixes the audio and knows what was played",
    "input_audio_buffer.commit": "GPT-Live has no input buffer to commit: the server finds the turns itself",
    "input_audio_buffer.clear": "GPT-Live has no input buffer to clear",
    "output_audio_buffer.clear": "GPT-Live has no output buffer to clear (the module's barge-in command flushes playout)",
    "conversation.item.delete": "GPT-Live's conversation cannot be edited (append context instead)",
    "conversation.item.retrieve": "GPT-Live does not hand items back",
    "transcription_session.update": "GPT-Live has no transcription-only session",
}


class NoMapping(ValueError):
    """A Realtime-shaped event GPT-Live has no place for; the message is for the -ERR line."""


def is_live_update(session: Any) -> bool:
    """A session.update already in GPT-Live's shape (delegation and triggers only)."""
    return isinstance(session, dict) and bool(session) and session.keys() <= LIVE_UPDATE_KEYS


def _voice(session: Dict[str, Any]) -> Optional[Any]:
    audio = session.get("audio")
    output = audio.get("output") if isinstance(audio, dict) else None
    return output.get("voice") if isinstance(output, dict) else None


def _formats(session: Dict[str, Any]) -> Tuple[Optional[Any], Optional[Any]]:
    audio = session.get("audio")
    sides = [audio.get(side) if isinstance(audio, dict) else None for side in ("input", "output")]
    return tuple(side.get("format") if isinstance(side, dict) else None for side in sides)  # type: ignore


def _live_format(value: Any, notes: Notes, side: str) -> Optional[AudioFormat]:
    fmt = live_format_from_wire(value)
    if fmt is None:
        raise NoMapping(f"session.update: {side} audio format {str(value)[:60]} has no GPT-Live equivalent "
                        "(audio/pcm at 16000 or 24000 Hz, audio/pcmu, audio/pcma)")
    return fmt


def function_tools(tools: Any, notes: Notes) -> List[Dict[str, Any]]:
    """Realtime function tools -> the Responses backend's (the same fields, fewer of them)."""
    out: List[Dict[str, Any]] = []
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" or "name" not in tool:
            raise NoMapping(f"session.update: only function tools map to GPT-Live's Responses backend, "
                            f"not {str(tool)[:60]}")
        out.append({"type": "function", **{k: tool[k] for k in ("name", "description", "parameters", "strict")
                                           if k in tool}})
    if out:
        notes.append(f"{len(out)} function tool(s)->delegation.responses.tools")
    return out


def session_start(session: Dict[str, Any], model: str, delegation_model: str,
                  history: List[Dict[str, Any]]) -> Tuple[Dict[str, Any], Notes]:
    """A Realtime session object (GA or beta) -> the ``session`` of a GPT-Live session.start."""
    ga, _ = translate.session_to_ga(session)
    notes: Notes = []
    out: Dict[str, Any] = {}
    asked = ga.get("model")
    if isinstance(asked, str) and asked.startswith("gpt-live"):
        out["model"] = asked
    else:
        out["model"] = model
        if asked is not None:
            notes.append(f"model {str(asked)[:40]!r} is not a GPT-Live model: {model} instead")
    if isinstance(ga.get("instructions"), str) and ga["instructions"].strip():
        out["instructions"] = ga["instructions"]
    voice = _voice(ga)
    if voice is not None:
        out["audio"] = {"output": {"voice": voice}}
    fmt_in, fmt_out = _formats(ga)
    chosen = None
    if fmt_in is not None:
        chosen = _live_format(fmt_in, notes, "input")
    if fmt_out is not None:
        out_fmt = _live_format(fmt_out, notes, "output")
        if chosen is not None and out_fmt != chosen:
            notes.append(f"one audio format both ways in GPT-Live: the input's ({chosen.name}/{chosen.rate})")
        chosen = chosen or out_fmt
    if chosen is not None:
        out.setdefault("audio", {})["format"] = chosen.live
        notes.append(f"audio format->audio.format {chosen.name}/{chosen.rate}")
    tools = function_tools(ga.get("tools"), notes)
    if tools:
        backend: Dict[str, Any] = {"model": delegation_model, "tools": tools}
        if "instructions" in out:
            backend["instructions"] = out["instructions"]
            notes.append("instructions also given to the Responses backend")
        out["delegation"] = {"type": "responses", "responses": backend}
    if history:
        out["input"] = history
        notes.append(f"{len(history)} text item(s)->input")
    dropped = [key for key in _NO_COUNTERPART if key in ga and key != "type"]
    dropped += [f"audio.input.{key}" for key in ("turn_detection", "transcription", "noise_reduction")
                if isinstance(ga.get("audio"), dict) and isinstance(ga["audio"].get("input"), dict)
                and key in ga["audio"]["input"]]
    if isinstance(ga.get("audio"), dict) and isinstance(ga["audio"].get("output"), dict) \
            and "speed" in ga["audio"]["output"]:
        dropped.append("audio.output.speed")
    if dropped:
        notes.append(f"{', '.join(dropped)} dropped (no GPT-Live equivalent)")
    return out, notes


def session_changes(session: Dict[str, Any], delegation: Optional[str]) -> Tuple[List[Dict[str, Any]], Notes]:
    """A Realtime session.update after the session started -> GPT-Live events: instructions are
    appended, function tools replace the Responses backend's; the voice, the format and the model
    cannot change (NoMapping names them)."""
    ga, _ = translate.session_to_ga(session)
    notes: Notes = []
    fixed = [name for name, present in (("model", "model" in ga), ("voice", _voice(ga) is not None),
                                        ("audio format", any(f is not None for f in _formats(ga))))
             if present]
    if fixed:
        raise NoMapping(f"session.update: GPT-Live fixes the {', '.join(fixed)} at session.start; "
                        "they cannot change during the session")
    events: List[Dict[str, Any]] = []
    if isinstance(ga.get("instructions"), str) and ga["instructions"].strip():
        events.append({"type": "session.instructions.append", "content": ga["instructions"],
                       "delegation_id": None})
        notes.append("instructions->session.instructions.append")
    if "tools" in ga:
        if delegation != "responses":
            raise NoMapping("session.update: tools run in GPT-Live's Responses backend, which a session "
                            "must choose at session.start (this one has client delegation)")
        tools = function_tools(ga["tools"], notes)
        events.append({"type": "session.update", "session": {"delegation": {
            "type": "responses", "responses": {"tools": tools}}}})
    dropped = [key for key in _NO_COUNTERPART if key in ga and key != "type"]
    if dropped:
        notes.append(f"{', '.join(dropped)} dropped (no GPT-Live equivalent)")
    if not events:
        raise NoMapping("session.update: nothing in it changes a GPT-Live session after session.start "
                        "(only instructions, appended, and tools under Responses delegation)")
    return events, notes


def item_text(item: Dict[str, Any]) -> Tuple[str, str]:
    """(role, text) of a text message item; NoMapping for anything else."""
    role, content = item.get("role"), item.get("content")
    if item.get("type", "message") != "message" or role not in ("user", "assistant", "system", "developer"):
        raise NoMapping(f"conversation.item.create: a {str(item.get('type'))[:40]} item has no GPT-Live "
                        "equivalent (text messages and function_call_output map)")
    texts = []
    for part in content if isinstance(content, list) else ():
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("input_text", "text", "output_text") or not isinstance(part.get("text"), str):
            raise NoMapping(f"conversation.item.create: GPT-Live takes text only, not a {str(kind)[:40]} part")
        texts.append(part["text"])
    if not texts:
        raise NoMapping("conversation.item.create: a message without text")
    return role, "\n".join(texts)


def history_item(role: str, text: str) -> Dict[str, Any]:
    """One message of a session.start's ``input`` (GPT-Live's startup history)."""
    if role == "assistant":
        return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}
    return {"type": "message", "role": "user" if role == "user" else "developer",
            "content": [{"type": "input_text", "text": text}]}


def context_event(role: str, text: str) -> Tuple[Dict[str, Any], str]:
    """A text message during the session -> context appended to it. What the caller or the
    application says goes in as instructions (context the model acts on); what the assistant
    said, as silent thinking (a commentary would be spoken)."""
    kind = "session.thinking.append" if role == "assistant" else "session.instructions.append"
    return {"type": kind, "content": text, "delegation_id": None}, f"{role} text->{kind}"


def tool_output(item: Dict[str, Any], delegation: Optional[str]) -> Dict[str, Any]:
    """A function_call_output item -> response.item.create (Responses delegation only)."""
    if delegation != "responses":
        raise NoMapping("conversation.item.create: a function_call_output goes to GPT-Live's Responses "
                        "backend only; under client delegation answer with session.commentary.append "
                        "and the delegation_id")
    return {"type": "response.item.create", "item": {k: item[k] for k in ("type", "call_id", "output")
                                                      if k in item}}
