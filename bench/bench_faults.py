"""Fault-injection benchmark: does mpkernel keep the board, and how fast?

    python bench/bench_faults.py [--n 20] [--baud] [--board microbit|qemu] [--no-mpremote]
                                 [--peer-n N]

Runs each scenario N times against an emulated board (the micro:bit, or the modern
MicroPython 1.25 board with --board qemu) behind the fault-injecting relay
and prints, per scenario: successes out of N, median and worst time to a usable prompt,
interrupt request to the cell's end, and reattach time after the board is back. Then the
issue's targets and whether they were met. With mpremote installed, it is run N times (or
--peer-n times) through the same relay link against the same busy boards (a main.py that lets
Ctrl-C through, one that swallows it), with its successes, median and worst time printed on
clearly labelled comparison lines.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from harness.programs import swallowing  # noqa: E402
from harness.relay import (  # noqa: E402
    BAUD_115200,
    STALE_HALF_CELL,
    STALE_RAW_OUTPUT,
    TO_HOST,
    USB_SERIAL_LATENCY,
    Relay,
    comports_with,
)
from harness.wire import open_board  # noqa: E402

from mpkernel.board.board import Board  # noqa: E402
from mpkernel.board.interrupts import BoardBusy  # noqa: E402
from mpkernel.errors import BoardReset, DeviceError, LinkLost, PortBusy  # noqa: E402
from mpkernel.rescue import rescue  # noqa: E402
from mpkernel.sim import ModernBoard, simulator_for  # noqa: E402

PRINTING = "import time\ni=0\nwhile True:\n i+=1\n print('tick', i)\n time.sleep_ms(50)"
SILENT = "i=0\nwhile True:\n i+=1"
MAIN_PRINTING = "import time\nn=0\nwhile True:\n n+=1\n print('pub', n)\n time.sleep_ms(500)\n"
MAIN_SWALLOWS = swallowing(["print('pub')", "time.sleep_ms(300)"], prelude=["time.sleep_ms(1500)"],
                           time_module="time")


@dataclass
class Result:
    name: str
    ok: int = 0
    runs: int = 0
    prompt: list[float] = field(default_factory=list)  # s to a usable prompt
    interrupt: list[float] = field(default_factory=list)  # s from request to the cell's end
    reattach: list[float] = field(default_factory=list)  # s from the board back to a prompt
    failures: list[str] = field(default_factory=list)


def run(board: Board, code: str) -> str:
    board.start_cell()
    return board.exec(code)


def after(seconds: float, action: Callable[[], object]) -> None:
    timer = threading.Timer(seconds, action)
    timer.daemon = True
    timer.start()


class Bench:
    def __init__(self, throttle: bool, board_name: str) -> None:
        # The modern board gets an empty flash file of its own: the bench rewrites main.py.
        self.sim = (ModernBoard(fresh=True) if board_name == ModernBoard.name
                    else simulator_for(board_name)).start()
        self.fd = open_board(self.sim.pty_path)
        self.throttle = throttle

    def relay(self, front: str = "pty") -> Relay:
        relay = Relay(self.sim, front=front, board_fd=self.fd)
        if self.throttle:
            relay.set_throttle(BAUD_115200, USB_SERIAL_LATENCY)
        if not relay.sync_board(timeout=8):
            raise RuntimeError("the emulated board does not answer")
        return relay

    def board(self, relay: Relay) -> Board:
        board = Board(relay.url, lister=lambda: comports_with([relay]), reattach_wait=5.0)
        board.connect()
        return board

    def write_main(self, relay: Relay, source: str) -> None:
        board = Board(relay.url)
        board.connect()
        run(board, f"with open('main.py','w') as f:\n f.write({source!r})")
        board.close()
        relay.reset_board()
        relay.wait_board_output(b"pub", 5)

    def remove_main(self, relay: Relay) -> None:
        board = Board(relay.url)
        try:
            try:
                board.connect()
            except BoardBusy:
                relay.reset_board()
                rescue(board, lambda text: None, lambda question: False)
            run(board, "import os\nfor f in os.listdir():\n if f[:4]=='main':\n  os.remove(f)")
        finally:
            board.close()

    # -- scenarios: each returns normally on success, raising AssertionError otherwise -----
    def interrupt_printing(self, res: Result) -> None:
        self._interrupt(res, PRINTING)

    def interrupt_silent(self, res: Result) -> None:
        self._interrupt(res, SILENT)

    def _interrupt(self, res: Result, code: str) -> None:
        with self.relay() as relay:
            board = self.board(relay)
            try:
                run(board, "kept = 1")
                asked: list[float] = []
                after(0.3, lambda: asked.append(time.monotonic()) or board.interrupt())
                try:
                    run(board, code)
                except DeviceError as err:
                    assert err.ename == "KeyboardInterrupt", err
                res.interrupt.append(time.monotonic() - asked[0])
                start = time.monotonic()
                assert run(board, "print(kept)").strip() == "1"
                res.prompt.append(res.interrupt[-1] + time.monotonic() - start)
            finally:
                board.close()

    def busy_main_catch(self, res: Result) -> None:
        with self.relay() as relay:
            self.write_main(relay, MAIN_PRINTING)
            try:
                start = time.monotonic()
                board = Board(relay.url)
                summary = board.connect()
                assert run(board, "print(1)").strip() == "1"
                res.prompt.append(time.monotonic() - start)
                board.close()
                assert "Stopped main.py" in summary, summary
            finally:
                self.remove_main(relay)

    def swallowing_main_rescue(self, res: Result) -> None:
        with self.relay("rfc2217") as relay:
            self.write_main(relay, MAIN_SWALLOWS)
            try:
                start = time.monotonic()
                board = Board(relay.url)
                summary = rescue(board, lambda text: None, lambda question: False)
                assert run(board, "print(1)").strip() == "1"
                res.prompt.append(time.monotonic() - start)
                board.close()
                assert "answers again" in summary
            finally:
                self.remove_main(relay)

    def reset_mid_cell(self, res: Result) -> None:
        with self.relay() as relay:
            board = self.board(relay)
            try:
                trigger = relay.reset_when(lambda way, seen: b"tick 3\r\n" in seen, TO_HOST)
                try:
                    run(board, PRINTING)
                    raise AssertionError("the reset went unnoticed")
                except BoardReset:
                    pass
                assert run(board, "print(1)").strip() == "1"
                res.prompt.append(time.monotonic() - trigger.fired_at)
            finally:
                board.close()

    def unplug_mid_cell(self, res: Result) -> None:
        self._unplug(res, new_name=None)

    def replug_new_name(self, res: Result) -> None:
        self._unplug(res, new_name="ttyACM7")

    def _unplug(self, res: Result, new_name: str | None) -> None:
        with self.relay() as relay:
            board = self.board(relay)
            try:
                run(board, "kept = 1")
                pulled: list[float] = []
                after(0.3, lambda: pulled.append(time.monotonic()) or relay.unplug())
                try:
                    run(board, PRINTING)
                    raise AssertionError("the unplug went unnoticed")
                except LinkLost:
                    res.interrupt.append(time.monotonic() - pulled[0])
                back: list[float] = []
                after(0.5, lambda: back.append(time.monotonic()) or relay.replug(new_name))
                assert run(board, "print(kept)").strip() == "1"
                res.reattach.append(time.monotonic() - back[0])
                res.prompt.append(time.monotonic() - back[0])
            finally:
                board.close()

    def noise(self, res: Result) -> None:
        with self.relay() as relay:
            board = self.board(relay)
            try:
                run(board, "kept = 1")
                relay.inject_to_host(b"\xff\xfe\x00garbage\x04>\r\n" + STALE_RAW_OUTPUT)
                relay.inject_to_board(b"noise 123 (")
                relay.wait_board_output(b"never", 0.2)  # let the noise land (nothing to read)
                start = time.monotonic()
                assert run(board, "print(kept)").strip() == "1"
                res.prompt.append(time.monotonic() - start)
            finally:
                board.close()

    def stale_raw_mode(self, res: Result) -> None:
        with self.relay() as relay:
            import serial

            with serial.serial_for_url(relay.url, timeout=0.5) as earlier:
                earlier.write(STALE_HALF_CELL)
                earlier.read_until(b"raw REPL; CTRL-B to exit\r\n>")
            start = time.monotonic()
            board = Board(relay.url)
            try:
                board.connect()
                assert run(board, "print(1)").strip() == "1"
                res.prompt.append(time.monotonic() - start)
            finally:
                board.close()

    def port_held(self, res: Result) -> None:
        with self.relay() as relay:
            board = self.board(relay)
            try:
                start = time.monotonic()
                try:
                    Board(relay.url).connect()
                    raise AssertionError("a second owner was let in")
                except PortBusy:
                    res.prompt.append(time.monotonic() - start)  # time to the refusal
                assert run(board, "print(1)").strip() == "1"
            finally:
                board.close()

    # -- peers ------------------------------------------------------------------------------
    def mpremote(self, source: str, label: str, n: int, limit: float = 30.0) -> str:
        """Run mpremote N times on the same relay link mpkernel used, against the same busy
        board: each run rewrites main.py and resets, so every try meets a program running."""
        exe = shutil.which("mpremote")
        if exe is None:
            return f"PEER mpremote ({label}): not installed (pip install mpremote to compare)"
        got: list[float] = []
        failed: list[str] = []
        for _ in range(n):
            with self.relay() as relay:
                self.write_main(relay, source)
                try:
                    start = time.monotonic()
                    try:
                        done = subprocess.run(
                            [exe, "connect", relay.url, "exec", "print('mpremote-ok')"],
                            capture_output=True, timeout=limit, text=True,
                        )
                        took = time.monotonic() - start
                        if "mpremote-ok" in done.stdout:
                            got.append(took)
                        else:
                            last = (done.stderr or done.stdout).strip().splitlines()[-1:]
                            failed.append(f"gave up after {took:.2f} s: {' '.join(last)[:80]}")
                    except subprocess.TimeoutExpired:
                        failed.append(f"still waiting after {limit:.0f} s (killed)")
                finally:
                    self.remove_main(relay)
        line = (f"PEER mpremote vs the same busy board ({label}): prompt {len(got)}/{n}"
                + (f", median {statistics.median(got):.2f} s, worst {max(got):.2f} s"
                   if got else ""))
        if failed:
            line += f"\n    failed {len(failed)}/{n}, e.g. {failed[0]}"
        return line

    def close(self) -> None:
        self.sim.stop()


SCENARIOS = [
    ("printing loop: interrupt", "interrupt_printing"),
    ("silent loop: interrupt", "interrupt_silent"),
    ("busy main.py: catch on connect", "busy_main_catch"),
    ("main.py swallows Ctrl-C: %rescue (RTS)", "swallowing_main_rescue"),
    ("reset mid-cell", "reset_mid_cell"),
    ("unplug mid-cell, replug", "unplug_mid_cell"),
    ("replug under a new name", "replug_new_name"),
    ("noise on the line", "noise"),
    ("left in raw mode by a session", "stale_raw_mode"),
    ("second owner of the port", "port_held"),
]


def fmt(values: list[float]) -> str:
    if not values:
        return "      -       -"
    return f"{statistics.median(values):7.3f} {max(values):7.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20, help="runs per scenario (default 20)")
    parser.add_argument("--baud", action="store_true", help="throttle to 115200 baud + 4 ms")
    parser.add_argument("--no-mpremote", action="store_true", help="skip the peer comparison")
    parser.add_argument("--peer-n", type=int, default=None,
                        help="mpremote runs per busy-board case (default: --n)")
    parser.add_argument("--board", default="microbit",
                        help="emulated board: microbit (default) or qemu (MicroPython 1.25)")
    parser.add_argument("--only", help="run only scenarios whose method name contains this")
    args = parser.parse_args()
    bench = Bench(throttle=args.baud, board_name=args.board)
    print(f"Emulated board: {args.board}; link: "
          + ("relay throttled to 115200 baud + 4 ms" if args.baud else "relay, unthrottled"))
    results: list[Result] = []
    try:
        print(f"{'scenario':40} {'ok':>7}  prompt med/worst  intr med/worst  reattach med/worst")
        for title, method in SCENARIOS:
            if args.only and args.only not in method:
                continue
            res = Result(title)
            for _ in range(args.n):
                res.runs += 1
                try:
                    getattr(bench, method)(res)
                    res.ok += 1
                except Exception as err:  # a failed run is counted and shown, not fatal
                    res.failures.append(f"{type(err).__name__}: {err}"[:160])
            results.append(res)
            print(f"{title:40} {res.ok:3}/{res.runs:<3}  {fmt(res.prompt)}  "
                  f"{fmt(res.interrupt)}  {fmt(res.reattach)}", flush=True)
            for failure in res.failures[:3]:
                print(f"    failed: {failure}")
        # The peer gets the same N tries as mpkernel; a hang costs `limit` seconds per try,
        # so a smaller --peer-n keeps a full run short.
        peer_n = args.peer_n if args.peer_n is not None else args.n
        peers = [] if args.no_mpremote else [
            bench.mpremote(MAIN_PRINTING, "main.py printing every 0.5 s, lets Ctrl-C through",
                           peer_n),
            bench.mpremote(MAIN_SWALLOWS, "main.py swallowing Ctrl-C after a 1.5 s start",
                           peer_n, limit=15.0),
        ]
    finally:
        bench.close()
    by = {r.name: r for r in results}

    def med(name: str, attr: str) -> float | None:
        values = getattr(by[name], attr) if name in by else []
        return statistics.median(values) if values else None

    checks = [
        ("100% success", all(r.ok == r.runs for r in results)),
        ("busy-board catch <= 2 s median",
         (m := med("busy main.py: catch on connect", "prompt")) is not None and m <= 2.0),
        ("interrupt of a simple loop <= 0.5 s median",
         (m := med("printing loop: interrupt", "interrupt")) is not None and m <= 0.5),
        ("reattach <= 1 s after the board is back",
         (m := med("replug under a new name", "reattach")) is not None and m <= 1.0),
        ("unplug ends the running cell <= 2 s",
         (m := med("unplug mid-cell, replug", "interrupt")) is not None and m <= 2.0),
    ]
    print("\nTargets:")
    for text, met in checks:
        print(f"  {'MET ' if met else 'MISS'} {text}")
    if peers:
        print("\n" + "\n".join(peers))
    return 0 if all(met for _, met in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
