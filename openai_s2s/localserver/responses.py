"""Streamed responses: a function call when tools are set, else audio (or text) with a transcript.

Each response is a :class:`Run` and a generator over its conversation (a :class:`Host`): it
sends its events through ``conv.send_event`` and yields how long to wait before its next
step, so the one who drives it (see :meth:`.connection.Connection.run_response`) decides how
to wait and can cut a wait short. A response ends with its ``response.done``, sent by
:func:`finish` when its steps are over or at once by :func:`cancel`; after that its steps
send nothing more.
"""
from __future__ import annotations

import base64
import dataclasses
import re
import time
from typing import Any, Dict, Generator, List, Optional, Protocol, Tuple

import numpy as np
import orjson

from . import audio
from .session import ServerOptions, SessionState, event_names, new_id

DELTA_MS = 100     # audio per delta
Steps = Generator[float, None, None]
Body = Generator[float, None, str]   # the steps of a response; their value is its status


@dataclasses.dataclass
class Run:
    """One response, from its ``response.created`` to its ``response.done``."""
    response: Dict[str, Any]               # the response object that response.done carries
    started_ms: int                        # how much input audio had come when it was created
    item: Optional[Dict[str, Any]] = None  # its message item, until output_item.done
    content: List[Dict[str, Any]] = dataclasses.field(default_factory=list)  # that item's, when done
    audio_ms: int = 0                      # audio sent so far
    ended: bool = False                    # response.done is sent (or the connection closed)

    @property
    def id(self) -> str:
        return self.response["id"]


class Host(Protocol):
    """What a streamed response reads and writes of its conversation."""
    server: ServerOptions
    generation: str
    state: SessionState
    items: List[Dict[str, Any]]
    last_turn: np.ndarray
    assistant_audio_ms: Dict[str, int]
    response: Optional[Run]
    stopped: bool

    @property
    def input_ms(self) -> int: ...

    def send_event(self, kind: str, **fields: Any) -> None: ...

    def error(self, code: str, message: str) -> None: ...

    def run_response(self, run: Run, steps: Steps) -> None: ...

    def response_ended(self, run: Run) -> None: ...


def start(conv: Host, params: Dict[str, Any]) -> None:
    """``response.create`` (or a turn's end): one response at a time, a tool call first."""
    if conv.response is not None:
        conv.error("conversation_already_has_active_response",
                   "Conversation already has an active response in progress.")
        return
    run = Run({"id": new_id("resp"), "object": "realtime.response", "status": "in_progress",
               "output": []}, conv.input_ms)
    conv.response = run
    conv.send_event("response.created", response=dict(run.response))
    tools = params.get("tools") or conv.state.tools
    named = named_call(conv.items, tools or [])
    if named is not None:
        body = function_call(conv, run, [named[0]], params, named[1])
    else:
        wants_tool = tools and not any(i.get("type") == "function_call_output" for i in conv.items)
        body = (function_call if wants_tool else reply)(conv, run, tools, params)
    conv.run_response(run, _until_done(conv, run, body))


def _until_done(conv: Host, run: Run, body: Body) -> Steps:
    if run.ended:       # cancelled before its first step: nothing of it goes out
        return
    status = yield from body
    finish(conv, run, status)


def cancel(conv: Host, reason: str) -> None:
    """End the response in progress now, as the service does on ``response.cancel``
    (``client_cancelled``) or when the caller starts to speak (``turn_detected``): its item
    ``incomplete``, then ``response.done`` with status ``cancelled``. Nothing says the output
    audio was cleared: the service's ``output_audio_buffer.*`` events are WebRTC and SIP only.
    Whether the service first closes the audio, transcript and part, as a completed response
    does, is not checked; this server does not."""
    run = conv.response
    if run is None:
        return
    if run.item is not None:
        _item_done(conv, run, "incomplete")
    finish(conv, run, "cancelled", reason)


def finish(conv: Host, run: Run, status: str, reason: Optional[str] = None) -> None:
    """``response.done`` for ``run``, ended with ``status``; once only."""
    if run.ended:
        return
    run.ended = True
    if conv.response is run:
        conv.response = None
    if conv.stopped:
        return
    response = dict(run.response, status=status)
    if status == "completed":
        response["usage"] = {"total_tokens": 10, "input_tokens": 5, "output_tokens": 5}
    elif status == "cancelled":
        response["status_details"] = {"type": "cancelled", "reason": reason or "client_cancelled"}
    conv.send_event("response.done", response=response)
    conv.response_ended(run)


def _item_done(conv: Host, run: Run, status: str) -> None:
    done = dict(run.item, status=status, content=run.content)
    run.item = None
    conv.items.append(done)
    run.response["output"] = [done]
    conv.send_event("response.output_item.done", response_id=run.id, output_index=0, item=done)


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


_NAMED_CALL = re.compile(r"\bcall ([A-Za-z0-9_-]+)(?:\s+(\{.*\}))?", re.S)


def named_call(items: List[Dict[str, Any]], tools: List[Dict[str, Any]]
               ) -> Optional[Tuple[Dict[str, Any], Optional[str]]]:
    """The tool, and its arguments if given, that the caller's latest text names as
    ``call <name> [<JSON arguments>]``, when no function call came after that text."""
    for item in reversed(items):
        if item.get("type") in ("function_call", "function_call_output"):
            return None
        if item.get("type") != "message" or item.get("role") != "user":
            continue
        texts = [c.get("text") for c in item.get("content") or [] if isinstance(c, dict)
                 and c.get("type") == "input_text" and isinstance(c.get("text"), str)]
        found = _NAMED_CALL.search(" ".join(texts)) if texts else None
        if found is None:
            return None
        tool = next((t for t in tools if t.get("name") == found.group(1)), None)
        return (tool, found.group(2)) if tool is not None else None
    return None


