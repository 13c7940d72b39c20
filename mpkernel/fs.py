"""Files on the board: listing, reading, writing (verified, atomic), removing, free space.

`FileSystem(board)` reads once per connection what the firmware offers and picks methods
from that (see fs_transfer for how bytes move). Every upload goes to a name nobody uses,
is checked against the host's digest on the board, and only then replaces the old file.

Atomic replace without os.rename (the micro:bit): a new file is written under its own name
with a journal (`.mpkj`) saying "writing NAME", removed once the file is verified, so a reset
or power loss mid-way is undone at the next operation. Replacing an existing file writes
NAME.mpk~ first (the old file untouched), verifies it, then a board program records
"copying" in the journal, checks by writing a probe file that the copy will fit, removes the
old file, copies, verifies and removes the temporary. Interrupted in that last window, the
next operation finishes the copy from the verified temporary. The price: replacing a file
needs room for two copies of it on a filesystem of ~15 KB; when it does not fit, the old
file is kept and the error says how much room was needed and free.

Room is checked before writing, from the file sizes and the filesystem's chunk layout, not
by writing until ENOSPC: measured on the emulated micro:bit (v1.9.2), a write that runs out
of free chunks after a deletion can overwrite another file's chunks instead of failing.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mpkernel import fs_codec as codec
from mpkernel import fs_transfer as transfer
from mpkernel.errors import BoardReset, DeviceError, Interrupted, LinkLost, MpkernelError

if TYPE_CHECKING:
    from mpkernel.board import Board

Progress = transfer.Progress


class FileError(MpkernelError):
    """A file operation failed on the board for a reason a user can act on."""


class FileNotFound(FileError):
    pass


class IsADirectory(FileError):
    pass


class BoardFull(FileError):
    pass


class ReadOnly(FileError):
    pass


class Unsupported(FileError):
    """The firmware cannot do this at all (folders on a flat filesystem)."""


@dataclass(frozen=True)
class FsInfo:
    flat: bool  # no folders (the micro:bit)
    stream: bool  # raw UART channel with Ctrl-C switchable (see fs_transfer)
    digest: str  # "sha256" | "adler32"
    rename: bool
    mtime: bool


@dataclass(frozen=True)
class Entry:
    path: str
    size: int
    is_dir: bool = False
    mtime: int | None = None


@dataclass
class PutResult:
    path: str
    size: int
    seconds: float
    digest: str
    digest_kind: str
    method: str
    resends: int = 0
    note: str = ""  # how the upload deviated from the usual way, in words

    def summary(self) -> str:
        rate = self.size / self.seconds if self.seconds > 0 else 0.0
        extra = f", {self.resends} frames resent" if self.resends else ""
        return (f"Wrote {self.path} ({self.size} bytes) in {self.seconds:.2f} s "
                f"({rate / 1024:.1f} KB/s{extra}); verified: the board's {self.digest_kind} "
                f"{self.digest[:16]} matches." + (f" {self.note}" if self.note else ""))


_FS_PROBE = """def __mpk_fp():
 r=[0,0]
 try:
  import micropython;r[0]=hasattr(micropython,'kbd_intr')
 except ImportError:
  pass
 try:
  import microbit;r[1]=hasattr(microbit,'uart')
 except ImportError:
  pass
 print(r)
__mpk_fp()
del __mpk_fp
"""

_OS = "try:\n import os\nexcept ImportError:\n import uos as os\n"
_FREE_RAM = ("Free RAM with %reset (it clears the board's variables) or by deleting large "
             "objects, then run the command again.")

# Where journals and strays are looked for and a checksum is computed over many files.
_RECOVER_SCAN = _OS + """def __mpk_rs():
 fs=os.listdir()
 j=None
 if '.mpkj' in fs:
  f=open('.mpkj');j=f.read();f.close()
 print(repr((j,[n for n in fs if n.endswith('.mpk~') or n=='.mpkp'])))
