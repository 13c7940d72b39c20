"""Board against the emulated micro:bit behind the relay: what a user sees while cells run.

Each test asserts user-visible behaviour (output, messages, timings that users feel) and
that the board still answers at the end.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable

import pytest
from harness.programs import swallowing
from harness.relay import STALE_HALF_CELL, STALE_RAW_OUTPUT, Relay

from mpkernel.board.board import Board
from mpkernel.board.interrupts import SILENT_WAIT, InterruptFailed
from mpkernel.errors import BoardReset, CellRefused, DeviceError

pytestmark = pytest.mark.device

PRINTING_LOOP = "import utime\ni=0\nwhile True:\n i+=1\n print('tick', i)\n utime.sleep_ms(100)"
SWALLOWING_LOOP = swallowing(["print('tick')", "utime.sleep_ms(200)"])
# The micro:bit's firmware resets with microbit.reset(); other ports with machine.reset().
RESET_ITSELF = (
    "try:\n import microbit as m\nexcept ImportError:\n import machine as m\nm.reset()"
)
SILENT_SWALLOWING = swallowing(["utime.sleep_ms(300)"])


def run(board: Board, code: str, on_output: Callable[[str], None] | None = None) -> str:
    """One cell, as the kernel runs it."""
    board.start_cell()
    return board.exec(code, on_output=on_output)


def after(seconds: float, action: Callable[[], None]) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.daemon = True
    timer.start()
    return timer


def host_sees(relay: Relay, marker: bytes, timeout: float = 3.0) -> None:
    """Wait until `marker` has been delivered to the host (the fault is over, between cells)."""
    deadline = time.monotonic() + timeout
    start = len(relay.log)
    while time.monotonic() < deadline:
        seen = b"".join(data for _, kind, data in list(relay.log)[start:] if kind == "to_host")
        if marker in seen:
            return
        time.sleep(0.01)  # polling the relay's log: the marker is what we wait for
    pytest.fail(f"the host never received {marker!r}")


def notes_of(board: Board) -> list[str]:
    notes: list[str] = []
    board.note = notes.append
    return notes


def test_output_streams_while_the_cell_runs(board: Board) -> None:
    arrivals: list[tuple[float, str]] = []
    start = time.monotonic()
    out = run(
        board,
        "import utime\nfor i in range(4):\n print('line', i)\n utime.sleep_ms(150)",
        on_output=lambda text: arrivals.append((time.monotonic() - start, text)),
    )
    assert out.replace("\r\n", "\n") == "line 0\nline 1\nline 2\nline 3\n"
    first_line_at = next(t for t, text in arrivals if "0" in text)
    assert first_line_at < 0.3  # shown at once, not at the end (~0.6 s)


def test_an_exception_on_the_board_is_a_device_error_and_the_board_still_answers(
    board: Board,
) -> None:
    with pytest.raises(DeviceError) as info:
        run(board, "def f():\n raise ValueError('bad value')\nf()")
    assert info.value.ename == "ValueError" and info.value.evalue == "bad value"
    assert any("line 2" in line for line in info.value.traceback)
    assert run(board, "print(6*7)").strip() == "42"


def test_interrupting_a_loop_keeps_variables_and_ends_quickly(board: Board) -> None:
    run(board, "kept = 41")
    after(0.5, board.interrupt)
    start = time.monotonic()
    with pytest.raises(DeviceError) as info:
        run(board, PRINTING_LOOP)
    took = time.monotonic() - start - 0.5
    assert info.value.ename == "KeyboardInterrupt"
    assert "the board's variables are kept" in info.value.traceback[-1]
    assert took < 0.5
    assert run(board, "print(kept + 1, i > 0)").split() == ["42", "True"]


def test_a_program_swallowing_ctrl_c_ends_the_cell_with_the_reason(
    board: Board, relay: Relay
) -> None:
    notes = notes_of(board)
    after(0.5, board.interrupt)
    start = time.monotonic()
    with pytest.raises(InterruptFailed) as info:
        run(board, SWALLOWING_LOOP)
    assert time.monotonic() - start < 5.0
    assert "catches KeyboardInterrupt" in str(info.value)
    assert "%rescue" in info.value.hint and "re-flash" not in info.value.user_text()
    assert any("keeps printing" in note for note in notes)
    # As the message says, the program is still running on the board: it keeps printing.
    relay.clear_board_output()
    assert relay.wait_board_output(b"tick\r\n", 2.0) and relay.wait_board_output(b"tick\r\n", 2.0)
    # The reset button brings the board back.
    relay.reset_board()
    assert run(board, "print('back')").strip() == "back"
    assert any("reset since the last cell; its variables are gone" in note for note in notes)


def test_a_silent_board_gets_a_bounded_wait_and_a_message(board: Board, relay: Relay) -> None:
    notes = notes_of(board)
    after(0.3, board.interrupt)
    start = time.monotonic()
    with pytest.raises(InterruptFailed) as info:
        run(board, SILENT_SWALLOWING)
    took = time.monotonic() - start - 0.3
    assert took < SILENT_WAIT + 1.0
    assert "blocking call" in str(info.value)
    assert any("silent" in note for note in notes)
    relay.reset_board()
    assert run(board, "print('back')").strip() == "back"


def test_hard_reset_during_a_cell_ends_it_with_the_boot_output(board: Board) -> None:
    run(board, "gone = 1")
    shown: list[str] = []
    start = time.monotonic()
    with pytest.raises(BoardReset) as info:
        run(board, "print('before')\n" + RESET_ITSELF, on_output=shown.append)
    assert time.monotonic() - start < 2.0
    assert "its variables are gone" in str(info.value)
    assert "MicroPython v1." in info.value.boot_output
    assert "".join(shown).strip() == "before"  # the boot text is not shown as output
    assert run(board, "print('gone' in globals())").strip() == "False"


def test_reset_button_mid_output_is_noticed(board: Board, relay: Relay) -> None:
    shown: list[str] = []
    after(0.5, relay.reset_board)
    with pytest.raises(BoardReset) as info:
        run(board, PRINTING_LOOP, on_output=shown.append)
    assert "MicroPython v1." in info.value.boot_output
    assert "\x00" not in "".join(shown) and "MicroPython" not in "".join(shown)
    assert run(board, "print(1)").strip() == "1"


def test_reset_between_cells_is_reported_before_the_next_cell(
    board: Board, relay: Relay
) -> None:
    notes = notes_of(board)
    run(board, "gone = 1")
    relay.reset_board()
    host_sees(relay, b">>> ")
    assert run(board, "print('gone' in globals())").strip() == "False"
    text = "".join(notes)
    assert "reset since the last cell; its variables are gone" in text
    assert "MicroPython v1." in text  # with the boot output


def test_soft_reset_between_cells_is_reported(board: Board, relay: Relay) -> None:
    notes = notes_of(board)
    run(board, "gone = 1")
    relay.inject_to_board(b"\x04")  # Ctrl-D at the idle raw prompt: a soft reset
    host_sees(relay, b"raw REPL; CTRL-B to exit\r\n>")
    assert run(board, "print('gone' in globals())").strip() == "False"
    assert "soft reboot" in "".join(notes)


def test_reset_magic_paths(board: Board) -> None:
    run(board, "gone = 1")
    assert "variables are gone" in board.soft_reset()
    assert run(board, "print('gone' in globals())").strip() == "False"
    run(board, "gone = 1")
    # A pty has no modem lines: the firmware is asked to reset itself.
    assert "the firmware's own reset()" in board.hard_reset()
    assert run(board, "print('gone' in globals())").strip() == "False"


def test_hard_reset_through_rts_on_rfc2217(rfc2217_relay: Relay) -> None:
    board = Board(rfc2217_relay.url)
    try:
        board.connect()
        run(board, "gone = 1")
        assert "EN pulsed through RTS" in board.hard_reset()
        assert run(board, "print('gone' in globals())").strip() == "False"
    finally:
        board.close()


@pytest.mark.boards("microbit", reason="only firmware without raw-paste must hold a whole cell")
def test_a_large_cell_is_refused_and_the_board_still_answers(board: Board) -> None:
    big = "refused_cell_ran = 1\n" + "x = 1\n" * 2000  # 12 KB: would wedge a micro:bit
    with pytest.raises(CellRefused) as info:
        run(board, big)
    assert str(info.value).startswith(f"This cell is {len(big)} bytes;")
    assert "Nothing was sent" in str(info.value) and "%%writefile" in info.value.hint
    # Nothing was sent indeed: its first line never ran, and the board answers.
    assert run(board, "print('refused_cell_ran' in globals())").strip() == "False"


def test_stale_bytes_either_way_do_not_confuse_the_next_cell(
    board: Board, relay: Relay
) -> None:
    run(board, "x = 3")
    relay.inject_to_host(STALE_RAW_OUTPUT)
    host_sees(relay, STALE_RAW_OUTPUT[-10:])
    assert run(board, "print(x)").strip() == "3"
    relay.inject_to_board(STALE_HALF_CELL)
    host_sees(relay, b"raw REPL; CTRL-B to exit\r\n>")
    assert run(board, "print(x * 2)").strip() == "6"
    relay.inject_to_board(b"garbage 123")  # no reply at all: only the raw line buffer knows
    assert run(board, "print(x * 3)").strip() == "9"


# -- a cell runs at most once ------------------------------------------------------------------
def test_a_cell_raising_syntax_error_at_run_time_runs_once(board: Board) -> None:
    run(board, "hits = []")
    shown: list[str] = []
    with pytest.raises(DeviceError) as info:
        run(board, "print('side effect')\nhits.append(1)\nexec('1 +')", on_output=shown.append)
    assert info.value.ename == "SyntaxError"
    assert "".join(shown).replace("\r\n", "\n") == "side effect\n"
    assert run(board, "print(len(hits))").strip() == "1"  # counted on the board


def test_importing_a_broken_module_runs_the_cell_once(board: Board) -> None:
    # A fresh name each time: MicroPython 1.9.2 keeps a module that failed to import, and
    # has no sys.modules to forget it.
    name = f"mpk_broken_{secrets.token_hex(3)}"
    run(board, f"f = open('{name}.py', 'w')\nf.write('y = = 2\\n')\nf.close()\nimports = 0")
    try:
        with pytest.raises(DeviceError) as info:
            run(board, f"imports += 1\nimport {name}")
        assert info.value.ename == "SyntaxError"
        assert any(f'File "{name}.py", line 1' in line for line in info.value.traceback)
        assert run(board, "print(imports)").strip() == "1"
    finally:
        run(board, f"import os\nos.remove('{name}.py')")


@pytest.mark.boards("microbit", reason="raw-paste has flow control; plain raw mode loses bytes")
def test_a_program_garbled_on_the_wire_is_resent_and_runs_once(
    board: Board, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A byte lost on the way (what an overflowing UART ring does): the first copy reaches the
    # board without its last ')', which the board's compiler rejects before running anything.
    program = "garbled_runs += 1\nprint('runs', garbled_runs)"
    run(board, "garbled_runs = 0")
    assert board.link is not None
    write = board.link.write
    dropped: list[bytes] = []

    def lossy(data: bytes) -> None:
        if not dropped and data.endswith(b"garbled_runs)\x04"):  # its last 32-byte burst
            cut = data.rindex(b")")
            dropped.append(data)
            data = data[:cut] + data[cut + 1 :]
        write(data)

    monkeypatch.setattr(board.link, "write", lossy)
    assert run(board, program).strip() == "runs 1"
    assert dropped, "the fault was never injected"
    assert run(board, "print(garbled_runs)").strip() == "1"


def test_a_half_typed_line_left_at_the_prompt_is_not_run_by_the_next_cell(
    board: Board, relay: Relay
) -> None:
    # Another tool left the friendly REPL with a line typed but not entered: catching the
    # board must discard it (Ctrl-C), not enter it.
    relay.inject_to_board(b"\x02")
    host_sees(relay, b">>> ")
    relay.inject_to_board(b"stray_line_ran = 1")
    host_sees(relay, b"stray_line_ran = 1")
    assert run(board, "print('stray_line_ran' in globals())").strip() == "False"
