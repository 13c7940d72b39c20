"""The relay's wire: one direction's pacing (line rate, latency) and the fd-level helpers.

`Pipe` schedules what one side wrote by the line's rate and one-way latency and hands it over
in its own thread, order kept; `open_board`, `write_all` and `drain` are the raw,
non-blocking fd work the relay and the benchmarks do on QEMU's pty.
"""

from __future__ import annotations

import collections
import os
import select
import threading
import time
import tty
from collections.abc import Callable


class Pipe:
    """One direction: schedules chunks by line rate and latency, delivers them in a thread."""

    SLICE_SECONDS = 0.002  # pace a throttled stream in ~2 ms slices so short windows are smooth

    def __init__(self, name: str, deliver: Callable[[bytes], None]) -> None:
        self.name = name
        self.rate: float | None = None
        self.latency = 0.0
        self.piece = 0  # bytes handed over at a time on a throttled line (0: a slice's worth)
        self._deliver = deliver
        self._queue: collections.deque[tuple[float, float, bytes]] = collections.deque()
        self._cond = threading.Condition()
        self._line_free = 0.0  # when the simulated wire finishes sending what is queued
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"relay-{name}", daemon=True)
        self._thread.start()

    def put(self, data: bytes) -> None:
        if not data:
            return
        with self._cond:
            now = time.monotonic()
            if self.rate:
                step = self.piece or max(1, int(self.rate * self.SLICE_SECONDS))
                start = max(now, self._line_free)
                for i in range(0, len(data), step):
                    piece = data[i : i + step]
                    start += len(piece) / self.rate
                    self._queue.append((start, start + self.latency, piece))
                self._line_free = start
            else:
                self._queue.append((now, now + self.latency, data))
            self._cond.notify()

    def clear(self) -> int:
        """Drop everything in flight (the cable was pulled); return how many bytes."""
        with self._cond:
            dropped = sum(len(p) for _, _, p in self._queue)
            self._queue.clear()
            self._line_free = 0.0
        return dropped

    def discard_untransmitted(self) -> int:
        """Drop bytes not yet on the wire: a rate-limited real board never printed them."""
        with self._cond:
            now = time.monotonic()
            keep = [item for item in self._queue if item[0] <= now]
            dropped = sum(len(p) for _, _, p in self._queue) - sum(len(p) for _, _, p in keep)
            self._queue = collections.deque(keep)
            self._line_free = min(self._line_free, now)
        return dropped

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    if self._queue:
                        wait = self._queue[0][1] - time.monotonic()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)  # a latency queue waits until the head is due
                    else:
                        self._cond.wait()
                if self._stopping:
                    return
                now = time.monotonic()
                late = now - self._queue[0][1]
                if self.rate and late > self.SLICE_SECONDS:
                    # This thread ran late (a busy host). A wire never delivers a backlog
                    # faster than its rate: it was idle meanwhile, so what is queued moves
                    # later by that much. (Delivering it at once burst hundreds of bytes into
                    # the emulated micro:bit's 63-byte receive ring, a loss no real board sees.)
                    self._queue = collections.deque(
                        (start + late, due + late, piece) for start, due, piece in self._queue)
                    self._line_free += late
                # Coalesce everything already due into one write: fewer syscalls, same order.
                parts = []
                while self._queue and self._queue[0][1] <= now:
                    parts.append(self._queue.popleft()[2])
            self._deliver(b"".join(parts))

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout=5)


def open_board(pty_path: str) -> int:
    """Open the board's pty raw and non-blocking (a pty starts cooked: echo, CR/LF mangling)."""
    fd = os.open(pty_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    return fd


def write_all(fd: int, data: bytes, stopping: Callable[[], bool], patience: float = 2.0) -> bool:
    """Write everything to a non-blocking fd; give up (False) if it stays full for `patience`."""
    view = memoryview(data)
    while view:
        _, writable, _ = select.select([], [fd], [], patience)
        if not writable or stopping():
            return False
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            continue
        except OSError:
            return False
    return True


def drain(fd: int) -> int:
    """Read away what is waiting on a non-blocking fd; return how many bytes."""
    dropped = 0
    while True:
        try:
            data = os.read(fd, 4096)
        except (BlockingIOError, OSError):
            return dropped
        if not data:
            return dropped
        dropped += len(data)
