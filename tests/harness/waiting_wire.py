"""A wire that waits for the emulated board: what a real serial line does for a real board.

The relay normally writes into QEMU's pty at line rate whether or not QEMU is running; while
a busy host keeps QEMU off the CPU the bytes pile up there, and when it runs again they reach
the board far faster than any serial line carries them, overflowing the micro:bit's 63-byte
receive ring. A real board never stops running, so its wire never piles up. This wire makes
the pty itself (QEMU gets its other end), keeps at most 8 bytes waiting for QEMU to read, and
paces what follows at line rate from when it was actually handed over, as a wire that stood
still while the board did. Used by bench/stream_losses.py and bench/bench_files.py
(`--wire-waits`) to tell the emulator's share of the losses from mpkernel's. Linux only
(FIONREAD on the pty).
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import termios
import time
import tty

from harness.relay import Relay
from mpkernel.sim import Simulator


def wait_until_answering(sim: Simulator, relay: Relay) -> None:
    deadline = time.monotonic() + 15
    # QEMU passes input only ~1 s after its pty was first opened: ask until it answers.
    while not relay.sync_board(timeout=1.5):
        if time.monotonic() > deadline:
            raise SystemExit(f"{sim.label} did not answer")


class PtyWeMade(Simulator):
    """The emulated micro:bit with its UART on the slave end of a pty this process opened.

    The slave's path goes first among QEMU's serial options, so it is the board's UART; the
    `-serial pty` the base class adds becomes a second serial port the micro:bit lacks."""

    def __init__(self, slave: str) -> None:
        super().__init__()
        self.slave = slave

    def _command(self, qemu: str) -> list[str]:
        return super()._command(qemu) + ["-serial", self.slave]


class WireThatWaits(Relay):
    """Hands the board its bytes 8 at a time, each only when at most WAITING are still unread
    by QEMU, and never faster than the line rate from the moment it was handed over.

    The pacing is its own, not the relay's pipe with a piece of 8: that pipe writes every piece
    already due in one go and re-paces only after running over 2 ms late, and with it the
    board lost bytes in 31 frames of 8 busy uploads against 4 with this (0.47 against 0.54)."""

    WAITING = 8
    PIECE = 8
    PATIENCE = 2.0  # s: QEMU not reading for this long is a stopped board; write anyway

    def __init__(self, board: Simulator, master: int, slave_fd: int) -> None:
        self._slave_fd = slave_fd
        self._next_free = 0.0
        super().__init__(board, board_fd=master)

    def _unread(self) -> int:
        return struct.unpack("i", fcntl.ioctl(self._slave_fd, termios.FIONREAD, b"\0" * 4))[0]

    def _write_board(self, data: bytes) -> bool:
        rate = self.to_board.rate
        for i in range(0, len(data), self.PIECE):
            piece = data[i : i + self.PIECE]
            deadline = time.monotonic() + self.PATIENCE
            while self._unread() > self.WAITING and time.monotonic() < deadline:
                time.sleep(0.0003)  # modelling a wire: nothing to read to, only a count
            if rate:
                now = time.monotonic()
                if now < self._next_free:
                    time.sleep(self._next_free - now)
                self._next_free = max(now, self._next_free) + len(piece) / rate
            if not super()._write_board(piece):
                return False
        return True


def start_waiting_wire() -> tuple[Simulator, Relay, int]:
    master, slave = pty.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    os.set_blocking(master, False)
    sim = PtyWeMade(os.ttyname(slave))
    sim.start()
    relay = WireThatWaits(sim, master, slave)
    wait_until_answering(sim, relay)
    return sim, relay, master
