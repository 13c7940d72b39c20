"""Moving file bytes to and from a board: the board-side programs and the host's half.

Two methods, chosen by `fs.FileSystem` from what the firmware has:

- stream (stream.py): one small program on the board turns off Ctrl-C
  (`micropython.kbd_intr(-1)`) and reads framed raw bytes from the UART (`microbit.uart`),
  so any byte costs one byte on the wire. The board's receive ring holds only 63 bytes and,
  when its Python falls behind (on the emulated board: whenever its host is busy), bytes
  are lost; so each frame names the file offset it belongs at and carries a sum and a
  trailer byte (see codec.py), the board acknowledges every good frame with its position
  and answers a damaged or missing one with NAK, and the host sends again from the board's
  position (go-back-N, see stream._FrameSender). A window of frames in flight hides the
  USB latency. At the end the program reads the file back and prints its digest. It gives
  up by itself after 3 s of silence, or 2 s without a good frame (a host that vanished
  mid-upload and came back sends Ctrl-C bursts, not frames), so the board is never left
  deaf to Ctrl-C. Its helper functions stay on the board from one file command to the next
  (their text is a fifth of a 10 KB upload's time), and any other program frees their RAM
  first (Board.resident). Where they do not fit the board's RAM, fs falls back to the exec
  method.
- exec: one `f.write(<expression>)` per chunk through the raw REPL (raw-paste where it
  exists), each chunk encoded as repr, base64 or deflate, whichever is shortest.

Downloads mirror them: framed raw bytes with per-frame sums, or printed literals.
"""

from __future__ import annotations

import ast
import time
from collections.abc import Callable
from dataclasses import dataclass

from mpkernel import cells
from mpkernel.board.link import READ_TICK
from mpkernel.board.rawrepl import find_reset
from mpkernel.errors import (
    BoardReset,
    BoardTimeout,
    DeviceError,
    Interrupted,
    LinkLost,
    MpkernelError,
)
from mpkernel.files import codec

Progress = Callable[[int, int], None]
# Globals the stream upload defines: kept for the next upload (Board.resident), removed after a
# failure or by any other program.
HELPERS = ("__mpk_up", "__mpk_op", "__mpk_fr", "__mpk_end", "__mpk_sc", "__mpk_ad", "__mpk_ps")

# -- board-side programs (MicroPython 1.9 syntax: no f-strings, no str.encode) -----------------
# Adler-32 in Python, printed as two 16-bit halves so no long-int support is needed. The
# "adler32:" prefix keeps the digest longer than 10 characters: MicroPython interns shorter
# string literals for good, and each upload's digest would leak RAM on a 16 KB board.
_ADLER = """def __mpk_ad(n):
 a=1;b=0
 f=open(n,'rb')
 while 1:
  c=f.read(256)
  if not c:break
  for x in c:
   a+=x;b+=a
  a%=65521;b%=65521
 f.close()
 return 'adler32:%04x%04x'%(b,a)
"""

_SHA = """def __mpk_ad(n):
 try:
  import hashlib
 except ImportError:
  import uhashlib as hashlib
 h=hashlib.sha256()
 f=open(n,'rb')
 while 1:
  c=f.read(512)
  if not c:break
  h.update(c)
 f.close()
 return ''.join('%02x'%x for x in h.digest())
"""

# Putting a verified file (`t`) in place of another (`d`): the one copy-and-rename routine,
# used by uploads (t is the temporary), by recovery (re-running it finishes an interrupted
# replace) and by %rescue's rename of main.py (a move: t is main.py itself). Every step that
# leaves `t` as the only complete copy is journalled first, and recovery finishes it from `t`,
# never deletes it. `want` is t's digest, checked again before anything is removed.
#
# Without os.rename (the micro:bit): record "c" in the journal, remove the old file, copy,
# verify the copy, drop `t` and the journal; two execs, as one would not compile in 7 KB of
# RAM. Room for the peak (both copies at once) was checked by the host before the upload.
_REPLACE = """def __mpk_rp(t,d,want):
 import os
 fs=os.listdir()
 j='.mpkj' in fs
 if t not in fs:
  if j:os.remove('.mpkj')
  return 'gone'
 if d in fs and __mpk_ad(d)==want:
  os.remove(t)
  if j:os.remove('.mpkj')
  return 'ok'
 if __mpk_ad(t)!=want:return 'bad'
 j=open('.mpkj','w');j.write('c\\n%s\\n%s\\n%s\\n'%(t,d,want));j.close()
 return 'go'
"""


_COPY = """def __mpk_cp(t,d,want):
 import os
 if d in os.listdir():os.remove(d)
 s=open(t,'rb');o=open(d,'wb')
 while 1:
  c=s.read(256)
  if not c:break
  o.write(c)
 s.close();o.close()
 if __mpk_ad(d)!=want:return 'copybad'
 os.remove(t);os.remove('.mpkj');return 'ok'
"""

