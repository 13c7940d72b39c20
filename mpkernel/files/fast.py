"""The fast file channel for modern firmware: raw bytes through sys.stdin.buffer/stdout.buffer.

Used where the firmware has `sys.stdin.buffer`, `micropython.kbd_intr`, `select.poll` and
`hashlib` (MicroPython 1.2x on ESP32, RP2040, the modern emulated board). Every byte of file
costs about one byte on the wire, and text costs less: it goes deflated where the board can
decompress it.

Upload. A resident board program (`__mpk_fu`, defined once per board session through
raw-paste, re-sent when a reset cleared it) turns Ctrl-C off with `micropython.kbd_intr(-1)`,
opens the temporary name api.py gave it, says `R`, and reads frames:

    seq (1) | flags (1) | length (2, LE) | first 4 bytes of SHA-256(payload) | payload

Each good frame is acknowledged with `k`. A frame whose check fails, or that does not come
(a byte lost on a UART without flow control), makes the board drain the line until it is
quiet and answer `N` + the sequence number it wants; the host goes back to it (go-back-N) with
a smaller window. The host keeps a window of bytes in flight so latency costs little, and
sends zero filler when no answer comes, so a board blocked in the middle of a short frame
reads on and reports the damage. Flags mark deflated segments: the host cuts the file into
segments and sends each raw or deflated, whichever is smaller, or the whole file as one
deflated segment when that is smaller still and fits the board's RAM. The deflate window is
chosen from the board's free RAM and passed to `deflate.DeflateIO` explicitly (its default,
256 bytes, is what made deflated uploads fail with EINVAL). The end frame makes the board
close the file, read it back and hash it (SHA-256), and print `=<hex>`; any failure prints
`!<cause> <detail>` after the board removed the partial file. Ctrl-C comes back on in a
`finally`, after the line was drained, also after an error or an abort frame. With no byte for
1.5 s, or no good frame for 2 s, the board gives up by itself, so a vanished host never leaves
it deaf to Ctrl-C.

Download. `__mpk_fg` says `R` and the file's size, sends length-prefixed blocks, then the
SHA-256 of what it read; the host compares it with its own. Ctrl-C stays on (nothing but an
interrupt is sent to the board meanwhile), and a damaged download is read once more.

This module moves bytes only: the atomic replace (temporary name, rename over the old file)
is api.py's.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
import weakref
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from mpkernel import cells
from mpkernel.board.link import READ_TICK
from mpkernel.board.rawrepl import ResetDuringExec, find_reset
from mpkernel.errors import (
    BoardReset,
    BoardTimeout,
    DeviceError,
    Interrupted,
    LinkLost,
    MpkernelError,
)
from mpkernel.files.transfer import UploadFailed, UploadReport

if TYPE_CHECKING:
    from mpkernel.board.board import Board

Progress = Callable[[int, int], None]

HEADER = struct.Struct("<BBHI")
F_DEFLATE = 1  # the payload is part of a deflated segment
F_SEGMENT_END = 2  # the last frame of a deflated segment: the board inflates it now
F_END = 4  # end of file (no payload)
F_ABORT = 8  # the host gives up: remove the file, drain, end
ACK, NAK, FAIL, DONE = b"k", b"N", b"E", b"X"

FRAME = 1024  # payload bytes a frame carries at most (the board keeps one in RAM)
WINDOW = 4096  # bytes in flight before the host waits for acknowledgements
ACK_WAIT = 1.0  # s without an answer before the host sends filler (the board gives up at 1.5)
DOWN_BLOCK = 2048

# -- board-side programs (MicroPython 1.2x) ----------------------------------------------
# rx reads exactly n bytes with a deadline (500 ms + 1 ms a byte, 10,000 baud at least):
# select.poll says a byte is there, then readinto takes at most K bytes. A blocking read of
# more than has arrived would wait forever for a host that vanished with Ctrl-C off; with K
# small, the few bytes a reconnecting host sends first (Ctrl-C, Ctrl-A) free it at once, the
# frame fails its check, and with no good frame for 2 s the program ends by itself.
_DEFS_UP = """def __mpk_fu(t,W,K,F):
 import sys,os,micropython,hashlib,select,struct,time
 i=sys.stdin.buffer;w=sys.stdout.buffer.write;p=select.poll();p.register(sys.stdin,1)
 h=bytearray(8);b=bytearray(F);hv=memoryview(h);bv=memoryview(b);S=hashlib.sha256
 def rx(v,n):
  k=0;s=time.ticks_ms()
  while k<n:
   if not p.poll(1500) or time.ticks_diff(time.ticks_ms(),s)>500+n:return 0
   k+=i.readinto(v[k:k+K if k+K<n else n])
  return 1
 def dr():
  s=time.ticks_ms()
  while p.poll(40) and time.ticks_diff(time.ticks_ms(),s)<2000:i.read(1)
 q=t.split('/')
 for j in range(1,len(q)):
  d='/'.join(q[:j])
  if d:
   try:os.mkdir(d)
   except OSError:pass
 f=open(t,'wb');r='!timeout';e=0;z=[];g=time.ticks_ms()
 micropython.kbd_intr(-1)
 try:
  w(b'R')
  while 1:
   if time.ticks_diff(time.ticks_ms(),g)>2000 or not rx(hv,8):break
   s,fl,m,c=struct.unpack('<BBHI',h)
   if m>F or not rx(bv,m) or struct.unpack('<I',S(bv[:m]).digest())[0]!=c:s=-1
   if fl&8 and s>=0:r='!abort';break
   if s!=e&255:
    dr();w(b'N'+bytes([e&255]));continue
   g=time.ticks_ms()
   e+=1
   try:
    if fl&4:
     f.close();f=None;r=__mpk_fh(t);w(b'k');break
    if fl&1:
     z.append(bytes(bv[:m]))
     if fl&2:
      import deflate,io,gc
      try:
       y=b''.join(z);z=[];gc.collect()
       y=deflate.DeflateIO(io.BytesIO(y),deflate.RAW,W);u=bytearray(1024)
       while 1:
        k=y.readinto(u)
        if not k:break
        f.write(u[:k] if k<1024 else u)
       y=u=None
      except OSError as x:
       if x.errno!=22:raise
       r='!inflate '+repr(x);w(b'E');dr();break
      except MemoryError as x:
       r='!inflate '+repr(x);w(b'E');dr();break
    else:
     f.write(bv[:m])
   except OSError as x:
    r='!oserror %d'%x.errno;w(b'E');dr();break
   w(b'k')
 finally:
  if f:f.close()
  if r[0]!='=':
   dr()
   try:os.remove(t)
   except OSError:pass
  w(b'X')
  micropython.kbd_intr(3)
 print(r)
