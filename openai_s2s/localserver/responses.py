"""Streamed responses: a function call when tools are set, else audio (or text) with a transcript.

Each response is a generator over its conversation (a :class:`Host`): it sends its events
through ``conv.send_event`` and yields how long to wait before its next step, so the one who
drives it (see :meth:`.connection.Connection.run_response`) decides how to wait and can cut a
wait short on ``response.cancel``. The generator's return value is the response's status.
"""
from __future__ import annotations

import base64
import time
from typing import Any, Dict, Generator, List, Optional, Protocol

import numpy as np
import orjson

from . import audio
from .session import ServerOptions, SessionState, event_names, new_id

DELTA_MS = 100     # audio per delta
Steps = Generator[float, None, str]


class Host(Protocol):
    """What a streamed response reads and writes of its conversation."""
    server: ServerOptions
    generation: str
    state: SessionState
    items: List[Dict[str, Any]]
    last_turn: np.ndarray
    assistant_audio_ms: Dict[str, int]
    response: Optional[Dict[str, Any]]
    cancel_requested: bool
    stopped: bool

    def send_event(self, kind: str, **fields: Any) -> None: ...

    def error(self, code: str, message: str) -> None: ...

    def run_response(self, steps: Steps) -> None: ...


def start(conv: Host, params: Dict[str, Any]) -> None:
    """``response.create`` (or a turn's end): one response at a time, a tool call first."""
    if conv.response is not None:
        conv.error("conversation_already_has_active_response",
                   "Conversation already has an active response in progress.")
        return
    conv.cancel_requested = False
    conv.response = {"id": new_id("resp"), "object": "realtime.response", "status": "in_progress",
                     "output": []}
    conv.send_event("response.created", response=dict(conv.response))
    tools = params.get("tools") or conv.state.tools
    wants_tool = tools and not any(i.get("type") == "function_call_output" for i in conv.items)
    conv.run_response((function_call if wants_tool else reply)(conv, tools, params))


def finish(conv: Host, status: str) -> None:
    """``response.done`` for the response that has just ended with ``status``."""
    response, conv.response = conv.response, None
    if response is None or conv.stopped:
        return
    response.update(status=status)
    if status == "completed":
        response["usage"] = {"total_tokens": 10, "input_tokens": 5, "output_tokens": 5}
    conv.send_event("response.done", response=response)


def example_args(tool: Dict[str, Any]) -> str:
    """Arguments that satisfy the tool's required parameters, as a JSON string."""
    params = tool.get("parameters") or {}
    props = params.get("properties") or {}
    args: Dict[str, Any] = {}
    for name in params.get("required") or []:
        spec = props.get(name) or {}
        if spec.get("enum"):
            args[name] = spec["enum"][0]
        elif spec.get("type") in ("number", "integer"):
            args[name] = 1
        elif spec.get("type") == "boolean":
            args[name] = True
        else:
            args[name] = "test"
    return orjson.dumps(args).decode()


def function_call(conv: Host, tools: List[Dict[str, Any]], params: Dict[str, Any]) -> Steps:
    """Call the first tool, all at once."""
    yield from ()   # nothing to wait for: every event goes out in one step
    tool = tools[0]
    response_id = conv.response["id"]
    item = {"id": new_id("item"), "type": "function_call", "object": "realtime.item",
            "status": "in_progress", "name": tool.get("name", "tool"), "call_id": new_id("call"),
            "arguments": ""}
    arguments = example_args(tool)
    conv.send_event("response.output_item.added", response_id=response_id, output_index=0, item=item)
    conv.send_event("response.function_call_arguments.delta", response_id=response_id,
                    item_id=item["id"], output_index=0, call_id=item["call_id"], delta=arguments)
    conv.send_event("response.function_call_arguments.done", response_id=response_id,
                    item_id=item["id"], output_index=0, call_id=item["call_id"],
                    name=item["name"], arguments=arguments)
    done = dict(item, status="completed", arguments=arguments)
    conv.items.append(done)
    conv.response["output"] = [done]
    conv.send_event("response.output_item.done", response_id=response_id, output_index=0, item=done)
    return "completed"


