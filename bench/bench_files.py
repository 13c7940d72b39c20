"""Upload and download speed of mpkernel's file transfer on the emulated micro:bit.

Run: `python bench/bench_files.py [--size 14000 --size 12000] [--repeat 5]` (needs
qemu-system-arm and the micro:bit firmware). It starts its own emulated board behind the test
harness's relay, throttled to 115200 baud (11,520 bytes/s each way) with a one-way latency of
4 ms (a CP210x/CH340 USB-serial bridge) and 16 ms (an FTDI bridge's default latency timer).

Each figure is the median over --repeat runs of a whole user-visible operation: for an upload
everything `%put` does (checks, the transfer, the board-side Adler-32 verification); for a
download everything `%get` does. The fraction is bytes/s over the wire's 11,520 bytes/s.

The brief asks for 20 KB files; the emulated filesystem holds about 15 KB in all, and after a
file was deleted (each run deletes the last one's) a new file of 14,208 bytes already ran out
of room (flash pages are reclaimed whole). So the default sizes are 14,000 bytes, the largest
that fits every run, and 12,000 bytes, the size earlier figures used; fixed costs (about
0.2 s of checks and board-side programs at line rate) weigh more the smaller the file.

The board is soft-reset before each upload: the micro:bit has ~10 KB of heap, and a long
session's leftover objects (not the transfer) decide whether a program compiles.
Targets at 4 ms: upload text >= 0.75 of the wire, binary >= 0.6; at 16 ms text >= 0.6.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from harness.relay import BAUD_115200, FTDI_LATENCY, USB_SERIAL_LATENCY, Relay, open_board  # noqa: E402

from mpkernel.board import Board  # noqa: E402
from mpkernel.fs import FileSystem  # noqa: E402
from mpkernel.sim import Simulator  # noqa: E402

TARGETS = {("up", "text", USB_SERIAL_LATENCY): 0.75, ("up", "binary", USB_SERIAL_LATENCY): 0.6,
           ("up", "text", FTDI_LATENCY): 0.6}


def source_text(size: int) -> bytes:
    """Source-code-like lines: mpkernel's own modules, cut to `size` bytes."""
    text = b"".join(p.read_bytes() for p in sorted((HERE.parent / "mpkernel").glob("*.py")))
    return (text * (1 + size // len(text)))[:size]


def measure(board: Board, fs: FileSystem, data: bytes) -> tuple[float, float, int]:
    """(upload seconds, download seconds, frames resent) for one file."""
    board.soft_reset()
    fs.rm_quiet("bench.bin")
    started = time.monotonic()
    result = fs.put(data, "bench.bin")
    up = time.monotonic() - started
    started = time.monotonic()
    back = fs.get("bench.bin")
    down = time.monotonic() - started
    if back != data:
        raise SystemExit("the file came back different: the transfer is broken")
    return up, down, result.resends


def report(relay: Relay, board: Board, fs: FileSystem, size: int, repeat: int) -> None:
    kinds = {"text": source_text(size), "binary": os.urandom(size)}
    rows = []
    for latency in (USB_SERIAL_LATENCY, FTDI_LATENCY):
        relay.set_throttle(rate=BAUD_115200, latency=latency)
        for kind, data in kinds.items():
            runs = [measure(board, fs, data) for _ in range(repeat)]
            for direction, index in (("up", 0), ("down", 1)):
                seconds = statistics.median(r[index] for r in runs)
                rate = len(data) / seconds
                resent = sorted(r[2] for r in runs) if direction == "up" else []
                rows.append((direction, kind, latency, rate, rate / BAUD_115200, resent))
    print(f"\n{size}-byte files, 115200 baud ({BAUD_115200} bytes/s), median of "
          f"{repeat}; micro:bit (MicroPython 1.9.2: stream method, Adler-32 check)")
    print(f"{'direction':9} {'kind':7} {'latency':>7} {'bytes/s':>8} {'of wire':>7}  "
          f"{'target':>6}  met  frames resent per run")
    for direction, kind, latency, rate, frac, resent in rows:
        target = TARGETS.get((direction, kind, latency))
        met = "-" if target is None else ("yes" if frac >= target else "NO")
        print(f"{'upload' if direction == 'up' else 'download':9} {kind:7} "
              f"{latency * 1000:5.0f}ms {rate:8.0f} {frac:7.2f}  "
              f"{'' if target is None else f'{target:.2f}':>6}  {met:>3}  "
              f"{resent if resent else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, action="append",
                        help="file size in bytes; repeat for several (default 14000 and 12000)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sim = Simulator().start()
    relay = Relay(sim, board_fd=open_board(sim.pty_path))
    try:
        if not relay.sync_board(timeout=8):
            raise SystemExit("the emulated board did not answer")
        relay.set_throttle(rate=BAUD_115200)
        board = Board(relay.url)
        print(board.connect())
        fs = FileSystem(board)
        fs.info()
        for size in args.size or [14_000, 12_000]:
            report(relay, board, fs, size, args.repeat)
        board.close()
    finally:
        relay.stop()
        sim.stop()


if __name__ == "__main__":
    main()
