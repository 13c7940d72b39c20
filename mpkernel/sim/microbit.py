"""The emulated BBC micro:bit: MicroPython 1.9.2 for the micro:bit V1 under QEMU, on a pty.

`Simulator().start()` boots the real firmware with its UART on a pseudo-terminal that pyserial
opens like a USB serial port (on Windows a loopback TCP port, `socket://127.0.0.1:PORT`), and
a QEMU monitor socket for hard resets. The filesystem lives
in emulated flash: it survives `hard_reset()` and is gone when QEMU exits. Nothing to build.

The firmware .hex is looked for in this order (`find_firmware`):

1. $MPKERNEL_MICROBIT_FIRMWARE, a .hex the user names (a missing file is an error, not a
   reason to take another one silently), else the kernel's config
   `MicroPythonKernel.microbit_firmware` (`configure_firmware`), alike;
2. where the OS's package puts it: Debian's firmware-microbit-micropython;
3. the micro:bit V1 runtime inside the `uflash` package from PyPI (the `microbit` extra),
   the way on Windows and macOS: its universal hex is cut down to the V1 part, which QEMU's
   loader reads, and kept in mpkernel's cache.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mpkernel import platform_support
from mpkernel.sim import cache
from mpkernel.sim._qemu import QemuBoard, SimulatorMissing, find_qemu

FIRMWARE_HEX = Path("/usr/share/firmware-microbit-micropython/firmware.hex")
#: the setting that names a firmware .hex (in the environment, or a kernelspec's "env")
FIRMWARE_ENV = "MPKERNEL_MICROBIT_FIRMWARE"
#: the kernel's traitlets setting that names one (below the environment, as for the port)
FIRMWARE_CONFIG = "MicroPythonKernel.microbit_firmware"
INSTALL_HINT = (
    "Install them with: sudo apt-get install qemu-system-arm firmware-microbit-micropython "
    "(Debian/Ubuntu), or connect a real board with %connect PORT."
)
NOTICE = ("Its filesystem is empty at each start (a kernel restart too): the emulated "
          "micro:bit keeps files only while it runs. Keep your files on this computer "
          "and %put them, or use %connect sim:qemu, which keeps its files.")

# Universal hex (micro:bit V1 and V2 in one file): a block starts with a record of type 0A
# whose data begins with the board ID; V1 boards are 9900 and 9901.
_V1_IDS = ("9900", "9901")
_HEX_LINE = re.compile(r"^:[0-9A-Fa-f]{10,}$")


@dataclass(frozen=True)
class Firmware:
    """A micro:bit firmware .hex and where it came from, as the connect line names it."""

    path: Path
    source: str

    def describe(self) -> str:
        return f"{self.source} ({self.path})"


def v1_hex(text: str) -> str | None:
    """The micro:bit V1 part of an Intel hex as plain Intel hex, or None if it has none.

    A plain (V1-only) hex comes back unchanged. From a universal hex the V1 section's records
    are kept with the extended-address record that opens it; the block markers (0A, 0B), the
    padding (0C) and the other boards' data (0D) go, because QEMU's hex loader knows only the
    standard record types.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or not all(_HEX_LINE.match(line) for line in lines):
        return None
    if not any(line[7:9] == "0A" for line in lines):
        has_data = any(line[7:9] == "00" for line in lines)
        return text if has_data else None
    kept: list[str] = []
    opening = ""  # the last extended-address record outside a block: it opens the next one
    in_v1 = False
    for line in lines:
        kind = line[7:9].upper()
        if kind == "0A":
            in_v1 = line[9:13] in _V1_IDS
            if in_v1 and opening:
                kept.append(opening)
        elif kind == "0B":
            in_v1 = False
        elif in_v1 and kind in ("00", "02", "04", "05"):
            kept.append(line)
        elif not in_v1 and kind in ("02", "04"):
            opening = line
    if not any(line[7:9] == "00" for line in kept):
        return None
    return "\n".join([*kept, ":00000001FF"]) + "\n"


def uflash_firmware(cache_dir: Path | None = None) -> Firmware | None:
    """The micro:bit V1 runtime that the `uflash` package carries, as a .hex file in the cache
    (None without uflash, or if its runtime has no V1 part)."""
    try:
        import uflash  # type: ignore[import-untyped]
    except ImportError:
        return None
    runtime = getattr(uflash, "_RUNTIME", "")
    version = ".".join(str(part) for part in getattr(uflash, "_VERSION", ())) or "?"
    micropython = getattr(uflash, "MICROPYTHON_V1_VERSION", "") or getattr(
        uflash, "MICROPYTHON_VERSION", "")
    text = v1_hex(runtime) if isinstance(runtime, str) else None
    if text is None:
        return None
    folder = cache_dir or cache.cache_root() / "microbit"
    path = folder / f"uflash-{version}-v1.hex"
    if not path.exists() or path.read_text() != text:
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        partial.write_text(text)
        os.replace(partial, path)  # a kernel started meanwhile never reads half a file
    runtime_name = f"micro:bit V1 runtime {micropython}" if micropython else "micro:bit V1 runtime"
    return Firmware(path, f"uflash {version}'s {runtime_name}")


