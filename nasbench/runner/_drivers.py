"""Many drivers on one study: who a driver is, whether one is alive, and the heartbeats that say so.

A driver (one ``nasbench search`` process) reserves each genome it evaluates as a RUNNING trial
carrying ``driver`` (``host:pid``) and a ``heartbeat`` (epoch seconds) that a background thread
renews every ``heartbeat_seconds()``. A reservation is dead when its driver is a process of this
machine that no longer exists, or when its heartbeat is older than ``STALE_BEATS`` beats (another
machine's driver that stopped). Dead reservations go back to the search.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["HEARTBEAT_KEY", "INCARNATION_KEY", "STALE_BEATS", "Heartbeat", "driver_id", "driver_alive",
           "heartbeat_seconds", "incarnation"]

logger = logging.getLogger(__name__)

#: User attribute of a reserved trial (and of a supernet lease): the last heartbeat, epoch seconds.
HEARTBEAT_KEY = "heartbeat"
#: User attribute naming the process behind a ``driver`` id (a restarted container reuses host and PID).
INCARNATION_KEY = "driver_incarnation"
#: This process's incarnation: unique per process start.
_INCARNATION = uuid.uuid4().hex
#: Heartbeats a driver may miss before its reservations count as abandoned.
STALE_BEATS = 6
#: Seconds between heartbeats unless ``NASBENCH_HEARTBEAT_SECONDS`` says otherwise.
DEFAULT_HEARTBEAT_SECONDS = 10.0


def heartbeat_seconds() -> float:
    """Seconds between heartbeats: ``NASBENCH_HEARTBEAT_SECONDS`` or 10 (stale after 6 missed)."""
    try:
        value = float(os.environ.get("NASBENCH_HEARTBEAT_SECONDS", DEFAULT_HEARTBEAT_SECONDS))
    except ValueError:
        value = DEFAULT_HEARTBEAT_SECONDS
    return value if value > 0 else DEFAULT_HEARTBEAT_SECONDS


def driver_id() -> str:
    """This process as a driver: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def incarnation() -> str:
    """This process's incarnation token (with ``driver_id``, tells a restarted container's new process from its old one)."""
    return _INCARNATION


def driver_alive(driver: str | None, heartbeat: float | None, now: float | None = None,
                 token: str | None = None) -> bool:
    """Whether the driver ``host:pid`` (incarnation ``token``), last heartbeat ``heartbeat``, may still be working.

    This process: alive if ``token`` is its own (else it is a dead predecessor with the same host and
    PID, as after a container restart). Another process of this machine: dead as soon as it is gone.
    Otherwise: alive while its heartbeat is within ``STALE_BEATS`` beats (machines' clocks are
    assumed to agree within that, as NTP keeps them).
    """
    now = time.time() if now is None else now
    fresh = heartbeat is not None and now - float(heartbeat) <= STALE_BEATS * heartbeat_seconds()
    if driver == driver_id():
        return token is None or token == _INCARNATION
    host, _, pid = (driver or "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's live process
            return fresh
        return _not_zombie(int(pid)) and (fresh or heartbeat is None)
    return fresh


def _not_zombie(pid: int) -> bool:
    """False for a process that has exited but whose parent has not reaped it yet (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class Heartbeat:
    """A daemon thread that calls every registered ``beat()`` each ``interval`` seconds.

    Beats run on their own storage connection (``open_storage`` of the same URL), so the
    driver's own connection is never used from two threads. A beat that fails is logged and
    retried at the next interval.
    """

    def __init__(self, make_storage: Callable[[], Any], interval: float | None = None) -> None:
        self.interval = heartbeat_seconds() if interval is None else interval
        self._make_storage = make_storage
        self._beats: dict[Any, Callable[[Any], bool | None]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, key: Any, beat: Callable[[Any], bool | None]) -> None:
        """Call ``beat(storage)`` every interval until ``remove(key)`` or it returns False; starts the thread."""
        with self._lock:
            self._beats[key] = beat
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="nasbench-heartbeat", daemon=True)
                self._thread.start()

    def remove(self, key: Any) -> None:
        """Stop beating for ``key``."""
        with self._lock:
            self._beats.pop(key, None)

    def keys(self) -> list[Any]:
        """The keys beating now."""
        with self._lock:
            return list(self._beats)

    def stop(self) -> None:
        """Stop the thread (beats end)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        storage = None
        while not self._stop.wait(self.interval):
            with self._lock:
                beats = list(self._beats.items())
            if not beats:
                continue
            try:
                storage = storage or self._make_storage()
            except Exception as exc:  # a beat must never kill the driver; the next one retries
                logger.warning("heartbeat cannot reach the storage (%s); retrying in %.0f s", exc, self.interval)
                continue
            for key, beat in beats:
                try:  # one by one: a reservation that ended must not silence the others
                    if beat(storage) is False:
                        self.remove(key)
                except Exception as exc:
                    logger.warning("heartbeat of %s failed (%s); retrying in %.0f s", key, exc, self.interval)
