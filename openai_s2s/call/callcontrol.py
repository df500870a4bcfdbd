"""Built-in call control: tools the module answers itself, on the call's own channel.

- ``end_call(reason)``: hangs the channel up (NORMAL_CLEARING) once the model's reply to the
  tool's output has played out;
- ``transfer_call(destination)``: transfers the channel to one of the operator's named
  destinations (``transfer-destinations``, the config file's alone), likewise after the reply;
  any other name is refused and nothing happens: the model can never dial anything else;
- ``send_dtmf(digits)``: plays digits to the far end, at once.

Each runs on the ToolRunner's thread for the call (never the receiver's or a media thread),
fires ``openai_s2s::server_event`` ``{"type":"call_control","tool":..,"result":..}`` and logs
one INFO line. The switch's side is the call's (host.CallMedia: hangup, transfer, send_dtmf).
"""
from __future__ import annotations

import re
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import orjson

from ..log import INFO, WARNING, log
from . import events

TOOLS = ("end_call", "transfer_call", "send_dtmf")
REPLY_WAIT = 20.0     # seconds to wait for the reply to play out before acting anyway
PLAYED_TAIL = 0.3     # the last frames taken from playout still have to reach the caller
MAX_DIGITS = 32
_DIGITS = re.compile(r"[0-9*#A-Da-d]{1,%d}" % MAX_DIGITS)

Destination = Tuple[str, Optional[str], Optional[str]]   # extension, dialplan, context


def declarations(names: Sequence[str], destinations: Mapping[str, Destination]) -> List[Dict[str, Any]]:
    """The function tools to declare to the model for ``names`` (in TOOLS' order)."""
    out: List[Dict[str, Any]] = []
    if "end_call" in names:
        out.append({"type": "function", "name": "end_call",
                    "description": "Hang up the call. Say goodbye first; the call ends once it has been heard.",
                    "parameters": {"type": "object", "properties": {
                        "reason": {"type": "string", "description": "why the call ends"}}, "required": []}})
    if "transfer_call" in names:
        choices = sorted(destinations)
        destination: Dict[str, Any] = {"type": "string", "description": "one of: " + ", ".join(choices)
                                       if choices else "no destination is configured"}
        if choices:
            destination["enum"] = choices
        out.append({"type": "function", "name": "transfer_call",
                    "description": "Transfer the caller to a named destination, after telling them.",
                    "parameters": {"type": "object", "properties": {"destination": destination},
                                   "required": ["destination"]}})
    if "send_dtmf" in names:
        out.append({"type": "function", "name": "send_dtmf",
                    "description": "Send touch-tone digits (0-9, *, #, A-D) to the other party, "
                                   "e.g. to answer a phone menu.",
                    "parameters": {"type": "object", "properties": {
                        "digits": {"type": "string", "description": f"at most {MAX_DIGITS} digits"}},
                        "required": ["digits"]}})
    return out


def install(session: Any) -> None:
    """Register the call control tools the session's options name on its ToolRunner."""
    names = session.options.get("call_control") or ()
    control = CallControl(session, session.options.get("transfer_destinations") or {})
    for name in names:
        session.tools.register(name, getattr(control, name))


class CallControl:
    def __init__(self, session: Any, destinations: Mapping[str, Destination]):
        self.session = session
        self.destinations = dict(destinations)

    # -- the tools (the ToolRunner's thread) -----------------------------------------------
    def end_call(self, args: Any, ctx: Any) -> str:
        reason = args.get("reason") if isinstance(args, dict) else None
        reason = reason[:200] if isinstance(reason, str) else ""
        mark = self.session.proto.responses_created
        ctx.after_output(lambda: self._after_reply(mark, lambda: self._hangup(reason)))
        return "ok"

    def transfer_call(self, args: Any, ctx: Any) -> str:
        name = args.get("destination") if isinstance(args, dict) else None
        if not isinstance(name, str) or name not in self.destinations:
            shown = name[:64] if isinstance(name, str) else repr(name)[:64]
            allowed = ", ".join(sorted(self.destinations)) or "(none)"
            self._report("transfer_call", "refused", f"no such destination {shown!r}", destination=shown)
            return orjson.dumps({"error": f"no such destination: {shown}; allowed: {allowed}"}).decode()
        mark = self.session.proto.responses_created
        ctx.after_output(lambda: self._after_reply(mark, lambda: self._transfer(name)))
        return "ok"

    def send_dtmf(self, args: Any, ctx: Any) -> str:
        digits = args.get("digits") if isinstance(args, dict) else None
        if not isinstance(digits, str) or not _DIGITS.fullmatch(digits):
            self._report("send_dtmf", "refused", "bad digits")
            return orjson.dumps({"error": f"digits must be 1 to {MAX_DIGITS} of 0-9 * # A-D"}).decode()
        digits = digits.upper()
        try:
            self.session.call.send_dtmf(digits)
        except Exception as exc:
            self._report("send_dtmf", "failed", repr(exc), level=WARNING)
            return orjson.dumps({"error": "the digits could not be sent"}).decode()
        self._report("send_dtmf", "sent", f"digits {digits}", digits=digits)
        return "ok"

    # -- after the reply ------------------------------------------------------------------
    def _after_reply(self, mark: int, action: Callable[[], None]) -> None:
        """Once the model's reply to the output (a response created after ``mark``) is over and
        its audio has played, or after REPLY_WAIT, run ``action`` unless the session has ended."""
        session = self.session
        deadline = time.monotonic() + REPLY_WAIT
        while time.monotonic() < deadline and not session.stopping:
            proto = session.proto
            if proto.responses_created > mark and proto.response_id is None \
                    and not session.tools.create_pending and not session.playout.active:
                time.sleep(PLAYED_TAIL)
                break
            time.sleep(0.02)
        if not session.stopping:
            action()

    def _hangup(self, reason: str) -> None:
        self._report("end_call", "hangup", f"reason {reason!r}" if reason else "", reason=reason)
        try:
            self.session.call.hangup("NORMAL_CLEARING")
        except Exception as exc:
            log(WARNING, f"[{self.session.uuid}] call control end_call: hangup failed: {exc!r}")

    def _transfer(self, name: str) -> None:
        extension, dialplan, context = self.destinations[name]
        target = " ".join(w for w in (extension, dialplan, context) if w)
        try:
            ok = self.session.call.transfer(extension, dialplan, context)
        except Exception as exc:
            ok = False
            log(WARNING, f"[{self.session.uuid}] call control transfer_call: {exc!r}")
        if not ok:
            self._report("transfer_call", "failed", f"to {name} ({target})", level=WARNING, destination=name)
            return
        self._report("transfer_call", "transferred", f"to {name} ({target})", destination=name)
        self.session.close("transfer")   # the call is someone else's now

    def _report(self, tool: str, result: str, detail: str, level: str = INFO, **fields: Any) -> None:
        self.session.fire(events.SERVER_EVENT, events.body(type="call_control", tool=tool, result=result,
                                                           **fields))
        log(level, f"[{self.session.uuid}] call control {tool}: {result}" + (f", {detail}" if detail else ""))
