"""libfreeswitch's C API through ctypes: every struct and prototype the module uses, declared once.

Checked against the headers of FreeSWITCH 1.10.x (switch_frame.h,
switch_module_interfaces.h, switch_core.h, switch_types.h). Only the leading
fields that the module touches are declared for structs it never allocates;
structs the switch copies into our memory are declared whole.

Nothing here runs at import time except the declarations: :func:`load` binds
the symbols, which exist only inside a running switch.
"""
from __future__ import annotations

import ctypes
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char_p, c_int, c_int32, c_size_t, c_uint8,
                    c_uint16, c_uint32, c_void_p)
from typing import List, Optional

# -- enums and constants (switch_types.h) --------------------------------------------
SWITCH_STATUS_SUCCESS = 0
SWITCH_STATUS_FALSE = 1
SWITCH_STATUS_NOUNLOAD = 16
SWITCH_FALSE, SWITCH_TRUE = 0, 1

SWITCH_ABC_TYPE_INIT = 0
SWITCH_ABC_TYPE_READ = 1
SWITCH_ABC_TYPE_WRITE = 2
SWITCH_ABC_TYPE_WRITE_REPLACE = 3
SWITCH_ABC_TYPE_READ_REPLACE = 4
SWITCH_ABC_TYPE_READ_PING = 5
SWITCH_ABC_TYPE_CLOSE = 8

SMBF_READ_STREAM = 1 << 0
SMBF_WRITE_STREAM = 1 << 1
SMBF_WRITE_REPLACE = 1 << 2
SMBF_NO_PAUSE = 1 << 10

# switch_channel_flag_t positions (the same from 1.10.0 to master; tests/test_realswitch_native.py
# checks them against the installed headers)
CF_UNICAST = 25
CF_PARK = 41

SWITCH_API_INTERFACE = 5          # switch_module_interface_name_t
SWITCH_EVENT_CUSTOM = 0           # switch_event_types_t
SWITCH_STACK_BOTTOM = 1
SWITCH_RECOMMENDED_BUFFER_SIZE = 8192

SWITCH_LOG_DEBUG, SWITCH_LOG_INFO, SWITCH_LOG_NOTICE = 7, 6, 5
SWITCH_LOG_WARNING, SWITCH_LOG_ERROR, SWITCH_LOG_CRIT = 4, 3, 2


# -- structs ---------------------------------------------------------------------------
class SwitchFrame(Structure):
    """struct switch_frame (switch_frame.h), whole."""
    _fields_ = [
        ("codec", c_void_p), ("source", c_char_p), ("packet", c_void_p), ("packetlen", c_uint32),
        ("extra_data", c_void_p), ("data", c_void_p), ("datalen", c_uint32), ("buflen", c_uint32),
        ("samples", c_uint32), ("rate", c_uint32), ("channels", c_uint32), ("payload", c_uint8),
        ("timestamp", c_uint32), ("seq", c_uint16), ("ssrc", c_uint32), ("m", c_int),
        ("flags", c_uint32), ("user_data", c_void_p), ("pmap", c_void_p), ("img", c_void_p),
        ("geometry", c_int32 * 7),
    ]


class SwitchCodecImplementation(Structure):
    """struct switch_codec_implementation, whole: switch_core_session_get_read_impl copies into it."""
    _fields_ = [
        ("codec_type", c_int), ("ianacode", c_uint8), ("iananame", c_char_p), ("fmtp", c_char_p),
        ("samples_per_second", c_uint32), ("actual_samples_per_second", c_uint32),
        ("bits_per_second", c_int), ("microseconds_per_packet", c_int),
        ("samples_per_packet", c_uint32), ("decoded_bytes_per_packet", c_uint32),
        ("encoded_bytes_per_packet", c_uint32), ("number_of_channels", c_uint8),
        ("codec_frames_per_packet", c_int),
        ("init", c_void_p), ("encode", c_void_p), ("decode", c_void_p), ("encode_video", c_void_p),
        ("decode_video", c_void_p), ("codec_control", c_void_p), ("destroy", c_void_p),
        ("codec_id", c_uint32), ("impl_id", c_uint32), ("modname", c_char_p), ("next", c_void_p),
    ]


class SwitchStreamHandle(Structure):
    """struct switch_stream_handle: only the leading function pointers are used."""


