"""The one place a Board is built and made the kernel's board.

The kernel (first cell, `%connect`), `%connect --rescue`, `%rescue`, `%flash` and the
`mpkernel flash` command all get their Board here, so a setting such as the reattach wait or
the baud rate cannot be forgotten by one of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mpkernel.board.board import Board

Note = Callable[[str], None]


@dataclass
class BoardSettings:
    """How the kernel's boards are opened (the kernel's traits; the CLI's defaults)."""

    baudrate: int = 115200
    reattach_wait: float = 10.0


def new_board(port: str, settings: BoardSettings | None = None,
              note: Note | None = None) -> Board:
    """A Board on `port`, not yet opened: it connects on first use (or `ensure_ready()`)."""
    settings = settings or BoardSettings()
    board = Board(port, settings.baudrate, reattach_wait=settings.reattach_wait)
    if note is not None:
        board.note = note
    return board


def replace_board(current: Board | None, port: str, settings: BoardSettings | None = None,
                  note: Note | None = None) -> Board:
    """Close `current` (if any) and return an unopened Board on `port` to take its place."""
    if current is not None:
        current.close()
    return new_board(port, settings, note)
