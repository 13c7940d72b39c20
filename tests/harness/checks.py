"""Checks and clean-ups on a connected board, shared by the device tests."""

from __future__ import annotations

import threading

from mpkernel.board.board import Board
from mpkernel.errors import DeviceError

# Removes every file and folder (folders only where the firmware has them): a test that
# leaves a folder on the shared board must not make the next test's set-up fail (ENOTEMPTY).
_WIPE = """import os
def __w(d):
 for n in os.listdir(d or None) if d else os.listdir():
  p=(d+'/' if d else '')+n
  try:
   os.remove(p)
  except OSError:
   __w(p);os.rmdir(p)
__w('')
del __w"""


def wipe_files(board: Board) -> None:
    """Remove every file (and folder) on the board."""
    board.exec(_WIPE)


def ctrl_c_works(board: Board) -> bool:
    """Ctrl-C (kbd_intr) is on: an interrupt stops a busy loop with KeyboardInterrupt."""
    timer = threading.Timer(0.3, board.interrupt)
    board.start_cell()
    timer.start()
    try:
        board.exec("while True:\n pass", timeout=5)
    except DeviceError as err:
        return err.ename == "KeyboardInterrupt"
    finally:
        timer.cancel()
        board.start_cell()
    return False
