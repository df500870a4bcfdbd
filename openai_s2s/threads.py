"""A worker thread that exists only while it has work: the uplink pump and the unicast media loop.

Both serve every call from one thread, and neither may leave a thread behind when the last
call ends (``status`` counts the module's threads, and an idle switch should show none). The
thread ends under the owner's lock once there is no work, so work added after that, under the
same lock, starts a new one: none is ever lost between the two.
"""
from __future__ import annotations

import threading
from typing import Callable, Optional

from . import native


class OnDemandThread:
    def __init__(self, name: str, lock: threading.Lock, has_work: Callable[[], bool],
                 step: Callable[[], None], on_exit: Optional[Callable[[], None]] = None):
        self.name = name
        self._lock = lock            # the owner's: guards its work and this thread's start and end
        self._has_work = has_work
        self._step = step
        self._on_exit = on_exit
        self.thread: Optional[threading.Thread] = None

    def start(self) -> None:
        """Start the thread if none runs; the caller holds the lock and has just added work."""
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, daemon=True, name=self.name)
            self.thread.start()

    @property
    def running(self) -> bool:
        with self._lock:
            return self.thread is not None

    def _run(self) -> None:
        native.name_thread(self.name)
        while True:
            with self._lock:
                if not self._has_work():
                    self.thread = None   # under the lock: start() makes a new thread after this
                    break
            self._step()
        if self._on_exit is not None:
            self._on_exit()
