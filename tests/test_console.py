"""The kernel in `jupyter console`, as a person types at it: in tmux, keys sent, screen read.

On the emulated micro:bit: a cell's output, Tab completion from the board, Ctrl-C stopping a
loop, and `exit` leaving the console as it does with IPython.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.device

TMUX = shutil.which("tmux") or "/usr/bin/tmux"


class Screen:
    def __init__(self, session: str) -> None:
        self.session = session

    def keys(self, *keys: str) -> None:
        subprocess.run([TMUX, "send-keys", "-t", self.session, *keys], check=True)

    def text(self) -> str:
        done = subprocess.run([TMUX, "capture-pane", "-p", "-J", "-S", "-200", "-t",
                               self.session], capture_output=True, text=True)
        return done.stdout

    def alive(self) -> bool:
        return subprocess.run([TMUX, "has-session", "-t", self.session],
                              capture_output=True).returncode == 0

    def wait(self, what: str, check: Callable[[str], bool], timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.text()
            if check(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; "
                                     f"the screen:\n{screen}")
            time.sleep(0.2)


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Screen]:
    if not os.path.exists(TMUX):
        pytest.fail("tmux is needed: apt-get install tmux", pytrace=False)
    session = f"mpk-{secrets.token_hex(4)}"
    jupyter = str(Path(sys.executable).with_name("jupyter"))
    command = (f"cd {tmp_path} && MPKERNEL_PORT=sim JUPYTER_RUNTIME_DIR={tmp_path} "
               f"{jupyter} console --kernel mpkernel; echo console-ended; sleep 30")
    subprocess.run([TMUX, "new-session", "-d", "-s", session, "-x", "160", "-y", "50",
                    command], check=True)
    screen = Screen(session)
    try:
        yield screen
    finally:
        subprocess.run([TMUX, "kill-session", "-t", session], capture_output=True)


def test_a_person_at_jupyter_console(console: Screen) -> None:
    console.wait("the first prompt", lambda s: "In [1]:" in s, 60)
    console.keys("print(6 * 7)", "Enter")
    screen = console.wait("the answer", lambda s: "\n42" in s and "In [2]:" in s, 60)
    assert "Connected to /dev/pts/" in screen and "(the emulated micro:bit)" in screen
    # Tab completes from the board: the micro:bit's own modules.
    console.keys("import mic", "Tab")
    screen = console.wait("the completion menu", lambda s: "micropython" in s, 30)
    assert "microbit" in screen
    console.keys("Escape", "C-u")
    # Ctrl-C stops a loop on the board, and the board is fine after it.
    console.keys("while True:", "Enter", "pass", "Enter", "Enter")
    console.wait("the loop to run", lambda s: "In [3]:" not in s, 10)
    time.sleep(1.0)
    console.keys("C-c")
    screen = console.wait("KeyboardInterrupt", lambda s: "KeyboardInterrupt" in s
                          and "In [3]:" in s, 30)
    assert "the board's variables are kept" in screen
    # `exit` leaves the console, as with IPython (not a NameError from the board).
    console.keys("exit", "Enter")
    screen = console.wait("the console to end", lambda s: "console-ended" in s, 30)
    assert "NameError" not in screen
