"""Soak the files layer: many seeded random put/replace/rm steps with faults, on an emulated
board (the micro:bit, or --board qemu) behind the fault-injecting relay (the engine is
tests/harness/fs_random.py, the same as tests/test_fs_faults_random.py runs for 100 steps in
CI).

    python bench/soak_files.py --steps 1000 --seed 7 [--board qemu]

Prints every step, then the count, the failures (a step after which a file on the board was
neither its old nor its new version, or another file changed, or a temporary was left), and
the median and worst step time. Exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from harness.fs_random import Mismatch, RandomRun  # noqa: E402
from harness.relay import Relay, comports_with  # noqa: E402

from mpkernel.board.board import Board  # noqa: E402
from mpkernel.files import codec  # noqa: E402
from mpkernel.files.api import FileSystem  # noqa: E402
from mpkernel.sim import ModernBoard, Simulator  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.add_argument("--board", choices=["microbit", "qemu"], default="microbit",
                        help="the emulated micro:bit, or the modern board on a fresh flash file")
    args = parser.parse_args()
    sim = (Simulator() if args.board == "microbit" else ModernBoard(fresh=True)).start()
    relay = Relay(sim)
    board = Board(relay.url, lister=lambda: comports_with([relay]), reattach_wait=5.0)
    failures: list[str] = []
    run: RandomRun | None = None
    try:
        if not relay.sync_board(timeout=8):
            print("the emulated board did not answer")
            return 1
        board.connect()
        board.exec("import os\nfor __n in os.listdir():\n os.remove(__n)\n__n=0\ndel __n")
        fs = FileSystem(board)
        capacity = (codec.MICROBIT_CHUNKS - codec.SAFETY_CHUNKS) * codec.CHUNK_DATA
        if board.caps.statvfs:  # as tests/test_fs_faults_random.py: a share of a big flash
            capacity = min(fs.df().free // 3, 24_000)
        run = RandomRun(fs, relay, seed=args.seed, capacity=capacity,
                        log=(lambda text: None) if args.quiet else print)
        for _ in range(args.steps):
            try:
                run.step()
            except Mismatch as err:
                failures.append(str(err))
                print(f"FAILURE: {err}")
                # Start again from what the board holds, so one failure does not hide more.
                run.model = {}
                board.exec("import os\nfor __n in os.listdir():\n os.remove(__n)\n"
                           "__n=0\ndel __n")
            except Exception:
                # Not a lost file but something else (the board out of reach, a reply out of
                # step): show the line's last traffic with the traceback.
                print(relay.log_text(150))
                raise
    finally:
        board.close()
        relay.stop()
        sim.stop()
    records = run.records if run else []
    times = sorted(r.seconds for r in records)
    cut = sum(r.outcome.startswith("failed") for r in records)
    faults = sum(r.fault != "none" for r in records)
    print(f"\nseed {args.seed}: {len(records)} steps, {faults} with a fault injected, {cut} cut "
          f"short by it, {sum(r.outcome == 'refused' for r in records)} refused (no room); "
          f"{len(failures)} failures.")
    if times:
        print(f"step time: median {statistics.median(times):.2f} s, worst {times[-1]:.2f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
