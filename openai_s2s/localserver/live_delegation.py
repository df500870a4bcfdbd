"""Delegation in a GPT-Live session: ``session.delegation.created`` for an utterance the
session hands on, to the client or to the Responses backend (:mod:`.live_responses`, whose
events go out in ``response.event`` envelopes), the spoken acknowledgement that follows it,
and the ``response.*`` commands, which need Responses delegation.

A mixin of :class:`~.live.LiveConversation`, whose session, output and timers it uses.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Protocol

from .live_responses import Backend, Stream
from .live_schema import Problem
from .live_shapes import FUNCTION_CALL_OUTPUT
from .session import ServerOptions, new_id

ACK_TEXT = "One moment."


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Delegating:
    """What it needs of the conversation it is mixed into."""
    server: ServerOptions
    session: Dict[str, Any]
    delegations: Dict[str, str]            # id -> target
    backend: Optional[Backend]
    acks: List[Cancellable]                # pending spoken acknowledgements

    def send_event(self, kind: str, with_id: bool = True, **fields: Any) -> None: ...

    def refuse(self, event: Optional[Dict[str, Any]], code: str, message: str,
               param: Optional[str] = None, kind: str = "invalid_request_error") -> None: ...

    def _refuse_problem(self, event: Optional[Dict[str, Any]], problem: Problem) -> None: ...

    def speak_text(self, text: str) -> None: ...

    def schedule(self, delay: float, callback: Callable[[], None]) -> Cancellable: ...

    def _delegate(self, offset_ms: int) -> None:
        delegation_id = new_id("del")
        target = self.session["delegation"]["type"]
        self.delegations[delegation_id] = target
        created = {"id": delegation_id, "target": target, "type": "delegation"}
        stream: Optional[Stream] = None
        if self.backend is not None:
            created["response_id"] = self.backend.new_response_id()
            stream = self.backend.delegate(delegation_id, created["response_id"])
        self.send_event("session.delegation.created", delegation=created, offset_ms=offset_ms)
        self._arm_ack()
        if stream is not None:
            self._stream(delegation_id, stream)

    def _stream(self, delegation_id: Optional[str], stream: Stream, speak: bool = True) -> None:
        for nested in stream.events:
            fields: Dict[str, Any] = {"event": nested}
            if delegation_id is not None:
                fields["delegation_id"] = delegation_id
            self.send_event("response.event", **fields)
        if stream.text is not None and speak:
            self.speak_text(stream.text)

    def _arm_ack(self) -> None:
        """The spoken acknowledgement "acknowledgement_delay_ms" after a delegation; a
        thinking or commentary append first cancels it (and every other pending one)."""
        delay_ms = self.session["delegation"].get("acknowledgement_delay_ms") or 0
        speed = self.server.speed
        if delay_ms <= 0 or speed <= 0:
            self.speak_text(ACK_TEXT)
            return
        holder: List[Cancellable] = []

        def acknowledge() -> None:
            if holder and holder[0] in self.acks:
                self.acks.remove(holder[0])
                self.speak_text(ACK_TEXT)
        holder.append(self.schedule(delay_ms / 1000 / speed, acknowledge))
        self.acks.append(holder[0])

    def _cancel_acks(self) -> None:
        for timer in self.acks:
            timer.cancel()
        self.acks.clear()

    def _needs_responses(self, event: Dict[str, Any]) -> bool:
        if self.backend is None:
            # the message as observed under client delegation; the code is inferred
            self.refuse(event, "responses_delegation_required",
                        f"{event['type']} requires Responses delegation.")
            return False
        return True

    def on_response_item_create(self, event: Dict[str, Any]) -> None:
        if not self._needs_responses(event):
            return
        item = event["item"]
        if item.get("type") == "function_call_output":
            problem = FUNCTION_CALL_OUTPUT.check(item, "item")
            if problem is not None:
                self._refuse_problem(event, problem)
                return
        problem = self.backend.add_item(item)
        if problem is not None:
            self._refuse_problem(event, problem)

    def on_response_create(self, event: Dict[str, Any]) -> None:
        if not self._needs_responses(event):
            return
        result = self.backend.create()
        if isinstance(result, Problem):
            self._refuse_problem(event, result)
            return
        delegation_id, stream = result
        # a response that belongs to no delegation is not spoken (inferred)
        self._stream(delegation_id, stream, speak=delegation_id is not None)
