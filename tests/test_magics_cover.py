"""Every connection magic and option the README lists, run as a user would, with the facts
its message states checked against the board: %disconnect, %connect (list, N, --baud,
socket://), %help NAME, %reset --soft. (%connect --rescue and %rescue: tests/test_connect.py.)
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator

import pytest
import serial
from harness.relay import Relay, comports_with
from test_connect import KernelLike, run_magic

from mpkernel.board import ports
from mpkernel.board.board import Board
from mpkernel.board.interrupts import BoardBusy
from mpkernel.board.link import Link
from mpkernel.errors import MpkernelError, PortBusy
from mpkernel.magics import registry


def run(board: Board, code: str) -> str:
    board.start_cell()
    return board.exec(code).strip()


@pytest.fixture
def kernel() -> Iterator[KernelLike]:
    k = KernelLike()
    yield k
    if k.board is not None:
        k.board.close()


# -- %help NAME: no board needed -------------------------------------------------------------
@pytest.mark.parametrize("name", ["put", "%reset", "connect"])
def test_help_name_explains_that_magic_with_each_of_its_options(
    kernel: KernelLike, name: str
) -> None:
    run_magic(kernel.context(answer=""), "%help", name)
    text = "".join(kernel.said)
    magic = registry()["%" + name.lstrip("%")]
    assert text.startswith(f"usage: %{name.lstrip('%')}")
    # Every option its parser accepts is in the text, and its first line of explanation.
    options = [a for action in magic.parser()._actions for a in action.option_strings]
    assert options and all(option in text for option in options), (options, text)
    assert " ".join(magic.help.split())[:40] in " ".join(text.split())


def test_help_for_an_unknown_name_says_so(kernel: KernelLike) -> None:
    with pytest.raises(MpkernelError, match="No magic named %nosuch"):
        run_magic(kernel.context(answer=""), "%help", "%nosuch")


# -- --baud: a scripted board that only understands its own baud rate ------------------------
@pytest.fixture
def fake_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serial, "protocol_handler_packages",
                        [*serial.protocol_handler_packages, "fakes"])


def test_connect_with_baud_talks_to_a_board_at_that_rate(
    kernel: KernelLike, fake_ports: None
) -> None:
    url = "fakeserial://micropython?baud=57600"  # a board whose UART runs at 57600
    ctx = kernel.context(answer="")
    with pytest.raises(BoardBusy, match="nothing was received") as info:
        run_magic(ctx, "%connect", url)  # at the default 115200 both directions are noise
    assert "the baud rate is wrong" in info.value.hint
    run_magic(ctx, "%connect", f"{url} --baud 57600")
    assert kernel.board is not None and kernel.board.baudrate == 57600
    assert run(kernel.board, "print(6 * 7)") == "42"
    # The rate sticks for the kernel's next board, as the magic's help says.
    assert kernel.baudrate == 57600


# -- on the emulated board ---------------------------------------------------------------------
@pytest.mark.device
def test_disconnect_frees_the_port_and_the_next_cell_reconnects(
    kernel: KernelLike, relay: Relay
) -> None:
    kernel.port = relay.url
    board = kernel.get_board()
    run(board, "kept = 5")
    with pytest.raises(PortBusy):
        Link(relay.url)  # connected: nobody else may open the port
    run_magic(kernel.context(answer=""), "%disconnect", "")
    assert kernel.said[-1] == "Disconnected.\n"
    assert kernel.board is None and not board.connected
    other = Link(relay.url)  # another program (a terminal, esptool) can open it now
    other.close()
    run_magic(kernel.context(answer=""), "%disconnect", "")
    assert kernel.said[-1] == "No board was connected.\n"
    again = kernel.get_board()  # the next cell
    assert run(again, "print(kept)") == "5"  # the same board; disconnecting reset nothing


@pytest.mark.device
def test_connect_lists_the_ports_and_connect_n_picks_one(
    kernel: KernelLike, relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ports, "_default_lister", lambda: comports_with([relay]))
    ctx = kernel.context(answer="")
    run_magic(ctx, "%connect", "")
    listing = "".join(kernel.said)
    assert f"1. {relay.url}" in listing and "%connect N" in listing
    assert kernel.board is None  # listing connects to nothing
    run_magic(ctx, "%connect", "1")
    assert kernel.board is not None and kernel.board.url == relay.url
    assert run(kernel.board, "import sys\nprint(sys.implementation.name)") == "micropython"
    with pytest.raises(MpkernelError, match="There is no port number 2 in the list"):
        run_magic(ctx, "%connect", "2")


@pytest.mark.device
def test_reset_soft_clears_variables_and_does_not_run_main_py(
    kernel: KernelLike, relay: Relay
) -> None:
    kernel.port = relay.url
    board = kernel.get_board()
    # A main.py that leaves a trace when it runs: the message says it is not run.
    run(board, "f = open('main.py', 'w')\nf.write(\"open('main_ran.txt', 'w').close()\\n\")\n"
               "f.close()\ngone = 1")
    try:
        run_magic(kernel.context(answer=""), "%reset", "--soft")
        said = kernel.said[-1]
        assert said == ("Soft reset done: the board's variables are gone "
                        "(main.py was not run).\n")
        assert run(board, "print('gone' in globals())") == "False"
        assert run(board, "import os\nprint('main_ran.txt' in os.listdir())") == "False"
    finally:
        run(board, "import os\nfor f in ('main.py', 'main_ran.txt'):\n try:\n  os.remove(f)\n"
                   " except OSError:\n  pass")


class SocketBridge:
    """A TCP server relaying one client to the emulated board's port (a ser2net in small)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self.listener.getsockname()[1]}"
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn, serial.Serial(self.device, timeout=0) as port:
            while not self.stopping:
                ready, _, _ = select.select([conn, port.fileno()], [], [], 0.1)
                if conn in ready:
                    data = conn.recv(4096)
                    if not data:
                        return
                    port.write(data)
                if port.fileno() in ready:
                    conn.sendall(port.read(4096))

    def stop(self) -> None:
        self.stopping = True
        self.listener.close()
        self.thread.join(timeout=5)


@pytest.mark.device
def test_connect_to_a_socket_url_runs_cells(kernel: KernelLike, relay: Relay) -> None:
    bridge = SocketBridge(relay.url)
    try:
        run_magic(kernel.context(answer=""), "%connect", bridge.url)
        board = kernel.board
        assert board is not None and board.url == bridge.url
        summary = board.summary()
        assert summary.startswith(f"Connected to {bridge.url}: ")
        assert board.firmware in summary
        # What the summary states is what the board says about itself.
        assert run(board, "import os\nprint(os.uname().version)") in board.firmware
        assert run(board, "print(sum(range(10)))") == "45"
    finally:
        if kernel.board is not None:
            kernel.board.close()
            kernel.board = None
        bridge.stop()
