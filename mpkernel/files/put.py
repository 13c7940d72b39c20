"""The upload path of FileSystem (api.py): `FileSystem.put` runs through `Uploads` here.

It holds the room checks made before a byte is written (the checks themselves stay in api.py:
FileSystem._check_room, which a move uses too, and _kind_and_room), the upload through the
stream, fast (modern firmware) or exec-per-chunk methods, putting the verified temporary in
place of the old file (journalled where that is not atomic: see api.py's docstring), and
turning every failure into an error that says what is on the board: the old file unchanged,
nothing left behind, or what the next file command finishes or removes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mpkernel.board.rawrepl import ResetDuringExec
from mpkernel.errors import BoardReset, DeviceError, Interrupted, LinkLost, MpkernelError
from mpkernel.files import codec, transfer
from mpkernel.files import fast as fs_fast
from mpkernel.files import stream as fs_stream
from mpkernel.files.api import _OS, _STOPPED
from mpkernel.files.results import FileError, FsInfo, IsADirectory, PutResult

if TYPE_CHECKING:
    from mpkernel.files.api import FileSystem

Progress = transfer.Progress

_FREE_RAM = ("Free RAM with %reset (it clears the board's variables) or by deleting large "
             "objects, then run the command again.")


class Uploads:
    """FileSystem.put's steps, reaching the board and the FileSystem's other methods through
    `fs`."""

    def __init__(self, fs: FileSystem) -> None:
        self.fs = fs

    def put(self, data: bytes, remote: str, progress: Progress | None = None,
            *, scratch: bool = False) -> PutResult:
        """See FileSystem.put."""
        try:
            return self._put(data, remote, progress, scratch)
        except BaseException:
            # Whatever stopped it, the next file command looks for a journal or temporary
            # first (the board may have reset without the link noticing).
            self.fs._checked_link = None
            raise

    def _put(self, data: bytes, remote: str, progress: Progress | None,
             scratch: bool) -> PutResult:
        try:
            return self._put_steps(data, remote, progress, scratch)
        except DeviceError as err:
            if err.ename != "MemoryError":
                raise
            # The steps that write translate their own MemoryError; this one came while
            # looking at the board's files, before anything was written.
            raise FileError(f"The board ran out of RAM before {remote} was written; every "
                            "file is as it was.", _FREE_RAM) from None
        except (Interrupted, BoardReset, LinkLost) as err:
            if str(err).startswith(("The upload of", "Upload of", "The new ")):
                raise
            # Stopped before the upload began (while looking at the board's files).
            raise type(err)(f"The upload of {remote} {_STOPPED.get(type(err), 'failed')} "
                            f"before anything was written; every file is as it was.\n{err}",
                            err.hint) from None

    def _put_steps(self, data: bytes, remote: str, progress: Progress | None,
                   scratch: bool) -> PutResult:
        import time

        info = self.fs.info()
        path = codec.check_path(remote, flat=info.flat)
        reserved = path in (codec.JOURNAL, ".mpkp") or path.endswith(codec.TEMP_SUFFIX)
        if reserved and not scratch:
            raise codec.BadPath(f"{path} is a name mpkernel keeps for its own temporary files.")
        started = time.monotonic()
        if info.flat:
            # One listing answers "does it exist" and "will it fit": on a 115200-baud line
            # each exec costs a round trip plus its program's bytes.
            sizes = self.fs._flat_sizes()
            kind = "file" if path in sizes else None
            if not self.fs.board.caps.statvfs:
                self.fs._check_room(path, len(data), sizes)
        else:
            kind = self.fs._kind_and_room(path, len(data))
        if kind == "dir":
            raise IsADirectory(f"{path} is a folder on the board, not a file.",
                               f"Give a file name inside it, e.g. {path}/name.")
        want = codec.digest(data, info.digest)
        in_place = scratch or (kind is None and not info.rename)
        target = path if in_place else codec.temp_name(path)
        if not in_place:
            self.fs._remove_quiet([target])  # a stray from an upload that died with the host
        try:
            report = self._upload(data, target, want, info, journal=not info.rename,
                                  progress=progress)
        except transfer.UploadFailed as err:
            raise self._upload_failed(err, path, target, len(data), kind is not None) from None
        except (Interrupted, BoardReset, LinkLost) as err:
            cleaned = self._cleanup(target, str(err))
            raise self._stopped(err, path, kind is not None, cleaned) from None
        except DeviceError as err:
            if err.ename == "NameError" and "__mpk_" in err.evalue:
                # The upload's helper functions vanished between two of its execs: the board
                # reset there (its reboot went by unseen between two programs).
                cut = BoardReset("The board reset between two steps of the upload.")
                raise self._stopped(cut, path, kind is not None,
                                    self._cleanup(target, "reset")) from None
            # The board's own error (a name it rejects, a read-only or full filesystem) or its
            # RAM: either way the partial file, the journal and the helpers go first.
            cleaned = self._cleanup(target, err.ename)
            if err.ename != "MemoryError":
                raise self.fs._explain(err, path) from None
            kept = f"the old {path} is unchanged" if kind else f"there is no {path}"
            left = "" if cleaned else (" What it wrote so far is still on the board; the next "
                                       "file command removes it.")
            raise FileError(f"The board ran out of RAM while writing {path}; {kept}.{left}",
                            _FREE_RAM) from None
        if target != path:
            report.note = " ".join(x for x in (report.note, self._put_in_place(
                target, path, want, info, existed=kind is not None)) if x)
        return PutResult(path, len(data), time.monotonic() - started, report.digest,
                         "SHA-256" if info.digest == "sha256" else "Adler-32", report.method,
                         report.resends, report.note, report.frames)

    def _put_in_place(self, temp: str, path: str, want: str, info: FsInfo, *,
                      existed: bool) -> str:
        """Replace `path` with the verified `temp`; return a note when that took a second
        try. An interrupt or reset in the middle is finished at once from the journal where
        the board still answers (see recover)."""
        try:
            res = self.fs._place(temp, path, want, rename=info.rename)
            note = ""
        except MpkernelError as err:
            cut = ("an interrupt" if isinstance(err, Interrupted) or (
                isinstance(err, DeviceError) and err.ename == "KeyboardInterrupt")
                else "the board, which ran out of RAM" if isinstance(err, DeviceError)
                and err.ename == "MemoryError" else "a board reset"
                if isinstance(err, BoardReset) else "the lost connection"
                if isinstance(err, LinkLost) else f"an error ({err})")
            try:
                self.fs.recover()
                done = self.fs.digests([path]).get(path) == want
            except MpkernelError:
                done = False
            if not done:
                old = f"the old {path}" if existed else f"no {path}"
                raise FileError(
                    f"The new {path} was uploaded and verified, but putting it in place was "
                    f"cut short by {cut} before it could be confirmed. The next file command "
                    f"finishes it if it is not done, or keeps {old} (never a mix).",
                    _FREE_RAM if "RAM" in cut else
                    "Run any file command (e.g. %ls) once the board answers.") from None
            res, note = "ok", (f"(Putting it in place was cut short by {cut} and finished "
                               "from the verified copy.)")
        if res == "copybad":
            # The journal still names the verified temporary: copy again, once, now.
            res = self.fs._place(temp, path, want, rename=info.rename)
            note = "(The first copy into place did not verify; the second did.)"
        if res == "copybad":
            raise FileError(
                f"Copying the verified new {path} into place did not verify on the board; "
                f"the new version is kept as {temp} and the next file command retries.",
                "If this repeats, the board's filesystem may be damaged: %ls, %df.")
        if res != "ok":
            raise FileError(f"Replacing {path} failed on the board ({res}); "
                            f"{'the old file is unchanged' if existed else 'nothing was left'}.",
                            "Run the command again.")
        return note

    def _upload(self, data: bytes, target: str, want: str, info: FsInfo, *, journal: bool,
                progress: Progress | None) -> transfer.UploadReport:
        try:
            return self._upload_steps(data, target, want, info, journal=journal,
                                      progress=progress)
        except ResetDuringExec as reset:
            # The streaming programs drive the raw REPL themselves (not through Board.exec):
            # a reboot they see becomes the BoardReset every caller handles, the board caught
            # at a prompt again first.
            raise self.fs.board.reset_error(reset, "a step of the upload") from None

    def _upload_steps(self, data: bytes, target: str, want: str, info: FsInfo, *,
                      journal: bool, progress: Progress | None) -> transfer.UploadReport:
        if not journal and fs_fast.usable(self.fs.board):  # modern firmware (see fast.py)
            return fs_fast.upload(self.fs.board, data, target, want=want, progress=progress)
        mem = self.fs.board.caps.mem_free
        note = ""
        if info.stream:
            size = codec.stream_frame_size(mem)
            try:
                return fs_stream.stream_upload(
                    self.fs.board, data, target, want=want,
                    journal=f"w\n{target}\n" if journal else "", frame_size=size,
                    window=codec.stream_window(size), progress=progress)
            except DeviceError as err:
                if err.ename != "MemoryError":
                    raise
            # The stream programs need ~1 KB of contiguous RAM to compile; after a session's
            # imports and objects the heap can be too fragmented for that, so this upload goes
            # chunk by chunk through the raw REPL instead (slower, same guarantees). The
            # stream program removed its file and journal; its helper functions go here.
            self.fs._remove_quiet([target, codec.JOURNAL], helpers=True)
            free = self.fs.board.exec("import gc\ngc.collect()\nprint(gc.mem_free())",
                                      interruptible=False).split()
            mem = int(free[-1]) if free and free[-1].isdigit() else 1024
            note = ("(The board's RAM was too fragmented for the fast method, so this upload "
                    "went chunk by chunk; a soft reset, %reset, frees it.)")
        caps = self.fs.board.caps
        if journal:
            entry = "w\n" + target + "\n"
            self.fs.board.exec(f"__j=open('.mpkj','w')\n__j.write({entry!r})\n__j.close()\ndel __j")
        try:
            report = transfer.exec_upload(
                self.fs.board, data, target,
                chunk=codec.exec_chunk_size(mem, caps.raw_paste, caps.binascii),
                binascii=caps.binascii, deflate=caps.deflate, progress=progress)
        except DeviceError as err:
            if "28" in err.evalue or "ENOSPC" in err.evalue:
                raise transfer.UploadFailed("full", cause="full") from None
            raise
        got = self.fs.digests([target]).get(target)
        if got != want:
            raise transfer.UploadFailed(
                f"The board's copy did not match after writing ({got} != {want}).",
                cause="verify")
        if journal:
            self.fs._remove_quiet([".mpkj"])
        report.digest = got
        report.note = note
        return report

    def _cleanup(self, target: str, why: str) -> bool:
        """After a stop mid-upload: remove the partial file (the old one was never touched).
        False when the board could not be reached: the journal, or the temporary's name,
        lets the next file command remove it."""
        try:
            self.fs._remove_quiet([target, codec.JOURNAL], helpers=True)
        except MpkernelError:
            self.fs._checked_link = None
            return False
        return True

    def _upload_failed(self, err: transfer.UploadFailed, path: str, target: str, size: int,
                       existed: bool) -> MpkernelError:
        cleaned = self._cleanup(target, err.cause)
        kept = f" The old {path} is unchanged." if existed else f" No {path} was left behind."
        if err.cause == "full":
            # The filesystem ran out mid-write (its free figure overstated the room, or
            # something else wrote meanwhile): state what is free now, as %df counts it, not
            # the bytes written before it ran out.
            free = None
            if cleaned:
                try:
                    free = self._free_for(path)
                except MpkernelError:
                    free = None
            return self.fs._full(path, size, free, replacing=existed)
        if err.cause == "interrupt":
            return Interrupted(f"Upload of {path} interrupted after {err.written} of {size} "
                               f"bytes.{kept}")
        return FileError(f"Upload of {path} failed: {err}{kept}", err.hint)

    def _free_for(self, path: str) -> int:
        """Free bytes where `path` goes: its folder's os.statvfs (another filesystem may be
        mounted there), else %df's count."""
        if not self.fs.board.caps.statvfs:
            return self.fs.df().free
        folder = path.rpartition("/")[0] or "/"
        out = self.fs.board.exec(_OS + f"__v=os.statvfs({folder!r})\nprint(__v[0]*__v[4])\n"
                                 "del __v", interruptible=False)
        return int(out.split()[-1])

    def _stopped(self, err: MpkernelError, path: str, existed: bool,
                 cleaned: bool) -> MpkernelError:
        kept = f"the old {path} is unchanged" if existed else f"there is no {path}"
        left = ("" if cleaned else " What it wrote so far is still on the board; the next "
                "file command removes it.")
        what = _STOPPED.get(type(err), "failed")
        text = f"The upload of {path} {what}; {kept}.{left}"
        return type(err)(f"{text}\n{err}", err.hint)
