"""What the session engine needs from the switch, and nothing more.

The native FreeSWITCH layer implements these two protocols with a media bug and
the event API; the tests implement them with an honest double. Keeping the
surface this small is what lets the engine be tested without a switch.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Protocol

CaptureFn = Callable[..., None]               # (pcm, at=None) -> engine: a frame of caller audio, captured at ``at``
PlayoutFn = Callable[[], Optional[bytes]]     # media thread <- engine: one frame for the caller, or None
ClosedFn = Callable[[], None]                 # the channel's media is gone (hangup)


class CallMedia(Protocol):
    """One live channel."""
    uuid: str
    rate: int            # samples per second of the frames below
    frame_samples: int   # samples per frame (rate * ptime)

    def variable(self, name: str) -> Optional[str]: ...

    def attach(self, capture: CaptureFn, playout: PlayoutFn, closed: ClosedFn, mix: bool = True,
               active: Optional[Callable[[], bool]] = None) -> None:
        """Call ``capture`` with each frame of the caller's audio, and ``playout`` for each
        frame the channel writes to the caller, for the frame to mix into it (or replace it).
        While ``active()`` is False (the model has nothing for the caller now or soon) the media
        path may stop asking ``playout`` until ``audio_ready()``. Raises RuntimeError if the
        media cannot be reached."""

    def detach(self) -> None:
        """Stop the callbacks; when this returns none is running or will run."""

    # Call control (call/callcontrol.py), from a tool's thread:
    def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        """Hang the channel up with this cause."""

    def transfer(self, extension: str, dialplan: Optional[str], context: Optional[str]) -> bool:
        """Transfer the channel (as ``uuid_transfer``); False if the switch refused."""

    def send_dtmf(self, digits: str) -> None:
        """Play digits (0-9 * # A-D) to the far end; raises RuntimeError if the channel is gone."""

    # Optional: ``audio_ready()``. The engine calls it, from its receiver thread, when model
    # audio is queued with nothing ahead of it: unicast (frame times the module's to choose) sends
    # the first frame without waiting for the next tick, and the media bug resumes its paused
    # playout.
    #
    # Optional: ``uplink_pump``, a call/pump.py ``Pump`` for a media path whose own thread takes
    # the caller's frames (unicast): that thread then sends them too. Without it the session's
    # uplink is served by the shared pump.
    #
    # Optional: ``pull_capture()``, for a media path whose caller frames wait in the switch (the
    # media bug's capture bug): the pump calls it on each pass, before it sends, and it hands
    # what is waiting to ``capture`` with each frame's capture time.


class Switch(Protocol):
    def find_call(self, uuid: str) -> Optional[CallMedia]: ...

    def fire(self, subclass: str, uuid: Optional[str], body: bytes, headers: Dict[str, str]) -> None:
        """Fire a CUSTOM event with the channel's headers (when ``uuid`` is a live channel)."""

    def config_xml(self) -> Optional[str]:
        """The module's configuration document, or None."""