RAW_WRITE_FUNCTION = CFUNCTYPE(c_int, POINTER(SwitchStreamHandle), c_char_p, c_size_t)
SwitchStreamHandle._fields_ = [
    ("read_function", c_void_p), ("write_function", c_void_p),
    ("raw_write_function", RAW_WRITE_FUNCTION), ("data", c_void_p), ("end", c_void_p),
    ("data_size", c_size_t), ("data_len", c_size_t), ("alloc_len", c_size_t),
    ("alloc_chunk", c_size_t), ("param_event", c_void_p),
]


class SwitchApiInterface(Structure):
    """struct switch_api_interface (switch_module_interfaces.h), whole."""


# switch_status_t (*)(const char *cmd, switch_core_session_t *session, switch_stream_handle_t *stream)
API_FUNCTION = CFUNCTYPE(c_int, c_char_p, c_void_p, POINTER(SwitchStreamHandle))
SwitchApiInterface._fields_ = [
    ("interface_name", c_char_p), ("desc", c_char_p), ("function", API_FUNCTION),
    ("syntax", c_char_p), ("rwlock", c_void_p), ("refs", c_int), ("reflock", c_void_p),
    ("parent", c_void_p), ("next", c_void_p),
]

# switch_bool_t (*)(switch_media_bug_t *, void *, switch_abc_type_t)
MEDIA_BUG_CALLBACK = CFUNCTYPE(c_int, c_void_p, c_void_p, c_int)
# switch_status_t (*)(switch_loadable_module_interface_t **, switch_memory_pool_t *)
MODULE_LOAD = CFUNCTYPE(c_int, POINTER(c_void_p), c_void_p)

# -- prototypes: name -> (restype, argtypes) ------------------------------------------
PROTOTYPES = {
    "switch_core_session_perform_locate": (c_void_p, [c_char_p, c_char_p, c_char_p, c_int]),
    "switch_core_session_rwunlock": (None, [c_void_p]),
    "switch_core_session_get_channel": (c_void_p, [c_void_p]),
    "switch_core_session_get_read_impl": (c_int, [c_void_p, POINTER(SwitchCodecImplementation)]),
    "switch_core_media_bug_add": (c_int, [c_void_p, c_char_p, c_char_p, MEDIA_BUG_CALLBACK, c_void_p,
                                          ctypes.c_long, c_uint32, POINTER(c_void_p)]),
    "switch_core_media_bug_remove": (c_int, [c_void_p, POINTER(c_void_p)]),
    "switch_core_media_bug_read": (c_int, [c_void_p, POINTER(SwitchFrame), c_int]),
    "switch_core_media_bug_flush": (None, [c_void_p]),
    "switch_core_media_bug_get_write_replace_frame": (POINTER(SwitchFrame), [c_void_p]),
    "switch_core_media_bug_set_write_replace_frame": (None, [c_void_p, POINTER(SwitchFrame)]),
    "switch_channel_get_variable_dup": (c_char_p, [c_void_p, c_char_p, c_int, c_int]),
    "switch_channel_set_variable_var_check": (c_int, [c_void_p, c_char_p, c_char_p, c_int]),
    "switch_channel_event_set_data": (None, [c_void_p, c_void_p]),
    "switch_channel_test_flag": (c_uint32, [c_void_p, c_int]),
    "switch_ivr_activate_unicast": (c_int, [c_void_p, c_char_p, c_uint16, c_char_p, c_uint16, c_char_p,
                                            c_char_p]),
    "switch_event_reserve_subclass_detailed": (c_int, [c_char_p, c_char_p]),
    "switch_event_free_subclass_detailed": (c_int, [c_char_p, c_char_p]),
    "switch_loadable_module_build_dynamic": (c_int, [c_char_p, MODULE_LOAD, c_void_p, c_void_p, c_int]),
    "switch_loadable_module_create_module_interface": (c_void_p, [c_void_p, c_char_p]),
    "switch_loadable_module_create_interface": (c_void_p, [c_void_p, c_int]),
    "switch_core_perform_strdup": (c_void_p, [c_void_p, c_char_p, c_char_p, c_char_p, c_int]),
    "switch_loadable_module_unload_module": (c_int, [c_char_p, c_char_p, c_int, POINTER(c_char_p)]),
    "switch_console_set_complete": (c_int, [c_char_p]),
}
# Called on media threads inside the bug callback, where the GIL is already held. ctypes
# gives the GIL up around every CDLL call, and taking it back means queueing behind every
# other Python thread; these calls are short and never wait on anything that needs Python
# (the capture bug's mutexes are only held by the switch's own buffer copies: that bug has no
# callback), so they keep it.
KEEP_GIL = {"switch_core_media_bug_read", "switch_core_media_bug_flush",
            "switch_core_media_bug_get_write_replace_frame",
            "switch_core_media_bug_set_write_replace_frame"}