def function_call(conv: Host, run: Run, tools: List[Dict[str, Any]], params: Dict[str, Any],
                  arguments: Optional[str] = None) -> Body:
    """Call the first tool, all at once (with ``arguments``, else ones that fit its schema)."""
    yield from ()   # nothing to wait for: every event goes out in one step
    tool = tools[0]
    response_id = run.id
    item = {"id": new_id("item"), "type": "function_call", "object": "realtime.item",
            "status": "in_progress", "name": tool.get("name", "tool"), "call_id": new_id("call"),
            "arguments": ""}
    arguments = arguments or example_args(tool)
    conv.send_event("response.output_item.added", response_id=response_id, output_index=0, item=item)
    conv.send_event("response.function_call_arguments.delta", response_id=response_id,
                    item_id=item["id"], output_index=0, call_id=item["call_id"], delta=arguments)
    conv.send_event("response.function_call_arguments.done", response_id=response_id,
                    item_id=item["id"], output_index=0, call_id=item["call_id"],
                    name=item["name"], arguments=arguments)
    done = dict(item, status="completed", arguments=arguments)
    conv.items.append(done)
    run.response["output"] = [done]
    conv.send_event("response.output_item.done", response_id=response_id, output_index=0, item=done)
    return "completed"


def reply(conv: Host, run: Run, tools: List[Dict[str, Any]], params: Dict[str, Any]) -> Body:
    """An echo of the caller's last turn (or a 1 s tone) and its transcript; text when asked."""
    names = event_names(conv.generation)
    echo = conv.server.reply == "echo" and len(conv.last_turn) > 0
    samples = conv.last_turn if echo else audio.tone(24000)
    words = f"echo of {len(samples) * 1000 // 24000} ms" if echo else "tone"
    text_only = conv.state.text_only or params.get("output_modalities") == ["text"] \
        or "audio" not in (params.get("modalities") or ["audio"])
    kind = "part_text" if text_only else "part_audio"
    item = {"id": new_id("item"), "type": "message", "role": "assistant", "object": "realtime.item",
            "status": "in_progress", "content": []}
    ids = {"response_id": run.id, "item_id": item["id"], "output_index": 0}
    run.item, run.content = item, _content(conv.generation, text_only, words)
    conv.send_event("response.output_item.added", response_id=run.id, output_index=0, item=item)
    part = {"type": names[kind], "text": ""} if text_only else {"type": names[kind], "transcript": ""}
    conv.send_event("response.content_part.added", content_index=0, part=part, **ids)
    conv.assistant_audio_ms[item["id"]] = 0
    if text_only:
        conv.send_event(names["text"] + ".delta", content_index=0, delta=words, **ids)
        conv.send_event(names["text"] + ".done", content_index=0, text=words, **ids)
    else:
        cut_short = yield from _stream_audio(conv, run, samples, words, ids, names)
        if cut_short:
            return "cancelled"
        conv.send_event(names["audio"] + ".done", content_index=0, **ids)
        conv.send_event(names["transcript"] + ".done", content_index=0, transcript=words, **ids)
    final = dict(part, text=words) if text_only else dict(part, transcript=words)
    conv.send_event("response.content_part.done", content_index=0, part=final, **ids)
    _item_done(conv, run, "completed")
    return "completed"


def _content(generation: str, text_only: bool, words: str) -> List[Dict[str, Any]]:
    """The assistant item's content as its output_item.done carries it."""
    if text_only:
        return [{"type": "output_text" if generation == "ga" else "text", "text": words}]
    return [{"type": "output_audio" if generation == "ga" else "audio", "transcript": words}]


def _stream_audio(conv: Host, run: Run, samples: np.ndarray, words: str, ids: Dict[str, Any],
                  names: Dict[str, str]) -> Generator[float, None, bool]:
    """Audio deltas of DELTA_MS, paced at the server's speed; True when cut short (the
    response cancelled, or the connection closing)."""
    fmt = conv.state.out_fmt
    out = audio.resample(samples, 24000, fmt.rate)
    step = fmt.rate * DELTA_MS // 1000
    speed = conv.server.speed
    pace = DELTA_MS / 1000 / speed if speed > 0 else 0.0
    start = time.monotonic()
    for n, offset in enumerate(range(0, len(out), step)):
        if run.ended or conv.stopped:
            return True
        chunk = out[offset:offset + step]
        conv.send_event(names["audio"] + ".delta", content_index=0,
                        delta=base64.b64encode(audio.encode(fmt, chunk)).decode(), **ids)
        if n == 0:
            conv.send_event(names["transcript"] + ".delta", content_index=0, delta=words, **ids)
        chunk_ms = len(chunk) * 1000 // fmt.rate
        conv.assistant_audio_ms[ids["item_id"]] += chunk_ms
        run.audio_ms += chunk_ms
        yield max(0.0, start + (n + 1) * pace - time.monotonic()) if pace else 0.0
    return run.ended or conv.stopped