# With os.rename: littlefs renames over an existing file atomically, so one rename is the
# whole replace. Where renaming onto an existing name fails (FAT on the ESP32), the old file
# must go first: the journal ("r") says so, and recovery renames `t` into place. A rename
# that fails while `d` does not exist is a real error, raised with nothing changed.
_RENAME = """def __mpk_rn(t,d,want):
 import os
 try:
  os.stat(t)
 except OSError:
  try:
   os.remove('.mpkj')
  except OSError:
   pass
  return 'gone'
 if __mpk_ad(t)!=want:return 'bad'
 try:
  os.rename(t,d)
 except OSError:
  os.stat(d)
  j=open('.mpkj','w');j.write('r\\n%s\\n%s\\n%s\\n'%(t,d,want));j.close()
  os.remove(d);os.rename(t,d)
 try:
  os.remove('.mpkj')
 except OSError:
  pass
 return 'ok'
"""

_STREAM_GET = """def __mpk_get(name,F):
 from microbit import uart
 wr=uart.write
 f=open(name,'rb')
 wr(b'R')
 try:
  while 1:
   d=f.read(F)
   n=len(d) if d else 0
   s=sum(d)&65535 if n else 0
   wr(bytes([n&255,n>>8,s&255,s>>8]))
   if not n:break
   wr(d)
 finally:
  f.close()
"""


def checksum_program(kind: str) -> str:
    return _SHA if kind == "sha256" else _ADLER


def guarded(names: list[str] | tuple[str, ...], var: str = "__A") -> str:
    """Bind `names` to `var` on the board, refusing to go on if they arrived changed.

    Plain raw mode has no flow control: under load the board can lose a run of bytes and
    still compile what is left (seen: `hasattr` arriving as `hasat`). A file name that lost
    ".mpk~" on the way would make a clean-up remove the user's file; so every program that
    removes, copies or renames checks the names' total length before acting on them. A
    loss inside the check itself makes it fail, too; the program then raises ValueError
    before touching anything."""
    names = list(names)
    size = len("|".join(names))
    return (f"{var}={names!r}\nif len('|'.join({var}))!={size}:raise ValueError('garbled')\n")


def _call(defs: str, call: str, names: str) -> str:
    """A program that defines helpers, calls one, and deletes them (leaves no globals)."""
    return f"{defs}{call}\ndel {names}\n"


@dataclass
class UploadReport:
    sent: int  # payload bytes
    wire: int  # bytes written to the link, frames and resends included
    seconds: float
    resends: int
    digest: str
    method: str
    note: str = ""
    frames: int = 0  # frames the data was cut into, the end frame included (0: not framed)


class UploadFailed(MpkernelError):
    """The upload did not complete; the board's copy was cleaned up (see the message)."""

    def __init__(self, message: str, hint: str = "", *, cause: str = "", written: int = 0):
        super().__init__(message, hint)
        self.cause = cause  # "full" | "interrupt" | "reset" | "timeout" | "verify" | "error"
        self.written = written


class _Channel:
    """Byte-level reading of a running program's output, with interrupt and reset checks."""

    def __init__(self, board, abort_on_interrupt: bool = True) -> None:  # noqa: ANN001
        self.board = board
        self.repl = board.repl
        self.abort_on_interrupt = abort_on_interrupt

    def byte(self, timeout: float) -> bytes:
        try:
            return self.repl.read_byte(timeout)
        except BoardTimeout:
            raise BoardTimeout(
                f"The board stopped answering during the transfer (no reply in {timeout:.0f}"
                " s).", "Run %doctor if this repeats.") from None

    def exact(self, count: int, timeout: float) -> bytes:
        return self.repl.read_exact(count, timeout)

    def poll(self, timeout: float) -> bytes | None:
        """The next byte, or None when none came within `timeout` (already-arrived bytes are
        looked at even when it is 0)."""
        try:
            return self.repl.read_byte(max(timeout, 0.001))
        except BoardTimeout:
            return None

    def unexpected(self, first: bytes) -> MpkernelError:
        """Something other than protocol bytes: a reboot, or the program ended with an error."""
        repl = self.repl
        seen = bytearray(first) + repl.take_pending()  # what the last read already buffered
        end = time.monotonic() + 1.0
        while time.monotonic() < end and b"\x04>" not in seen and find_reset(seen) < 0:
            data = repl.link.read(READ_TICK)
            seen += data
        if find_reset(seen) >= 0:
            self.board.busy_reason = "reset"  # the next step resyncs first
            repl.clear_input()
            return BoardReset(
                "The board reset in the middle of the transfer.",
                "Nothing half-written was kept; run the command again.")
        text = bytes(seen).split(b"\x04")
        err = text[1].decode(errors="replace").strip() if len(text) > 1 else ""
        self.board.busy_reason = self.board.busy_reason or "transfer"
        repl.clear_input()
        if err:
            return DeviceError(*cells.parse_traceback(err))
        return BoardTimeout(f"The board answered the transfer with {bytes(seen)[:80]!r}.",
                            "Run the command again; %doctor if it repeats.")

    def finish(self) -> str:
        """Read the program's remaining stdout to its end; raise DeviceError on a traceback."""
        out = bytearray()
        deadline = time.monotonic() + 30.0

        def tick(state: object) -> None:
            if time.monotonic() > deadline:
                raise BoardTimeout("The board did not finish the transfer step.")

        stderr = self.repl.follow(out.extend, tick)
        if stderr.strip():
            raise DeviceError(*cells.parse_traceback(stderr.decode(errors="replace")))
        return out.decode(errors="replace")