# What tests/test_realswitch_native.py compiles against the installed headers: each struct's
# C name and whether it is declared whole (size checked) or only as a prefix (offsets only),
# and the constants above by their C names.
C_STRUCTS = [(SwitchFrame, "switch_frame_t", True),
             (SwitchCodecImplementation, "switch_codec_implementation_t", True),
             (SwitchStreamHandle, "switch_stream_handle_t", False),
             (SwitchApiInterface, "switch_api_interface_t", True)]
C_CONSTANTS = ["SWITCH_STATUS_SUCCESS", "SWITCH_STATUS_FALSE", "SWITCH_STATUS_NOUNLOAD", "SWITCH_FALSE",
               "SWITCH_TRUE", "SWITCH_ABC_TYPE_INIT", "SWITCH_ABC_TYPE_READ", "SWITCH_ABC_TYPE_WRITE",
               "SWITCH_ABC_TYPE_WRITE_REPLACE", "SWITCH_ABC_TYPE_READ_REPLACE", "SWITCH_ABC_TYPE_READ_PING",
               "SWITCH_ABC_TYPE_CLOSE", "SMBF_READ_STREAM", "SMBF_WRITE_STREAM", "SMBF_WRITE_REPLACE",
               "SMBF_NO_PAUSE", "CF_UNICAST", "CF_PARK", "SWITCH_API_INTERFACE", "SWITCH_EVENT_CUSTOM", "SWITCH_STACK_BOTTOM",
               "SWITCH_RECOMMENDED_BUFFER_SIZE", "SWITCH_LOG_DEBUG", "SWITCH_LOG_INFO", "SWITCH_LOG_NOTICE",
               "SWITCH_LOG_WARNING", "SWITCH_LOG_ERROR", "SWITCH_LOG_CRIT"]

# Variadic or macro-only functions are deliberately absent: ctypes cannot call a
# C variadic function portably, so bodies go through the SWIG Event instead.


class NativeError(RuntimeError):
    """libfreeswitch (or one of its symbols) is not there."""


class Lib:
    """The bound symbols; attribute access by C name."""

    def __init__(self, handle: ctypes.CDLL):
        self.handle = handle
        holding = ctypes.PyDLL(handle._name, handle=handle._handle)   # same library, GIL kept
        for name, (restype, argtypes) in PROTOTYPES.items():
            function = getattr(holding if name in KEEP_GIL else handle, name)
            function.restype, function.argtypes = restype, argtypes
            setattr(self, name, function)


def missing_symbols(handle: ctypes.CDLL) -> List[str]:
    missing = []
    for name in PROTOTYPES:
        try:
            getattr(handle, name)
        except AttributeError:
            missing.append(name)
    return missing


_lib: Optional[Lib] = None


def load() -> Lib:
    """Bind libfreeswitch from the running process (the switch has it loaded already)."""
    global _lib
    if _lib is not None:
        return _lib
    candidates = [None, "libfreeswitch.so.1", "libfreeswitch.so"]
    errors = []
    for name in candidates:
        try:
            handle = ctypes.CDLL(name)
        except OSError as exc:
            errors.append(f"{name}: {exc}")
            continue
        missing = missing_symbols(handle)
        if not missing:
            _lib = Lib(handle)
            return _lib
        errors.append(f"{name or 'process'}: missing {', '.join(missing)}")
    raise NativeError("libfreeswitch symbols not found (" + "; ".join(errors) + ")")


_HERE = b"openai_s2s/native.py"


def locate(lib: Lib, uuid: str) -> Optional[int]:
    """The session with a read lock held, or None; release with :func:`release`."""
    return lib.switch_core_session_perform_locate(uuid.encode(), _HERE, b"locate", 0) or None


def release(lib: Lib, session: int) -> None:
    lib.switch_core_session_rwunlock(session)