# The firmware the kernel's config names, as (path, the setting's name). Process-wide: the
# emulated micro:bit is started far below the kernel (Board.open_port, %doctor), by code that
# takes no settings, and a kernel process has one configuration.
_configured: tuple[str, str] = ("", FIRMWARE_CONFIG)


def configure_firmware(path: str, setting: str = FIRMWARE_CONFIG) -> None:
    """Name the firmware .hex for the emulated micro:bits this process starts ("" for the
    usual lookup); `setting` is how error messages and the connect line call it.
    $MPKERNEL_MICROBIT_FIRMWARE still wins."""
    global _configured
    _configured = (path.strip(), setting)


def find_firmware(
    env: Mapping[str, str] | None = None,
    places: tuple[Path, ...] | None = None,
    bundled: Callable[[], Firmware | None] | None = None,
    configured: tuple[str, str] | None = None,
) -> Firmware:
    """The firmware to boot, in the order the module's docstring gives; SimulatorMissing with
    this OS's way out when there is none. `configured` is (path, setting name), by default
    what `configure_firmware` was given."""
    env = os.environ if env is None else env
    named, setting = env.get(FIRMWARE_ENV, "").strip(), FIRMWARE_ENV
    if not named:
        named, setting = _configured if configured is None else configured
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise SimulatorMissing(
                f"The emulated micro:bit cannot start: {setting} names {path}, which "
                "does not exist.",
                f"Point {setting} at a micro:bit V1 MicroPython .hex, or unset it to use "
                "an installed one.")
        return Firmware(path, setting)
    for path in platform_support.microbit_firmware_places() if places is None else places:
        if path.is_file():
            return Firmware(path, "Debian's firmware-microbit-micropython")
    found = (bundled or uflash_firmware)()  # looked up now: tests replace it
    if found is not None:
        return found
    raise SimulatorMissing(
        "The emulated board cannot start: missing the micro:bit firmware (MicroPython for "
        "the micro:bit V1, a .hex).",
        platform_support.microbit_firmware_hint(FIRMWARE_ENV),
    )


def check_installed(firmware: Path | None = None) -> str:
    """Return the qemu-system-arm path, or raise SimulatorMissing naming what to install.

    `firmware` checks that one file; None looks for one (`find_firmware`)."""
    try:
        qemu = find_qemu(INSTALL_HINT)
    except SimulatorMissing:
        qemu = ""
    no_firmware: SimulatorMissing | None = None
    try:
        if firmware is None:
            find_firmware()
        elif not Path(firmware).is_file():
            raise SimulatorMissing(
                f"The emulated board cannot start: missing the micro:bit firmware {firmware}.",
                platform_support.microbit_firmware_hint(FIRMWARE_ENV))
    except SimulatorMissing as err:
        no_firmware = err
    if qemu:
        if no_firmware is not None:
            raise no_firmware
        return qemu
    missing = ["qemu-system-arm (package qemu-system-arm)"]
    hint = platform_support.qemu_install_hint(INSTALL_HINT)
    if no_firmware is not None:
        missing.append(f"the micro:bit firmware {firmware}" if firmware else
                       "the micro:bit firmware")
        # On Linux the apt-get line installs both; elsewhere the firmware has its own way.
        if platform_support.system() != "linux":
            hint = f"{hint} {platform_support.microbit_firmware_hint(FIRMWARE_ENV)}"
    raise SimulatorMissing(
        "The emulated board cannot start: missing " + " and ".join(missing) + ".", hint)


class Simulator(QemuBoard):
    """One QEMU micro:bit (MicroPython 1.9.2, 16 KB RAM, a flat ~30 KB filesystem)."""

    name = "microbit"
    label = "the emulated micro:bit"
    notice = NOTICE
    banner = "MicroPython v1.9.2"
    hint = INSTALL_HINT

    def __init__(self, firmware: Path | None = None) -> None:
        super().__init__()
        #: the .hex given, or None to look one up at start (`find_firmware`)
        self.firmware: Path | None = Path(firmware) if firmware else None
        self.firmware_source = ""

    def _find_qemu(self) -> str:
        qemu = check_installed(self.firmware)
        if self.firmware is None:
            found = find_firmware()
            self.firmware, self.firmware_source = found.path, found.describe()
        else:
            self.firmware_source = str(self.firmware)
        # Said on connecting: which firmware this is matters once it can come from three places.
        self.notice = f"{NOTICE} Firmware: {self.firmware_source}."
        return qemu

    def _command(self, qemu: str) -> list[str]:
        return [qemu, "-M", "microbit", "-device", f"loader,file={self.firmware}"]

    def start(self, timeout: float = 10.0) -> Simulator:
        super().start(timeout)
        return self

    def __enter__(self) -> Simulator:
        return self.start()
