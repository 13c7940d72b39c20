"""Serial ports: list them, name the boards behind them, pick one, and find who holds one.

A board is identified by its USB identity (VID, PID, serial number), not its device path:
native-USB boards (ESP32-S2/S3/C3/C6, RP2040) drop off the bus on reset and may come back
under another name. `find_by_identity` maps an identity back to today's path.

The lister is injectable everywhere so tests can pass fake `ListPortInfo`-shaped objects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from mpkernel import platform_support as plat
from mpkernel.errors import PortError

Lister = Callable[[], Iterable[Any]]


def choose_hint() -> str:
    """How to choose a port, with an example in this OS's own spelling."""
    return (f"Choose one with %connect PORT (e.g. %connect {plat.example_port()}), or set "
            "MPKERNEL_PORT=PORT, or start the kernel with --MicroPythonKernel.port=PORT. "
            "%connect sim uses the emulated micro:bit.")

# (VID, PID) -> what the port most likely is. Values checked against vendor headers,
# MicroPython board configs and tools that ship similar tables; a guess, never a promise.
KNOWN_DEVICES: dict[tuple[int, int], str] = {
    # Espressif native USB: the built-in USB-Serial/JTAG of ESP32-S3/C3/C6/H2, the ESP32-S2
    # ROM's USB CDC, and the TinyUSB CDC that MicroPython uses on ESP32-S2/S3.
    (0x303A, 0x1001): "Espressif native USB (USB-Serial/JTAG: ESP32-S3/C3/C6/H2)",
    (0x303A, 0x0002): "Espressif ESP32-S2 native USB (ROM bootloader)",
    (0x303A, 0x4001): "Espressif native USB CDC (ESP32-S2/S3, e.g. MicroPython)",
    # USB-UART bridges on ESP32/ESP8266 dev boards and many others.
    (0x10C4, 0xEA60): "Silicon Labs CP210x USB-UART (ESP32/ESP8266 dev board?)",
    (0x10C4, 0xEA70): "Silicon Labs CP2105 dual USB-UART",
    (0x1A86, 0x7523): "WCH CH340 USB-UART (ESP32/ESP8266 dev board?)",
    (0x1A86, 0x7522): "WCH CH340K USB-UART",
    (0x1A86, 0x5523): "WCH CH341 USB-UART",
    (0x1A86, 0x55D4): "WCH CH9102 USB-UART (ESP32 dev board?)",
    (0x1A86, 0x55D3): "WCH CH343 USB-UART",
    (0x1A86, 0x55D2): "WCH CH342 dual USB-UART",
    (0x0403, 0x6001): "FTDI FT232R USB-UART",
    (0x0403, 0x6010): "FTDI FT2232 dual USB-UART (ESP-Prog, ESP-WROVER-KIT?)",
    (0x0403, 0x6011): "FTDI FT4232 quad USB-UART",
    (0x0403, 0x6014): "FTDI FT232H USB-UART",
    (0x0403, 0x6015): "FTDI FT230X/FT231X USB-UART",
    (0x067B, 0x2303): "Prolific PL2303 USB-UART",
    # Boards whose own USB is the REPL.
    (0x2E8A, 0x0005): "Raspberry Pi RP2040/RP2350 running MicroPython",
    (0x2E8A, 0x000A): "Raspberry Pi RP2040, Pico SDK USB serial (not MicroPython?)",
    (0x2E8A, 0x0009): "Raspberry Pi RP2350, Pico SDK USB serial (not MicroPython?)",
    (0x2E8A, 0x000C): "Raspberry Pi Debug Probe (UART bridge)",
    (0x0D28, 0x0204): "BBC micro:bit / DAPLink USB serial",
    (0xF055, 0x9800): "MicroPython pyboard (STM32) USB serial",
    (0x0483, 0x5740): "STM32 USB virtual COM port (pyboard-style board?)",
    (0x16C0, 0x0483): "Teensy USB serial",
    (0x1366, 0x1015): "SEGGER J-Link USB serial (Nordic nRF dev kit?)",
}

# VID -> name, for products not listed one by one (these vendors assign PIDs per board).
KNOWN_VENDORS: dict[int, str] = {
    0x303A: "Espressif native USB board",
    0x239A: "Adafruit board (CircuitPython or MicroPython)",
    0x2E8A: "Raspberry Pi RP2040/RP2350 board",
    0x2341: "Arduino board",
    0x2A03: "Arduino board",
    0x1B4F: "SparkFun board",
    0x2886: "Seeed Studio board",
    0xF055: "MicroPython board",
    0x0403: "FTDI USB-UART",
    0x10C4: "Silicon Labs USB-UART",
    0x1A86: "WCH USB-UART",
    0x0483: "STMicroelectronics USB device",
    0x16C0: "Teensy / V-USB device",
}

# Words in a USB product or manufacturer string that mark a board even under an unknown VID
# (boards with their own pid.codes VID, for instance).
_BOARD_WORDS = ("micropython", "circuitpython")


@dataclass(frozen=True)
class PortIdentity:
    """What stays the same when a USB board re-enumerates under another device name."""

    vid: int
    pid: int
    serial_number: str | None = None
    location: str | None = None

    def __str__(self) -> str:
        text = f"{self.vid:04x}:{self.pid:04x}"
        return f"{text} serial {self.serial_number}" if self.serial_number else text


@dataclass(frozen=True)
class PortInfo:
    device: str
    description: str
    identity: PortIdentity | None
    board_guess: str | None
    is_likely_board: bool


