"""Wakes runners that wait on other manager processes, through PostgreSQL LISTEN/NOTIFY.

Several managers behind one PostgreSQL each hold their own long-polling runners. A process
that makes work runnable tells the others on one channel; each wakes as many of its own
waiting runners. Callers notify after their commit, so the others see the work when they
look. A lost notification (a dropped connection) costs at most the claim's periodic
re-look (5 s); the connections come back by themselves.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Callable

import psycopg
from sqlalchemy import URL

log = logging.getLogger(__name__)

CHANNEL = "framefarm_work"
RECONNECT_SECONDS = 2.0


def libpq_conninfo(url: URL) -> str:
    """The libpq connection string of a SQLAlchemy ``postgresql+psycopg://`` URL."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresWorkRelay:
    """Sends this process's wake-ups to the other managers and hands theirs to ``wake``."""

    def __init__(self, conninfo: str, wake: Callable[[int | None], None]) -> None:
        self._conninfo = conninfo
        self._wake = wake
        self._sender = uuid.uuid4().hex[:12]
        self._outbox: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._send_forever, name="work-relay-send", daemon=True),
            threading.Thread(target=self._listen_forever, name="work-relay-listen", daemon=True),
        ]
        self.listening = threading.Event()
        """Set while the listening connection is up (tests wait for it)."""

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._outbox.put(None)
        for thread in self._threads:
            thread.join(timeout=5)

    def publish(self, count: int | None) -> None:
        """Tell the other managers that ``count`` tasks (None: any) may be runnable now."""
        self._outbox.put(f"{self._sender}:{'any' if count is None else count}")

    def _send_forever(self) -> None:
        conn: psycopg.Connection | None = None
        try:
            while (payload := self._outbox.get()) is not None:
                try:
                    if conn is None or conn.closed:
                        conn = psycopg.connect(self._conninfo, autocommit=True)
                    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
                except psycopg.Error as exc:
                    log.warning("could not tell other managers about new work: %s", exc)
                    if conn is not None:
                        conn.close()
                    conn = None
        finally:
            if conn is not None:
                conn.close()

    def _listen_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    while not self._stopping.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._received(note.payload)
            except psycopg.Error as exc:
                log.warning("listening for other managers' work failed (%s); retrying", exc)
            self.listening.clear()
            self._stopping.wait(RECONNECT_SECONDS)

    def _received(self, payload: str) -> None:
        sender, _, count = payload.partition(":")
        if sender == self._sender:
            return  # this process woke its own runners already
        self._wake(None if count == "any" else int(count))
