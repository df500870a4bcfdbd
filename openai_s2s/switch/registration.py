"""Makes ``uuid_openai_s2s`` a real API command of the switch, and takes it away again.

``switch_loadable_module_build_dynamic`` builds a module named
``mod_openai_s2s`` whose load function (a ctypes callback) adds one API
interface. Every ctypes callback object lives in this module for the life of
the process: the switch holds raw pointers to them. At interpreter exit the
module is unloaded and every session closed first, so the switch can never
call into a finalized interpreter.
"""
from __future__ import annotations

import atexit
import ctypes
import threading
from typing import Callable, Optional

from .. import native
from ..call import events, registry
from ..control.commands import API_NAME, SYNTAX
from ..log import ERR, INFO, NOTICE, log
from . import dtmf

MODULE_NAME = b"mod_openai_s2s"
API_DESC = b"OpenAI Realtime speech-to-speech"
COMPLETIONS = [
    "add uuid_openai_s2s ::console::list_uuid session.create",
    "add uuid_openai_s2s ::console::list_uuid client.event",
    "add uuid_openai_s2s ::console::list_uuid session.delete",
    "add uuid_openai_s2s ::console::list_uuid status",
    "add uuid_openai_s2s ::console::list_uuid pause",
    "add uuid_openai_s2s ::console::list_uuid resume",
    "add uuid_openai_s2s ::console::list_uuid mute",
    "add uuid_openai_s2s ::console::list_uuid unmute",
    "add uuid_openai_s2s ::console::list_uuid barge-in",
    "add uuid_openai_s2s status",
    "add uuid_openai_s2s metrics",
]

_state = {"registered": False, "lib": None, "dispatch": None}
_lock = threading.Lock()


@native.API_FUNCTION
def _api_function(cmd, session, stream):  # switch API thread
    try:
        reply = _state["dispatch"](cmd or b"")
        data = (reply + "\n").encode("utf-8")
        stream.contents.raw_write_function(stream, data, len(data))
    except BaseException:
        pass
    return native.SWITCH_STATUS_SUCCESS


@native.MODULE_LOAD
def _module_load(module_interface, pool):  # called once, inside build_dynamic
    try:
        lib = _state["lib"]
        dup = lambda text: ctypes.cast(  # noqa: E731  strings must live in the module's pool
            lib.switch_core_perform_strdup(pool, text, b"registration.py", b"load", 0), ctypes.c_char_p)
        module = lib.switch_loadable_module_create_module_interface(pool, MODULE_NAME)
        module_interface[0] = module
        api = ctypes.cast(lib.switch_loadable_module_create_interface(module, native.SWITCH_API_INTERFACE),
                          ctypes.POINTER(native.SwitchApiInterface)).contents
        api.interface_name = dup(API_NAME.encode())
        api.desc = dup(API_DESC)
        api.syntax = dup(SYNTAX.encode())
        api.function = _api_function
        return native.SWITCH_STATUS_SUCCESS
    except BaseException as exc:
        log(ERR, f"openai_s2s: building the API interface failed: {exc!r}")
        return native.SWITCH_STATUS_FALSE


def register(dispatch: Callable[[bytes], str], lib: Optional[native.Lib] = None) -> bool:
    """Register the API command and event subclasses once per process; True if now registered."""
    with _lock:
        if _state["registered"]:
            _state["dispatch"] = dispatch
            return True
        lib = lib or native.load()
        _state["lib"], _state["dispatch"] = lib, dispatch
        for subclass in events.ALL:
            lib.switch_event_reserve_subclass_detailed(MODULE_NAME, subclass.encode())
        status = lib.switch_loadable_module_build_dynamic(MODULE_NAME, _module_load, None, None,
                                                          native.SWITCH_FALSE)
        if status != native.SWITCH_STATUS_SUCCESS:
            log(ERR, f"openai_s2s: registering uuid_openai_s2s failed (status {status})")
            return False
        for line in COMPLETIONS:
            lib.switch_console_set_complete(line.encode())
        if not dtmf.bind(lib, MODULE_NAME):
            log(ERR, "openai_s2s: binding to the DTMF event failed: the caller's digits will not reach the model")
        _state["registered"] = True
        atexit.register(unregister)
        log(NOTICE, "openai_s2s: API uuid_openai_s2s registered")
        return True


def unregister() -> None:
    """Close every session, then unload the dynamic module (runs at interpreter exit)."""
    for session in registry.all_sessions():
        try:
            session.close("shutdown")
        except Exception as exc:
            log(ERR, f"openai_s2s: closing {session.uuid} at shutdown: {exc!r}")
    with _lock:
        if not _state["registered"]:
            return
        lib = _state["lib"]
        dtmf.unbind()
        err = ctypes.c_char_p()
        status = lib.switch_loadable_module_unload_module(b"", MODULE_NAME, native.SWITCH_FALSE,
                                                          ctypes.byref(err))
        if status != native.SWITCH_STATUS_SUCCESS:
            log(ERR, f"openai_s2s: unloading {MODULE_NAME.decode()} failed: {err.value!r}")
        lib.switch_console_set_complete(b"del uuid_openai_s2s")
        for subclass in events.ALL:
            lib.switch_event_free_subclass_detailed(MODULE_NAME, subclass.encode())
        _state["registered"] = False
        log(INFO, "openai_s2s: API uuid_openai_s2s unregistered")
