"""A busy host, reproducibly: pause the emulator's process for a few milliseconds at random
(seeded) moments, as a scheduler does when another program wants the same cores.

On a busy machine the emulated micro:bit loses input bytes: while QEMU is not scheduled the
line keeps delivering into its pty, and when it runs again the bytes reach the board far
faster than a serial line could carry them, overflowing its 63-byte receive ring. A real
board never sees such bursts (its wire paces every byte), so this is a fault of the test
bed, but one that CI machines and classroom laptops running the emulator meet. Pausing
QEMU with SIGSTOP/SIGCONT produces exactly that mechanism at a chosen, repeatable rate, so
transfer strategies can be compared without depending on what else the machine is doing.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time


class Staller:
    """Pause process `pid` `rate` times a second on average, each pause `low`..`high` s."""

    def __init__(self, pid: int, rate: float, low: float = 0.006, high: float = 0.030,
                 seed: int = 1) -> None:
        self.pid, self.rate, self.low, self.high = pid, rate, low, high
        self.random = random.Random(seed)
        self.pauses = 0
        self.paused_for = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="staller", daemon=True)

    def __enter__(self) -> Staller:
        if self.rate > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.random.expovariate(self.rate)):
            pause = self.random.uniform(self.low, self.high)
            try:
                os.kill(self.pid, signal.SIGSTOP)
                time.sleep(pause)
            finally:
                os.kill(self.pid, signal.SIGCONT)
            self.pauses += 1
            self.paused_for += pause
