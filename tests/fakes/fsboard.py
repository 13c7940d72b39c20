"""A scripted board for the files layer: it runs mpkernel's board-side programs in CPython
against an in-memory filesystem, and can lose power after any filesystem step.

It is not MicroPython: it stands in where no emulated board has the firmware's trait under
test (a FAT filesystem whose rename refuses an existing name, littlefs's atomic rename before
the modern emulated board is ready) and where every crash point must be tried in turn.

Rename modes:
  "none"     no os.rename, flat, no statvfs (like the micro:bit's filesystem)
  "atomic"   os.rename replaces an existing destination in one step (littlefs)
  "refuse"   os.rename onto an existing name raises OSError EEXIST (FAT on the ESP32)
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import traceback
from types import SimpleNamespace

from mpkernel import cells
from mpkernel.board.board import forget_program
from mpkernel.board.caps import Capabilities
from mpkernel.errors import BoardReset, DeviceError, LinkLost


class PowerLoss(BaseException):
    """Raised inside a board program at the armed filesystem step."""


class FakeFlash:
    """Files as bytes; every change is one numbered step that can be the last."""

    def __init__(self, rename: str) -> None:
        self.files: dict[str, bytes] = {}
        self.rename_mode = rename
        self.steps: list[str] = []  # every change, as "op name"
        self.crash_at: int | None = None  # lose power before this step number runs

    def step(self, what: str) -> None:
        if self.crash_at is not None and len(self.steps) >= self.crash_at:
            self.crash_at = None
            raise PowerLoss(what)
        self.steps.append(what)

    def missing(self, path: str) -> OSError:
        return OSError(errno.ENOENT, "ENOENT")

    # -- the module the programs import as `os` ---------------------------------------------
    def os_module(self) -> SimpleNamespace:
        flash = self

        def listdir(path: str = "") -> list[str]:
            return sorted(flash.files)

        def remove(path: str) -> None:
            if path not in flash.files:
                raise flash.missing(path)
            flash.step(f"remove {path}")
            del flash.files[path]

        def size(path: str) -> int:
            if path not in flash.files:
                raise flash.missing(path)
            return len(flash.files[path])

        def stat(path: str) -> tuple[int, ...]:
            if path not in flash.files:
                raise flash.missing(path)
            return (0x8000, 0, 0, 0, 0, 0, len(flash.files[path]), 0, 0, 0)

        def ilistdir(path: str = "") -> list[tuple[str, int, int]]:
            return [(n, 0x8000, 0) for n in sorted(flash.files)]

        def statvfs(path: str) -> tuple[int, ...]:
            used = sum(-(-len(d) // 512) + 1 for d in flash.files.values())
            return (512, 512, 256, 256 - used, 256 - used, 0, 0, 0, 0, 255)

        def rename(old: str, new: str) -> None:
            if old not in flash.files:
                raise flash.missing(old)
            if new in flash.files and flash.rename_mode == "refuse":
                raise OSError(errno.EEXIST, "EEXIST")
            flash.step(f"rename {old} {new}")
            flash.files[new] = flash.files.pop(old)

        mod = SimpleNamespace(listdir=listdir, remove=remove)
        if self.rename_mode == "none":
            mod.size = size
        else:
            mod.stat, mod.ilistdir, mod.statvfs, mod.rename = stat, ilistdir, statvfs, rename
            mod.mkdir = lambda path: None
        return mod

    def open(self, path: str, mode: str = "r") -> _FakeFile:
        if "w" in mode:
            self.step(f"create {path}")
            self.files[path] = b""
        elif path not in self.files:
            raise self.missing(path)
        return _FakeFile(self, path, mode)


class _FakeFile:
    def __init__(self, flash: FakeFlash, path: str, mode: str) -> None:
        self.flash, self.path, self.binary = flash, path, "b" in mode
        self.pos = 0

    def write(self, data: bytes | str) -> int:
        raw = data if isinstance(data, bytes) else data.encode()
        # Written through, a piece at a time: power can go between two of them.
        self.flash.step(f"write {self.path}")
        self.flash.files[self.path] += raw
        return len(raw)

    def read(self, n: int = -1) -> bytes | str:
        data = self.flash.files[self.path]
        end = len(data) if n < 0 else self.pos + n
        out, self.pos = data[self.pos : end], min(len(data), end)
        return out if self.binary else out.decode()

    def close(self) -> None:
        pass

    def __enter__(self) -> _FakeFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Link:
    """A stand-in link: nothing is sent through it (FakeFsBoard.exec runs programs itself)."""


class FakeFsBoard:
    """Enough of mpkernel.board.board.Board for FileSystem: exec, caps, link, note."""

    def __init__(self, rename: str = "none") -> None:
        self.flash = FakeFlash(rename)
        modern = rename != "none"
        self.caps = Capabilities(
            platform="fake", version=(1, 25, 0) if modern else (1, 9, 2), mem_free=100_000,
            stat=modern, ilistdir=modern, mkdir=modern, hashlib=modern, binascii=True,
            statvfs=modern, rename=modern)
        self.link = _Link()  # identity only: files.api and files.fast key their caches on it
        self.busy_reason = ""
        self.resident: tuple[str, ...] = ()  # FileSystem clears it; no stream upload here
        self.interrupt_requested = False
        self.resets = 0
        self.stay_off = False  # after a power loss, answer nothing until power_on()
        self.off = False
        self.notes: list[str] = []
        self._globals: dict = {}

    def power_on(self) -> None:
        self.off = False

    def note(self, text: str) -> None:
        self.notes.append(text)

    def ensure_ready(self) -> None:
        pass

    def forget(self, names: tuple[str, ...]) -> None:
        self.exec(forget_program(names) + "del __p\n")

    def _import(self, name: str, *args: object, **kwargs: object) -> object:
        if name in ("os", "uos"):
            return self.flash.os_module()
        if name == "gc":
            return SimpleNamespace(collect=lambda: None, mem_free=lambda: self.caps.mem_free)
        if name in ("micropython", "microbit", "utime", "uhashlib", "ubinascii", "deflate"):
            raise ImportError(f"no module named '{name}'")
        if name == "hashlib" and not self.caps.hashlib:
            raise ImportError("no module named 'hashlib'")
        return builtins.__import__(name, *args, **kwargs)

    def exec(self, code: str, on_output: object = None, timeout: float | None = None, *,
             interruptible: bool = True, on_idle: object = None,
             keep_resident: bool = False) -> str:
        if self.off:
            raise LinkLost("The board is not connected (power is off).")
        out = io.StringIO()
        env = dict(vars(builtins))
        env.update(__import__=self._import, open=self.flash.open,
                   print=lambda *a, **k: builtins.print(*a, **k, file=out))
        self._globals["__builtins__"] = env
        try:
            builtins.exec(compile(code, "<stdin>", "exec"), self._globals)
        except PowerLoss as lost:
            # Power comes back: RAM is gone, the flash keeps what was written.
            self._globals = {}
            self.resets += 1
            self.off = self.stay_off
            raise BoardReset(f"The board reset ({lost}).") from None
        except Exception as err:  # the board's traceback, as the raw REPL would return it
            text = "".join(traceback.format_exception_only(type(err), err))
            raise DeviceError(*cells.parse_traceback(
                "Traceback (most recent call last):\n" + text)) from None
        return out.getvalue()


def digest_of(data: bytes, modern: bool) -> str:
    """What FileSystem expects the board to print for `data` (sha256 or adler32)."""
    from mpkernel.files import codec as fs_codec

    return hashlib.sha256(data).hexdigest() if modern else fs_codec.digest(data, "adler32")
