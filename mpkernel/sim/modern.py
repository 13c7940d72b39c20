"""The modern emulated board: MicroPython 1.25's qemu port (mps2-an385, a Cortex-M3) under
QEMU, with the board folder in boards/qemu (Ctrl-C, `time`, littlefs, boot.py/main.py,
machine.reset()). Built once by `python -m mpkernel.sim.build`.

Its filesystem lives in a host file mapped as the board's PSRAM: it survives hard resets and
QEMU restarts. By default that file is per user (~/.cache/mpkernel/qemu/flash.bin, or
$MPKERNEL_QEMU_FLASH), like a board left on the desk; `fresh=True` gives a new empty one that
is deleted at stop().

Where QEMU has no memory-backend-file (Windows: it is POSIX-only), platform_support says
'ram': the PSRAM is plain RAM, the file is written into it through QEMU's gdbstub before the
CPU starts (_gdbload) and saved back through the monitor's pmemsave at a hard reset and at
stop(). The file's
format is the same either way; what differs is that a QEMU killed with its kernel loses the
writes made since the last save.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import IO

from mpkernel import platform_support
from mpkernel.errors import MpkernelError
from mpkernel.sim import _gdbload
from mpkernel.sim import cache as build
from mpkernel.sim._qemu import _LOOPBACK, QemuBoard, SimulatorMissing

try:
    import fcntl
except ImportError:  # Windows: no fcntl; msvcrt locks a byte of the file instead
    fcntl = None  # type: ignore[assignment]

PSRAM_SIZE = "16M"  # the mps2-an385's PSRAM, which QEMU requires to be this size
PSRAM_BYTES = 16 * 1024 * 1024
PSRAM_BASE = 0x21000000  # where the mps2-an385 maps it (boards/qemu/_boot.py's littlefs)


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
        #: 'file' or 'ram' (platform_support.qemu_flash_backend), decided at start
        self.flash_backend = "file"
        #: 'ram' backend: whether the saved image is in the board's PSRAM (or there was none)
        self._image_loaded = True

    def _command(self, qemu: str) -> list[str]:
        elf = self.firmware or build.find_firmware()
        if elf is None or not elf.exists():
            raise SimulatorMissing(
                f"{self.label[0].upper()}{self.label[1:]} is not built yet.", self.hint
            )
        self.flash.parent.mkdir(parents=True, exist_ok=True)
        self._hold_flash()
        self.flash_backend = platform_support.qemu_flash_backend()
        if self.flash_backend == "ram":
            memory = ["-object", f"memory-backend-ram,id=psram,size={PSRAM_SIZE}"]
            # The image goes in through the gdbstub before the CPU runs (start() does it), so
            # QEMU starts paused; -device loader would put it back at every reset (_gdbload).
            self._image_loaded = not (self.flash.exists() and self.flash.stat().st_size)
            if not self._image_loaded:
                memory.append("-S")
        else:
            # share=on: the board's writes reach the file, so files outlive QEMU.
            memory = ["-object", f"memory-backend-file,id=psram,size={PSRAM_SIZE},"
                                 f"mem-path={_qemu_option(self.flash)},share=on"]
        return [
            qemu, "-machine", "mps2-an385,memory-backend=psram", *memory,
            "-kernel", str(elf),
            # The firmware reads the host clock (and the port starts up) through semihosting.
            "-semihosting",
        ]

    def save_flash(self) -> None:
        """Write the board's PSRAM to its flash file now ('ram' backend; the 'file' backend
        writes through by itself). The VM is paused for the copy, so the image is one moment
        of the board, as littlefs expects after a power cut, never half of two; the old file
        stays whole until the new one is complete. MpkernelError if QEMU would not save."""
        if self.flash_backend != "ram" or not self.running or not self._image_loaded:
            return  # never save a board whose saved files were not loaded: it would lose them
        partial = Path(os.path.abspath(f"{self.flash}.saving"))  # QEMU's working folder may differ
        was_running = "running" in self.monitor("info status")
        if was_running:
            self.monitor("stop")
        try:
            answer = self.monitor(
                f"pmemsave {PSRAM_BASE:#x} {PSRAM_BYTES} {_hmp_string(str(partial))}",
                timeout=30)
        finally:
            if was_running:
                self.monitor("cont")
        size = partial.stat().st_size if partial.exists() else -1
        if size != PSRAM_BYTES:
            if partial.is_file():
                partial.unlink()
            said = answer.strip().splitlines()[-2:-1] or ["no answer"]  # above the prompt
            raise MpkernelError(
                f"QEMU did not save the board's flash to {partial} ({said[0].strip()}).",
                f"The files written since the last save are not in {self.flash}.")
        os.replace(partial, self.flash)

    def hard_reset(self) -> None:
        """Like pressing the reset button; with the 'ram' backend the flash is saved first, so
        a reset is also a point a killed kernel's files go back to."""
        self.save_flash()
        super().hard_reset()

    def _before_stop(self) -> None:
        try:
            self.save_flash()
        except (MpkernelError, OSError) as err:
            # stop() runs from close() and atexit, where raising would hide the clean-up;
            # the kernel's log (its stderr) keeps the reason.
            print(f"mpkernel: {err}", file=sys.stderr)

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
            for path in (self.flash, Path(f"{self.flash}.lock"), Path(f"{self.flash}.saving")):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass

    def start(self, timeout: float = 10.0) -> ModernBoard:
        try:
            super().start(timeout)
            if not self._image_loaded:
                self._load_image()
        except BaseException:
            self.stop()  # not saved: _image_loaded is still False
            raise
        return self

    def _load_image(self) -> None:
        """'ram' backend: write the flash file into the paused board's PSRAM through a gdbstub
        opened for this on a free loopback port, close it, and let the CPU run."""
        self.monitor(f"gdbserver tcp:{_LOOPBACK}:0")  # port 0: the OS picks a free one
        found = re.search(rf"^gdb: filename=disconnected:tcp:{re.escape(_LOOPBACK)}:(\d+)",
                          self.monitor("info chardev"), re.MULTILINE)
        try:
            if found is None:
                raise MpkernelError("QEMU did not open its gdbstub to load the board's flash.",
                                    f"{self.flash} is unchanged.")
            with open(self.flash, "rb") as image:
                _gdbload.write_memory(int(found.group(1)), PSRAM_BASE, image.read(PSRAM_BYTES))
        except OSError as err:
            raise MpkernelError(f"Could not load {self.flash} into the emulated board: {err}",
                                f"{self.flash} is unchanged.") from err
        finally:
            self.monitor("gdbserver none")
        self._image_loaded = True
        self.monitor("cont")

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


def _hmp_string(text: str) -> str:
    """`text` quoted for the human monitor: spaces (C:\\Users\\Jo Smith) stay in one argument,
    and backslashes, which the monitor reads as escapes inside quotes, are doubled."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _qemu_option(path: Path) -> str:
    """A path as a value in QEMU's key=value,... options: a comma is written twice."""
    return str(path).replace(",", ",,")
