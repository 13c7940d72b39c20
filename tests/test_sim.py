"""The emulated board: what a user without QEMU or the firmware is told, and hard reset."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mpkernel import sim
from mpkernel.board import Board


def test_missing_firmware_names_the_package_and_the_command(tmp_path: Path) -> None:
    with pytest.raises(sim.SimulatorMissing) as info:
        sim.check_installed(firmware=tmp_path / "firmware.hex")
    text = info.value.user_text()
    assert "firmware-microbit-micropython" in text
    assert "apt-get install qemu-system-arm firmware-microbit-micropython" in text


def test_missing_qemu_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(sim.SimulatorMissing) as info:
        sim.check_installed()
    assert "qemu-system-arm" in str(info.value)


def test_connecting_to_sim_without_qemu_fails_with_that_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(sim.SimulatorMissing):
        Board("sim").connect()


@pytest.mark.device
def test_sim_board_hard_reset_keeps_files_and_clears_variables() -> None:
    board = Board("sim")
    try:
        board.connect()
        board.exec("f = open('keep.txt', 'w')\nf.write('kept')\nf.close()\nx = 1")
        message = board.hard_reset()
        assert "variables are gone" in message
        assert board.exec("print(open('keep.txt').read())").strip() == "kept"
        assert "NameError" in _error_of(board, "x")
    finally:
        board.close()


def _error_of(board: Board, code: str) -> str:
    try:
        board.exec(code)
    except Exception as err:  # the test wants the error's name
        return f"{type(err).__name__}: {err}"
    return ""


@pytest.mark.device
def test_the_emulator_ends_when_its_kernel_is_killed() -> None:
    # Jupyter kills a kernel with SIGKILL on restart: no atexit runs, QEMU must still go.
    import os
    import signal
    import subprocess
    import sys
    import time

    child = subprocess.Popen(
        [sys.executable, "-c",
         "from mpkernel.sim import Simulator; import sys, time\n"
         "s = Simulator().start(); print(s._proc.pid, flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None
    qemu_pid = int(child.stdout.readline())
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(qemu_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(qemu_pid, signal.SIGKILL)
    raise AssertionError("QEMU outlived the process that started it")
