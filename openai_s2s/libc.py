"""libc calls that keep the GIL.

ctypes.CDLL, like the socket module and fcntl, gives the GIL up around every foreign call. In
the switch, getting it back means queueing behind the media threads and every other Python
thread, which costs more than a non-blocking send or recv, or an ioctl, takes. The few calls on
the module's busy paths (the uplink's send, the receiver's recv, the unicast loop's datagrams,
the underrun check's FIONREAD) are bound here through ctypes.PyDLL instead, which keeps it.
Each must only ever be called so that it cannot block (MSG_DONTWAIT, or an ioctl that asks).
"""
from __future__ import annotations

import ctypes
import os
from typing import Any, Optional, Sequence

_ssize = ctypes.c_ssize_t
_LIB: Any = None
if os.name == "posix":
    try:
        _LIB = ctypes.PyDLL(None, use_errno=True)
    except OSError:
        _LIB = None


def bind(name: str, argtypes: Sequence[Any], restype: Any = _ssize) -> Optional[Any]:
    """libc's ``name`` with the GIL kept across the call, or None where there is no such call."""
    func = getattr(_LIB, name, None) if _LIB is not None else None
    if func is None:
        return None
    func.argtypes = tuple(argtypes)
    func.restype = restype
    return func


_c = ctypes
send = bind("send", (_c.c_int, _c.c_char_p, _c.c_size_t, _c.c_int))
recv = bind("recv", (_c.c_int, _c.c_void_p, _c.c_size_t, _c.c_int))
sendto = bind("sendto", (_c.c_int, _c.c_char_p, _c.c_size_t, _c.c_int, _c.c_char_p, _c.c_uint32))
recvfrom = bind("recvfrom", (_c.c_int, _c.c_void_p, _c.c_size_t, _c.c_int, _c.c_void_p,
                             _c.POINTER(_c.c_uint32)))
ioctl = bind("ioctl", (_c.c_int, _c.c_ulong, _c.POINTER(_c.c_int)), _c.c_int)
