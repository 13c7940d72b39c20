"""One flash front end for `%flash` and `mpkernel flash`.

Both parse the same arguments (FLASH_ARGS) and call `run_flash`, which picks the target
(an ESP through esptool, or a drive for .uf2/.hex), asks before --erase, frees the port the
REPL holds, flashes, and finds the board again with Board.reattach (the one reattach loop),
so the shell command reattaches and copies to drives exactly as the magic does. Where the
two differ is only where the Board comes from and who keeps it afterwards: the kernel keeps
its board, the shell command closes its own.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mpkernel import platform_support as plat
from mpkernel.board.caps import Capabilities
from mpkernel.display import Progress, TextProgress
from mpkernel.errors import MpkernelError
from mpkernel.flash import firmware as fw
from mpkernel.flash.writers import (
    CHIP_CHOICES,
    DEFAULT_BAUD,
    FlashError,
    FlashResult,
    copy_to_drive,
    flash_esp,
    is_drive_image,
)

if TYPE_CHECKING:
    from mpkernel.board.board import Board

ERASE_QUESTION = "--erase deletes every file on the board (main.py, boot.py, your data). Erase?"
# After a flash the board boots new firmware; a native-USB chip also re-enumerates, and a
# micro:bit's interface chip programs the target for several seconds before it resets it.
REATTACH_WAIT = 30.0
# RP2 and micro:bit boards are flashed by copying; their micropython.org names say so.
DRIVE_BOARDS = ("RPI_PICO", "MICROBIT", "ADAFRUIT_", "ARDUINO_NANO_RP2040",
                "SPARKFUN_PRO_MICRO_RP2040", "W5100S_EVB_PICO", "BBC_MICROBIT")

# (flags, argparse options) shared by the magic and the shell command.
FLASH_ARGS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (("firmware",), {"help": "a .bin/.uf2/.hex file, a URL, or a board name with an optional "
                     "version: ESP32_GENERIC, ESP32_GENERIC_S3@1.24.1, latest"}),
    (("--erase",), {"action": "store_true",
                    "help": "erase the whole flash first (deletes every file on the board)"}),
    (("--yes",), {"action": "store_true", "help": "do not ask before --erase"}),
    (("--chip",), {"choices": CHIP_CHOICES, "default": "auto"}),
    (("--baud",), {"type": int, "default": DEFAULT_BAUD,
                   "help": f"transfer speed after connecting (default {DEFAULT_BAUD})"}),
    (("--port",), {"help": "serial port (default: the board in use, else the one found)"}),
    (("--no-reattach",), {"action": "store_true", "dest": "no_reattach",
                          "help": "do not connect to the new firmware's REPL afterwards"}),
)


@dataclass
class FlashIO:
    """How the front end talks to the user and the network."""

    write: Callable[[str], None]
    make_progress: Callable[[str, int], Progress]
    confirm: Callable[[str], bool]
    fetch: fw.Fetcher = fw.urllib_fetch


@dataclass
class Flashed:
    """The outcome: what was written, and the Board now attached to the new REPL (if any)."""

    result: FlashResult
    board: Board | None


def needs_drive(firmware: str) -> bool:
    """True if `firmware` is a .uf2/.hex or names a board that is flashed by a drive copy."""
    if is_drive_image(firmware):
        return True
    if Path(firmware).suffix or "://" in firmware:
        return False
    return (fw.parse_spec(firmware).board or "").startswith(DRIVE_BOARDS)


def run_flash(args: argparse.Namespace, io: FlashIO, *, board: Board | None,
              board_for: Callable[[str], Board], default_port: Callable[[], str] | None
              ) -> Flashed | None:
    """Flash as `args` (FLASH_ARGS) say. None if the user declined the erase.

    `board`: the connected Board in use, if any (released for the flash, then reattached).
    `board_for(port)`: an unopened Board for another port (the kernel makes it its board).
    `default_port()`: the port when neither --port nor `board` gives one.
    Raises MpkernelError if nothing, or not all, was written.
    """
    if needs_drive(args.firmware):
        return _flash_drive(args, io, board, board_for)
    if args.erase and not args.yes and not io.confirm(ERASE_QUESTION):
        io.write("Not erased, nothing flashed. Add --yes to erase without asking.\n")
        return None
    port = args.port or (board.url if board is not None else None)
    if port is None:
        if default_port is None:
            raise FlashError("No port to flash.", f"Give one: --port {plat.example_port()}")
        port = default_port()
    target = board if board is not None and board.url == port else board_for(port)
    if target.identity is None:
        # Captured while the port exists: a native-USB chip comes back under another name,
        # and reattach finds it by this identity.
        from mpkernel.board.ports import identity_of

        target.identity = identity_of(port)

    def write_esp(path: str) -> FlashResult:
        return flash_esp(path, args.firmware, chip=args.chip, erase=args.erase,
                         baud=args.baud, write=io.write, make_progress=io.make_progress,
                         fetch=io.fetch)

    result = _released(target, io.write, write_esp)
    return Flashed(result, _reattach(target, io.write, args.no_reattach))


def _flash_drive(args: argparse.Namespace, io: FlashIO, board: Board | None,
                 board_for: Callable[[str], Board]) -> Flashed:
    if args.erase:
        # A drive copy replaces the firmware only; saying nothing would let the user believe
        # the board's files were erased.
        raise FlashError("--erase works on ESP chips only: a drive copy cannot erase the "
                         "board's files. Nothing was written.",
                         "Run it again without --erase; remove files with %rm afterwards.")
    image = fw.resolve(args.firmware, fetch=io.fetch, note=io.write)
    if image.suffix.lower() not in (".uf2", ".hex"):
        raise FlashError(f"{image.name} is not a drive-copy image (.uf2 or .hex). "
                         "Nothing was written.",
                         "Give the .uf2/.hex, or --chip for an ESP board.")
    # The REPL's port (a micro:bit's, say) is freed during the copy; with none in use and no
    # --port there is no port to watch: an RP2 in BOOTSEL mode has no serial port at all.
    target = board if board is not None and args.port in (None, board.url) else (
        board_for(args.port) if args.port else None)

    def copy(path: str) -> FlashResult:
        return copy_to_drive(image, io.write, io.make_progress)

    if target is None:
        result = copy("")
        io.write("The board installs it from the drive and restarts; then the next cell "
                 "connects (or %connect PORT; `mpkernel ports` lists the ports).\n")
        return Flashed(result, None)
    result = _released(target, io.write, copy)
    return Flashed(result, _reattach(target, io.write, args.no_reattach))


def _released(board: Board, write: Callable[[str], None],
              action: Callable[[str], FlashResult]) -> FlashResult:
    """Run `action(port)` with the board's port free; a failure keeps the flash's own error.

    A board that was connected is reattached after a failure too (nothing may have been
    written, and the kernel's next cell should find it); a reattach failure is added to the
    flash's error rather than replacing it.
    """
    was_connected = board.connected
    port = board.url
    if was_connected:
        board.drop_link()
        write(f"Released {port}.\n")
    try:
        return action(port)
    except MpkernelError as err:
        if was_connected:
            try:
                board.reattach(board.reattach_wait, write)
            except MpkernelError as again:
                err.hint = (err.hint + "\n" if err.hint else "") + \
                    f"(The board did not come back either: {again})"
        raise


def _reattach(board: Board, write: Callable[[str], None], skip: bool) -> Board | None:
    """Find the board after its reset and say which firmware answers; None if it did not."""
    if skip:
        write(f"Not reconnecting (--no-reattach); the board is on {board.url}.\n")
        return None
    # New firmware: what the board can do (and its version) must be asked again, not kept.
    board.caps = Capabilities()
    try:
        where = board.reattach(REATTACH_WAIT, write)
    except MpkernelError as err:
        write(f"The REPL did not answer on {board.url} afterwards: {err.user_text()}\n")
        return None
    write(f"Reconnected on {where}; the board reports {board.firmware}.\n")
    return board


# ---- mpkernel flash ... (the shell command) -----------------------------------------------
def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `mpkernel flash` (the same as %flash)."""
    for flags, options in FLASH_ARGS:
        parser.add_argument(*flags, **options)


def run_cli(args: argparse.Namespace) -> int:
    """`mpkernel flash ...`: 0 when the firmware was written, 1 with the message otherwise."""
    from mpkernel.board.connect import new_board

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def confirm(question: str) -> bool:
        answer = input(f"{question} [y/N] ") if sys.stdin.isatty() else ""
        return answer.strip().lower() in ("y", "yes")

    def default_port() -> str:
        from mpkernel.board.ports import pick_port  # the kernel's own choice of board

        return pick_port()

    io = FlashIO(write, lambda label, total: TextProgress(label, total, write), confirm)
    try:
        done = run_flash(args, io, board=None, board_for=lambda port: new_board(port),
                         default_port=default_port)
    except MpkernelError as err:
        sys.stderr.write(err.user_text() + "\n")
        return 1
    if done is None:
        return 1
    if done.board is not None:
        done.board.close()  # the shell command's own connection: the port is free again
    return 0
