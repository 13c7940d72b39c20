"""Randomized faults during file operations on the emulated board (issue 13, "Files").

Seeded sequences of put/replace/rm with sizes up to the filesystem's capacity; faults (hard
reset, cable pulled, interrupt) at random moments; after every step every file on the board
is compared with a model on the host (tests/harness/fs_random.py says what may differ). The
seed is printed and can be set with MPK_FS_SEED to replay a failure; bench/soak_files.py runs
longer sequences.
"""

from __future__ import annotations

import os
import time

import pytest
from harness.fs_random import RandomRun

from mpkernel.files import codec
from mpkernel.files.api import FileSystem

pytestmark = [pytest.mark.device,
              pytest.mark.boards("microbit", "qemu", reason="files must survive faults on both")]

STEPS = 100
BUDGET = 90.0  # s: CI's share for this test on the micro:bit


def test_random_operations_with_faults_never_lose_a_file(board, relay) -> None:  # noqa: ANN001
    seed = int(os.environ.get("MPK_FS_SEED", "13"))
    print(f"seed {seed}")
    board.soft_reset()
    board.exec("import os\nfor __n in os.listdir():\n os.remove(__n)\n__n=0\ndel __n")
    fs = FileSystem(board)
    # Sizes up to what the filesystem holds: the micro:bit's usable chunks, or (a modern board
    # with megabytes of flash) a share of its free space that keeps a step short.
    usable = (codec.MICROBIT_CHUNKS - codec.SAFETY_CHUNKS) * codec.CHUNK_DATA
    if board.caps.statvfs:
        usable = min(fs.df().free // 3, 24_000)
    run = RandomRun(fs, relay, seed=seed, capacity=usable, log=print)
    started = time.monotonic()
    records = run.run(STEPS)
    took = time.monotonic() - started
    faults = [r for r in records if r.fault != "none"]
    cut = [r for r in records if r.outcome.startswith("failed")]
    print(f"{len(records)} steps in {took:.1f} s; {len(faults)} with a fault, {len(cut)} cut "
          "short by one")
    # The run must have exercised what it claims to: faults that cut operations short, and
    # on the micro:bit refusals of files that do not fit.
    assert len(cut) >= 10
    assert {r.fault for r in cut} >= {"reset", "interrupt"}
    if not board.caps.statvfs:  # sizes reach the micro:bit's capacity, not a modern board's
        assert any(r.outcome == "refused" for r in records)
    assert took < BUDGET * 1.5, f"{took:.0f} s: too slow for CI"
