"""Seeded random file operations with faults, checked against a model on the host.

One step: a put (new file), a replace or an rm, with sizes up to the filesystem's capacity,
and maybe a fault at a random moment during it: a hard reset through the relay, the cable
pulled (and plugged back), or an interrupt from a timer thread as the frontend sends it.
After the step (and, when it failed, after the next file command's recovery, which its
message promises), every file on the board is read back by a program of this module's own
(not mpkernel's) and compared with the model: a step that succeeded left its new content, a
refused one the old; the file a failed step was changing holds its old or its new content
(one of them, whole); every other file is unchanged; no temporary or journal is left.

Used by tests/test_fs_faults_random.py (CI) and bench/soak_files.py (more steps). Nothing
here is specific to the micro:bit except `capacity`, which the caller passes.
"""

from __future__ import annotations

import ast
import random
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from mpkernel.errors import BoardReset, LinkLost, MpkernelError
from mpkernel.files.api import BoardFull, FileSystem

from .relay import Relay

# The test's own read-back: name, size and Adler-32 (as two halves: no long ints on 1.9.2).
_READ_BACK = """def __t():
 import os
 r=[]
 for n in os.listdir():
  a=1;b=0
  f=open(n,'rb')
  while 1:
   c=f.read(256)
   if not c:break
   for x in c:
    a+=x;b+=a
   a%=65521;b%=65521
  f.close()
  r.append((n,b,a))
 print(repr(r))
__t()
del __t
"""
NAMES = ["a.bin", "b.txt", "c.py", "d.dat", "e.bin"]
FAULTS = ["none", "none", "none", "interrupt", "interrupt", "reset", "reset", "unplug"]


class Mismatch(AssertionError):
    """The board's files differ from what the step may have left."""


@dataclass
class StepRecord:
    step: int
    op: str
    name: str
    size: int
    fault: str
    outcome: str  # "done" | "refused" | "failed: <type>"
    seconds: float
    kept: str = ""  # for a failed step: "old" or "new", what the board holds
    message: str = ""  # what the failed step said


