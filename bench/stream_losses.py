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

`--wire-waits` runs the same uploads over a wire that waits for the board. Normally the relay
writes into QEMU's pty at line rate whether or not QEMU is running; while a busy host keeps
QEMU off the CPU the bytes pile up there, and when it runs again they reach the board far
faster than any serial line carries them, overflowing its 63-byte receive ring. A real board
never stops running, so its wire never piles up. With this option the bench makes the pty
itself (QEMU gets its other end), keeps at most 8 bytes waiting for QEMU to read, and paces
what follows at line rate from when it was actually handed over, as a wire that stood still
while the board did. The difference between the two runs is the emulator's share of the
losses. Linux only (FIONREAD on the pty).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import statistics
import struct
import sys
import termios
import time
import tty
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_files  # noqa: E402
from harness.relay import Relay  # noqa: E402

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


class _PtyWeMade(Simulator):
    """The emulated micro:bit with its UART on the slave end of a pty this process opened.

    The slave's path goes first among QEMU's serial options, so it is the board's UART; the
    `-serial pty` the base class adds becomes a second serial port the micro:bit lacks."""

    def __init__(self, slave: str) -> None:
        super().__init__()
        self.slave = slave

    def _command(self, qemu: str) -> list[str]:
        return super()._command(qemu) + ["-serial", self.slave]


class _WireThatWaits(Relay):
    """Hands the board its bytes 8 at a time, each only when at most WAITING are still unread
    by QEMU, and never faster than the line rate from the moment it was handed over.

    The pacing is its own, not the relay's pipe with a piece of 8: that pipe writes every piece
    already due in one go and re-paces only after running over 2 ms late, and with it the
    board lost bytes in 31 frames of 8 busy uploads against 4 with this (0.47 against 0.54)."""

    WAITING = 8
    PIECE = 8
    PATIENCE = 2.0  # s: QEMU not reading for this long is a stopped board; write anyway

    def __init__(self, board: Simulator, master: int, slave_fd: int) -> None:
        self._slave_fd = slave_fd
        self._next_free = 0.0
        super().__init__(board, board_fd=master)

    def _unread(self) -> int:
        return struct.unpack("i", fcntl.ioctl(self._slave_fd, termios.FIONREAD, b"\0" * 4))[0]

    def _write_board(self, data: bytes) -> bool:
        rate = self.to_board.rate
        for i in range(0, len(data), self.PIECE):
            piece = data[i : i + self.PIECE]
            deadline = time.monotonic() + self.PATIENCE
            while self._unread() > self.WAITING and time.monotonic() < deadline:
                time.sleep(0.0003)  # modelling a wire: nothing to read to, only a count
            if rate:
                now = time.monotonic()
                if now < self._next_free:
                    time.sleep(self._next_free - now)
                self._next_free = max(now, self._next_free) + len(piece) / rate
            if not super()._write_board(piece):
                return False
        return True


def _start_waiting_wire() -> tuple[Simulator, Relay, int]:
    master, slave = pty.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    os.set_blocking(master, False)
    sim = _PtyWeMade(os.ttyname(slave))
    sim.start()
    relay = _WireThatWaits(sim, master, slave)
    bench_files.wait_until_answering(sim, relay)
    return sim, relay, master


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
        sim, relay, fd = _start_waiting_wire()
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
