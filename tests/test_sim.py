"""The emulated board: what a user without QEMU or the firmware is told, and hard reset."""

from __future__ import annotations

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
    monkeypatch.setattr(sim.shutil, "which", lambda name: None)
    with pytest.raises(sim.SimulatorMissing) as info:
        sim.check_installed()
    assert "qemu-system-arm" in str(info.value)


def test_connecting_to_sim_without_qemu_fails_with_that_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sim.shutil, "which", lambda name: None)
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
