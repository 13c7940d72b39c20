"""Why micro:bit stream uploads resend: the board's own count of each reason it NAKed.

Run: `python bench/stream_losses.py [--repeat 8] [--busy N] [--emulator-cpus 1]`
(needs qemu-system-arm and the micro:bit firmware). Each run uploads 10,000 bytes of text
with `%put`'s code path to the emulated micro:bit behind the test harness's relay at 115200
baud + 4 ms, as bench_files does, and prints the run's fraction of the wire, the frames the
host sent again, and what the board counted while receiving:

- sum: a frame arrived whole but its checksum failed (bytes went missing inside it and later
  bytes filled it up; the board's 63-byte receive ring overflowed);
- cut: an incomplete frame or header went 50 ms without another byte;
- later: a later frame's header arrived where the board waited for an earlier one;
- again: the board repeated its NAK after 100 ms of silence;
- resync: bytes the board skipped looking for the next header (no NAK of their own).

The counters ride in a copy of the stream program (a global list, read after each upload);
the host side is mpkernel's own. `--emulator-cpus` confines every QEMU thread to those CPUs
(Linux sched_setaffinity), which shows how much the losses depend on the emulator's own
threads getting CPU time rather than on mpkernel.

`--wire-waits` runs the same uploads over a wire that waits for the board, as a real serial
line does for a real board (tests/harness/waiting_wire.py); the difference between the two
runs is the emulator's share of the losses. Linux only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_files  # noqa: E402
from harness.waiting_wire import start_waiting_wire  # noqa: E402

from mpkernel.board.board import Board  # noqa: E402
from mpkernel.files import stream as fs_stream  # noqa: E402
from mpkernel.files.api import FileSystem  # noqa: E402
from mpkernel.sim import Simulator  # noqa: E402

SIZE = 10_000
REASONS = ("header cut", "later", "cut", "sum", "again", "resync")
COUNTERS = "__mpk_why"

# (original, instrumented) pairs; each original must occur exactly once.
_SCAN_EDITS = (
    (" if len(b)<6:return b,2 if b and w>50 else 0,6,None",
     " if len(b)<6:\n  if b and w>50:__mpk_why[0]+=1\n"
     "  return b,2 if b and w>50 else 0,6,None"),
    ("  i=b.find(bytes([e&255]),1);return",
     "  __mpk_why[1 if 0<s<4096 and m<=F else 5]+=1\n  i=b.find(bytes([e&255]),1);return"),
    ("  return (b[1:],2,6,None) if w>50 else (b,0,7+m,None)",
     "  if w>50:__mpk_why[2]+=1\n  return (b[1:],2,6,None) if w>50 else (b,0,7+m,None)"),
    (" if sum(d)&65535!=b[4]|b[5]<<8 or b[6+m]!=e+m+90&255:return b[1:],2,6,None",
     " if sum(d)&65535!=b[4]|b[5]<<8 or b[6+m]!=e+m+90&255:\n"
     "  __mpk_why[3]+=1;return b[1:],2,6,None"),
)
_UP_EDITS = (("    L=[];g=0;q=6;t=n=tk();", "    __mpk_why[4]+=1;L=[];g=0;q=6;t=n=tk();"),)


def _edited(text: str, edits: tuple[tuple[str, str], ...]) -> str:
    for old, new in edits:
        if text.count(old) != 1:
            raise SystemExit("files/stream.py's programs changed: update stream_losses' counters "
                             f"(no single {old.strip()[:40]!r})")
        text = text.replace(old, new)
    return text


def instrument() -> None:
    """Put the counters into the stream programs this process sends."""
    fs_stream._STREAM_SCAN = _edited(fs_stream._STREAM_SCAN, _SCAN_EDITS)
    fs_stream._STREAM_UP = _edited(fs_stream._STREAM_UP, _UP_EDITS)


def reset_counters(board: Board) -> None:
    board.exec(f"{COUNTERS}=[0]*{len(REASONS)}")


def read_counters(board: Board) -> dict[str, int]:
    """What the board counted since reset_counters, by reason."""
    counts = (int(x) for x in board.exec(f"print(*{COUNTERS})").split())
    return dict(zip(REASONS, counts, strict=True))


def confine(pid: int, cpus: set[int]) -> None:
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=8)
    parser.add_argument("--busy", type=int, default=0, help="busy processes during the runs")
    parser.add_argument("--emulator-cpus", default="",
                        help="comma-separated CPU numbers to confine QEMU's threads to")
    parser.add_argument("--wire-waits", action="store_true",
                        help="a wire that waits while QEMU is not reading (see above)")
    args = parser.parse_args()
    instrument()
    with bench_files.busy_processes(args.busy):
        measure(args)


def measure(args: argparse.Namespace) -> None:
    if args.wire_waits:
        sim, relay, fd = start_waiting_wire()
    else:
        sim = Simulator()
        relay, fd = bench_files.start(sim)
    try:
        if args.emulator_cpus:
            confine(sim.pid or 0, {int(c) for c in args.emulator_cpus.split(",")})
        board = Board(relay.url)
        board.connect()
        relay.set_throttle(rate=bench_files.WIRE, latency=bench_files.USB_SERIAL_LATENCY)
        fs = FileSystem(board)
        print(f"{os.cpu_count()} cores, {args.busy} busy, emulator on CPUs "
              f"{args.emulator_cpus or 'any'}; {SIZE} bytes of text at 115200 baud + 4 ms; "
              + ("a wire that waits for the board" if args.wire_waits else
                 "the relay writing into QEMU's pty at line rate"))
        print(f"{'run':>3} {'x wire':>7} {'resent':>6}  " + " ".join(f"{r:>10}" for r in REASONS))
        rates: list[float] = []
        totals = [0] * len(REASONS)
        for run in range(1, args.repeat + 1):
            bench_files.wipe(board)
            reset_counters(board)
            began = time.monotonic()
            result = fs.put(bench_files.source_text(SIZE), "bench.txt")
            rate = SIZE / bench_files.WIRE / (time.monotonic() - began)
            counts = list(read_counters(board).values())
            rates.append(rate)
            totals = [a + b for a, b in zip(totals, counts, strict=True)]
            print(f"{run:>3} {rate:>7.3f} {result.resends:>6}  "
                  + " ".join(f"{c:>10}" for c in counts), flush=True)
        print(f"median {statistics.median(rates):.3f} x wire, worst {min(rates):.3f}; "
              "totals " + ", ".join(f"{r} {t}" for r, t in zip(REASONS, totals, strict=True)))
        board.close()
    finally:
        relay.stop()
        os.close(fd)
        sim.stop()


if __name__ == "__main__":
    main()