__mpk_rs()
del __mpk_rs
"""


class FileSystem:
    """The files of one board; create freely, capabilities are cached per connection."""

    def __init__(self, board: Board) -> None:
        self.board = board
        self._info: FsInfo | None = None
        self._checked_link: object = None

    # -- capabilities and recovery -----------------------------------------------------------
    def info(self) -> FsInfo:
        board = self.board
        board.ensure_ready()
        if self._info is None or self._checked_link is not board.link:
            kbd, uart = ast.literal_eval(board.exec(_FS_PROBE, interruptible=False).strip())
            if kbd and uart:
                board.exec(transfer.INTERN, interruptible=False)
            caps = board.caps
            self._info = FsInfo(
                flat=not caps.mkdir and not caps.ilistdir, stream=bool(kbd and uart),
                digest="sha256" if caps.hashlib else "adler32", rename=caps.rename,
                mtime=caps.stat,
            )
            self._checked_link = board.link
            self.note_recovery(self.recover())
        return self._info

    def note_recovery(self, text: str) -> None:
        if text:
            self.board.note(text + "\n")

    def recover(self) -> str:
        """Undo or finish what an interrupted upload left (journal, temporaries); say what."""
        journal, strays = ast.literal_eval(
            self.board.exec(_RECOVER_SCAN, interruptible=False).strip())
        said = []
        keep = set()
        if journal:
            lines = journal.split("\n")
            if lines[0] == "c" and len(lines) >= 4:
                temp, dest, want = lines[1:4]
                keep.add(temp)
                res = self._run_replace(temp, dest, want)
                said.append(f"Finished replacing {dest} from its verified upload ({res}).")
            elif lines[0] == "w" and len(lines) >= 2:
                self._remove_quiet([lines[1], ".mpkj"])
                said.append(f"Removed the half-written {lines[1]} of an interrupted upload.")
            else:
                self._remove_quiet([".mpkj"])
        strays = [s for s in strays if s not in keep]
        if strays:
            self._remove_quiet(strays)
            said.append("Removed leftover temporary files: " + ", ".join(strays) + ".")
        return " ".join(said)

    def _remove_quiet(self, paths: list[str], helpers: bool = False) -> None:
        forget = (f"for __p in {transfer.HELPERS!r}:\n globals().pop(__p,None)\n"
                  if helpers else "")
        self.board.exec(
            _OS + f"for __p in {paths!r}:\n try:\n  os.remove(__p)\n except OSError:\n  pass\n"
            + forget + "del __p", interruptible=False)

    def _run_replace(self, temp: str, dest: str, want: str) -> str:
        check, copy = transfer.replace_programs(temp, dest, want)
        out = self.board.exec(check, interruptible=False).strip()
        if out.endswith("go"):
            out = self.board.exec(copy, interruptible=False).strip()
        return out.splitlines()[-1] if out else "?"

    # -- reading ----------------------------------------------------------------------------
    def kind(self, path: str) -> str | None:
        """'file', 'dir' or None (absent)."""
        info = self.info()
        if info.flat:
            name = codec.check_path(path, flat=True)
            out = self.board.exec(_OS + f"print({name!r} in os.listdir())")
            return "file" if out.strip() == "True" else None
        out = self.board.exec(
            _OS + f"try:\n print(os.stat({path!r})[0]&0x4000 and 'dir' or 'file')\n"
            "except OSError:\n print(None)")
        value = out.strip()
        return None if value == "None" else value

    def ls(self, path: str = "", recursive: bool = False) -> list[Entry]:
        info = self.info()
        if info.flat:
            if path not in ("", "/", "."):
                raise Unsupported(f"This board's filesystem is flat: there is no folder {path!r}.",
                                  "Use %ls alone to list every file.")
            out = self.board.exec(_OS + "print([(n,os.size(n)) for n in os.listdir()])")
            return [Entry(n, s) for n, s in sorted(ast.literal_eval(out.strip()))]
        program = _OS + f"""def __mpk_ls(d,r):
 for e in os.ilistdir(d):
  p=(d.rstrip('/')+'/'+e[0]) if d else e[0]
  st=os.stat(p)
  print(repr((p,st[6],e[1]==0x4000,st[8])))
  if r and e[1]==0x4000:__mpk_ls(p,r)
