"""What a follow-on session is told of the call so far: the conversation as items.

The service keeps a conversation only as long as its session; a call that outlasts one goes on
in a new session that knows nothing. The transcripts of both sides, kept as they arrived, go
back in as text items (the audio itself cannot be replayed), the most recent ones first kept
within a bound so the replay never outgrows what a session.update may carry.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping

MAX_ITEMS = 50
MAX_TEXT = 64 << 10       # characters of transcript replayed, newest kept


def _entries(transcript: Any) -> List[Mapping[str, Any]]:
    if transcript is None:
        return []
    if hasattr(transcript, "entries"):
        return list(transcript.entries())
    return list(transcript)


def conversation_items(transcript: Any, generation: str = "ga") -> List[Dict[str, Any]]:
    """``conversation.item.create`` events for the transcript's user and assistant turns."""
    chosen: List[Mapping[str, Any]] = []
    size = 0
    for entry in reversed(_entries(transcript)):
        text, role = entry.get("text"), entry.get("role")
        if not isinstance(text, str) or not text or role not in ("user", "assistant"):
            continue
        if len(chosen) >= MAX_ITEMS or size + len(text) > MAX_TEXT:
            break
        chosen.append(entry)
        size += len(text)
    return [_item(entry["role"], entry["text"], generation) for entry in reversed(chosen)]


def _item(role: str, text: str, generation: str) -> Dict[str, Any]:
    kind = "input_text" if role == "user" else ("output_text" if generation == "ga" else "text")
    return {"type": "conversation.item.create",
            "item": {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}}


