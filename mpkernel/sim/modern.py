"""The modern emulated board: MicroPython 1.25's qemu port (mps2-an385, a Cortex-M3) under
QEMU, with the board folder in boards/qemu (Ctrl-C, `time`, littlefs, boot.py/main.py,
machine.reset()). Built once by `python -m mpkernel.sim.build`.

Its filesystem lives in a host file mapped as the board's PSRAM: it survives hard resets and
QEMU restarts. By default that file is per user (~/.cache/mpkernel/qemu/flash.bin, or
$MPKERNEL_QEMU_FLASH), like a board left on the desk; `fresh=True` gives a new empty one that
is deleted at stop().
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from mpkernel.errors import MpkernelError
from mpkernel.sim import cache as build
from mpkernel.sim._qemu import QemuBoard, SimulatorMissing

try:
    import fcntl
except ImportError:  # Windows: no fcntl; msvcrt locks a byte of the file instead
    fcntl = None  # type: ignore[assignment]

PSRAM_SIZE = "16M"  # the mps2-an385's PSRAM, which QEMU requires to be this size


class ModernBoard(QemuBoard):
    """One QEMU mps2-an385 running MicroPython 1.25 (about 140 KB of heap, littlefs at /)."""

    name = "qemu"
    label = "the emulated MicroPython 1.25 board"
    banner = "MicroPython v1.25.0"
    hint = f"Build it once with: {build.BUILD_COMMAND} (about a minute; needs {build.TOOLCHAIN})."

    def __init__(
        self,
        flash: str | Path | None = None,
        *,
        fresh: bool = False,
        firmware: str | Path | None = None,
    ) -> None:
        super().__init__()
        if fresh and flash is not None:
            raise ValueError("give a flash file or fresh=True, not both")
        self.fresh = fresh
        default = os.environ.get("MPKERNEL_QEMU_FLASH") or build.cache_root() / "qemu" / "flash.bin"
        self.flash = Path(flash) if flash else (self._dir / "flash.bin" if fresh else Path(default))
        self.firmware = Path(firmware) if firmware else None
        self._lock: IO[bytes] | None = None

    def _command(self, qemu: str) -> list[str]:
        elf = self.firmware or build.find_firmware()
        if elf is None or not elf.exists():
            raise SimulatorMissing(
                f"{self.label[0].upper()}{self.label[1:]} is not built yet.", self.hint
            )
        self.flash.parent.mkdir(parents=True, exist_ok=True)
        self._hold_flash()
        return [
            qemu, "-machine", "mps2-an385,memory-backend=psram",
            # share=on: the board's writes reach the file, so files outlive QEMU.
            "-object", f"memory-backend-file,id=psram,size={PSRAM_SIZE},"
                       f"mem-path={self.flash},share=on",
            "-kernel", str(elf),
            # The firmware reads the host clock (and the port starts up) through semihosting.
            "-semihosting",
        ]

    def _hold_flash(self) -> None:
        """One QEMU per flash file: two writing the same littlefs would corrupt it."""
        lock = open(f"{self.flash}.lock", "wb")  # held while QEMU runs
        if not _try_lock(lock):
            lock.close()
            raise MpkernelError(
                f"The flash file {self.flash} is in use by another emulated board.",
                "Stop that one (mpkernel sim, another notebook), or give this one its own.",
            ) from None
        self._lock = lock

    def _stopped(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        if self.fresh:
            for path in (self.flash, Path(f"{self.flash}.lock")):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass

    def start(self, timeout: float = 10.0) -> ModernBoard:
        try:
            super().start(timeout)
        except BaseException:
            self._stopped()
            raise
        return self

    def __enter__(self) -> ModernBoard:
        return self.start()


def _try_lock(lock: IO[bytes]) -> bool:
    """Lock `lock` for this process without waiting; False if another holds it."""
    if fcntl is not None:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    import msvcrt

    try:
        msvcrt.locking(lock.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
    except OSError:
        return False
    return True
