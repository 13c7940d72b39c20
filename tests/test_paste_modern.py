"""Raw-paste on the modern emulated board (MicroPython 1.25, qemu mps2-an385).

Large cells stream with flow control; a reset or an interrupt in the middle of the upload
ends the cell within a bounded time, says what happened, and leaves the board usable. Each
"none of it ran" is checked on the board: the cell's first statement would create a file.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from mpkernel.board.board import Board
from mpkernel.cli import spec_dir_with_argv
from mpkernel.errors import BoardReset, DeviceError, Interrupted
from mpkernel.sim import ModernBoard, SimulatorMissing

pytestmark = pytest.mark.device

MARKER = "paste_ran.txt"
# ~53 KB: one statement per line, each with a comment, as a long generated cell looks.
# The marker file is closed at once: on this board, removing a file that a cell left open
# (after a reconnect's gc.collect) hung the board (reported to the board's builder).
BIG_CELL = (
    f"f = open('{MARKER}', 'w'); f.write('ran'); f.close()\ntotal = 0\n"
    + "".join(f"total += {i}  # step {i:05d} of the long cell, one line each\n"
              for i in range(900))
)
BIG_TOTAL = sum(range(900))


@pytest.fixture(scope="module")
def modern_sim() -> Iterator[ModernBoard]:
    """A modern board of this module's own (a fresh flash file: other sessions may be
    running the shared one)."""
    sim = ModernBoard(fresh=True)
    try:
        sim.start()
    except SimulatorMissing as exc:
        # Not a reason to pass: `bash .ci/bootstrap --test` builds the modern board.
        pytest.fail(exc.user_text(), pytrace=False)
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def modern(modern_sim: ModernBoard) -> Iterator[Board]:
    board = Board(modern_sim.pty_path)
    board.connect()
    try:
        yield board
    finally:
        board.drop_link()


def run(board: Board, code: str) -> str:
    board.start_cell()
    return board.exec(code)


def marker_exists(board: Board) -> bool:
    return run(board, f"import os\nprint('{MARKER}' in os.listdir())").strip() == "True"


@pytest.fixture
def clean(modern: Board) -> Iterator[Board]:
    run(modern, f"import os\nif '{MARKER}' in os.listdir(): os.remove('{MARKER}')")
    yield modern
    run(modern, f"import os\nif '{MARKER}' in os.listdir(): os.remove('{MARKER}')")


def test_a_50_kb_cell_streams_through_raw_paste_and_runs(clean: Board) -> None:
    assert len(BIG_CELL) > 50_000
    started = time.monotonic()
    out = run(clean, BIG_CELL + "print(total)")
    assert out.strip() == str(BIG_TOTAL)
    assert clean.repl is not None and clean.repl.raw_paste is True
    assert marker_exists(clean)  # it ran, once
    assert time.monotonic() - started < 30


def test_a_hard_reset_during_a_large_paste_ends_the_cell_and_the_next_cell_runs(
    clean: Board, modern_sim: ModernBoard, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(clean, "kept = 1")
    assert clean.link is not None
    write = clean.link.write
    sent = [0]

    def write_then_reset(data: bytes) -> None:
        write(data)
        sent[0] += len(data)
        if sent[0] >= 10_000 and sent[0] - len(data) < 10_000:
            modern_sim.hard_reset()  # the reset button, 10 KB into the upload

    monkeypatch.setattr(clean.link, "write", write_then_reset)
    started = time.monotonic()
    with pytest.raises(BoardReset) as info:
        run(clean, BIG_CELL)
    took = time.monotonic() - started
    monkeypatch.undo()
    assert took < 5.0, took
    assert str(info.value).startswith(
        "The board reset while the cell was being sent (none of it ran); its variables are gone."
    )
    assert "MicroPython v1.25.0" in info.value.boot_output
    assert run(clean, "print('kept' in globals())").strip() == "False"  # it did reset
    assert not marker_exists(clean)  # and none of the cell ran


def test_an_interrupt_during_a_large_paste_frees_it_and_keeps_the_variables(
    clean: Board,
) -> None:
    run(clean, "kept = 41")
    clean.start_cell()
    threading.Timer(0.3, clean.interrupt).start()
    started = time.monotonic()
    with pytest.raises(Interrupted) as info:
        clean.exec(BIG_CELL)
    assert time.monotonic() - started < 0.3 + 1.0
    assert "the board stopped reading it and none of it ran" in str(info.value)
    assert run(clean, "print(kept + 1)").strip() == "42"
    assert not marker_exists(clean)


def test_a_syntax_error_early_in_a_large_paste_stops_the_upload(
    clean: Board, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The board compiles as it reads: at line 3 it stops reading and says so (0x04); the
    # host stops sending instead of pushing the other 50 KB.
    cell = BIG_CELL.replace("total = 0\n", "total = = 0\n")
    assert clean.link is not None
    write = clean.link.write
    sent = [0]

    def counting(data: bytes) -> None:
        sent[0] += len(data)
        write(data)

    monkeypatch.setattr(clean.link, "write", counting)
    with pytest.raises(DeviceError) as info:
        run(clean, cell)
    monkeypatch.undo()
    assert info.value.ename == "SyntaxError"
    assert any('File "<stdin>", line 2' in line for line in info.value.traceback)
    assert sent[0] < 2_000, sent[0]  # a few windows of 128 bytes, not 53 KB
    assert not marker_exists(clean)  # a compile error: nothing ran
    assert run(clean, "print('next')").strip() == "next"


# -- through the kernel: nothing host-side refuses or mangles a 50 KB cell ---------------------
@pytest.fixture
def modern_kernel(tmp_path: Path, modern: Board, modern_sim: ModernBoard) -> Iterator[Any]:
    modern.drop_link()  # the kernel opens the port itself (exclusively)
    spec_dir_with_argv(tmp_path / "kernels" / "mpkernel")
    km = KernelManager(
        kernel_name="mpkernel",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")]),
    )
    km.start_kernel(env={**os.environ, "MPKERNEL_PORT": modern_sim.pty_path,
                         "IPYTHONDIR": str(tmp_path / "ipython")})
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_50_kb_cell_ending_in_an_expression_shows_its_result(modern_kernel: Any) -> None:
    _, kc = modern_kernel
    results: list[str] = []
    errors: list[dict] = []

    def collect(msg: dict) -> None:
        if msg["msg_type"] == "execute_result":
            results.append(msg["content"]["data"]["text/plain"])
        elif msg["msg_type"] == "error":
            errors.append(msg["content"])

    reply = kc.execute_interactive(BIG_CELL + "total", timeout=60, output_hook=collect)
    assert reply["content"]["status"] == "ok", errors
    assert results == [str(BIG_TOTAL)]


def test_interrupt_kernel_during_a_large_paste_ends_the_cell_promptly(
    modern_kernel: Any,
) -> None:
    km, kc = modern_kernel
    kc.execute_interactive(f"kept = 41\nimport os\nif '{MARKER}' in os.listdir(): "
                           f"os.remove('{MARKER}')", timeout=60)
    timer = threading.Timer(0.3, km.interrupt_kernel)  # Jupyter's "Interrupt" button
    timer.start()
    started = time.monotonic()
    reply = kc.execute_interactive(BIG_CELL, timeout=60)
    took = time.monotonic() - started
    timer.join()
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "Interrupted"
    assert "none of it ran" in reply["content"]["evalue"]
    assert took < 0.3 + 1.5, took
    shown: list[str] = []
    kc.execute_interactive(
        "import os\nprint(kept + 1, 'paste_ran.txt' in os.listdir())", timeout=60,
        output_hook=lambda m: shown.append(m["content"].get("text", "")),
    )
    assert "".join(shown) == "42 False\n"

