"""The emulated BBC micro:bit: Debian's MicroPython 1.9.2 firmware under QEMU, on a pty.

`Simulator().start()` boots the real firmware with its UART on a pseudo-terminal that pyserial
opens like a USB serial port (on Windows a loopback TCP port, `socket://127.0.0.1:PORT`), and
a QEMU monitor socket for hard resets. The filesystem lives
in emulated flash: it survives `hard_reset()` and is gone when QEMU exits. Nothing to build.
"""

from __future__ import annotations

from pathlib import Path

from mpkernel import platform_support
from mpkernel.sim._qemu import QemuBoard, SimulatorMissing, find_qemu

FIRMWARE_HEX = Path("/usr/share/firmware-microbit-micropython/firmware.hex")
INSTALL_HINT = (
    "Install them with: sudo apt-get install qemu-system-arm firmware-microbit-micropython "
    "(Debian/Ubuntu), or connect a real board with %connect PORT."
)


def check_installed(firmware: Path = FIRMWARE_HEX) -> str:
    """Return the qemu-system-arm path, or raise SimulatorMissing naming what to install."""
    missing = []
    try:
        qemu = find_qemu(INSTALL_HINT)
    except SimulatorMissing:
        qemu = ""
        missing.append("qemu-system-arm (package qemu-system-arm)")
    if not firmware.exists():
        missing.append(f"the micro:bit firmware {firmware} (package firmware-microbit-micropython)")
    if missing:
        raise SimulatorMissing(
            "The emulated board cannot start: missing " + " and ".join(missing) + ".",
            INSTALL_HINT if qemu else platform_support.qemu_install_hint(INSTALL_HINT),
        )
    return qemu


class Simulator(QemuBoard):
    """One QEMU micro:bit (MicroPython 1.9.2, 16 KB RAM, a flat ~30 KB filesystem)."""

    name = "microbit"
    label = "the emulated micro:bit"
    notice = ("Its filesystem is empty at each start (a kernel restart too): the emulated "
              "micro:bit keeps files only while it runs. Keep your files on this computer "
              "and %put them, or use %connect sim:qemu, which keeps its files.")
    banner = "MicroPython v1.9.2"
    hint = INSTALL_HINT

    def __init__(self, firmware: Path = FIRMWARE_HEX) -> None:
        super().__init__()
        self.firmware = Path(firmware)

    def _find_qemu(self) -> str:
        return check_installed(self.firmware)

    def _command(self, qemu: str) -> list[str]:
        return [qemu, "-M", "microbit", "-device", f"loader,file={self.firmware}"]

    def start(self, timeout: float = 10.0) -> Simulator:
        super().start(timeout)
        return self

    def __enter__(self) -> Simulator:
        return self.start()