def __mpk_fh(n):
 import hashlib,binascii
 s=hashlib.sha256();b=bytearray(1024);v=memoryview(b)
 with open(n,'rb') as f:
  while 1:
   k=f.readinto(b)
   if not k:break
   s.update(v[:k])
 return '='+binascii.hexlify(s.digest()).decode()
"""

_DEFS_GET = """def __mpk_fg(n,F):
 import sys,os,hashlib
 w=sys.stdout.buffer.write;s=hashlib.sha256();b=bytearray(F);v=memoryview(b)
 f=open(n,'rb')
 try:
  w(b'R'+os.stat(n)[6].to_bytes(4,'little'))
  while 1:
   k=f.readinto(b)
   if not k:break
   s.update(v[:k]);w(k.to_bytes(2,'little'));w(v[:k])
  w(b'\\0\\0'+s.digest())
 finally:
  f.close()
"""

_PROBE = """try:
 import sys,micropython,select,hashlib,struct
 print(hasattr(sys.stdin,'buffer') and hasattr(micropython,'kbd_intr'))
except ImportError:
 print(False)
"""

# Per link: does the firmware have what this channel needs (probed once per connection).
_usable: weakref.WeakKeyDictionary[object, bool] = weakref.WeakKeyDictionary()


def usable(board: Board) -> bool:
    """True where the board's firmware has the raw stdin/stdout channel this module uses."""
    board.ensure_ready()
    link = board.link
    if link not in _usable:
        caps = board.caps
        ok = caps.hashlib and caps.rename and board.exec(_PROBE, interruptible=False).strip()
        _usable[link] = ok == "True"
    return _usable[link]


# -- planning (pure) ------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    frames: list[tuple[int, bytes]]  # (flags, payload), the end frame not included
    wbits: int
    how: str  # "raw" | "deflate per file" | "deflate per chunk" | "mixed"

    @property
    def wire(self) -> int:
        return sum(HEADER.size + len(p) for _, p in self.frames) + HEADER.size


