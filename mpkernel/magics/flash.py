"""%flash: put MicroPython on the board and come back to its REPL."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mpkernel import firmware as fw
from mpkernel.errors import MpkernelError
from mpkernel.flash import (
    CHIP_CHOICES,
    DEFAULT_BAUD,
    ERASE_QUESTION,
    FlashError,
    FlashResult,
    copy_to_drive,
    flash_esp,
    is_drive_image,
)
from mpkernel.magics import MagicContext, arg, magic
from mpkernel.ports import find_by_identity, identity_of


@magic(
    "flash",
    arg("firmware", help="a .bin/.uf2/.hex file, a URL, or a board name with an optional "
        "version: ESP32_GENERIC, ESP32_GENERIC_S3@1.24.1, latest"),
    arg("--erase", action="store_true", help="erase the whole flash first (deletes every file)"),
    arg("--yes", action="store_true", help="do not ask before --erase"),
    arg("--chip", choices=CHIP_CHOICES, default="auto"),
    arg("--baud", type=int, default=DEFAULT_BAUD, help=f"transfer speed (default {DEFAULT_BAUD})"),
    arg("--port", help="serial port (default: the kernel's board)"),
)
def flash(ctx: MagicContext, args: argparse.Namespace) -> None:
    """Flash MicroPython firmware, then reconnect to the new REPL.

    %flash ESP32_GENERIC                 newest release for that board (micropython.org)
    %flash ESP32_GENERIC_S3@1.24.1       a given release; downloads are cached
    %flash latest                        newest release for the chip found on the port
    %flash firmware.bin [--erase] [--chip esp32s3] [--baud 115200] [--port /dev/ttyUSB0]
    %flash RPI_PICO@1.24.1               .uf2 copied to an RP2040 in BOOTSEL mode (RPI-RP2)
    %flash microbit.hex                  .hex copied to the MICROBIT drive

    ESP chips are flashed with esptool at the right offset for the chip (ESP32/S2 0x1000,
    others 0x0), verified by MD5, and reset; the kernel reattaches and shows the new version.
    --erase deletes every file on the board and asks first unless --yes is given.
    """
    if is_drive_image(args.firmware) or _board_spec_is_drive(args.firmware):
        _flash_drive(ctx, args)
        return
    if args.erase and not args.yes and not ctx.confirm(ERASE_QUESTION):
        ctx.write("Not erased, nothing flashed. Add --yes to erase without asking.\n")
        return
    board = ctx.peek_board()
    port = args.port or (board.url if board is not None else None)
    if port is None:
        if ctx.resolve_port is None:
            raise FlashError("No port to flash.", "Give one: %flash FIRMWARE --port /dev/ttyUSB0")
        port = ctx.resolve_port()

    def run(path: str) -> FlashResult:
        return flash_esp(path, args.firmware, chip=args.chip, erase=args.erase,
                         baud=args.baud, write=ctx.write, make_progress=ctx.progress)

    if board is not None and getattr(board, "connected", False) and board.url == port:
        _flash_released(ctx, board, run)
        return
    identity = identity_of(port)
    result = run(port)
    port = _find_again(port, identity, ctx.write)
    if ctx.attach is None:
        ctx.write(f"Flashed {result.firmware}. Connect with %connect {port}.\n")
        return
    try:
        new = ctx.attach(port)
    except MpkernelError as err:
        ctx.write(f"The firmware was written and verified, but the REPL did not come back on "
                  f"{port}: {err.user_text()}\n")
        return
    ctx.write(f"Now running {new.firmware or 'MicroPython'} on {port}.\n")


def _flash_released(ctx: MagicContext, board: Any, run: Callable[[str], FlashResult]) -> None:
    """Flash through the kernel's board: release its port, flash, find the board again."""
    result: FlashResult | None = None
    flash_error: MpkernelError | None = None
    try:
        with board.released(note=ctx.write) as path:
            try:
                result = run(path)
            except MpkernelError as err:
                # Keep the flash's own error: the reattach that follows must not hide it.
                flash_error = err
    except MpkernelError as err:
        if flash_error is not None:
            flash_error.hint += f"\n(The board did not come back either: {err})"
            raise flash_error from None
        ctx.write(f"The firmware was written and verified, but the REPL did not come back: "
                  f"{err.user_text()}\n")
        return
    if flash_error is not None:
        raise flash_error
    assert result is not None
    ctx.write(f"Now running {board.firmware or 'MicroPython'}.\n")


def _find_again(port: str, identity: Any, write: Callable[[str], None],
                wait: float = 10.0) -> str:
    """Where the board is after its reset: native-USB chips re-enumerate, maybe renamed."""
    if identity is None:
        return port
    deadline = time.monotonic() + wait
    while True:
        found = find_by_identity(identity)
        if found is not None:
            if found != port:
                write(f"The board came back as {found} (was {port}).\n")
            return found
        if time.monotonic() >= deadline:
            return port  # let attach() report what it finds there
        # Nothing to read from a port that does not exist yet: look at the USB list again
        # shortly (the OS lists a re-enumerated device within about a second).
        time.sleep(0.2)


def _board_spec_is_drive(text: str) -> bool:
    # RP2 and micro:bit boards are flashed by copying; their names say so.
    if Path(text).suffix or "://" in text:
        return False
    board = fw.parse_spec(text).board or ""
    return board.startswith(("RPI_PICO", "MICROBIT", "ADAFRUIT_", "ARDUINO_NANO_RP2040",
                             "SPARKFUN_PRO_MICRO_RP2040", "W5100S_EVB_PICO", "BBC_MICROBIT"))


def _flash_drive(ctx: MagicContext, args: argparse.Namespace) -> None:
    image = fw.resolve(args.firmware, note=ctx.write)
    if image.suffix.lower() not in (".uf2", ".hex"):
        raise FlashError(f"{image.name} is not a drive-copy image (.uf2 or .hex).",
                         "Give the .uf2/.hex, or --chip for an ESP board.")
    drive = copy_to_drive(image, ctx.write, ctx.progress)
    ctx.write(f"{image.name} is on {drive}. When the board has restarted, the next cell "
              "reconnects (or use %connect PORT).\n")
