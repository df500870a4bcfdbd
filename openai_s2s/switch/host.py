"""The switch as :class:`openai_s2s.call.host.Switch`: channels by uuid, CUSTOM events through the
SWIG bindings, the module's configuration through the XML registry, and the switch's log.

Runs only inside the switch (``import freeswitch`` exists nowhere else).
"""
from __future__ import annotations

import ctypes
from typing import Dict, Optional

from .. import native
from .bug import FsCall


def read_impl(lib: native.Lib, session: int):
    impl = native.SwitchCodecImplementation()
    if lib.switch_core_session_get_read_impl(session, ctypes.byref(impl)) != native.SWITCH_STATUS_SUCCESS:
        return None
    return impl


class FsSwitch:
    """host.Switch over the running FreeSWITCH."""

    def __init__(self, lib: Optional[native.Lib] = None):
        import freeswitch  # only inside the switch
        self.fs = freeswitch
        self.lib = lib or native.load()

    def find_call(self, uuid: str) -> Optional[FsCall]:
        session = native.locate(self.lib, uuid)
        if session is None:
            return None
        try:
            impl = read_impl(self.lib, session)
            if impl is None or not impl.actual_samples_per_second:
                return None  # no media yet (not answered, no codec): nothing to attach to
            rate = impl.actual_samples_per_second
            samples = impl.samples_per_packet or rate // 50
        finally:
            native.release(self.lib, session)
        return FsCall(self.lib, uuid, rate, samples)

    def fire(self, subclass: str, uuid: Optional[str], body: bytes, headers: Dict[str, str]) -> None:
        event = self.fs.Event("CUSTOM", subclass)
        if uuid:
            session = native.locate(self.lib, uuid)
            if session is not None:
                try:
                    channel = self.lib.switch_core_session_get_channel(session)
                    self.lib.switch_channel_event_set_data(channel, int(event.event))
                finally:
                    native.release(self.lib, session)
            else:
                event.addHeader("Unique-ID", uuid)
        for name, value in headers.items():
            event.addHeader(name, value)
        if body:
            event.addBody(body.decode("utf-8", "replace"))
        event.fire()

    def config_xml(self) -> Optional[str]:
        text = self.fs.API().executeString("xml_locate configuration configuration name openai_s2s.conf")
        if not text or text.lstrip().startswith("-ERR") or "<configuration" not in text:
            return None
        return text


def console_log(level: str, message: str) -> None:
    import freeswitch
    freeswitch.consoleLog(level, message.rstrip("\n") + "\n")