def window_bits(mem_free: int) -> int:
    """The deflate window the board allocates in one piece: at most 1/32 of its free RAM and
    4 KB (measured on 20 KB of Python source: 6,838 bytes deflated with a 4 KB window, 6,359
    with 32 KB; a 16 KB block is what a fragmented heap fails to find first)."""
    budget = max(512, (mem_free if mem_free > 0 else 16 * 1024) // 32)
    return max(9, min(12, budget.bit_length() - 1))


def _deflate(data: bytes, wbits: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -wbits, 9)
    return packer.compress(data) + packer.flush()


def _split(flags: int, data: bytes, frame: int) -> list[tuple[int, bytes]]:
    """Frames for one segment; a deflated segment's last frame carries F_SEGMENT_END."""
    parts = [data[i : i + frame] for i in range(0, len(data), frame)] or [b""]
    if not flags:
        return [(0, p) for p in parts if p]
    return [(flags | (F_SEGMENT_END if n == len(parts) - 1 else 0), p)
            for n, p in enumerate(parts)]


def plan_upload(data: bytes, *, deflate: bool, mem_free: int, frame: int = FRAME) -> Plan:
    """Cut `data` into frames, deflated where that is smaller: per chunk (each chunk raw or
    deflated, whichever is shorter) or the whole file as one segment, whichever is smaller.

    A deflated segment's compressed bytes are held in the board's RAM until it ends (it is
    inflated straight into the file), so segments are bounded by free RAM."""
    raw = _split(0, data, frame)
    if not deflate or len(data) < 64:
        return Plan(raw, 0, "raw")
    wbits = window_bits(mem_free)
    budget = max(1024, (mem_free if mem_free > 0 else 16 * 1024) // 6)
    chunk = min(budget, 8 * 1024)
    per_chunk: list[tuple[int, bytes]] = []
    packed_chunks = 0
    starts = range(0, len(data), chunk)
    for start in starts:
        piece = data[start : start + chunk]
        packed = _deflate(piece, wbits)
        if len(packed) + 2 * HEADER.size < len(piece):
            per_chunk += _split(F_DEFLATE, packed, frame)
            packed_chunks += 1
        else:
            per_chunk += _split(0, piece, frame)
    options = [Plan(raw, wbits, "raw")]
    if packed_chunks:
        how = "deflate per chunk" if packed_chunks == len(starts) else "mixed"
        options.append(Plan(per_chunk, wbits, how))
    whole = _deflate(data, wbits)
    if len(whole) < min(len(data), budget):
        options.append(Plan(_split(F_DEFLATE, whole, frame), wbits, "deflate per file"))
    return min(options, key=lambda p: p.wire)


def frame_bytes(seq: int, flags: int, payload: bytes) -> bytes:
    check = struct.unpack("<I", hashlib.sha256(payload).digest()[:4])[0]
    return HEADER.pack(seq & 0xFF, flags, len(payload), check) + payload


# -- talking to the running program ------------------------------------------------------
class _Program:
    """A board program that streams: its bytes, its end, and what else the board might say."""

    def __init__(self, board: Board) -> None:
        self.board = board
        self.repl = board.repl

    def byte(self, timeout: float) -> bytes:
        return self.repl.read_byte(timeout)  # type: ignore[union-attr]

    def exact(self, count: int, timeout: float) -> bytes:
        return self.repl.read_exact(count, timeout)  # type: ignore[union-attr]

    def unexpected(self, first: bytes) -> MpkernelError:
        """Not a protocol byte: the program ended with a traceback, or the board rebooted."""
        repl = self.repl
        seen = bytearray(first) + repl.take_pending()  # type: ignore[union-attr]
        end = time.monotonic() + 1.5
        while time.monotonic() < end and not seen.endswith(b"\x04>") and find_reset(seen) < 0:
            seen += repl.link.read(READ_TICK)  # type: ignore[union-attr]
        if find_reset(seen) >= 0:
            self.board.busy_reason = "reset"  # the next step resyncs first
            repl.clear_input()  # type: ignore[union-attr]
            return BoardReset("The board reset in the middle of the transfer.",
                              "Nothing half-written was kept; run the command again.")
        repl.clear_input()  # type: ignore[union-attr]
        parts = bytes(seen).split(b"\x04")
        err = parts[1].decode(errors="replace").strip() if len(parts) > 2 else ""
        if err:
            return DeviceError(*cells.parse_traceback(err))
        self.board.busy_reason = self.board.busy_reason or "transfer"
        return BoardTimeout(f"The board answered the transfer with {bytes(seen)[:80]!r}.",
                            "Run the command again; %doctor if it repeats.")

    def finish(self, timeout: float = 10.0) -> str:
        """The program's remaining stdout; DeviceError if it ended with a traceback."""
        out = bytearray()
        deadline = time.monotonic() + timeout

        def tick(state: object) -> None:
            if time.monotonic() > deadline:
                raise BoardTimeout("The board did not finish the transfer step.")

        try:
            stderr = self.repl.follow(out.extend, tick)  # type: ignore[union-attr]
        except ResetDuringExec:
            self.board.busy_reason = "reset"  # the next step resyncs first
            raise BoardReset("The board reset in the middle of the transfer.",
                             "Nothing half-written was kept; run the command again.") from None
        if stderr.strip():
            raise DeviceError(*cells.parse_traceback(stderr.decode(errors="replace")))
        return out.decode(errors="replace")


def _definitions(board: Board, source: str) -> str:
    """A program that defines the board helpers in `source`: sent deflated where the board
    can inflate it (2.4 KB of program text is 1.1 KB on the wire; raw-paste is slow at high
    latency, so this is most of the cost of the first transfer after a reset)."""
    if not (board.caps.deflate and board.caps.binascii):
        return source
    packer = zlib.compressobj(9, zlib.DEFLATED, -9)
    packed = base64.b64encode(packer.compress(source.encode()) + packer.flush()).decode()
    return ("def __mpk_bs(s):\n import deflate,io,binascii\n"
            " exec(deflate.DeflateIO(io.BytesIO(binascii.a2b_base64(s)),deflate.RAW,9).read(),"
            f"globals())\n__mpk_bs({packed!r})\ndel __mpk_bs\n")


def _start(board: Board, call: str, source: str) -> _Program:
    """Run `call` (a resident helper's call); define the helpers in `source` first if the
    board has none (first use, or a reset cleared them). Returns once the program said R."""
    if board.interrupt_requested:
        raise Interrupted("Interrupted before the transfer started.")
    for attempt in range(2):
        board.ensure_ready()
        prog = _Program(board)
        try:
            board.send_program(call.encode())
            first = prog.byte(10.0)
        except LinkLost:
            board.drop_link()
            raise
        if first == b"R":
            return prog
        err = prog.unexpected(first)
        if (attempt == 0 and isinstance(err, DeviceError) and err.ename == "NameError"
                and "__mpk_f" in err.evalue):
            try:
                board.exec(_definitions(board, source), interruptible=False)
            except DeviceError as why:
                if why.ename != "MemoryError":
                    raise
                # Inflating and compiling the packed text needs blocks a fragmented heap may
                # not have; raw-paste compiles the plain text as it arrives.
                board.exec(source, interruptible=False)
            continue
        raise err
    raise AssertionError("unreachable")


# -- upload ------------------------------------------------------------------------------
def upload(
    board: Board,
    data: bytes,
    target: str,
    *,
    want: str,
    progress: Progress | None = None,
    frame: int = FRAME,
    window: int = WINDOW,
    piece: int = 8,
) -> UploadReport:
    """Write `data` to `target` (a temporary name: api.py renames it); the board checks every
    frame and hashes the file it wrote. Raises UploadFailed (the board removed its partial
    file) or DeviceError (the board's own error: a full or read-only filesystem)."""
    started = time.monotonic()
    caps = board.caps
    plan = plan_upload(data, deflate=caps.deflate, mem_free=caps.mem_free, frame=frame)
    note = ""
    sent = _send(board, data, target, plan, progress, frame, window, piece)
    if sent.result.startswith("!inflate MemoryError") and plan.how != "raw":
        # A heap too fragmented for the deflate window: the board removed its file; the same
        # bytes go again uncompressed (one wire byte a byte), which needs no extra RAM.
        plan = plan_upload(data, deflate=False, mem_free=caps.mem_free, frame=frame)
        note = ("(The board's RAM was too fragmented to decompress, so this upload went "
                "uncompressed; a soft reset, %reset, frees it.)")
        sent = _send(board, data, target, plan, progress, frame, window, piece)
    if sent.result.startswith("!"):
        raise _failure(sent.result, sent.written)
    digest = sent.result[1:]
    if digest != want:
        raise UploadFailed(
            f"The board's copy did not match after writing (SHA-256 {digest[:16]}, expected "
            f"{want[:16]}).", "Run the command again.", cause="verify")
    method = "fast" + (f", {plan.how}" if plan.how != "raw" else "")
    return UploadReport(len(data), sent.wire, time.monotonic() - started, sent.resends, digest,
                        method, note, frames=len(plan.frames) + 1)


@dataclass
class _Sent:
    result: str  # the board's last line: "=<sha256>" or "!<cause> <detail>"
    wire: int
    resends: int
    written: int  # file bytes acknowledged


def _send(board: Board, data: bytes, target: str, plan: Plan, progress: Progress | None,
          frame: int, window: int, piece: int) -> _Sent:
    """One run of the board program over `plan`'s frames (go-back-N, see the docstring)."""
    frames = plan.frames + [(F_END, b"")]
    # File bytes covered once frame i is acknowledged, for progress: a deflated segment's
    # frames count by their share of the wire bytes.
    total_wire = max(1, sum(len(p) for _, p in plan.frames))
    offsets, sent_wire = [0], 0
    for _, payload in plan.frames:
        sent_wire += len(payload)
        offsets.append(len(data) * sent_wire // total_wire)
    offsets.append(len(data))
    prog = _start(board, f"__mpk_fu({target!r},{plan.wbits or 9},{piece},{frame})", _DEFS_UP)
    link = board.link
    base = nxt = 0  # first unacknowledged frame; next frame to send
    win = window
    wire = resends = losses = clean = fillers = 0
    in_flight: list[int] = []  # wire sizes of frames base..nxt-1
    last_answer = time.monotonic()
    try:
        while True:
            if board.interrupt_requested:
                _abort(prog, nxt, "interrupt", offsets[base])
            while nxt < len(frames) and (nxt == base or sum(in_flight) < win):
                out = frame_bytes(nxt, *frames[nxt])
                link.write(out)  # type: ignore[union-attr]
                wire += len(out)
                in_flight.append(len(out))
                nxt += 1
            try:
                reply = prog.byte(READ_TICK * 2)
            except BoardTimeout:
                if time.monotonic() - last_answer < ACK_WAIT:
                    continue
                # No answer: a byte went missing and the board waits inside a frame. Filler
                # completes it; the check fails and the board asks for a resend.
                fillers += 1
                if fillers > 5:
                    _abort(prog, nxt, "error", offsets[base])
                link.write(bytes(frame + HEADER.size))  # type: ignore[union-attr]
                last_answer = time.monotonic()
                continue
            last_answer = time.monotonic()
            if reply == ACK:
                base += 1
                fillers = 0
                in_flight.pop(0)
                clean += 1
                if clean >= 8 and win < window:
                    win, clean = min(window, win * 2), 0
                if progress is not None:
                    progress(offsets[base], len(data))
                if base == len(frames):
                    break
            elif reply == NAK:
                want_seq = prog.byte(2.0)[0]
                ahead = (want_seq - base) & 0xFF
                if ahead > nxt - base:
                    raise prog.unexpected(reply + bytes([want_seq]))
                base += ahead  # acknowledgements that were lost on the way back
                losses += 1
                resends += nxt - base
                if losses > 50 + len(frames) * 2:
                    _abort(prog, nxt, "error", offsets[base])
                nxt = base
                in_flight = []
                win, clean = max(frame, win // 2), 0
            elif reply == FAIL:
                break
            else:
                raise prog.unexpected(reply)
        return _Sent(_result(prog), wire, resends, offsets[base])
    except LinkLost:
        board.drop_link()
        raise


def _result(prog: _Program) -> str:
    """Skip the last acknowledgements to the end byte, then read the printed result."""
    deadline = time.monotonic() + 10.0
    while True:
        reply = prog.byte(max(0.1, deadline - time.monotonic()))
        if reply == DONE:
            break
        if reply == NAK:
            prog.byte(2.0)
        elif reply not in (ACK, FAIL):
            raise prog.unexpected(reply)
    lines = prog.finish().strip().splitlines()
    return lines[-1].strip() if lines else "!gone"


def _abort(prog: _Program, seq: int, cause: str, written: int) -> NoReturn:
    """Ask the board to stop and remove its file; wait for it to end."""
    prog.board.link.write(frame_bytes(seq, F_ABORT, b""))  # type: ignore[union-attr]
    try:
        _result(prog)
    except BoardTimeout:
        # The abort frame was lost too: the board gives up by itself after 1.5 s of silence.
        prog.board.busy_reason = prog.board.busy_reason or "transfer"
    if cause == "interrupt":
        raise UploadFailed("interrupted", cause="interrupt", written=written)
    raise UploadFailed("The line lost too many bytes to finish the upload.",
                       "Check the cable; a lower baud rate may help.", cause="error")


def _failure(result: str, written: int) -> MpkernelError:
    """The board's own account of a failed upload, as the error that names its cause."""
    cause, _, detail = result[1:].partition(" ")
    if cause == "oserror":
        code = int(detail) if detail.isdigit() else 0
        if code == 28:
            return UploadFailed("full", cause="full", written=written)
        # Keep the errno: api.py explains EROFS, EISDIR... as such.
        names = {2: "ENOENT", 5: "EIO", 13: "EACCES", 21: "EISDIR", 30: "EROFS"}
        return DeviceError("OSError", f"[Errno {code}] {names.get(code, '')}".strip(), [])
    if cause == "inflate":
        return UploadFailed(
            f"The board could not decompress the data it received ({detail}); nothing was "
            "kept.", "This is a bug in mpkernel's compression settings: please report it.",
            cause="error")
    if cause == "timeout":
        return UploadFailed("The board stopped hearing from the host mid-upload (timeout).",
                            "Run the command again.", cause="error")
    return UploadFailed(f"The board gave up the upload ({result[1:]}).", cause="error")


# -- download ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Downloaded:
    data: bytes
    digest: str  # the board's SHA-256 of the file as it read it (hex); the data matched it
    retries: int  # damaged downloads read again
    method: str = "fast"


def download(board: Board, path: str, *, progress: Progress | None = None,
             block: int = DOWN_BLOCK) -> Downloaded:
    """Read `path` in length-prefixed blocks; the board's SHA-256 of what it read and the
    size it lists must match what arrived. A damaged download is read once more."""
    for attempt in range(2):
        try:
            data = _download_once(board, path, progress, block)
            return Downloaded(data, hashlib.sha256(data).hexdigest(), attempt)
        except _Damaged as err:
            if attempt:
                raise MpkernelError(
                    f"The download of {path} arrived damaged twice ({err}); nothing was saved.",
                    "Check the cable; a lower baud rate may help.") from None
    raise AssertionError("unreachable")


class _Damaged(Exception):
    pass


def _download_once(board: Board, path: str, progress: Progress | None, block: int) -> bytes:
    prog = _start(board, f"__mpk_fg({path!r},{block})", _DEFS_GET)
    try:
        size = int.from_bytes(prog.exact(4, 5.0), "little")
        data = bytearray()
        while True:
            if board.interrupt_requested:
                # Ctrl-C is on during a download. The rest of the stream is binary (a NUL
                # after a newline would look like a reboot to the REPL reader): drop it.
                _resync(board)
                raise Interrupted(f"Download of {path} interrupted; nothing was saved.")
            try:
                length = int.from_bytes(prog.exact(2, 3.0), "little")
                if length > block:
                    raise _Damaged(f"a block header said {length} bytes")
                if length == 0:
                    digest = prog.exact(32, 3.0)
                    break
                data += prog.exact(length, 3.0)
            except BoardTimeout:
                raise _Damaged("bytes went missing") from None
            if progress is not None:
                progress(len(data), max(size, len(data)))
        prog.finish()
    except _Damaged:
        _resync(board)
        raise
    except LinkLost:
        board.drop_link()
        raise
    if len(data) != size or hashlib.sha256(data).digest() != digest:
        raise _Damaged("the board's SHA-256 of the file differs from what arrived")
    return bytes(data)


def _resync(board: Board) -> None:
    """Stop the download program (Ctrl-C), drop what it still sends, and let the next step
    resync with the board."""
    board.link.write(b"\x03")  # type: ignore[union-attr]
    board.repl.discard_input(quiet_for=0.2, limit=10.0)  # type: ignore[union-attr]
    board.busy_reason = "transfer interrupted"
