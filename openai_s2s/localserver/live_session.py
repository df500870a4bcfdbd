"""A GPT-Live session as the server keeps it: ``session.start`` checked beyond its schema and
resolved into the session resource with the service's defaults, and ``session.update``.

The defaults are the openai package's docstrings (openai.types.live, 3.57): voice marin,
PCM at 24 kHz, delegation to the client when none is named, acknowledgement_delay_ms 0 for
client and Responses delegation, store false. What the resource holds where the package
says nothing (instructions left out: null; no ``client`` unless given; the session's
lifetime) is inferred, not checked against the service.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Dict, List, Optional

from ..media.formats import AudioFormat
from .live_schema import Problem
from .live_shapes import MODELS, SESSION_CONFIG, SESSION_UPDATE

DEFAULT_FORMAT = {"type": "audio/pcm", "rate": 24000}
DEFAULT_VOICE = "marin"
INSTRUCTIONS_MAX_TOKENS = 16384
CHARS_PER_TOKEN = 4    # a token count estimated from the length: the server has no tokenizer
_UPDATABLE = set(SESSION_UPDATE.fields)


def estimated_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def start_problem(config: Dict[str, Any]) -> Optional[Problem]:
    """Why a ``session.start``'s session (already checked against its schema) is refused."""
    model = config["model"]
    if model not in MODELS:
        # the API's usual words for a model it does not serve; for Live, inferred
        return Problem("model_not_found", f"The model '{model}' does not exist or you do not have "
                       "access to it.", "session.model")
    delegation = config.get("delegation") or {}
    if delegation.get("type") == "decisions":
        return Problem("not_supported_by_local_server", "Decisions delegation is not implemented by "
                       "this local server.", "session.delegation.type")
    instructions = config.get("instructions")
    if isinstance(instructions, str) and estimated_tokens(instructions) > INSTRUCTIONS_MAX_TOKENS:
        return Problem("string_above_max_length", f"session.instructions is limited to "
                       f"{INSTRUCTIONS_MAX_TOKENS} tokens.", "session.instructions")
    for i, item in enumerate(config.get("input") or []):
        if len(item["content"]) != 1:
            return Problem("invalid_value", "Each startup input message takes exactly one text part.",
                           f"session.input[{i}].content")
    return triggers_problem(config.get("triggers"), "session.triggers")


def triggers_problem(triggers: Optional[List[Dict[str, Any]]], param: str) -> Optional[Problem]:
    """ "At most one Decisions trigger per transcript event type." """
    seen = set()
    for i, trigger in enumerate(triggers or []):
        if trigger["event_type"] in seen:
            return Problem("invalid_value", "At most one Decisions trigger per transcript event type.",
                           f"{param}[{i}].event_type")
        seen.add(trigger["event_type"])
    return None


def _public_tools(responses: Dict[str, Any]) -> Dict[str, Any]:
    """An MCP tool's ``authorization`` "is omitted from returned Live session data"."""
    tools = responses.get("tools")
    if not tools:
        return responses
    return dict(responses, tools=[{k: v for k, v in tool.items() if k != "authorization"}
                                  if tool.get("type") == "mcp" else tool for tool in tools])


def _resolved_delegation(delegation: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    resolved = dict(delegation or {"type": "client"})
    if resolved.get("acknowledgement_delay_ms") is None:
        resolved["acknowledgement_delay_ms"] = 0
    if resolved["type"] == "responses":
        resolved["responses"] = _public_tools({k: v for k, v in resolved["responses"].items() if v is not None})
    return resolved


def resolve(config: Dict[str, Any], session_id: str, expires_at: int) -> Dict[str, Any]:
    """The session resource ``session.started`` carries: ``config`` with the defaults filled."""
    audio = config.get("audio") or {}
    output = audio.get("output") or {}
    resource: Dict[str, Any] = {
        "id": session_id, "expires_at": expires_at,
        "model": config["model"], "status": "active",
        "audio": {"format": audio.get("format") or dict(DEFAULT_FORMAT),
                  "output": {"voice": output.get("voice") or DEFAULT_VOICE}},
        "delegation": _resolved_delegation(config.get("delegation")),
        "input": copy.deepcopy(config.get("input") or []),
        "instructions": config.get("instructions"),
        "safety_identifier": config.get("safety_identifier"),
        "store": bool(config.get("store")),
        "triggers": copy.deepcopy(config.get("triggers") or []),
    }
    if config.get("client") is not None:
        resource["client"] = copy.deepcopy(config["client"])
    return resource


def audio_format(resource: Dict[str, Any]) -> AudioFormat:
    """The wire format of both directions, by the session's ``audio.format``."""
    fmt = resource["audio"]["format"]
    return AudioFormat(fmt["type"].split("/", 1)[1], fmt["rate"])


def update_problem(update: Any) -> Optional[Problem]:
    """Why a ``session.update``'s session is refused before its schema is checked: a startup
    field named (model, instructions, audio...) is immutable. Its code is the schema's
    ``unknown_parameter`` (SessionUpdateConfig has no such field); the words say why."""
    if not isinstance(update, dict):
        return None
    for key in update:
        if key in SESSION_CONFIG.fields and key not in _UPDATABLE:
            return Problem("unknown_parameter", f"Unknown parameter: 'session.{key}'. session.{key} cannot "
                           "change after session.start: only delegation and triggers can be updated.",
                           f"session.{key}")
    return None


def apply_update(resource: Dict[str, Any], update: Dict[str, Any]) -> Optional[Problem]:
    """Apply a ``session.update`` (schema-checked) to ``resource``; the problem when refused,
    and then ``resource`` is as it was."""
    if "delegation" in update:
        current = resource["delegation"]
        wanted = update["delegation"] or {"type": "client"}
        if wanted["type"] != current["type"]:
            return Problem("invalid_value", f"The delegation type cannot change: this session "
                           f"delegates to {current['type']}.", "session.delegation.type")
    problem = triggers_problem(update.get("triggers"), "session.triggers")
    if problem is not None:
        return problem
    if update.get("delegation"):
        merged = dict(resource["delegation"])
        for key, value in update["delegation"].items():
            if key == "responses" and value:
                # "Omitted settings keep their existing values."
                merged["responses"] = _public_tools(dict(merged["responses"], **{
                    k: v for k, v in value.items() if v is not None}))
            elif value is not None:
                merged[key] = value
        resource["delegation"] = merged
    if update.get("triggers") is not None:
        resource["triggers"] = copy.deepcopy(update["triggers"])
    return None