@dataclass
class RandomRun:
    """A seeded sequence on one board; call step() repeatedly, or run(n)."""

    fs: FileSystem
    relay: Relay
    seed: int
    capacity: int  # bytes the filesystem holds (sizes are drawn up to it)
    log: Callable[[str], None] = lambda text: None
    model: dict[str, bytes] = field(default_factory=dict)
    records: list[StepRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._plug_lock = threading.Lock()

    @property
    def board(self):  # noqa: ANN201 - mpkernel.board.board.Board
        return self.fs.board

    # -- the board's files, read independently ----------------------------------------------
    def read_back(self) -> dict[str, int]:
        """{name: Adler-32} of every file on the board (temporaries and journal included)."""
        for attempt in range(3):
            try:
                self.board.start_cell()
                out = self.board.exec(_READ_BACK, timeout=30, interruptible=False)
                return {n: (b << 16) | a for n, b, a in ast.literal_eval(out.strip())}
            except (BoardReset, LinkLost):
                # A fault that landed after the step ended: read again once the board is back.
                if attempt == 2:
                    raise
                self._replug()
        raise AssertionError("unreachable")

    def _replug(self) -> None:
        with self._plug_lock:
            if not self.relay.plugged:
                self.relay.replug()

    # -- one step ----------------------------------------------------------------------------
    def _size(self) -> int:
        roll = self.rng.random()
        if roll < 0.75:
            return self.rng.randint(0, 1200)
        if roll < 0.93:
            return self.rng.randint(1200, self.capacity // 3)
        return self.rng.randint(self.capacity // 3, self.capacity)

    def _data(self, size: int) -> bytes:
        if self.rng.random() < 0.5:
            return self.rng.randbytes(size)
        text = b"".join(b"line %d of the file\n" % i for i in range(size // 16 + 1))
        return text[:size]

    def _fault(self, kind: str, delay: float) -> threading.Timer | None:
        if kind == "none":
            return None
        if kind == "interrupt":
            action = self.board.interrupt
        elif kind == "reset":
            action = self.relay.reset_board
        else:
            def action() -> None:
                with self._plug_lock:
                    self.relay.unplug()
                # Plugged back in by a timer, or after the step if it ended first.
                self.relay.call_later(0.3, self._replug)
        timer = threading.Timer(delay, action)
        timer.daemon = True
        timer.start()
        return timer

    def step(self) -> StepRecord:
        rng = self.rng
        names = sorted(self.model)
        ops = ["put"] * (len(names) < len(NAMES)) + ["replace", "replace", "rm"] * bool(names)
        op = rng.choice(ops)
        name = rng.choice([n for n in NAMES if n not in self.model]) if op == "put" else \
            rng.choice(names)
        data = b"" if op == "rm" else self._data(self._size())
        fault = rng.choice(FAULTS)
        # A moment inside the operation: ~0.15 s of set-up, then the line rate of the data.
        delay = rng.uniform(0.0, 0.15 + len(data) / 9000)
        old = self.model.get(name)
        self.board.start_cell()
        started = time.monotonic()
        timer = self._fault(fault, delay)
        outcome = message = "done"
        try:
            if op == "rm":
                self.fs.rm(name)
            else:
                self.fs.put(data, name)
        except BoardFull:
            outcome = "refused"
        except MpkernelError as err:
            outcome, message = f"failed: {type(err).__name__}", str(err)
        finally:
            if timer is not None:
                timer.cancel()
                timer.join()
        seconds = time.monotonic() - started
        self._replug()
        new = None if op == "rm" else data
        record = StepRecord(len(self.records), op, name, len(data), fault, outcome, seconds,
                            message=message)
        self._check(record, old, new)
        self.records.append(record)
        self.log(f"{record.step:4d} {op:7} {name:6} {len(data):6d} B  fault={fault:9} "
                 f"{outcome:26} {record.kept:3} {seconds:5.2f} s"
                 + (f"\n       {message[:300]!r}" if outcome.startswith("failed") else ""))
        return record

    def _check(self, record: StepRecord, old: bytes | None, new: bytes | None) -> None:
        if record.outcome.startswith("failed"):
            # What the user does next: any file command, which first finishes or undoes what
            # the cut-short step left (the step's message says so when it could not).
            self.board.start_cell()
            self.fs.ls()
        on_board = self.read_back()
        name = record.name
        strays = sorted(n for n in on_board if n.endswith(".mpk~") or n == ".mpkj")
        got = on_board.get(name)
        digest = (lambda d: None if d is None else zlib.adler32(d))  # noqa: E731
        if strays:
            raise Mismatch(f"step {record.step}: {record.op} ({record.outcome}) left {strays}")
        if record.outcome == "done":
            expected, record.kept = new, "new"
        elif record.outcome == "refused":
            expected, record.kept = old, "old"
        else:
            # Cut short by the fault: one whole version, the old or the new.
            record.kept = "new" if got is not None and got == digest(new) or (
                got is None and new is None) else "old"
            expected = new if record.kept == "new" else old
        if got != digest(expected):
            raise Mismatch(f"step {record.step}: {name} after {record.op} ({record.outcome}, "
                           f"fault {record.fault}) holds neither version: board {got}, old "
                           f"{digest(old)}, new {digest(new)}; files {sorted(on_board)}; "
                           f"it said {record.message!r}")
        if expected is None:
            self.model.pop(name, None)
        else:
            self.model[name] = expected
        for other, data in self.model.items():
            if other != name and on_board.get(other) != zlib.adler32(data):
                raise Mismatch(f"step {record.step}: {other} changed during a {record.op} of "
                               f"{name}: board {on_board.get(other)}, expected "
                               f"{zlib.adler32(data)}")
        unknown = set(on_board) - set(self.model)
        if unknown:
            raise Mismatch(f"step {record.step}: unexpected files {sorted(unknown)}")

    def run(self, steps: int) -> list[StepRecord]:
        for _ in range(steps):
            self.step()
        return self.records
