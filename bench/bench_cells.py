"""Large cells: how close to the wire's speed a big cell reaches the board and runs.

    python bench/bench_cells.py [--n 10] [--sizes 11000,50000] [--latency 4]

Each cell is sent by Board.exec to the modern emulated board (MicroPython 1.25, raw-paste with
its flow control) behind the project's relay, throttled to 115200 baud (11,520 bytes/s) with
the given USB latency. The cell is plain statements that leave one variable, so what is
measured is the upload and the board's compile-as-it-streams, not the program's run time.
Prints, per size: median and worst time of N, and wire time / elapsed (1.0 = the line's
rate), with the paste mode the board actually answered (read from the Board, not assumed).
The micro:bit has no raw-paste mode and refuses cells near its 9 KB of RAM (tested
elsewhere); it is not part of this benchmark.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from harness.relay import BAUD_115200, Relay  # noqa: E402
from harness.wire import open_board  # noqa: E402

from mpkernel.board.board import Board  # noqa: E402
from mpkernel.sim import ModernBoard  # noqa: E402

WIRE_BYTES_PER_S = 11_520


def big_cell(size: int) -> str:
    """About `size` bytes of statements; each line is compiled and run, none keeps memory."""
    line = "v = 1234567 + 7654321  # a comment that pads the line to fifty bytes\n"
    lines = [line] * max(1, size // len(line))
    return "".join(lines) + "print(v)\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10, help="runs per size (default 10)")
    parser.add_argument("--sizes", default="11000,50000", help="cell sizes in bytes")
    parser.add_argument("--latency", type=float, default=4.0, help="USB latency in ms")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]

    sim = ModernBoard(fresh=True).start()
    fd = open_board(sim.pty_path)
    relay = Relay(sim, front="pty", board_fd=fd)
    try:
        relay.set_throttle(BAUD_115200, args.latency / 1000)
        if not relay.sync_board(timeout=8):
            raise RuntimeError("the emulated board does not answer")
        board = Board(relay.url)
        print(board.connect().splitlines()[0])
        print(f"link: relay at 115200 baud (11,520 B/s) + {args.latency:g} ms latency; "
              f"N={args.n}")
        print(f"{'cell':>10}  {'median s':>9}  {'worst s':>8}  {'wire/median':>11}  "
              f"{'wire/worst':>10}  mode")
        for size in sizes:
            code = big_cell(size)
            expected = str(1234567 + 7654321)
            times = []
            for _ in range(args.n):
                board.start_cell()
                start = time.perf_counter()
                out = board.exec(code)
                times.append(time.perf_counter() - start)
                if out.strip() != expected:
                    raise RuntimeError(f"the {len(code)}-byte cell printed {out[-80:]!r}")
            mode = "raw-paste" if board.repl is not None and board.repl.raw_paste else "plain raw"
            wire = len(code) / WIRE_BYTES_PER_S
            med, worst = statistics.median(times), max(times)
            print(f"{len(code):>10}  {med:9.2f}  {worst:8.2f}  {wire / med:11.2f}  "
                  f"{wire / worst:10.2f}  {mode}")
        board.close()
    finally:
        relay.stop()
        sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
