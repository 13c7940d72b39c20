"""Emulated boards under QEMU, behind one interface (start(), pty_path, monitor(),
hard_reset(), stop(), running, wait(), context manager):

- "microbit" (the default): MicroPython 1.9.2 for the BBC micro:bit V1. Nothing to build:
  the firmware is $MPKERNEL_MICROBIT_FIRMWARE, Debian's firmware-microbit-micropython, or
  the runtime inside the `uflash` package (Windows, macOS), in that order (microbit.py).
- "qemu": MicroPython 1.25's qemu port with mpkernel's board folder (modern.py), built once
  with `mpkernel sim --build`.

`simulator_for(name)` makes one (not started); `start_simulator(name)` starts it. On Windows
the UART and monitor are loopback TCP ports and the modern board's flash is loaded and saved
through QEMU instead of mapped (platform_support decides both).
"""

from __future__ import annotations

from mpkernel.sim._qemu import QemuBoard, SimulatorMissing
from mpkernel.sim.microbit import FIRMWARE_HEX, INSTALL_HINT, Simulator, check_installed
from mpkernel.sim.modern import ModernBoard

#: name -> board class; the first is the default
BOARDS: dict[str, type[QemuBoard]] = {"microbit": Simulator, "qemu": ModernBoard}
DEFAULT_BOARD = "microbit"

__all__ = [
    "BOARDS", "DEFAULT_BOARD", "FIRMWARE_HEX", "INSTALL_HINT", "ModernBoard", "QemuBoard",
    "Simulator", "SimulatorMissing", "check_installed", "simulator_for", "start_simulator",
]


def simulator_for(name: str = "") -> QemuBoard:
    """A new, not yet started emulated board by registry name ("" for the default)."""
    cls = BOARDS.get(name or DEFAULT_BOARD)
    if cls is None:
        raise SimulatorMissing(
            f"There is no emulated board called {name!r}.",
            "The emulated boards are: " + ", ".join(
                f"{key} ({board.label})" for key, board in BOARDS.items()
            ) + ".",
        )
    return cls()


def start_simulator(name: str = "", timeout: float = 10.0) -> QemuBoard:
    """Start the emulated board `name` and return it (its UART is at .pty_path)."""
    return simulator_for(name).start(timeout)