def guess_board(vid: int | None, pid: int | None, text: str = "") -> str | None:
    """A human name for a VID/PID, or None if it means nothing to us."""
    if vid is not None and pid is not None and (vid, pid) in KNOWN_DEVICES:
        return KNOWN_DEVICES[(vid, pid)]
    if vid is not None and vid in KNOWN_VENDORS:
        return KNOWN_VENDORS[vid]
    lowered = text.lower()
    for word in _BOARD_WORDS:
        if word in lowered:
            return "MicroPython board" if word == "micropython" else "CircuitPython board"
    return None


def _clean(value: Any) -> str | None:
    # pyserial fills missing fields with None or the string "n/a" depending on the platform.
    if value is None:
        return None
    text = str(value).strip()
    return text if text and text.lower() != "n/a" else None


def _port_info(raw: Any) -> PortInfo:
    vid = getattr(raw, "vid", None)
    pid = getattr(raw, "pid", None)
    identity = None
    if vid is not None and pid is not None:
        identity = PortIdentity(
            vid=int(vid),
            pid=int(pid),
            serial_number=_clean(getattr(raw, "serial_number", None)),
            location=_clean(getattr(raw, "location", None)),
        )
    words = " ".join(
        filter(None, (_clean(getattr(raw, name, None))
                      for name in ("description", "manufacturer", "product")))
    )
    guess = guess_board(vid, pid, words)
    return PortInfo(
        device=str(raw.device),
        description=_clean(getattr(raw, "description", None)) or "",
        identity=identity,
        board_guess=guess,
        is_likely_board=guess is not None,
    )


def _default_lister() -> list[Any]:
    from serial.tools import list_ports

    return list(list_ports.comports())


def list_ports(lister: Lister | None = None) -> list[PortInfo]:
    """All serial ports, likely boards first, each with a guess of what it is."""
    raw_ports = list((lister or _default_lister)())
    keep = set(plat.prefer_callout([str(raw.device) for raw in raw_ports]))
    ports = [_port_info(raw) for raw in raw_ports if str(raw.device) in keep]
    ports.sort(key=lambda p: (not p.is_likely_board, _natural(p.device)))
    return ports


def _natural(device: str) -> list[Any]:
    # COM3 before COM10, ttyUSB2 before ttyUSB10.
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", device)]


def format_ports(ports: list[PortInfo]) -> str:
    """A numbered text table: number, device, what it probably is, USB id."""
    if not ports:
        return "No serial ports found. (Is the board plugged in with a data cable?)"
    rows = []
    for n, p in enumerate(ports, 1):
        what = p.board_guess or p.description or "unknown"
        if p.board_guess and p.description and p.description.lower() not in what.lower():
            what = f"{what} - {p.description}"
        rows.append((f"{n}.", p.device, what, str(p.identity) if p.identity else ""))
    width = max(len(r[1]) for r in rows)
    lines = [f"{num:>3} {dev:<{width}}  {what}" + (f"  [{ident}]" if ident else "")
             for num, dev, what, ident in rows]
    return "\n".join(lines)


def pick_port(lister: Lister | None = None) -> str:
    """The device path of the single likely board, else PortError listing what exists."""
    ports = list_ports(lister)
    boards = [p for p in ports if p.is_likely_board]
    if len(boards) == 1:
        return boards[0].device
    if not ports:
        raise PortError("No serial ports found: no board is plugged in (or the cable only "
                        "charges).", choose_hint())
    if not boards:
        raise PortError("No port looks like a MicroPython board. Serial ports found:\n"
                        + format_ports(ports), choose_hint())
    raise PortError(f"{len(boards)} ports look like boards; which one?\n"
                    + format_ports(boards), choose_hint())


def identity_of(device: str, lister: Lister | None = None) -> PortIdentity | None:
    """The USB identity of `device` (None if it is not a USB port or is not present)."""
    for p in list_ports(lister):
        if plat.same_port(p.device, device):
            return p.identity
    return None


def find_by_identity(identity: PortIdentity, lister: Lister | None = None) -> str | None:
    """The device path of the board with `identity` now, possibly under another name.

    The serial number decides when the board has one. Without one (CH340 bridges have none),
    the same USB location decides, and failing that a VID:PID seen exactly once.
    """
    same_kind = [p for p in list_ports(lister) if p.identity is not None
                 and (p.identity.vid, p.identity.pid) == (identity.vid, identity.pid)]
    if identity.serial_number:
        for p in same_kind:
            assert p.identity is not None
            if p.identity.serial_number == identity.serial_number:
                return p.device
        return None
    if identity.location:
        for p in same_kind:
            assert p.identity is not None
            if p.identity.location == identity.location:
                return p.device
    return same_kind[0].device if len(same_kind) == 1 else None


def who_holds(path: str) -> list[tuple[int, str]]:
    """(PID, command name) of every process with `path` open, as far as the OS lets us see
    (/proc on Linux, lsof on macOS, nothing on Windows). Empty means "none seen", not "none".
    """
    return plat.find_holders(path).found


def describe_holders(holders: list[tuple[int, str]]) -> str:
    """'PID 123 (screen), PID 456 (python3)' or 'PID unknown'."""
    if not holders:
        return "PID unknown"
    return ", ".join(f"PID {pid} ({name})" for pid, name in holders)


def cli_main() -> int:
    """`mpkernel ports`: print the table; exit 0 whether or not ports exist."""
    print(format_ports(list_ports()))
    return 0