def _start(board, program: str, *, keep_resident: bool = False) -> _Channel:  # noqa: ANN001
    """Send a program that will stream; wait for its ready byte. Unless `keep_resident` (the
    stream upload's own call), the helpers in Board.resident are freed first, as Board.exec
    does for any program.

    Its first action is to print that byte, so a program that ends without printing it,
    with the board's compile error of a program the host parses, never ran: bytes were lost
    on the way (plain raw mode has no flow control; seen on the emulated micro:bit about
    once in 15 uploads to a freshly started board). It is sent once more, more slowly, as
    Board.exec does for a cell.
    """
    from mpkernel.board.board import garbled_in_transit

    if board.interrupt_requested:
        raise Interrupted("Interrupted before the transfer started.")
    board.ensure_ready()
    if board.resident and not keep_resident:
        board.free_resident()
    chan = _Channel(board)
    data = program.encode()
    try:
        board.send_program(data)
        first = chan.byte(10.0)
        if first == b"\x04" and not board.repl.raw_paste:
            # It ended without its R: its error says whether any of it ran. (A reboot here
            # is raised at once, as ResetDuringExec, which the callers translate.)
            stderr = board.repl.read_until(b"\x04", 10.0, on_tick=board.repl.check_reset)[:-1]
            board.repl.read_until(b">", 5.0, on_tick=board.repl.check_reset)
            if not garbled_in_transit(stderr, data):
                raise chan.unexpected(b"\x04" + stderr + b"\x04>")
            board.repl.slow_down()
            board.send_program(data)
            first = chan.byte(10.0)
        if first != b"R":
            # Typically a MemoryError while compiling: the board's RAM is fragmented.
            raise chan.unexpected(first)
    except LinkLost:
        board.drop_link()
        raise
    return chan


def replace_programs(temp: str, dest: str, want: str, *, rename: bool) -> list[str]:
    """The execs that put the verified `temp` in place of `dest` (see _REPLACE, _RENAME).

    Each prints one word: "go" (run the next one), "ok", "gone" (nothing to do: `temp` is
    no longer there), "bad" (`temp` does not match `want`; nothing was removed) or
    "copybad" (the copy did not verify; `temp` and the journal are kept for recovery).
    """
    kind = "adler32" if want.startswith("adler32:") else "sha256"
    args = guarded([temp, dest, want])
    check = checksum_program(kind)
    if rename:
        return [_call(check + _RENAME, args + "print(__mpk_rn(*__A))", "__mpk_rn,__mpk_ad,__A")]
    return [_call(check + _REPLACE, args + "print(__mpk_rp(*__A))", "__mpk_rp,__mpk_ad,__A"),
            _call(check + _COPY, args + "print(__mpk_cp(*__A))", "__mpk_cp,__mpk_ad,__A")]


def stream_download(
    board,  # noqa: ANN001
    path: str,
    *,
    size: int,
    frame_size: int = 512,
    progress: Progress | None = None,
) -> bytes:
    """Read a file through framed raw bytes; each frame's sum is checked on arrival."""
    chan = _start(board, _call(_STREAM_GET, f"__mpk_get({path!r},{frame_size})", "__mpk_get"))
    data = bytearray()
    try:
        while True:
            if board.interrupt_requested:
                _stop_program(board)
                raise Interrupted("Download interrupted; nothing was saved on the host.")
            header = chan.exact(4, 5.0)
            length, total = codec.parse_download_header(header)
            if length == 0:
                break
            if length > frame_size:
                raise chan.unexpected(header)
            chunk = chan.exact(length, 5.0)
            if codec.sum16(chunk) != total:
                _stop_program(board)
                raise MpkernelError("A chunk of the download arrived damaged.",
                                    "Run the command again; check the cable if it repeats.")
            data += chunk
            if progress is not None:
                progress(len(data), max(size, len(data)))
    except LinkLost:
        board.drop_link()
        raise
    chan.finish()
    return bytes(data)


