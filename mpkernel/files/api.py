"""Files on the board: listing, reading (verified), writing (verified, atomic), removing, free
space.

`FileSystem(board)` reads once per connection what the firmware offers and picks methods
from that (see transfer.py for how bytes move). Every upload goes to a name nobody uses,
is checked against the host's digest on the board, and only then replaces the old file;
every download is checked against a digest the board computes of its own copy.

A file operation either completes, verified, or leaves every file as it was. The journal
(`.mpkj`, one line of state, then names) records each step after which a reset or a pulled
cable would otherwise leave a mix, and the next file command (`recover`) finishes or undoes
it. Recovery only ever deletes a temporary when the old file is still whole:

- "w NAME": NAME is being written in place (a new file, no os.rename): undone (removed).
- "c TEMP DEST DIGEST" (no os.rename, the micro:bit): the old DEST is being removed and TEMP,
  verified, copied over it: finished from TEMP.
- "r TEMP DEST DIGEST" (os.rename that cannot rename onto an existing name, FAT): DEST is
  being removed before TEMP is renamed to it: finished by the rename. Where rename replaces
  atomically (littlefs), no journal is needed at all.

A replace on the micro:bit therefore needs room for both copies at its peak (the old file and
the temporary while uploading, the temporary and the copy while copying). Room is checked for
that peak before writing a byte, from the file sizes and the filesystem's chunk layout, not
by writing until ENOSPC: measured on the emulated micro:bit (v1.9.2), a write that runs out
of chunks can overwrite another file's chunks instead of failing (issue 13: a replace that
did not fit cut a 5,000-byte neighbour down to 1,220 bytes).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mpkernel.board.board import forget_program
from mpkernel.board.rawrepl import ResetDuringExec
from mpkernel.errors import BoardReset, DeviceError, Interrupted, LinkLost, MpkernelError
from mpkernel.files import codec, transfer
from mpkernel.files import fast as fs_fast
from mpkernel.files import stream as fs_stream
from mpkernel.files.results import (
    BoardFull,
    DfResult,
    Entry,
    FileError,
    FileNotFound,
    FsInfo,
    GetResult,
    IsADirectory,
    PutResult,
    ReadOnly,
    Unsupported,
    shown_digest,
)

if TYPE_CHECKING:
    from mpkernel.board.board import Board

Progress = transfer.Progress


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


_STOPPED = {Interrupted: "was interrupted", BoardReset: "was cut short by a board reset",
            LinkLost: "lost the connection"}


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
            # An operation cut short without a reset can leave its helpers (and an open file)
            # in the board's globals; on a 16 KB board they are the RAM the next program needs.
            board.resident = ()  # removed here, with the exec method's globals
            board.forget(transfer.HELPERS + ("__mpk_f", "__b64", "__inf"))
            kbd, uart = self._ask(_FS_PROBE, parse=lambda out: ast.literal_eval(out.strip()))
            if kbd and uart:
                board.exec(fs_stream.INTERN, interruptible=False)
            caps = board.caps
            self._info = FsInfo(
                flat=not caps.mkdir and not caps.ilistdir, stream=bool(kbd and uart),
                digest="sha256" if caps.hashlib else "adler32", rename=caps.rename,
                mtime=caps.stat,
            )
            self._checked_link = board.link
            self.note_recovery(self.recover())
        return self._info

    def _ask(self, code: str, timeout: float | None = None,
             parse: Callable[[str], Any] = str, *, keep_resident: bool = False) -> Any:
        """Run a program that only reads (probe, listing, checksums) and parse its output.

        One that arrived with bytes missing can still compile, then fail with a NameError or
        print something of another shape (plain raw mode has no flow control, and a loaded
        host loses bytes into the board's 63-byte ring; both were seen in the fault soak).
        Reading again is harmless, so it is sent once more."""
        def run() -> Any:
            return parse(self.board.exec(code, timeout=timeout, interruptible=False,
                                         keep_resident=keep_resident))

        try:
            return run()
        except DeviceError as err:
            if err.ename not in ("NameError", "SyntaxError", "IndentationError", "TypeError"):
                raise
        except (ValueError, SyntaxError, TypeError):
            pass
        return run()

    def note_recovery(self, text: str) -> None:
        if text:
            self.board.note(text + "\n")

    def recover(self) -> str:
        """Finish or undo what an interrupted operation left (journal, temporaries); say what.

        Never deletes the only complete copy of a file: a temporary named by a "c" or "r"
        journal is put in place, or kept when that cannot be done.
        """
        journal, strays = self._ask(_RECOVER_SCAN,
                                    parse=lambda out: ast.literal_eval(out.strip()))
        said = []
        keep = set()
        if journal is not None:  # "" too: a journal created but never written
            state, *names = journal.split("\n")
            # A journal is written whole before the step it guards: one cut short (no final
            # newline) guarded nothing yet, so the files it names are as they were.
            whole = journal.endswith("\n")
            if state in ("c", "r") and whole and len(names) == 4:
                temp, dest, want = names[:3]
                keep.add(temp)
                res = self._place(temp, dest, want, rename=state == "r")
                if res == "ok":
                    said.append(f"Finished replacing {dest} with its verified new version "
                                "(an earlier replace was cut short).")
                elif res in ("bad", "copybad"):
                    said.append(f"An earlier replace of {dest} was cut short and could not be "
                                f"finished ({res}); its new version is kept as {temp}.")
                else:
                    self._remove_quiet([codec.JOURNAL])
            elif state == "w" and whole and len(names) == 2 and names[0]:
                keep.add(names[0])  # said here, not again as a leftover
                self._remove_quiet([names[0], codec.JOURNAL])
                said.append(f"Removed the half-written {names[0]} of an interrupted upload.")
            else:
                self._remove_quiet([codec.JOURNAL])
        strays = [s for s in strays if s not in keep]
        if strays:
            self._remove_quiet(strays)
            said.append("Removed leftover temporary files: " + ", ".join(strays) + ".")
        return " ".join(said)

    def _remove_quiet(self, paths: list[str], helpers: bool = False) -> None:
        """Remove `paths` where they exist; with `helpers`, the upload helpers too."""
        forget = forget_program(transfer.HELPERS) if helpers else ""
        if helpers:
            self.board.resident = ()  # this program removes them
        self.board.exec(
            _OS + transfer.guarded(paths) + "for __p in __A:\n try:\n  os.remove(__p)\n"
            " except OSError:\n  pass\n" + forget + "del __p,__A", interruptible=False,
            keep_resident=True)

    def _place(self, temp: str, dest: str, want: str, *, rename: bool) -> str:
        """Put the verified `temp` in place of `dest` (transfer.replace_programs); the
        board's one word for how it went."""
        out = ""
        for program in transfer.replace_programs(temp, dest, want, rename=rename):
            out = self.board.exec(program, timeout=60, interruptible=False).strip()
            if not out.endswith("go"):
                break
        return out.splitlines()[-1] if out else "?"

    # -- reading ----------------------------------------------------------------------------
    def kind(self, path: str) -> str | None:
        """'file', 'dir' or None (absent)."""
        info = self.info()
        if info.flat:
            name = codec.check_path(path, flat=True)
            out = self.board.exec(_OS + f"print({name!r} in os.listdir())", keep_resident=True)
            return "file" if out.strip() == "True" else None
        out = self.board.exec(
            _OS + f"try:\n print(os.stat({path!r})[0]&0x4000 and 'dir' or 'file')\n"
            "except OSError:\n print(None)", keep_resident=True)
        value = out.strip()
        return None if value == "None" else value

    def ls(self, path: str = "", recursive: bool = False) -> list[Entry]:
        info = self.info()
        if info.flat:
            if path not in ("", "/", "."):
                raise Unsupported(f"This board's filesystem is flat: there is no folder {path!r}.",
                                  "Use %ls alone to list every file.")
            sizes = self._flat_sizes()
            return [Entry(n, s) for n, s in sorted(sizes.items())]
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
        """The file's bytes, verified against the board's own checksum (see fetch)."""
        return self.fetch(remote, progress).data

    def fetch(self, remote: str, progress: Progress | None = None, *,
              size: int | None = None) -> GetResult:
        """Download a file and check it against what the board says of its copy: its size
        (as %ls lists it) and its checksum computed on the board. A download that does not
        match is fetched once more, then refused; nothing unverified is returned."""
        import time

        info = self.info()
        path = codec.check_path(remote, flat=info.flat)
        started = time.monotonic()
        if fs_fast.usable(self.board):  # modern firmware: size and SHA-256 checked in fast.py
            try:
                got = fs_fast.download(self.board, path, progress=progress)
            except DeviceError as err:
                raise self._explain(err, path) from None
            except ResetDuringExec as reset:  # the streaming program is driven directly
                raise self.board.reset_error(reset, f"a step of the download of {path}") from None
            return GetResult(path, got.data, time.monotonic() - started, got.digest,
                             "SHA-256", got.method, got.retries)
        if size is None:
            size = self.size(path)
        kind = "SHA-256" if info.digest == "sha256" else "Adler-32"
        method = "stream" if info.stream else "exec"
        for attempt in range(2):
            try:
                if info.stream:
                    data = transfer.stream_download(self.board, path, size=size,
                                                    progress=progress)
                else:
                    # repr of binary bytes is up to 4x their size, printed from the
                    # board's RAM: smaller chunks where there is no base64.
                    chunk = 512 if self.board.caps.binascii else 192
                    data = transfer.exec_download(self.board, path, size=size, chunk=chunk,
                                                  binascii=self.board.caps.binascii,
                                                  progress=progress)
            except DeviceError as err:
                raise self._explain(err, path) from None
            except ResetDuringExec as reset:
                raise self.board.reset_error(reset, f"a step of the download of {path}") from None
            board_digest = self.digests([path]).get(path)
            if board_digest is None:
                raise FileNotFound(f"{path} vanished from the board during the download.",
                                   "%ls lists the files.")
            host_digest = codec.digest(data, info.digest)
            if len(data) == size and host_digest == board_digest:
                return GetResult(path, data, time.monotonic() - started, board_digest, kind,
                                 method, attempt)
        raise FileError(
            f"The download of {path} did not match the board's copy twice: received "
            f"{len(data)} bytes (the board lists {size}), {kind} {shown_digest(host_digest)} "
            f"(the board's: {shown_digest(board_digest)}). Nothing was saved.",
            "Run the command again; check the cable if it repeats.")

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
        for line in self._ask(program, timeout=120).splitlines():
            name, _, value = line.strip().rpartition(" ")
            if name:
                result[name] = None if value == "None" else value
        return result

    def df(self) -> DfResult:
        """Total and free bytes, and how they were obtained: the firmware's os.statvfs, else
        counted from the file sizes and the micro:bit filesystem's chunk layout (never by
        filling it: on this firmware a full filesystem can overwrite another file's chunks
        instead of raising ENOSPC)."""
        if self.board.caps.statvfs:
            out = self.board.exec(_OS + "__v=os.statvfs('/')\nprint(__v[0]*__v[2],__v[0]*__v[4])"
                                  "\ndel __v")
            total, free = (int(x) for x in out.split())
            return DfResult(total, free, "as the board's os.statvfs reports")
        sizes = self._flat_sizes()
        files = len(sizes)
        return DfResult(codec.MICROBIT_CHUNKS * codec.CHUNK_DATA, self._flat_free(sizes), (
            f"counted from the sizes of the {files} file{'s' * (files != 1)} on the board "
            f"(this filesystem has {codec.MICROBIT_CHUNKS} blocks of {codec.CHUNK_DATA} bytes; "
            f"a file takes whole blocks, its name included; the last {codec.SAFETY_CHUNKS} "
            "are never used, as this firmware damages other files when a write needs them)"))

    def _flat_free(self, sizes: dict[str, int]) -> int:
        """Bytes free for files on the micro:bit filesystem, the reserve kept out."""
        room = codec.MICROBIT_CHUNKS - codec.SAFETY_CHUNKS - self._used_chunks(sizes)
        return max(0, room) * codec.CHUNK_DATA

    def _flat_sizes(self) -> dict[str, int]:
        """Every file's size on a flat filesystem, in one exec.

        It collects garbage first: allocations after a collection start low in the heap,
        which leaves the upload programs that follow the contiguous RAM they need to compile
        (measured: without it, `%%writefile` right after `import greetings` in notebook 02
        found the micro:bit's heap too fragmented for the stream method)."""
        def sizes(out: str) -> dict[str, int]:
            found = ast.literal_eval(out.strip())
            if not all(isinstance(n, str) and isinstance(s, int) for n, s in found):
                raise ValueError(out)
            return dict(found)

        return self._ask(_OS + "import gc\ngc.collect()\n"
                         "print([(n,os.size(n)) for n in os.listdir()])", parse=sizes,
                         keep_resident=True)

    def _used_chunks(self, sizes: dict[str, int] | None = None) -> int:
        self.info()
        sizes = self._flat_sizes() if sizes is None else sizes
        return sum(codec.chunks_for(n, size) for n, size in sizes.items())

    def _check_room(self, path: str, size: int, sizes: dict[str, int], *,
                    source: str | None = None) -> None:
        """Refuse, before writing a byte, an upload (or a move of `source` to `path`) whose
        peak the flat filesystem cannot hold (see the module docstring).

        The peak of a replace is the temporary plus the larger of the old file (while
        uploading) and the copy (while copying), plus the journal; a new file or a move
        needs the file (or copy) and the journal. Measured on the emulated board: after
        deletions, a write that brought the filesystem past ~107 of its 120 chunks damaged
        another file, hence SAFETY_CHUNKS (see codec.py)."""
        others = {n: s for n, s in sizes.items() if n != path}
        new = codec.chunks_for(path, size)
        journal = 1
        if source is None and path in sizes:
            old = codec.chunks_for(path, sizes[path])
            peak = codec.chunks_for(codec.temp_name(path), size) + max(old, new) + journal
        else:
            peak = new + journal
        room = codec.MICROBIT_CHUNKS - self._used_chunks(others) - codec.SAFETY_CHUNKS
        if peak > room:
            free = self._flat_free(sizes)
            raise self._full(path, size, free, replacing=source is None and path in sizes,
                             moving=source)

    # -- changing ---------------------------------------------------------------------------
    def rm(self, remote: str, recursive: bool = False) -> list[str]:
        """Remove a file (or a folder with `recursive`); the paths removed, as the board
        printed them."""
        try:
            return self._rm(remote, recursive)
        except BaseException:
            self._checked_link = None
            raise

    def _rm(self, remote: str, recursive: bool) -> list[str]:
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
{transfer.guarded([path])}__mpk_rm(__A[0])
del __mpk_rm,__A
"""
        if self.board.interrupt_requested:
            raise Interrupted(f"Interrupted before {path} was removed; it is unchanged.")
        try:
            # Not interruptible once sent: a removal takes milliseconds, and an interrupt in
            # the middle would leave the user guessing which files went.
            return self.board.exec(program, interruptible=False, keep_resident=True).split()
        except DeviceError as err:
            if err.ename != "KeyboardInterrupt":
                raise self._explain(err, path) from None
            cut: MpkernelError = Interrupted("interrupted")
        except (BoardReset, LinkLost) as err:
            cut = err
        # Stopped mid-way: say what the board holds now, if it answers.
        try:
            still = self.kind(path) is not None
        except MpkernelError:
            raise LinkLost(f"The connection was lost while removing {path}; %ls shows whether "
                           "it was removed once the board is back.", cut.hint) from None
        if not still:
            return [path]
        raise type(cut)(f"{path} was not removed (the removal "
                        f"{_STOPPED.get(type(cut), 'failed')}); it is still there.",
                        cut.hint) from None

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

    def move(self, source: str, dest: str, *, replace: bool = False,
             any_name: bool = False) -> str:
        """Rename a file on the board through the one copy-and-rename routine (_place), with
        room checked first where it copies. Refuses to overwrite `dest` unless `replace`.
        `any_name` lets `dest` have a '/' on a flat filesystem (the micro:bit imports
        `umqtt.simple` from a file named "umqtt/simple.py", a name the file commands refuse).
        Returns a sentence saying what was done."""
        try:
            return self._move(source, dest, replace, any_name)
        except BaseException:
            self._checked_link = None
            raise

    def _move(self, source: str, dest: str, replace: bool, any_name: bool) -> str:
        info = self.info()
        source = codec.check_path(source, flat=info.flat)
        dest = codec.check_path(dest, flat=info.flat and not any_name)
        if info.flat and any_name:
            exists = dest in self._flat_sizes()
        else:
            exists = self.kind(dest) is not None
        if exists and not replace:
            raise FileError(f"There is already a {dest} on the board; {source} was not renamed.",
                            f"Remove or rename {dest} first.")
        size = self.size(source)
        if info.flat and not self.board.caps.statvfs and not info.rename:
            self._check_room(dest, size, self._flat_sizes(), source=source)
        want = self.digests([source]).get(source)
        if want is None:
            raise FileNotFound(f"There is no {source} on the board.", "%ls lists the files.")
        res = self._place(source, dest, want, rename=info.rename)
        if res != "ok":
            raise FileError(f"Renaming {source} to {dest} failed on the board ({res}); "
                            f"{source} is unchanged.")
        how = "renamed" if info.rename else "copied, verified, then removed the original"
        over = f", replacing the {dest} that was there" if exists else ""
        return f"Renamed {source} to {dest} ({size} bytes; {how}{over})."

    def rm_quiet(self, path: str) -> None:
        """Remove a file if it exists, even after an interrupt (clean-up steps)."""
        self._remove_quiet([path])

    def put(self, data: bytes, remote: str, progress: Progress | None = None,
            *, scratch: bool = False) -> PutResult:
        """Write `data` to `remote`: verified on the board, replacing the old file only when
        the new one is complete. Raises a FileError/MpkernelError that says what happened
        and what was left on the board."""
        from mpkernel.files.put import Uploads  # put.py imports from here

        return Uploads(self).put(data, remote, progress, scratch=scratch)

    def _kind_and_room(self, path: str, size: int) -> str | None:
        """'file', 'dir' or None, and on a statvfs filesystem refuse an upload that cannot
        fit: the temporary sits beside the old file until the rename. The room is that of the
        filesystem the file goes to (its folder's: another one may be mounted there)."""
        folder = path.rpartition("/")[0] or "/"
        out = self.board.exec(_OS + f"""def __mpk_kr(p,d):
 try:
  k=os.stat(p)[0]&0x4000 and 'dir' or 'file'
 except OSError:
  k=None
 try:
  v=os.statvfs(d);f=(v[0],v[4])
 except Exception:
  f=None
 print(repr((k,f)))
__mpk_kr({path!r},{folder!r})
del __mpk_kr
""")
        kind, free = ast.literal_eval(out.strip().splitlines()[-1])
        if free is not None and kind != "dir":
            block, blocks = free
            # The data's blocks, plus metadata blocks for the new entry and the journal.
            need = -(-size // max(1, block)) + 3
            if need > blocks:
                raise self._full(path, size, block * blocks, replacing=kind == "file")
        return kind

    def _full(self, path: str, size: int, free: int | None, *, replacing: bool,
              moving: str | None = None) -> BoardFull:
        room = f" {free} bytes are free (as %df counts them)." if free is not None else ""
        twice = (" Replacing a file keeps the old copy until the new one is verified, so "
                 "the board needs room for both at once." if replacing else "")
        if moving:
            return BoardFull(
                f"The board is too full to rename {moving} to {path}: without os.rename the "
                f"file is copied ({size} bytes) before the original is removed.{room} "
                "Nothing was changed.", "Free space with %rm (see %ls and %df).")
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
