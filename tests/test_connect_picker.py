"""What a person sees from `%connect` alone, from choosing the board already in use, from the
emulated micro:bit's empty filesystem, from `%help` and from `%doctor sim:qemu` (issue 11).

Run on the real emulated boards, started as a user's `%connect sim` / `%connect sim:qemu`
would start them; the modern board uses a flash file of the test's own, so a user's (or
another test run's) board keeps its files.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_connect import KernelLike, run_magic
from test_ports import FakeHandle

from mpkernel.board import ports
from mpkernel.magics import MagicContext
from mpkernel.sim.cache import find_firmware

pytestmark = pytest.mark.device


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[KernelLike]:
    monkeypatch.setenv("MPKERNEL_QEMU_FLASH", str(tmp_path / "flash.bin"))
    # No serial ports: the picker's choices are the emulated boards only, as on a CI machine.
    monkeypatch.setattr(ports, "_default_lister", lambda: [])
    k = KernelLike()
    yield k
    if k.board is not None:
        k.board.close()


def widget_context(k: KernelLike, shown: list[FakeHandle]) -> MagicContext:
    ctx = k.context(answer="")
    ctx.widgets_ok = True

    def show(obj: object) -> FakeHandle:
        shown.append(FakeHandle(obj))
        return shown[-1]

    ctx.show = show
    return ctx


def test_connecting_to_the_micro_bit_says_its_files_do_not_last(kernel: KernelLike) -> None:
    run_magic(kernel.context(answer=""), "%connect", "sim")
    said = "".join(kernel.said)
    assert said.startswith("Connected to /dev/pts/")
    assert "(the emulated micro:bit): micro:bit v" in said
    assert "Its filesystem is empty at each start (a kernel restart too)" in said
    # ... and it is true: a file written now is gone on the next start.
    kernel.board.start_cell()
    kernel.board.exec("open('keep.txt', 'w').write('x')")
    kernel.board.close()
    kernel.board = None
    run_magic(kernel.context(answer=""), "%connect", "sim")
    kernel.board.start_cell()
    assert kernel.board.exec("import os\nprint(os.listdir())").strip() == "[]"


def test_choosing_the_board_in_use_keeps_it_and_its_variables(kernel: KernelLike) -> None:
    run_magic(kernel.context(answer=""), "%connect", "sim")
    board = kernel.board
    pid = board.simulator._proc.pid
    board.start_cell()
    board.exec("answer = 42")
    kernel.said.clear()
    run_magic(kernel.context(answer=""), "%connect", "sim")
    said = "".join(kernel.said)
    assert said.startswith("Already connected to /dev/pts/")
    assert "Nothing changed: its variables are kept" in said
    assert kernel.board is board and board.simulator._proc.pid == pid
    board.start_cell()
    assert board.exec("print(answer)").strip() == "42"


def test_connect_alone_says_what_is_connected_and_lists_both_emulated_boards(
    kernel: KernelLike,
) -> None:
    run_magic(kernel.context(answer=""), "%connect", "")
    said = "".join(kernel.said)
    assert said.startswith("No board is connected yet.\nNo serial ports found.\n")
    assert "%connect sim (the emulated micro:bit (MicroPython 1.9.2))" in said
    # The modern board is offered where its firmware is built (CI's bootstrap builds it).
    assert find_firmware() is not None
    assert "%connect sim:qemu (the emulated MicroPython 1.25 board)" in said

    run_magic(kernel.context(answer=""), "%connect", "sim")
    kernel.said.clear()
    run_magic(kernel.context(answer=""), "%connect", "")
    first = "".join(kernel.said).split("\n")[0]
    assert first.startswith("Connected now to /dev/pts/")
    assert "(the emulated micro:bit): micro:bit v" in first


def test_the_picker_preselects_the_board_in_use_and_switches_boards(
    kernel: KernelLike,
) -> None:
    shown: list[FakeHandle] = []
    run_magic(kernel.context(answer=""), "%connect", "sim:qemu")
    run_magic(widget_context(kernel, shown), "%connect", "")
    picker = shown[-1].shown[0].widget
    assert [v for _, v in picker.dropdown.options] == ["sim", "sim:qemu"]
    assert picker.dropdown.value == "sim:qemu"
    # The text a saved notebook keeps names the board in use and the choices.
    text = shown[-1].bundle()["text/plain"]
    assert text.startswith("Connected now to /dev/pts/")
    assert "(the emulated MicroPython 1.25 board)" in text.split("\n")[0]
    # Choosing the micro:bit connects to it; the output becomes the "Connected to" text,
    # not a widget: nothing of it goes to the kernel's stream (a log console, outside a cell).
    kernel.said.clear()
    picker.dropdown.value = "sim"
    picker.button.click()
    final = shown[-1].bundle()
    assert list(final) == ["text/plain"]
    assert final["text/plain"].startswith("Connected to /dev/pts/")
    assert "(the emulated micro:bit): micro:bit v" in final["text/plain"]
    assert kernel.said == []
    kernel.board.start_cell()
    assert kernel.board.exec("import sys\nprint(sys.platform)").strip() == "microbit"


def test_help_is_a_table_with_a_text_fallback(kernel: KernelLike) -> None:
    shown: list[FakeHandle] = []
    run_magic(widget_context(kernel, shown), "%help", "")
    bundle = shown[0].bundle()
    html, text = bundle["text/html"], bundle["text/plain"]
    assert "<tr><td><code>%connect</code></td>" in html
    assert "`" not in html  # backticks became <code>
    assert "<code>%help put</code>" in html
    lines = text.split("\n")
    assert max(len(line) for line in lines) <= 80
    # A wrapped description continues under itself, never at column 0.
    assert all(line.startswith("  ") for line in lines[1:] if line)


def test_doctor_checks_the_modern_emulated_board(kernel: KernelLike) -> None:
    run_magic(kernel.context(answer=""), "%doctor", "sim:qemu")
    said = "".join(kernel.said)
    assert said.startswith("Doctor: sim:qemu\n")
    assert "started a fresh copy of the emulated MicroPython 1.25 board" in said
    assert "banner: MicroPython v1.25.0" in said
    assert "Verdict: MicroPython is fine" in said
    assert said.rstrip().endswith("Next: Connect with %connect sim:qemu")
