"""Function calls the module answers itself (built-in call control, webhook tools).

A tool registered here runs on a thread of its own, never on the receiver's or a media thread,
at most ``MAX_RUNNING`` at a time per call. Its output goes back as a
``function_call_output`` item; the ``response.create`` that lets the model speak of it goes
once no response is in progress (the service refuses a second one while one is active), one
for all the outputs that arrived meanwhile. Tools the module does not know are left to the ESL
application, which gets every server event as before.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Dict, List, Optional

import orjson

from ..log import DEBUG, INFO, WARNING, log

MAX_RUNNING = 2

# (arguments as parsed JSON, the call's context) -> output text for the model
Tool = Callable[[Any, "ToolContext"], str]


class ToolContext:
    """What a tool may know of the call it runs for."""

    def __init__(self, session: Any, call_id: str, name: str):
        self.session = session
        self.uuid: str = session.uuid
        self.call_id = call_id
        self.name = name
        self.afterwards: List[Callable[[], None]] = []

    def after_output(self, then: Callable[[], None]) -> None:
        """Run ``then`` on the tool's thread once its output has been sent (call control: act
        after the model's reply to it)."""
        self.afterwards.append(then)

    def variable(self, name: str) -> Optional[str]:
        return self.session.call.variable(name)


class ToolRunner:
    def __init__(self, session: Any):
        self.session = session
        self.tools: Dict[str, Tool] = {}
        self._slots = threading.BoundedSemaphore(MAX_RUNNING)
        self._lock = threading.Lock()
        self._create_wanted = False
        self.calls = 0
        self.failures = 0

    def register(self, name: str, tool: Tool) -> None:
        self.tools[name] = tool

    def handles(self, name: str) -> bool:
        return name in self.tools

    def call(self, call_id: str, name: str, arguments: str) -> bool:
        """Start the tool for this function call; False if it is not one of the module's."""
        tool = self.tools.get(name)
        if tool is None:
            return False
        self.calls += 1
        if not self._slots.acquire(blocking=False):
            self._answer(call_id, _error(f"{MAX_RUNNING} tool calls are already running for this call"))
            return True
        thread = threading.Thread(target=self._run, args=(tool, call_id, name, arguments), daemon=True,
                                  name=f"s2s-tool-{self.session.uuid[:8]}")
        try:
            thread.start()
        except RuntimeError:
            self._slots.release()
            self._answer(call_id, _error("the tool could not be started"))
        return True

    @property
    def create_pending(self) -> bool:
        """A response.create is waiting for the response in progress to end."""
        return self._create_wanted

    def want_response(self) -> None:
        """Have the model respond (to an output, or an item the module added), once no
        response is in progress: one response.create for everything that came meanwhile."""
        with self._lock:
            self._create_wanted = True
        if self.session.proto.response_id is None:
            self.response_idle()

    def response_idle(self) -> None:
        """No response is in progress: send the response.create that outputs are waiting for."""
        with self._lock:
            wanted, self._create_wanted = self._create_wanted, False
        if wanted:
            self._send({"type": "response.create"})

    # -- the tool's thread ---------------------------------------------------------------
    def _run(self, tool: Tool, call_id: str, name: str, arguments: str) -> None:
        ctx = ToolContext(self.session, call_id, name)
        sent = False
        try:
            try:
                args = orjson.loads(arguments) if arguments else {}
            except orjson.JSONDecodeError:
                output = _error("the arguments are not JSON")
            else:
                try:
                    output = tool(args, ctx)
                except Exception as exc:   # a tool's failure is the model's to hear, not the call's end
                    self.failures += 1
                    ctx.afterwards.clear()
                    log(WARNING, f"[{self.session.uuid}] tool {name} failed: {exc!r}")
                    output = _error(f"the tool failed ({type(exc).__name__})")
            log(INFO, f"[{self.session.uuid}] tool {name} ({call_id}) answered")
            sent = self._answer(call_id, output)
        finally:
            self._slots.release()
        for then in ctx.afterwards if sent else ():
            try:
                then()
            except Exception as exc:
                log(WARNING, f"[{self.session.uuid}] tool {name}: after its output: {exc!r}")

    def _answer(self, call_id: str, output: str) -> bool:
        if not self._send({"type": "conversation.item.create", "item": {
                "type": "function_call_output", "call_id": call_id, "output": output}}):
            return False
        self.want_response()
        return True

    def _send(self, event: Dict[str, Any]) -> bool:
        try:
            self.session.client_event(event, len(orjson.dumps(event)))
            return True
        except Exception as exc:   # the session is ending, or its queue is full
            log(DEBUG, f"[{self.session.uuid}] tool output not sent: {exc}")
            return False


def _error(text: str) -> str:
    return orjson.dumps({"error": text}).decode()