def _stop_program(board) -> None:  # noqa: ANN001
    """Ctrl-C a streaming program; its binary output is thrown away and the board resynced."""
    board.link.write(b"\x03")
    board.repl.discard_input(quiet_for=0.2, limit=2.0)
    board.busy_reason = "transfer interrupted"


# -- exec-per-chunk path ------------------------------------------------------------------
_SMALLEST_EXEC_CHUNK = 32  # bytes of payload: below this the per-exec cost dominates
def exec_upload(
    board,  # noqa: ANN001
    data: bytes,
    target: str,
    *,
    chunk: int,
    binascii: bool,
    deflate: bool,
    progress: Progress | None = None,
) -> UploadReport:
    """Write `target` with one exec per chunk; the caller verifies and cleans up.

    Each chunk goes with its sum, and the board writes it only if its bytes add up: plain raw
    mode has no flow control, and a byte lost or changed inside a literal can leave a program
    that still compiles (a flipped letter in b'...'); written, it spoiled the whole upload,
    which only the caller's read-back caught. Refused, the same chunk goes again."""
    started = time.monotonic()
    setup = (f"__mpk_f=open({target!r},'wb')\n"
             "def __mpk_w(b,s):\n if sum(b)&65535!=s:raise ValueError('garbled')\n"
             " __mpk_f.write(b)\n")
    if binascii:
        setup += ("try:\n from binascii import a2b_base64 as __b64\nexcept ImportError:\n"
                  " from ubinascii import a2b_base64 as __b64\n")
    if deflate:
        setup += ("def __inf(s):\n import deflate,io\n"
                  " return deflate.DeflateIO(io.BytesIO(__b64(s)),deflate.RAW,9).read()\n")
    board.exec(setup)
    wire = 0
    start = 0
    garbled = resends = 0
    try:
        while start < len(data):
            piece = data[start : start + chunk]
            enc = codec.encode_chunk(piece, binascii=binascii, deflate=deflate)
            program = f"__mpk_w({enc.expr},{codec.sum16(piece)})"
            wire += len(program) + 1  # and its Ctrl-D; a chunk sent again counts again
            try:
                board.exec(program)
            except DeviceError as err:
                refused = err.ename == "ValueError" and "garbled" in err.evalue
                if not refused and not cells.failed_to_compile(err.traceback):
                    raise
                if (refused or err.ename == "SyntaxError") and garbled < 3:
                    # Arrived changed: the sum refused it, or the parser did (a byte lost on
                    # the way); either way nothing was written, so it goes again.
                    garbled += 1
                    resends += 1
                    continue
                if err.ename == "MemoryError" and chunk > _SMALLEST_EXEC_CHUNK:
                    # The parser found no room for this chunk's program in a fragmented
                    # heap (measured: 4.9 KB free in 48-byte holes); nothing ran, so the
                    # same bytes go again in smaller pieces.
                    chunk = max(_SMALLEST_EXEC_CHUNK, chunk // 2)
                    continue
                raise
            garbled = 0
            start += len(piece)
            if progress is not None:
                progress(start, len(data))
    finally:
        board.exec("__mpk_f.close()\ndel __mpk_f,__mpk_w", interruptible=False)
    return UploadReport(len(data), wire, time.monotonic() - started, resends, "", "exec")


def exec_download(
    board, path: str, *, size: int, chunk: int, binascii: bool,  # noqa: ANN001
    progress: Progress | None = None,
) -> bytes:
    """Print the file as literals, one chunk a line (base64 where binascii exists)."""
    enc = ("(lambda c:b2a_base64(c))" if binascii else "repr")
    imp = ("try:\n from binascii import b2a_base64\nexcept ImportError:\n"
           " from ubinascii import b2a_base64\n" if binascii else "")
    program = (f"{imp}def __mpk_g(n):\n f=open(n,'rb')\n while 1:\n  c=f.read({chunk})\n"
               f"  if not c:break\n  print({enc}(c))\n f.close()\n"
               f"__mpk_g({path!r})\ndel __mpk_g\n")
    data = bytearray()
    pending = ""

    def on_output(text: str) -> None:
        nonlocal pending
        pending += text
        while "\n" in pending:
            line, pending = pending.split("\n", 1)
            line = line.strip()
            if not line:
                continue
            value = ast.literal_eval(line)
            if binascii:
                import base64

                value = base64.b64decode(value)
            data.extend(value)
            if progress is not None:
                progress(len(data), max(size, len(data)))

    board.exec(program, on_output=on_output)
    return bytes(data)
