"""Beta-shaped client events -> the GA shape.

The seed README and every beta-era caller (jambonz builds the same JSON) send
``session.update`` and ``response.create`` in the beta shape, which OpenAI now
refuses with ``beta_api_shape_disabled``. On a GA session these functions move
each beta field to its GA home, drop the few that GA has no place for, and say
what they did so one log line can tell the operator.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

from ..media.formats import format_from_wire

Notes = List[str]

# beta session field -> path under the GA session
_SESSION_MOVES = {
    "voice": ("audio", "output", "voice"),
    "speed": ("audio", "output", "speed"),
    "turn_detection": ("audio", "input", "turn_detection"),
    "input_audio_transcription": ("audio", "input", "transcription"),
    "input_audio_noise_reduction": ("audio", "input", "noise_reduction"),
    "max_response_output_tokens": ("max_output_tokens",),
}
_FORMAT_MOVES = {
    "input_audio_format": ("audio", "input", "format"),
    "output_audio_format": ("audio", "output", "format"),
}
_DROPPED = ("temperature", "client_secret", "input_audio_transcription_model")
# response.create fields that differ between the generations
_RESPONSE_MOVES = {
    "voice": ("audio", "output", "voice"),
    "max_response_output_tokens": ("max_output_tokens",),
}


def _put(target: Dict[str, Any], path: Tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        child = target.get(key)
        if not isinstance(child, dict):
            child = target[key] = {}
        target = child
    target[path[-1]] = value


def _modalities(value: Any, notes: Notes) -> List[str]:
    # GA answers in audio (with a transcript) or in text, never both.
    out = ["audio"] if isinstance(value, list) and "audio" in value else ["text"]
    notes.append(f"modalities {value!r}->output_modalities {out!r}")
    return out


def _format(value: Any, notes: Notes, name: str) -> Any:
    fmt = format_from_wire(value)
    if fmt is None or isinstance(value, dict):
        return value
    notes.append(f"{name} {value!r}->{fmt.ga['type']}")
    return fmt.ga


def _move_fields(src: Dict[str, Any], moves: Dict[str, Tuple[str, ...]], notes: Notes) -> None:
    for key, path in moves.items():
        if key in src:
            _put(src, path, src.pop(key))
            notes.append(f"{key}->{'.'.join(path)}")


def session_to_ga(session: Dict[str, Any]) -> Tuple[Dict[str, Any], Notes]:
    """A beta (or GA) session object -> GA; notes list what changed."""
    out = dict(session)
    notes: Notes = []
    if "modalities" in out:
        out["output_modalities"] = _modalities(out.pop("modalities"), notes)
    for key, path in _FORMAT_MOVES.items():
        if key in out:
            _put(out, path, _format(out.pop(key), notes, key))
    _move_fields(out, _SESSION_MOVES, notes)
    for key in _DROPPED:
        if key in out:
            out.pop(key)
            notes.append(f"{key} dropped (no GA equivalent)")
    if out.get("type") is None:
        out["type"] = "realtime"
        if notes:
            notes.append('type "realtime" added')
    _ga_tools(out, notes)
    return out, notes


def response_to_ga(response: Dict[str, Any]) -> Tuple[Dict[str, Any], Notes]:
    out = dict(response)
    notes: Notes = []
    if "modalities" in out:
        out["output_modalities"] = _modalities(out.pop("modalities"), notes)
    if "output_audio_format" in out:
        _put(out, ("audio", "output", "format"),
             _format(out.pop("output_audio_format"), notes, "output_audio_format"))
    _move_fields(out, _RESPONSE_MOVES, notes)
    for key in ("temperature", "input_audio_format"):
        if key in out:
            out.pop(key)
            notes.append(f"{key} dropped (no GA equivalent)")
    _ga_tools(out, notes)
    return out, notes


def _ga_tools(container: Dict[str, Any], notes: Notes) -> None:
    # Beta let a function tool omit "type"; GA requires it.
    tools = container.get("tools")
    if isinstance(tools, list):
        for tool in tools:
            if isinstance(tool, dict) and "type" not in tool and "name" in tool:
                tool["type"] = "function"
                notes.append(f"tool {tool['name']!r} type function added")


def item_to_ga(item: Dict[str, Any]) -> Tuple[Dict[str, Any], Notes]:
    """Assistant text/audio content parts were "text"/"audio" in beta."""
    notes: Notes = []
    if item.get("type") == "message" and item.get("role") == "assistant":
        content = item.get("content")
        if isinstance(content, list):
            fixed = []
            for part in content:
                if isinstance(part, dict) and part.get("type") in ("text", "audio"):
                    part = dict(part, type="output_" + part["type"])
                    notes.append(f"assistant content {part['type'][7:]}->{part['type']}")
                fixed.append(part)
            item = dict(item, content=fixed)
    return item, notes


def event_to_ga(event: Dict[str, Any]) -> Tuple[Dict[str, Any], Notes]:
    """Any client event -> GA shape; events already in GA shape come back unchanged."""
    kind = event.get("type")
    if kind == "session.update" and isinstance(event.get("session"), dict):
        session, notes = session_to_ga(event["session"])
        return dict(event, session=session), notes
    if kind == "response.create" and isinstance(event.get("response"), dict):
        response, notes = response_to_ga(event["response"])
        return dict(event, response=response), notes
    if kind == "conversation.item.create" and isinstance(event.get("item"), dict):
        item, notes = item_to_ga(event["item"])
        return dict(event, item=item), notes
    return event, []