def reply(conv: Host, tools: List[Dict[str, Any]], params: Dict[str, Any]) -> Steps:
    """An echo of the caller's last turn (or a 1 s tone) and its transcript; text when asked."""
    names = event_names(conv.generation)
    echo = conv.server.reply == "echo" and len(conv.last_turn) > 0
    samples = conv.last_turn if echo else audio.tone(24000)
    words = f"echo of {len(samples) * 1000 // 24000} ms" if echo else "tone"
    text_only = conv.state.text_only or params.get("output_modalities") == ["text"] \
        or "audio" not in (params.get("modalities") or ["audio"])
    kind = "part_text" if text_only else "part_audio"
    response_id = conv.response["id"]
    item = {"id": new_id("item"), "type": "message", "role": "assistant", "object": "realtime.item",
            "status": "in_progress", "content": []}
    ids = {"response_id": response_id, "item_id": item["id"], "output_index": 0}
    conv.send_event("response.output_item.added", response_id=response_id, output_index=0, item=item)
    part = {"type": names[kind], "text": ""} if text_only else {"type": names[kind], "transcript": ""}
    conv.send_event("response.content_part.added", content_index=0, part=part, **ids)
    conv.assistant_audio_ms[item["id"]] = 0
    if text_only:
        conv.send_event(names["text"] + ".delta", content_index=0, delta=words, **ids)
        conv.send_event(names["text"] + ".done", content_index=0, text=words, **ids)
        cancelled = False
    else:
        cancelled = yield from _stream_audio(conv, samples, words, ids, names)
    if not cancelled:
        if not text_only:
            conv.send_event(names["audio"] + ".done", content_index=0, **ids)
            conv.send_event(names["transcript"] + ".done", content_index=0, transcript=words, **ids)
        final = dict(part, text=words) if text_only else dict(part, transcript=words)
        conv.send_event("response.content_part.done", content_index=0, part=final, **ids)
    if text_only:
        content = [{"type": "output_text" if conv.generation == "ga" else "text", "text": words}]
    else:
        content = [{"type": "output_audio" if conv.generation == "ga" else "audio", "transcript": words}]
    done = dict(item, status="incomplete" if cancelled else "completed", content=content)
    conv.items.append(done)
    conv.response["output"] = [done]
    conv.send_event("response.output_item.done", response_id=response_id, output_index=0, item=done)
    return "cancelled" if cancelled else "completed"


def _stream_audio(conv: Host, samples: np.ndarray, words: str, ids: Dict[str, Any],
                  names: Dict[str, str]) -> Generator[float, None, bool]:
    """Audio deltas of DELTA_MS, paced at the server's speed; True when cut short."""
    fmt = conv.state.out_fmt
    out = audio.resample(samples, 24000, fmt.rate)
    step = fmt.rate * DELTA_MS // 1000
    speed = conv.server.speed
    pace = DELTA_MS / 1000 / speed if speed > 0 else 0.0
    start = time.monotonic()
    for n, offset in enumerate(range(0, len(out), step)):
        if conv.cancel_requested or conv.stopped:
            return True
        chunk = out[offset:offset + step]
        conv.send_event(names["audio"] + ".delta", content_index=0,
                        delta=base64.b64encode(audio.encode(fmt, chunk)).decode(), **ids)
        if n == 0:
            conv.send_event(names["transcript"] + ".delta", content_index=0, delta=words, **ids)
        conv.assistant_audio_ms[ids["item_id"]] += len(chunk) * 1000 // fmt.rate
        yield max(0.0, start + (n + 1) * pace - time.monotonic()) if pace else 0.0
    return conv.cancel_requested
