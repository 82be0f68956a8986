"""Locks of the embedded store: a readers-writer lock between searches and index changes, and a
lock file so that one process at a time owns a store directory."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aifab.errors import Conflict


class ReadWriteLock:
    """Many readers or one writer, phase-fair: a waiting writer holds back new readers (a stream of
    queries cannot starve an upsert), and readers that waited through a write go before the next write
    (a writer that takes the lock again and again, chunk after chunk, cannot starve queries either).
    Not re-entrant."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._readers_waiting = 0
        self._readers_turn = False
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            self._readers_waiting += 1
            try:
                while self._writer or (self._writers_waiting and not self._readers_turn):
                    self._cond.wait()
            finally:
                self._readers_waiting -= 1
            self._readers += 1
            if not self._readers_waiting:
                self._readers_turn = False  # every reader that waited is in: writers may queue again
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers or self._readers_turn:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._readers_turn = self._readers_waiting > 0
                self._cond.notify_all()


class DirectoryLock:
    """An exclusive ``flock`` on ``<dir>/LOCK``: the in-memory index is only right for the one process
    that writes, so a second process opening the same store gets ``Conflict`` instead of stale results.
    The kernel releases it when the process dies, however it dies."""

    def __init__(self, directory: Path) -> None:
        self._fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise Conflict(f"the store at {directory} is open in another process (or another EmbeddedStore)") from None

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = -1
