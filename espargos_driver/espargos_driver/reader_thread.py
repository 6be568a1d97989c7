"""A reader thread that is never silently dead (no ROS): shared by the board links and the swarm sources."""
from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable


class ReaderThread:
    """Runs ``_run`` on a daemon thread until ``stop``. A thread that ended while it should still
    run (not stopped, input not finished) is ``dead``; ``restart_if_dead`` starts a new one and
    counts it as ``reader_restarts``. Subclasses set ``state_detail`` for the log line."""

    join_timeout_s = 10.0

    def __init__(self, thread_name: str, counters: Counter, log: Callable[[str], None]) -> None:
        self.thread_name, self.counters, self.log = thread_name, counters, log
        self.state_detail = ""
        self._stop = threading.Event()
        self._thread = self._new_thread()

    def _new_thread(self) -> threading.Thread:
        return threading.Thread(target=self._run, name=self.thread_name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.join_timeout_s)

    def finished(self) -> bool:
        """Whether the reader ended on purpose (e.g. a file read to its end); never, by default."""
        return False

    @property
    def dead(self) -> bool:
        """The thread was started, not asked to stop, did not finish, and is gone."""
        return (self._thread.ident is not None and not self._thread.is_alive() and not self._stop.is_set()
                and not self.finished())

    def restart_if_dead(self) -> bool:
        """Start a new thread if the running one died; True if it did."""
        if not self.dead:
            return False
        self.counters["reader_restarts"] += 1
        self.log(f"{self.thread_name}: reader thread had died ({self.state_detail}); restarting it")
        self._thread = self._new_thread()
        self._thread.start()
        return True

    def _run(self) -> None:
        raise NotImplementedError
