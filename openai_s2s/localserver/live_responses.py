"""The Responses backend of a GPT-Live session that delegates to Responses: the streamed
Responses events a delegation produces, which the session wraps in ``response.event``.

A delegation calls the first function tool of the session's ``delegation.responses.tools``
(arguments that fit its schema), and the response completes with that call as its output,
as a Responses response waiting for a tool result does. The client answers with
``response.item.create`` (a ``function_call_output``) and ``response.create``; the backend
then answers in text, which the Live session speaks. With no function tool a delegation
answers in text at once.

The nested events are the Responses API's streaming events (openai.types.responses:
response.created, response.in_progress, response.output_item.added, ...,
response.completed): a Responses stream ends with ``response.completed``, it has no
``response.done``. Their lifecycle snapshots "omit input and clear instructions, tools, and
output" (the package's ResponseEvent docstring). That a function call ends its response
and ``response.create`` starts a new one, rather than resuming the first, is inferred.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union

from .live_schema import Problem
from .responses import example_args
from .session import new_id

USAGE = {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
         "output_tokens": 8, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 20}


class Stream(NamedTuple):
    """One backend response: its id, its Responses events, and the text it answered (to be
    spoken), None when it ended in a function call."""
    response_id: str
    events: List[Dict[str, Any]]
    text: Optional[str]


class PendingCall(NamedTuple):
    delegation_id: Optional[str]
    call_id: str
    name: str


class Backend:
    def __init__(self, config: Dict[str, Any]) -> None:
        self.config = config                         # the session's delegation.responses
        self.waiting: Dict[str, PendingCall] = {}    # function calls awaiting output, by call_id
        self.outputs: Dict[str, str] = {}            # their outputs, by call_id
        self.items: List[Dict[str, Any]] = []        # every input item the client added

    def new_response_id(self) -> str:
        return new_id("resp")

    def _function_tool(self) -> Optional[Dict[str, Any]]:
        return next((t for t in self.config.get("tools") or [] if t.get("type") == "function"), None)

    def delegate(self, delegation_id: str, response_id: str) -> Stream:
        """A delegation's first response: the function call, or a text answer."""
        tool = self._function_tool()
        if tool is None:
            return self._text(response_id, "Done.")
        return self._function_call(response_id, delegation_id, tool)

    def add_item(self, item: Dict[str, Any]) -> Optional[Problem]:
        """``response.item.create``: a tool result must answer a call that waits for one."""
        if item.get("type") == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str):
                return Problem("missing_required_parameter", "Missing required parameter: 'item.call_id'.",
                               "item.call_id")
            if call_id not in self.waiting:
                return Problem("invalid_value", f"No function call with call_id '{call_id}' is waiting "
                               "for output.", "item.call_id")
            output = item.get("output")
            self.outputs[call_id] = output if isinstance(output, str) else " ".join(
                str(part.get("text", "")) for part in output)
        self.items.append(item)
        return None

    def create(self) -> Union[Tuple[Optional[str], Stream], Problem]:
        """``response.create``: continue the delegation whose calls all have their output (its
        id and the answer), or a text answer that belongs to no delegation."""
        missing = [c for c in self.waiting if c not in self.outputs]
        if missing:
            # the Responses API's refusal of a call without output, as inferred for Live
            return Problem("invalid_value", f"No tool output found for function call {missing[0]}.", None)
        if not self.waiting:
            return None, self._text(self.new_response_id(), "OK.")
        delegation_id = next(iter(self.waiting.values())).delegation_id
        answer = " ".join(self.outputs[c] for c in self.waiting)
        self.waiting.clear()
        self.outputs.clear()
        return delegation_id, self._text(self.new_response_id(), answer)

    # the streamed events ---------------------------------------------------------------
    def _snapshot(self, response_id: str, status: str) -> Dict[str, Any]:
        choice = self.config.get("tool_choice")
        snapshot: Dict[str, Any] = {
            "id": response_id, "object": "response", "created_at": int(time.time()),
            "model": self.config.get("model", ""), "status": status, "output": [], "tools": [],
            "instructions": None, "parallel_tool_calls": self.config.get("parallel_tool_calls", True),
            # the Live tool choices Responses shares (a string, or a function by name)
            "tool_choice": choice if isinstance(choice, str) or (
                isinstance(choice, dict) and choice.get("type") == "function") else "auto",
            "error": None, "incomplete_details": None,
        }
        if status == "completed":
            snapshot["usage"] = dict(USAGE)
            snapshot["completed_at"] = int(time.time())
        return snapshot

    def _stream(self, response_id: str, middle: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        events = [{"type": "response.created", "response": self._snapshot(response_id, "in_progress")},
                  {"type": "response.in_progress", "response": self._snapshot(response_id, "in_progress")},
                  *middle,
                  {"type": "response.completed", "response": self._snapshot(response_id, "completed")}]
        for n, event in enumerate(events):
            event["sequence_number"] = n
        return events

    def _function_call(self, response_id: str, delegation_id: str, tool: Dict[str, Any]) -> Stream:
        name = tool.get("name", "tool")
        item = {"type": "function_call", "id": new_id("fc"), "call_id": new_id("call"), "name": name,
                "arguments": "", "status": "in_progress"}
        arguments = example_args(tool)
        at = {"item_id": item["id"], "output_index": 0}
        self.waiting[item["call_id"]] = PendingCall(delegation_id, item["call_id"], name)
        return Stream(response_id, self._stream(response_id, [
            {"type": "response.output_item.added", "output_index": 0, "item": item},
            {"type": "response.function_call_arguments.delta", "delta": arguments, **at},
            {"type": "response.function_call_arguments.done", "arguments": arguments, **at},
            {"type": "response.output_item.done", "output_index": 0,
             "item": dict(item, arguments=arguments, status="completed")},
        ]), None)

    def _text(self, response_id: str, text: str) -> Stream:
        item = {"type": "message", "id": new_id("msg"), "role": "assistant", "status": "in_progress",
                "content": []}
        at = {"item_id": item["id"], "output_index": 0, "content_index": 0}
        part = {"type": "output_text", "text": "", "annotations": []}
        done = dict(part, text=text)
        return Stream(response_id, self._stream(response_id, [
            {"type": "response.output_item.added", "output_index": 0, "item": item},
            {"type": "response.content_part.added", "part": part, **at},
            {"type": "response.output_text.delta", "delta": text, "logprobs": [], **at},
            {"type": "response.output_text.done", "text": text, "logprobs": [], **at},
            {"type": "response.content_part.done", "part": done, **at},
            {"type": "response.output_item.done", "output_index": 0,
             "item": dict(item, status="completed", content=[done])},
        ]), text)
