"""One place builds and attaches a Board: the kernel's attach, used by %connect --rescue,
%rescue and %flash, so a rescued board is the kernel's board and the next cell runs on it."""

from __future__ import annotations

from typing import Any

import pytest
from harness.relay import Relay
from test_faults import MAIN_SWALLOWS, remove_main_py, run, write_main

from mpkernel.board.board import Board
from mpkernel.kernel import MicroPythonKernel
from mpkernel.magics import MagicContext, registry


class KernelLike:
    """The kernel's own board-handling methods, without a Jupyter session around them."""

    get_board = MicroPythonKernel.get_board
    attach = MicroPythonKernel.attach
    resolve_port = MicroPythonKernel.resolve_port
    _board_settings = MicroPythonKernel._board_settings

    def __init__(self, port: str = "") -> None:
        self.board: Board | None = None
        self.chosen_port = ""
        self.port = port
        self.baudrate = 115200
        self.reattach_wait = 4.0
        self.fallback_to_sim = False
        self.said: list[str] = []

    def _write(self, text: str) -> None:
        self.said.append(text)

    def context(self, answer: str) -> MagicContext:
        return MagicContext(
            get_board=self.get_board, write=self._write, make_progress=None,  # type: ignore[arg-type]
            ask=lambda question: answer, kernel=self, resolve_port=self.resolve_port,
            peek_board=lambda: self.board if self.board and self.board.connected else None,
            attach=self.attach)


def run_magic(ctx: MagicContext, key: str, line: str) -> None:
    magic = registry()[key]
    magic.handler(ctx, magic.parse(line))


def test_attach_without_connecting_replaces_the_board_and_keeps_the_kernels_settings() -> None:
    k = KernelLike()
    old = Board("/dev/old-port")
    closed: list[str] = []
    old.close = lambda: closed.append(old.url)  # type: ignore[method-assign]
    k.board = old
    k.baudrate, k.reattach_wait = 57600, 7.0
    new = k.attach("/dev/new-port", connect=False)
    assert closed == ["/dev/old-port"]
    assert k.board is new and k.chosen_port == "/dev/new-port"
    assert (new.url, new.baudrate, new.reattach_wait) == ("/dev/new-port", 57600, 7.0)
    assert not new.connected  # the port stays free (rescue resets first; esptool opens it)
    new.note("to the cell")
    assert k.said == ["to the cell"]


@pytest.fixture
def swallowing_board(rfc2217_relay: Relay) -> Any:
    """The shared emulated board with a main.py that ignores Ctrl-C, running; cleaned after."""
    relay = rfc2217_relay
    first = Board(relay.url)
    first.connect()
    write_main(first, MAIN_SWALLOWS)
    first.close()
    relay.reset_board()
    assert relay.wait_board_output(b"pub", 5)
    yield relay
    remove_main_py(relay)


@pytest.mark.device
@pytest.mark.parametrize("how", ["%connect --rescue URL", "%rescue"])
def test_a_rescued_board_is_the_kernels_board_and_the_next_cell_runs_on_it(
        swallowing_board: Relay, how: str) -> None:
    url = swallowing_board.url
    if how == "%rescue":
        k = KernelLike(port=url)  # the kernel's configured port; no board attached yet
        run_magic(k.context(answer="y"), "%rescue", "")
    else:
        k = KernelLike()
        run_magic(k.context(answer="y"), "%connect", f"--rescue {url}")
    said = "".join(k.said)
    assert "Renamed main.py to main.py.off" in said
    assert k.board is not None and k.board.url == url and k.chosen_port == url
    assert k.get_board() is k.board  # the next cell uses the rescued board, not a new one
    files = run(k.board, "import os\nprint(sorted(os.listdir()))")
    assert "'main.py.off'" in files and "'main.py'" not in files
    k.board.close()
