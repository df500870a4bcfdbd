"""``file://NAME`` instructions and tools: files the operator put in instructions-dir, read safely.

The name comes from a client event or a channel variable, so it is not trusted: it must stay
inside the directory, name a regular file (a FIFO would hang the API thread that reads it, a
device could be endless), and a symlink swapped in after the check is not followed.
"""
from __future__ import annotations

import os
import stat
from typing import Optional

MAX_BYTES = 1 << 20


class InstructionsError(ValueError):
    """The file cannot be used; the message is for the -ERR line."""


def read_instructions(name: str, directory: Optional[str]) -> str:
    if not directory:
        raise InstructionsError("file:// instructions need instructions-dir in openai_s2s.conf.xml")
    if "\0" in name:
        raise InstructionsError("the instructions file name holds a NUL")
    shown = repr(name[:200])
    base = os.path.realpath(directory)
    path = os.path.realpath(os.path.join(base, name))
    if not name or os.path.isabs(name) or not path.startswith(base + os.sep):
        raise InstructionsError(f"instructions file {shown} is outside the instructions directory")
    try:
        # O_NOFOLLOW: a symlink put in place after realpath() looked is refused, not followed;
        # O_NONBLOCK: opening a FIFO does not wait for a writer (fstat then refuses it).
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InstructionsError(f"instructions file {shown}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InstructionsError(f"instructions file {shown} is not a regular file")
        data = os.read(fd, MAX_BYTES + 1)
        while len(data) <= MAX_BYTES:
            more = os.read(fd, MAX_BYTES + 1 - len(data))
            if not more:
                break
            data += more
    except OSError as exc:
        raise InstructionsError(f"instructions file {shown}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise InstructionsError(f"instructions file {shown} is larger than {MAX_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InstructionsError(f"instructions file {shown} is not UTF-8") from None
