"""%flash: put MicroPython on the board and come back to its REPL (mpkernel/flash/frontend.py)."""

from __future__ import annotations

import argparse

from mpkernel.flash.frontend import FLASH_ARGS, FlashIO, run_flash
from mpkernel.magics import MagicContext, arg, magic
from mpkernel.magics.core import unopened_board


@magic("flash", *(arg(*flags, **options) for flags, options in FLASH_ARGS))
def flash(ctx: MagicContext, args: argparse.Namespace) -> None:
    """Flash MicroPython firmware, then reconnect to the new REPL.

    %flash ESP32_GENERIC                 newest release for that board (micropython.org)
    %flash ESP32_GENERIC_S3@1.24.1       a given release; downloads are cached by URL
    %flash latest                        newest release for the chip found on the port
    %flash firmware.bin [--erase] [--chip esp32s3] [--baud 115200] [--port /dev/ttyUSB0]
    %flash RPI_PICO@1.24.1               .uf2 copied to an RP2040 in BOOTSEL mode (RPI-RP2)
    %flash microbit.hex                  .hex copied to the MICROBIT drive

    ESP chips are flashed with esptool at the right offset for the chip (ESP32/S2 0x1000,
    others 0x0), read back by MD5, and reset; the kernel reattaches and shows the new version.
    The summary gives the size and SHA-256 of what was written.
    --erase deletes every file on the board and asks first unless --yes is given.
    """
    io = FlashIO(ctx.write, ctx.progress, ctx.confirm)
    current = ctx.peek_board()
    done = run_flash(args, io, board=current,
                     board_for=lambda port: unopened_board(ctx, port),
                     default_port=ctx.resolve_port)
    if done is not None and done.board not in (None, current) and ctx.attach is None:
        done.board.close()  # made for this flash with no kernel to keep it: free the port
