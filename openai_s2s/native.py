"""Every ctypes declaration of the module, in one place: libfreeswitch's C API and the few libc calls.

libfreeswitch: checked against the headers of FreeSWITCH 1.10.x (switch_frame.h,
switch_module_interfaces.h, switch_core.h, switch_types.h). Only the leading fields that the
module touches are declared for structs it never allocates; structs the switch copies into our
memory are declared whole. Nothing runs at import time except the declarations: :func:`load`
binds the symbols, which exist only inside a running switch.

libc: ctypes.CDLL, like the socket module and fcntl, gives the GIL up around every foreign call.
In the switch, getting it back means queueing behind the media threads and every other Python
thread, which costs more than a non-blocking send or recv, or an ioctl, takes. The few calls on
the module's busy paths (the uplink's send, the receiver's recv, the unicast loop's datagrams,
the underrun check's FIONREAD, the media bug's frame copy) are bound through ctypes.PyDLL
instead, which keeps it. Each must only ever be called so that it cannot block (MSG_DONTWAIT,
or an ioctl that asks).

This module imports nothing of the package: the realtime transport and the FreeSWITCH layer
both stand on it.
"""
from __future__ import annotations

import ctypes
import os
import sys
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_int, c_int32, c_size_t, c_uint8,
                    c_uint16, c_uint32, c_void_p)
from typing import Any, List, Optional, Sequence

# -- enums and constants (switch_types.h) --------------------------------------------
SWITCH_STATUS_SUCCESS = 0
SWITCH_STATUS_FALSE = 1
SWITCH_FALSE, SWITCH_TRUE = 0, 1

SWITCH_ABC_TYPE_WRITE_REPLACE = 3
SWITCH_ABC_TYPE_CLOSE = 8

SMBF_READ_STREAM = 1 << 0
SMBF_WRITE_REPLACE = 1 << 2
SMBF_NO_PAUSE = 1 << 10
SMBF_LOCK = 1 << 12     # the switch's remove_all passes the bug by until the session is destroyed
SMBF_PAUSE = 1 << 27    # the switch calls nothing for the bug while set (1.10.10 and later)

# switch_channel_flag_t positions (the same from 1.10.0 to master; tests/test_realswitch_native.py
# checks them against the installed headers)
CF_UNICAST = 25
CF_PARK = 41

SWITCH_API_INTERFACE = 5          # switch_module_interface_name_t
SWITCH_EVENT_DTMF = 36            # switch_event_types_t
SWITCH_CAUSE_NORMAL_CLEARING = 16  # switch_call_cause_t
SWITCH_RECOMMENDED_BUFFER_SIZE = 8192


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


class SwitchDtmf(Structure):
    """switch_dtmf_t (switch_types.h), whole: switch_channel_dequeue_dtmf copies into it."""
    _fields_ = [("digit", c_char), ("duration", c_uint32), ("flags", c_int32), ("source", c_int)]


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
# void (*)(switch_event_t *): runs on the switch's event dispatch threads
EVENT_CALLBACK = CFUNCTYPE(None, c_void_p)

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
    "switch_core_media_bug_set_flag": (c_uint32, [c_void_p, c_uint32]),
    "switch_core_media_bug_clear_flag": (c_uint32, [c_void_p, c_uint32]),
    "switch_channel_get_variable_dup": (c_char_p, [c_void_p, c_char_p, c_int, c_int]),
    "switch_channel_set_variable_var_check": (c_int, [c_void_p, c_char_p, c_char_p, c_int]),
    "switch_channel_event_set_data": (None, [c_void_p, c_void_p]),
    "switch_channel_test_flag": (c_uint32, [c_void_p, c_int]),
    "switch_channel_clear_flag": (None, [c_void_p, c_int]),
    # blocks the calling (channel) thread in the park loop; ctypes gives the GIL up meanwhile
    "switch_ivr_park": (c_int, [c_void_p, c_void_p]),
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
    # DTMF: the event the switch fires when a channel's queued digit is taken, and the taking
    "switch_event_bind": (c_int, [c_char_p, c_int, c_char_p, EVENT_CALLBACK, c_void_p]),
    "switch_event_unbind_callback": (c_int, [EVENT_CALLBACK]),
    "switch_event_get_header_idx": (c_char_p, [c_void_p, c_char_p, c_int]),
    "switch_channel_has_dtmf": (c_size_t, [c_void_p]),
    "switch_channel_dequeue_dtmf": (c_int, [c_void_p, POINTER(SwitchDtmf)]),
    # call control
    "switch_channel_perform_hangup": (c_int, [c_void_p, c_char_p, c_char_p, c_int, c_int]),
    "switch_ivr_session_transfer": (c_int, [c_void_p, c_char_p, c_char_p, c_char_p]),
    "switch_core_session_send_dtmf_string": (c_int, [c_void_p, c_char_p]),
}
# Called on media threads inside the bug callback, and by the uplink pump for every bridged
# call on each pass. ctypes gives the GIL up around every CDLL call, and taking it back means
# queueing behind every other Python thread; these calls are short and never wait on anything
# that needs Python (the capture bug's mutexes are only held by the switch's own buffer copies:
# that bug has no callback), so they keep it.
KEEP_GIL = {"switch_core_media_bug_read", "switch_core_media_bug_flush",
            "switch_core_media_bug_get_write_replace_frame",
            "switch_core_media_bug_set_write_replace_frame",
            # a bit set or cleared in the bug's flags: no lock at all
            "switch_core_media_bug_set_flag", "switch_core_media_bug_clear_flag",
            # a header lookup in the event the DTMF callback is handed: no lock, no wait
            "switch_event_get_header_idx"}
