"""Power lost at every filesystem step of a put, a replace and a rename, on three kinds of
firmware (tests/fakes/fsboard.py runs the real board-side programs against an in-memory
filesystem): afterwards, once the next file command has recovered, every file is whole.

The emulated micro:bit covers "no os.rename" on real firmware (test_fs_trust.py,
test_fs_faults_random.py); this sweep tries every crash point, which timing-based faults on
a real board cannot promise, and the two rename behaviours no emulated board has yet.
"""

from __future__ import annotations

import os

import pytest
from fakes.fsboard import FakeFsBoard

from mpkernel.errors import BoardReset, MpkernelError
from mpkernel.files import codec
from mpkernel.files.api import FileSystem

MODES = ["none", "atomic", "refuse"]
OTHER = os.urandom(700)
OLD = b"old version\n" * 30
NEW = os.urandom(900)


def board_with(mode: str, files: dict[str, bytes]) -> FakeFsBoard:
    board = FakeFsBoard(mode)
    board.flash.files.update(files)
    return board


def crash_sweep(mode: str, files: dict[str, bytes], action,  # noqa: ANN001
                stay_off: bool) -> list[dict[str, bytes]]:
    """Run `action(fs)` with power lost before step 0, 1, 2, ... until it completes; after each
    loss, recover as the next file command would. Returns the files after each run.

    stay_off: the board stays unreachable after the loss (a pulled cable), so the operation
    cannot finish the step itself; otherwise it comes straight back (a reset)."""
    outcomes = []
    for crash_at in range(500):
        board = board_with(mode, files)
        board.stay_off = stay_off
        fs = FileSystem(board)
        fs.info()
        board.flash.steps.clear()
        board.flash.crash_at = crash_at
        try:
            action(fs)
        except (BoardReset, MpkernelError):
            pass
        crashed = board.resets > 0
        board.flash.crash_at = None
        board.power_on()
        FileSystem(board).info()  # a new host (or the next command): recovery runs
        outcomes.append(dict(board.flash.files))
        if not crashed:
            return outcomes
    raise AssertionError("the operation never completed")


def assert_old_then_new(outcomes: list[dict[str, bytes]], before: dict[str, bytes],
                        after: dict[str, bytes]) -> None:
    """Each crash point leaves exactly the files before or the files after, and once a
    crash point leaves `after` every later one does (the operation has one commit point)."""
    kinds = []
    for i, files in enumerate(outcomes):
        kind = "new" if files == after else "old"
        assert files == (after if kind == "new" else before), (
            f"power lost before step {i} left {sorted(files)}")
        kinds.append(kind)
    assert kinds[-1] == "new", "with no crash the operation must complete"
    first_new = kinds.index("new")
    assert kinds[first_new:] == ["new"] * (len(kinds) - first_new), kinds
    assert kinds[0] == "old"


@pytest.mark.parametrize("stay_off", [False, True], ids=["reset", "unplugged"])
@pytest.mark.parametrize("mode", MODES)
def test_replace_survives_power_loss_at_every_step(mode: str, stay_off: bool) -> None:
    before = {"other.bin": OTHER, "a.bin": OLD}
    outcomes = crash_sweep(mode, before, lambda fs: fs.put(NEW, "a.bin"), stay_off)
    assert_old_then_new(outcomes, before, {"other.bin": OTHER, "a.bin": NEW})


@pytest.mark.parametrize("stay_off", [False, True], ids=["reset", "unplugged"])
@pytest.mark.parametrize("mode", MODES)
def test_new_file_survives_power_loss_at_every_step(mode: str, stay_off: bool) -> None:
    before = {"other.bin": OTHER}
    outcomes = crash_sweep(mode, before, lambda fs: fs.put(NEW, "b.bin"), stay_off)
    assert_old_then_new(outcomes, before, {"other.bin": OTHER, "b.bin": NEW})


@pytest.mark.parametrize("stay_off", [False, True], ids=["reset", "unplugged"])
@pytest.mark.parametrize("mode", MODES)
def test_rename_survives_power_loss_at_every_step(mode: str, stay_off: bool) -> None:
    before = {"other.bin": OTHER, "main.py": OLD}
    outcomes = crash_sweep(mode, before, lambda fs: fs.move("main.py", "main.py.off"), stay_off)
    assert_old_then_new(outcomes, before, {"other.bin": OTHER, "main.py.off": OLD})


def test_fat_rename_is_journalled_and_recovery_finishes_from_the_temporary() -> None:
    # Issue 13, item 4: power lost after the old file was removed and before the rename.
    # The old code removed the verified temporary as a leftover: both versions lost.
    board = board_with("refuse", {"a.bin": OLD})
    board.stay_off = True  # the cable was pulled: nothing can finish it until the next command
    fs = FileSystem(board)
    fs.info()
    board.flash.steps.clear()
    steps_to_rename = None
    probe = board_with("refuse", {"a.bin": OLD})
    FileSystem(probe).put(NEW, "a.bin")
    steps_to_rename = probe.flash.steps.index("rename a.bin.mpk~ a.bin")
    assert probe.flash.steps[steps_to_rename - 1] == "remove a.bin"
    board.flash.crash_at = steps_to_rename + len(board.flash.steps)
    with pytest.raises(MpkernelError):
        fs.put(NEW, "a.bin")
    board.power_on()
    left = dict(board.flash.files)
    assert "a.bin" not in left and left["a.bin.mpk~"] == NEW
    assert left[codec.JOURNAL].startswith(b"r\na.bin.mpk~\na.bin\n")
    said = FileSystem(board).recover()
    assert board.flash.files == {"a.bin": NEW}
    assert said.startswith("Finished replacing a.bin")


def test_littlefs_replace_is_one_rename_and_needs_no_journal() -> None:
    board = board_with("atomic", {"a.bin": OLD})
    FileSystem(board).put(NEW, "a.bin")
    changes = [s for s in board.flash.steps if not s.startswith("write")]
    assert changes == ["create a.bin.mpk~", "rename a.bin.mpk~ a.bin"]
    assert board.flash.files == {"a.bin": NEW}


def test_rescue_rename_never_overwrites_and_checks_room_on_a_full_micro_bit() -> None:
    board = board_with("none", {"main.py": OLD, "main.py.off": b"keep"})
    fs = FileSystem(board)
    with pytest.raises(MpkernelError, match="already a main.py.off"):
        fs.move("main.py", "main.py.off")
    assert board.flash.files == {"main.py": OLD, "main.py.off": b"keep"}
    # A filesystem with no room for the copy: refused before a byte is written.
    full = {"main.py": OLD, "big.bin": bytes(codec.CHUNK_DATA * (codec.MICROBIT_CHUNKS - 6))}
    board = board_with("none", full)
    fs = FileSystem(board)
    fs.info()
    board.flash.steps.clear()
    with pytest.raises(MpkernelError, match="too full to rename main.py"):
        fs.move("main.py", "main.py.off")
    assert board.flash.steps == [] and board.flash.files == full


@pytest.mark.parametrize("mode", MODES)
def test_move_onto_an_existing_name_with_a_slash_replaces_it_whole(mode: str) -> None:
    # What %mqtt bridge needs on the micro:bit: a verified upload moved to "umqtt/simple.py".
    before = {"other.bin": OTHER, "umqtt_s.tmp": NEW, "umqtt/simple.py": OLD}
    outcomes = crash_sweep(mode, before, lambda fs: fs.move(
        "umqtt_s.tmp", "umqtt/simple.py", replace=True, any_name=True), stay_off=True)
    assert_old_then_new(outcomes, before, {"other.bin": OTHER, "umqtt/simple.py": NEW})