__mpk_ls({path.rstrip('/') or ''!r},{recursive})
del __mpk_ls
"""
        try:
            out = self.board.exec(program)
        except DeviceError as err:
            raise self._explain(err, path) from None
        entries = [Entry(*ast.literal_eval(line)) for line in out.splitlines() if line.strip()]
        return sorted(entries, key=lambda e: e.path)

    def get(self, remote: str, progress: Progress | None = None) -> bytes:
        info = self.info()
        path = codec.check_path(remote, flat=info.flat)
        size = self.size(path)
        try:
            if info.stream:
                return transfer.stream_download(self.board, path, size=size, progress=progress)
            return transfer.exec_download(self.board, path, size=size, chunk=512,
                                          binascii=self.board.caps.binascii, progress=progress)
        except DeviceError as err:
            raise self._explain(err, path) from None

    def size(self, path: str) -> int:
        info = self.info()
        if info.flat:
            code = _OS + f"print(os.size({path!r}))"
        else:
            code = (_OS + f"__s=os.stat({path!r})\nprint(-1 if __s[0]&0x4000 else __s[6])\n"
                    "del __s")
        try:
            size = int(self.board.exec(code).strip())
        except DeviceError as err:
            raise self._explain(err, path) from None
        if size < 0:
            raise IsADirectory(f"{path} is a folder, not a file.",
                               "Use %ls to see what it holds.")
        return size

    def digests(self, paths: list[str]) -> dict[str, str | None]:
        """The board's digest of each file (None where it is missing), in one exec."""
        if not paths:
            return {}
        info = self.info()
        program = (_OS + transfer.checksum_program(info.digest)
                   + f"for __p in {paths!r}:\n try:\n  print(__p,__mpk_ad(__p))\n"
                   " except OSError:\n  print(__p,None)\ndel __p,__mpk_ad\n")
        result: dict[str, str | None] = {}
        for line in self.board.exec(program, timeout=120).splitlines():
            name, _, value = line.strip().rpartition(" ")
            if name:
                result[name] = None if value == "None" else value
        return result

    def df(self) -> tuple[int | None, int]:
        """(total, free) bytes: from statvfs, else estimated from the micro:bit filesystem's
        layout (never by filling it: on this firmware a full filesystem can overwrite
        another file's chunks instead of raising ENOSPC)."""
        if self.board.caps.statvfs:
            out = self.board.exec(_OS + "__v=os.statvfs('/')\nprint(__v[0]*__v[2],__v[0]*__v[4])"
                                  "\ndel __v")
            total, free = (int(x) for x in out.split())
            return total, free
        used = self._used_chunks()
        total = codec.MICROBIT_CHUNKS * codec.CHUNK_DATA
        return total, max(0, (codec.MICROBIT_CHUNKS - used) * codec.CHUNK_DATA)

    def _flat_sizes(self) -> dict[str, int]:
        """Every file's size on a flat filesystem, in one exec.

        It collects garbage first: allocations after a collection start low in the heap,
        which leaves the upload programs that follow the contiguous RAM they need to compile
        (measured: without it, `%%writefile` right after `import greetings` in notebook 02
        found the micro:bit's heap too fragmented for the stream method)."""
        out = self.board.exec(_OS + "import gc\ngc.collect()\n"
                              "print([(n,os.size(n)) for n in os.listdir()])")
        return dict(ast.literal_eval(out.strip()))

    def _used_chunks(self, sizes: dict[str, int] | None = None) -> int:
        self.info()
        sizes = self._flat_sizes() if sizes is None else sizes
        return sum(codec.chunks_for(n, size) for n, size in sizes.items())

    def _check_room(self, path: str, size: int, sizes: dict[str, int]) -> None:
        """Refuse an upload the flat filesystem cannot hold before writing a byte (see df)."""
        used = self._used_chunks(sizes)
        old = sizes.get(path)
        need = codec.chunks_for(codec.temp_name(path) if old is not None else path, size) + 1
        free = codec.MICROBIT_CHUNKS - used - codec.SAFETY_CHUNKS
        if need > free:
            raise self._full(path, size, max(0, free * codec.CHUNK_DATA), replacing=old is not None)

    # -- changing ---------------------------------------------------------------------------
    def rm(self, remote: str, recursive: bool = False) -> list[str]:
        info = self.info()
        path = codec.check_path(remote, flat=info.flat)
        kind = self.kind(path)
        if kind is None:
            raise FileNotFound(f"There is no {path} on the board.", "%ls lists the files.")
        if kind == "dir" and not recursive:
            raise IsADirectory(f"{path} is a folder.", f"Use %rm -r {path} to remove it and "
                               "everything in it.")
        program = _OS + f"""def __mpk_rm(p):
 try:
  d=os.stat(p)[0]&0x4000
 except AttributeError:
  d=0
 if d:
  for e in os.listdir(p):__mpk_rm(p+'/'+e)
  os.rmdir(p)
 else:
  os.remove(p)
 print(p)
__mpk_rm({path!r})
del __mpk_rm
"""
        try:
            return self.board.exec(program).split()
        except DeviceError as err:
            raise self._explain(err, path) from None

    def mkdir(self, remote: str) -> None:
        info = self.info()
        if info.flat or not self.board.caps.mkdir:
            raise Unsupported(
                f"This board's filesystem is flat: it cannot have folders, so {remote} was not "
                "made.", "Put files at the top level (e.g. %put lib.py).")
        try:
            self.board.exec(_OS + f"os.mkdir({remote.rstrip('/')!r})")
        except DeviceError as err:
            raise self._explain(err, remote) from None

    def rm_quiet(self, path: str) -> None:
        """Remove a file if it exists, even after an interrupt (clean-up steps)."""
        self._remove_quiet([path])

    def put(self, data: bytes, remote: str, progress: Progress | None = None,
            *, scratch: bool = False) -> PutResult:
        """Write `data` to `remote`: verified on the board, replacing the old file only when
        the new one is complete. Raises a FileError/MpkernelError that says what happened
        and what was left on the board (the old file, untouched)."""
        import time

        info = self.info()
        path = codec.check_path(remote, flat=info.flat)
        reserved = path in (codec.JOURNAL, ".mpkp") or path.endswith(codec.TEMP_SUFFIX)
        if reserved and not scratch:
            raise codec.BadPath(f"{path} is a name mpkernel keeps for its own temporary files.")
        started = time.monotonic()
        if info.flat:
            # One listing answers "does it exist" and "will it fit": on a 115200-baud line
            # each exec costs a round trip plus its program's bytes.
            sizes = self._flat_sizes()
            kind = "file" if path in sizes else None
            if not self.board.caps.statvfs:
                self._check_room(path, len(data), sizes)
        else:
            kind = self.kind(path)
        if kind == "dir":
            raise IsADirectory(f"{path} is a folder on the board, not a file.",
                               f"Give a file name inside it, e.g. {path}/name.")
        want = codec.digest(data, info.digest)
        in_place = scratch or (kind is None and not info.rename)
        target = path if in_place else codec.temp_name(path)
        if not in_place:
            self._remove_quiet([target])  # a stray from an upload that died with the host
        try:
            report = self._upload(data, target, want, info, journal=not info.rename,
                                  progress=progress)
        except transfer.UploadFailed as err:
            raise self._upload_failed(err, path, target, len(data), kind is not None) from None
        except (Interrupted, BoardReset, LinkLost) as err:
            self._cleanup(target, str(err))
            raise self._stopped(err, path, kind is not None) from None
        except DeviceError as err:
            # The board's own error (a name it rejects, a read-only or full filesystem) or its
            # RAM: either way the partial file, the journal and the helpers go first.
            self._cleanup(target, err.ename)
            if err.ename != "MemoryError":
                raise self._explain(err, path) from None
            kept = f"the old {path} is unchanged" if kind else f"no partial {path} was left"
            raise FileError(f"The board ran out of RAM while writing {path}; {kept}.",
                            _FREE_RAM) from None
        if target != path:
            if info.rename:
                self.board.exec(_OS + f"try:\n os.remove({path!r})\nexcept OSError:\n pass\n"
                                f"os.rename({target!r},{path!r})", interruptible=False)
            else:
                try:
                    res = self._run_replace(target, path, want)
                except DeviceError as err:
                    if err.ename != "MemoryError":
                        raise
                    # Nothing to clean up here: the journal lets the next file command finish
                    # the replacement or undo it (see the module's docstring).
                    self._checked_link = None
                    raise FileError(
                        f"The board ran out of RAM while putting the new {path} in place; the "
                        "next file command finishes it (you will have the old file or the new "
                        "one, never a mix).", _FREE_RAM) from None
                if res == "full":
                    raise self._full(path, len(data), None, replacing=True)
                if res != "ok":
                    raise FileError(f"Replacing {path} failed on the board ({res}).",
                                    "Run the command again; the next operation repairs it.")
        return PutResult(path, len(data), time.monotonic() - started, report.digest,
                         "SHA-256" if info.digest == "sha256" else "Adler-32", report.method,
                         report.resends, report.note)

    def _upload(self, data: bytes, target: str, want: str, info: FsInfo, *, journal: bool,
                progress: Progress | None) -> transfer.UploadReport:
        mem = self.board.caps.mem_free
        note = ""
        if info.stream:
            size = codec.stream_frame_size(mem)
            try:
                return transfer.stream_upload(
                    self.board, data, target, want=want,
                    journal=f"w\n{target}\n" if journal else "", frame_size=size,
                    window=codec.stream_window(size), progress=progress)
            except DeviceError as err:
                if err.ename != "MemoryError":
                    raise
            # The stream programs need ~1 KB of contiguous RAM to compile; after a session's
            # imports and objects the heap can be too fragmented for that, so this upload goes
            # chunk by chunk through the raw REPL instead (slower, same guarantees). The
            # stream program removed its file and journal; its helper functions go here.
            self._remove_quiet([target, codec.JOURNAL], helpers=True)
            free = self.board.exec("import gc\ngc.collect()\nprint(gc.mem_free())",
                                   interruptible=False).split()
            mem = int(free[-1]) if free and free[-1].isdigit() else 1024
            note = ("(The board's RAM was too fragmented for the fast method, so this upload "
                    "went chunk by chunk; a soft reset, %reset, frees it.)")
        caps = self.board.caps
        if journal:
            entry = "w\n" + target + "\n"
            self.board.exec(f"__j=open('.mpkj','w')\n__j.write({entry!r})\n__j.close()\ndel __j")
        try:
            report = transfer.exec_upload(
                self.board, data, target,
                chunk=codec.exec_chunk_size(mem, caps.raw_paste, caps.binascii),
                binascii=caps.binascii, deflate=caps.deflate, progress=progress)
        except DeviceError as err:
            if "28" in err.evalue or "ENOSPC" in err.evalue:
                raise transfer.UploadFailed("full", cause="full") from None
            raise
        got = self.digests([target]).get(target)
        if got != want:
            raise transfer.UploadFailed(
                f"The board's copy did not match after writing ({got} != {want}).",
                cause="verify")
        if journal:
            self._remove_quiet([".mpkj"])
        report.digest = got
        report.note = note
        return report

    def _cleanup(self, target: str, why: str) -> None:
        """After a stop mid-upload: remove the partial file (the old one was never touched)."""
        try:
            self._remove_quiet([target, codec.JOURNAL], helpers=True)
        except MpkernelError:
            # The board is gone or busy: the journal makes the next operation finish this.
            self._checked_link = None

    def _upload_failed(self, err: transfer.UploadFailed, path: str, target: str, size: int,
                       existed: bool) -> MpkernelError:
        self._cleanup(target, err.cause)
        kept = f" The old {path} is unchanged." if existed else f" No {path} was left behind."
        if err.cause == "full":
            return self._full(path, size, err.written, replacing=existed)
        if err.cause == "interrupt":
            return Interrupted(f"Upload of {path} interrupted after {err.written} of {size} "
                               f"bytes.{kept}")
        return FileError(f"Upload of {path} failed: {err}{kept}", err.hint)

    def _stopped(self, err: MpkernelError, path: str, existed: bool) -> MpkernelError:
        kept = (f"The old {path} is unchanged" if existed else f"no partial {path} was left")
        what = {Interrupted: "was interrupted", BoardReset: "was cut short by a board reset",
                LinkLost: "lost the connection"}.get(type(err), "failed")
        text = f"The upload of {path} {what}; {kept}."
        if isinstance(err, LinkLost):
            text += " (If the board reset too, the next file command cleans up after it.)"
        return type(err)(f"{text}\n{err}", err.hint)

    def _full(self, path: str, size: int, free: int | None, *, replacing: bool) -> BoardFull:
        room = f" About {free} bytes were free." if free is not None else ""
        twice = (" Replacing a file keeps the old copy until the new one is verified, so "
                 "the board needs room for both." if replacing else "")
        return BoardFull(
            f"The board is full: {path} needs {size} bytes.{room}{twice} "
            f"{'The old file is unchanged.' if replacing else 'Nothing was left behind.'}",
            "Free space with %rm (see %ls and %df)" + (f", or %rm {path} first." if replacing
                                                       else "."))

    def _explain(self, err: DeviceError, path: str) -> MpkernelError:
        text = f"{err.ename}: {err.evalue}"
        value = err.evalue
        if "ENOENT" in value or value.strip() in ("2", "[Errno 2] ENOENT") or "not found" in value:
            return FileNotFound(f"There is no {path} on the board.", "%ls lists the files.")
        if "EISDIR" in value or value.strip() == "21":
            return IsADirectory(f"{path} is a folder, not a file.", "%ls shows what it holds.")
        if "ENOSPC" in value or value.strip() == "28":
            return BoardFull(f"The board is full ({path}).", "Free space with %rm; %df shows it.")
        if "EROFS" in value or value.strip() == "30":
            return ReadOnly(f"The board's filesystem is read-only; {path} was not changed.",
                            "Some boards mount flash read-only while USB storage is active.")
        if "ENOTEMPTY" in value or value.strip() == "39":
            return FileError(f"The folder {path} is not empty.", f"Use %rm -r {path}.")
        if "EINVAL" in value or value.strip() == "22":
            return codec.BadPath(f"The board rejected the name {path!r} ({text}).")
        return FileError(f"{path}: {text}")
