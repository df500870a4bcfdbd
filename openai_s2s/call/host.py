"""What the session engine needs from the switch, and nothing more.

The native FreeSWITCH layer implements these two protocols with a media bug and
the event API; the tests implement them with an honest double. Keeping the
surface this small is what lets the engine be tested without a switch.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Protocol

CaptureFn = Callable[[bytes], None]           # media thread -> engine: one frame of caller audio
PlayoutFn = Callable[[], Optional[bytes]]     # media thread <- engine: one frame for the caller, or None
ClosedFn = Callable[[], None]                 # the channel's media is gone (hangup)


class CallMedia(Protocol):
    """One live channel."""
    uuid: str
    rate: int            # samples per second of the frames below
    frame_samples: int   # samples per frame (rate * ptime)

    def variable(self, name: str) -> Optional[str]: ...

    def attach(self, capture: CaptureFn, playout: PlayoutFn, closed: ClosedFn, mix: bool = True) -> None:
        """For each frame the channel writes to the caller, call ``capture`` with the caller
        frames received since the last one, then ``playout`` for the frame to mix into what
        the channel writes (or replace it). A channel that writes nothing calls neither.
        Raises RuntimeError if the media cannot be reached."""

    def detach(self) -> None:
        """Stop the callbacks; when this returns none is running or will run."""

    # Call control (call/callcontrol.py), from a tool's thread:
    def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        """Hang the channel up with this cause."""

    def transfer(self, extension: str, dialplan: Optional[str], context: Optional[str]) -> bool:
        """Transfer the channel (as ``uuid_transfer``); False if the switch refused."""

    def send_dtmf(self, digits: str) -> None:
        """Play digits (0-9 * # A-D) to the far end; raises RuntimeError if the channel is gone."""

    # Optional: ``audio_ready()``, for a channel whose frame times are the module's to choose
    # (switch/unicast.py). The engine calls it, from its receiver thread, when model audio is queued
    # with nothing ahead of it, so that the first frame need not wait for the next tick. A media
    # bug's frame times are the switch's, and FsCall has no such method.
    #
    # Optional: ``uplink_pump``, a call/pump.py ``Pump`` for a media path whose own thread takes
    # the caller's frames (unicast): that thread then sends them too. Without it the session's
    # uplink is served by the shared pump.


class Switch(Protocol):
    def find_call(self, uuid: str) -> Optional[CallMedia]: ...

    def fire(self, subclass: str, uuid: Optional[str], body: bytes, headers: Dict[str, str]) -> None:
        """Fire a CUSTOM event with the channel's headers (when ``uuid`` is a live channel)."""

    def config_xml(self) -> Optional[str]:
        """The module's configuration document, or None."""
