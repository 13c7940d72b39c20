"""Rescue: get a prompt back from a board whose program ignores Ctrl-C.

A program that catches everything spends its time inside its `try`, so interrupts almost
never land outside it. Boot is the moment it is unprotected: reset the board and send Ctrl-C
from the first instant, so boot.py or the first lines of main.py are interrupted. Only when
every step that keeps the board's files has failed does the message mention re-flashing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from mpkernel.board.interrupts import describe_stopped
from mpkernel.board.rawrepl import FRIENDLY_PROMPT, RAW_BANNER
from mpkernel.errors import MpkernelError, ResetUnsupported

if TYPE_CHECKING:
    from mpkernel.board.board import Board
    from mpkernel.files.api import FileSystem

SPAM_EVERY = 0.02  # one Ctrl-C per 20 ms: dense enough to land in a boot's first statements
SPAM_FOR = 4.0  # after a reset we control
SPAM_FOR_BUTTON = 15.0  # while the user presses the reset button


class RescueFailed(MpkernelError):
    """Every non-destructive step failed."""


def rescue(board: Board, note: Callable[[str], None], confirm: Callable[[str], bool]) -> str:
    """Hard-reset, interrupt at boot, reach a prompt; offer to rename main.py. Returns a summary."""
    board.open_port()
    try:
        how = board.pulse_hard_reset()
        note(f"Reset the board ({how}); sending Ctrl-C from the first moment of boot...\n")
        window = SPAM_FOR
    except ResetUnsupported as err:
        note(
            f"{err} Press and release the board's reset button now (or unplug and replug it): "
            f"mpkernel sends Ctrl-C for the next {SPAM_FOR_BUTTON:.0f} s.\n"
        )
        window = SPAM_FOR_BUTTON
    seen = _interrupt_boot(board, window)
    if seen is None:
        raise RescueFailed(
            "The board did not reach a prompt, even with Ctrl-C sent throughout its boot.",
            "Check the port and baud rate with %doctor. If the board still never answers, "
            "its program may disable Ctrl-C at boot: holding the board's BOOT/safe-mode "
            "button while resetting (where it has one) skips main.py. Only if all of that "
            "fails: re-flash the firmware with %flash (this erases the files on the board).",
        )
    stopped = board.resync() or describe_stopped(seen)
    lines = ["The board answers again." + (f" {stopped}" if stopped else "")]
    if board.file_exists("main.py"):
        from mpkernel.files.api import FileSystem

        files = FileSystem(board)
        quiet = _free_name(files, "main.py.off")
        question = (
            f"Rename main.py to {quiet} so the board boots quietly next time "
            f"(the file is kept; rename it back to run it at boot again)?"
        )
        if confirm(question):
            try:
                lines.append(files.move("main.py", quiet) + " The next boot is quiet.")
            except MpkernelError as err:
                lines.append(f"main.py was not renamed: {err.user_text()} It runs again at "
                             "the next reset.")
        else:
            lines.append("main.py is unchanged: it runs again at the next reset.")
    return "\n".join(lines)


def _free_name(files: FileSystem, name: str) -> str:
    """`name`, or `name` with the first number that makes it unused: never overwrite a file."""
    candidate, n = name, 1
    while files.kind(candidate) is not None:
        n += 1
        candidate = f"{name}{n}"
    return candidate


def _interrupt_boot(board: Board, window: float) -> bytes | None:
    """Send Ctrl-C densely until a prompt appears; return what the board printed, or None."""
    link = board.link
    assert link is not None
    deadline = time.monotonic() + window
    seen = bytearray()
    while time.monotonic() < deadline:
        link.write(b"\x03")
        seen += link.read(SPAM_EVERY)
        if seen.endswith(FRIENDLY_PROMPT) or seen.endswith(RAW_BANNER):
            # The prompt may come before the last Ctrl-Cs are echoed; let them settle.
            tail = board.repl.discard_input(quiet_for=0.1, limit=1.0) if board.repl else b""
            return bytes(seen + tail)
    return None