# What tests/test_realswitch_native.py compiles against the installed headers: each struct's
# C name and whether it is declared whole (size checked) or only as a prefix (offsets only),
# and the constants above by their C names.
C_STRUCTS = [(SwitchFrame, "switch_frame_t", True),
             (SwitchDtmf, "switch_dtmf_t", True),
             (SwitchCodecImplementation, "switch_codec_implementation_t", True),
             (SwitchStreamHandle, "switch_stream_handle_t", False),
             (SwitchApiInterface, "switch_api_interface_t", True)]
C_CONSTANTS = ["SWITCH_STATUS_SUCCESS", "SWITCH_STATUS_FALSE", "SWITCH_FALSE", "SWITCH_TRUE",
               "SWITCH_ABC_TYPE_WRITE_REPLACE", "SWITCH_ABC_TYPE_CLOSE", "SMBF_READ_STREAM",
               "SMBF_WRITE_REPLACE", "SMBF_NO_PAUSE", "SMBF_LOCK", "SMBF_PAUSE", "CF_UNICAST", "CF_PARK",
               "SWITCH_API_INTERFACE",
               "SWITCH_RECOMMENDED_BUFFER_SIZE", "SWITCH_EVENT_DTMF", "SWITCH_CAUSE_NORMAL_CLEARING"]

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
    """The prototypes' names that ``handle`` does not export."""
    return [name for name in PROTOTYPES if not hasattr(handle, name)]


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


# -- libc ----------------------------------------------------------------------------
_ssize = ctypes.c_ssize_t
_LIB: Any = None
if os.name == "posix":
    try:
        _LIB = ctypes.PyDLL(None, use_errno=True)
    except OSError:
        _LIB = None


def bind_libc(name: str, argtypes: Sequence[Any], restype: Any = _ssize) -> Optional[Any]:
    """libc's ``name`` with the GIL kept across the call, or None where there is no such call."""
    func = getattr(_LIB, name, None) if _LIB is not None else None
    if func is None:
        return None
    func.argtypes = tuple(argtypes)
    func.restype = restype
    return func


_c = ctypes
# GIL kept: call each only so that it cannot block
libc_send = bind_libc("send", (_c.c_int, _c.c_char_p, _c.c_size_t, _c.c_int))
libc_recv = bind_libc("recv", (_c.c_int, _c.c_void_p, _c.c_size_t, _c.c_int))
libc_sendto = bind_libc("sendto", (_c.c_int, _c.c_char_p, _c.c_size_t, _c.c_int, _c.c_char_p, _c.c_uint32))
libc_recvfrom = bind_libc("recvfrom", (_c.c_int, _c.c_void_p, _c.c_size_t, _c.c_int, _c.c_void_p,
                             _c.POINTER(_c.c_uint32)))
libc_ioctl = bind_libc("ioctl", (_c.c_int, _c.c_ulong, _c.POINTER(_c.c_int)), _c.c_int)


class IoVec(ctypes.Structure):
    _fields_ = [("base", _c.c_void_p), ("len", _c.c_size_t)]


class MsgHdr(ctypes.Structure):
    """struct msghdr (sys/socket.h)."""
    _fields_ = [("name", _c.c_void_p), ("namelen", _c.c_uint32), ("iov", _c.POINTER(IoVec)),
                ("iovlen", _c.c_size_t), ("control", _c.c_void_p), ("controllen", _c.c_size_t),
                ("flags", _c.c_int)]


# recvmsg, for the kernel's receive time of each datagram (SO_TIMESTAMPNS, 35 in
# asm-generic/socket.h; alpha, mips, parisc and sparc number it otherwise), on 64-bit Linux
# (struct cmsghdr of 16 bytes, then a struct timespec of two longs). None elsewhere.
libc_recvmsg = bind_libc("recvmsg", (_c.c_int, _c.POINTER(MsgHdr), _c.c_int)) \
    if sys.platform.startswith("linux") and _c.sizeof(_c.c_size_t) == 8 \
    and os.uname().machine in ("x86_64", "aarch64", "ppc64le", "ppc64", "s390x", "riscv64") else None
SO_TIMESTAMPNS = 35
CMSG_HEADER = 16
# ctypes.memmove gives up the GIL for its copy; on a media thread, getting it back costs more
# than the 320-byte copy itself.
memmove = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                            ctypes.c_size_t)(ctypes._memmove_addr)
_PR_SET_NAME = 15


def name_thread(name: str) -> None:
    """Name the calling OS thread (top -H, /proc), 15 bytes at most; nothing where prctl is missing."""
    try:
        ctypes.CDLL(None).prctl(_PR_SET_NAME, name[:15].encode(), 0, 0, 0)
    except Exception:  # not Linux, or no prctl: names are a convenience
        pass


def malloc_trim() -> bool:
    """Hand glibc's free arena memory back to the OS; False where there is no glibc."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
        return True
    except Exception:
        return False
