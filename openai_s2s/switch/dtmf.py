"""The caller's digits: one binding to the switch's DTMF event, for every call.

The switch fires SWITCH_EVENT_DTMF when a channel's queued digit is taken (by park, playback,
a bridge, or FsCall.take_dtmf), whatever the media path: a parked unicast call and a media
bug's alike. The callback runs on the switch's event dispatch thread: it reads two headers and
hands the digit to the call's session (call/dtmf.py), an append; it never blocks and never
lets an exception out. The callback object lives here for the life of the process: the switch
holds a raw pointer to it until :func:`unbind`.
"""
from __future__ import annotations

from .. import native
from ..call import dtmf

_state = {"lib": None, "bound": False}


@native.EVENT_CALLBACK
def _on_dtmf(event):  # the switch's event thread
    try:
        lib = _state["lib"]
        if lib is None or not event:
            return
        uuid = lib.switch_event_get_header_idx(event, b"Unique-ID", -1)
        digit = lib.switch_event_get_header_idx(event, b"DTMF-Digit", -1)
        if uuid and digit:
            dtmf.received(uuid.decode("ascii", "replace"), digit.decode("ascii", "replace"))
    except BaseException:   # an exception must never unwind into the switch
        pass


def bind(lib: native.Lib, module_name: bytes) -> bool:
    """Bind once per process; True if bound."""
    if _state["bound"]:
        return True
    _state["lib"] = lib
    status = lib.switch_event_bind(module_name, native.SWITCH_EVENT_DTMF, None, _on_dtmf, None)
    _state["bound"] = status == native.SWITCH_STATUS_SUCCESS
    return _state["bound"]


def unbind() -> None:
    lib = _state["lib"]
    if _state["bound"] and lib is not None:
        lib.switch_event_unbind_callback(_on_dtmf)   # waits for a callback in progress (GIL given up)
        _state["bound"] = False
