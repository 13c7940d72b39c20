"""Moving file bytes to and from a board: the board-side programs and the host's half.

Two methods, chosen by `fs.FileSystem` from what the firmware has:

- stream: one small program on the board turns off Ctrl-C (`micropython.kbd_intr(-1)`) and
  reads framed raw bytes from the UART (`microbit.uart`), so any byte costs one byte on the
  wire. The board's receive ring holds only 63 bytes and, when its Python falls behind (on
  the emulated board: whenever its host is busy), bytes are lost; so each frame names the
  file offset it belongs at and carries a sum and a trailer byte (see fs_codec), the board
  acknowledges every good frame with its position and answers a damaged or missing one with
  NAK, and the host sends again from the board's position (go-back-N, see _FrameSender). A
  window of frames in flight hides the USB latency. At the end the program reads the file
  back and prints its digest. It gives up by itself after 3 s of silence, or 2 s without a
  good frame (a host that vanished mid-upload and came back sends Ctrl-C bursts, not
  frames), so the board is never left deaf to Ctrl-C. Where its programs do not fit the
  board's RAM, fs falls back to the exec method.
- exec: one `f.write(<expression>)` per chunk through the raw REPL (raw-paste where it
  exists), each chunk encoded as repr, base64 or deflate, whichever is shortest.

Downloads mirror them: framed raw bytes with per-frame sums, or printed literals.
"""

from __future__ import annotations

import ast
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from mpkernel import fs_codec as codec
from mpkernel.errors import (
    BoardReset,
    BoardTimeout,
    DeviceError,
    Interrupted,
    LinkLost,
    MpkernelError,
)
from mpkernel.link import READ_TICK
from mpkernel.rawrepl import LinePacer, find_reset

Progress = Callable[[int, int], None]
SETTLE = 0.04  # s: the pause between the board's R and the first frame (see stream_upload)
SILENT = 5.0  # s without a byte from the board during an upload: it stopped answering
# Globals the upload programs define; removed after a failure left them behind.
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

# Stream upload. The program text never changes (its names are interned once, not per
# upload); the file name, journal state, expected digest and end mark come as one string
# argument longer than 10 characters, which MicroPython does not intern. The board writes the
# journal and creates the file before it says R, so nothing arrives while flash is being
# written for them. It keeps what it received in `b` and skips to the next byte that could
# start the frame it expects. It sends NAK+seq when there is evidence that frame is damaged
# or gone (its sum fails, it stays incomplete through 50 ms of silence, or a later frame's
# header shows up), again at most every 50 ms while that goes on and after 100 ms of silence;
# a copy of a frame it already has is skipped without a word (the host resends exact copies,
# see _FrameSender). At the end it reads the file back and prints its digest; a copy that does
# not match, or any failure, makes it remove the file itself. Then, success or not, it drains
# what the host still had in flight (copies of a go-back can follow the end frame) before
# Ctrl-C is on again: a 0x03 among those bytes would otherwise raise KeyboardInterrupt in the
# next program (the seeded soak saw exactly that). After a success the host sends the end mark
# once it has the D, and the drain ends when the mark arrives (1.5 s at most): it was the last
# byte the host sent, so nothing is left to arrive later as the start of the next program.
_STREAM_SCAN = """def __mpk_sc(b,e,F,w):
 if len(b)<6:return b,2 if b and w>50 else 0,6,None
 m=b[2]|b[3]<<8
 if m==65535 and b[0]==0 and b[1]==0:return b,3,0,None
 s=(b[0]|b[1]<<8)-e&65535
 if s or m>F:
  i=b.find(bytes([e&255]),1);return (b[i:] if i>0 else b''),2 if 0<s<4096 and m<=F else 4,6,None
 if len(b)<7+m:
  return (b[1:],2,6,None) if w>50 else (b,0,7+m,None)
 d=b[6:6+m]
 if sum(d)&65535!=b[4]|b[5]<<8 or b[6+m]!=e+m+90&255:return b[1:],2,6,None
 return b[7+m:],1,6,d
def __mpk_ps(c,S):
 return c+bytes([S[2]&255,S[2]>>8&255])
"""

_STREAM_HELP = """def __mpk_op(P):
 P=P.split(chr(10))
 if P[1]:
  j=open('.mpkj','w');j.write(P[1]+chr(10)+P[0]+chr(10));j.close()
 return [open(P[0],'wb'),P,0]
def __mpk_fr(d,S):
 if not d:return 'D'
 try:
  S[0].write(d)
 except OSError:
  return 'F'
 S[2]+=len(d)
 return 'k'
def __mpk_end(S,ok,rd,wr):
 import os,utime
 tk=utime.ticks_ms;P=S[1];g=''
 if not ok:wr(b'!')
 try:
  S[0].close()
  if ok:g=__mpk_ad(P[0])
 except Exception:
  pass
 for x in ((P[1] and '.mpkj',) if g==P[2] else (P[0],P[1] and '.mpkj')):
  try:
   os.remove(x)
  except OSError:
   pass
 t=tk();s=t;r=b'';m=bytes(P[3],'ascii');df=utime.ticks_diff
 while 1:
  d=rd(96)
  if d:
   t=tk();r=r[-8:]+d
   if ok and m in r:break
  if df(tk(),t)>(60 if ok else 150) and (not ok or df(tk(),s)>1500) or df(tk(),s)>3000:break
 return g
"""

_STREAM_UP = """def __mpk_up(F,P):
 import micropython,utime
 from microbit import uart
 rd=uart.read;wr=uart.write;tk=utime.ticks_ms;df=utime.ticks_diff
 L=[];g=0;q=6;ok=0;y='';k=0;n=0;S=__mpk_op(P)
 micropython.kbd_intr(-1)
 try:
  wr(b'R');t=tk();z=t
  while 1:
   d=rd(96)
   if d:L.append(d);g+=len(d);t=tk()
   w=df(tk(),t)
   if g<q and w<=50:continue
   if k and w>100:
    if df(tk(),z)>2000:y='timeout';break
    L=[];g=0;q=6;t=tk();n=t;wr(__mpk_ps(b'N',S));continue
   if w>3000:y='timeout';break
   b,a,q,d=__mpk_sc(b''.join(L),S[2],F,w)
   L=[b] if b else [];g=len(b)
   if a==3:y='abort';break
   if a>1:
    if df(tk(),z)>2000:y='timeout';break
    if a==2 and (not k or df(tk(),n)>50):k=1;n=tk();wr(__mpk_ps(b'N',S))
   if a==1:
    k=0;z=tk();r=__mpk_fr(d,S)
    if r=='F':y='full';wr(b'F');print(S[2]);break
    if r=='D':ok=1;wr(b'D');break
    wr(__mpk_ps(b'k',S))
 finally:
  g=__mpk_end(S,ok,rd,wr)
  micropython.kbd_intr(3)
 print('='+g if ok else '!'+y)
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
            from mpkernel import cells

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

        from mpkernel import cells

        stderr = self.repl.follow(out.extend, tick)
        if stderr.strip():
            raise DeviceError(*cells.parse_traceback(stderr.decode(errors="replace")))
        return out.decode(errors="replace")


def _start(board, program: str) -> _Channel:  # noqa: ANN001
    """Send a program that will stream; wait for its ready byte."""
    if board.interrupt_requested:
        raise Interrupted("Interrupted before the transfer started.")
    board.ensure_ready()
    chan = _Channel(board)
    try:
        board.send_program(program.encode())
        first = chan.byte(10.0)
        if first != b"R":
            # Typically a MemoryError while compiling: the board's RAM is fragmented.
            raise chan.unexpected(first)
    except LinkLost:
        board.drop_link()
        raise
    return chan


@dataclass
class _InFlight:
    start: int  # where the frame's payload goes in the file
    end: int  # start + its length (start, for the end frame)
    began: float  # when its first byte went on the line
    ended: float  # when its last byte had crossed the line
    again: bool  # these bytes had been sent before (no round-trip sample from it)


class _FrameSender:
    """The host's half of the stream upload: what is in flight, what the board has, when a
    frame counts as lost, and how long the next frames are.

    Frames are named by file offset and the board acknowledges with its position, so after
    a loss the host simply sends again from the board's position, cut however it likes: a
    copy of bytes the board already has starts before its position and is skipped. (Frames
    once carried a counter and were re-cut after a loss; a NAK the board had sent before
    hearing a resend, taken as fresh, then made the host re-cut a frame whose earlier copy
    the board acknowledged, and the file came out wrong: the read-back checksum caught it.)
    A frame counts as lost when the board says so (NAK) or when no word came within a few
    round trips of its last byte (the board's NAK, or the frame's header, may be what was
    lost).

    Losses on an emulated board come in bursts while its process is not scheduled (a busy
    host), and a pause can pile up only what is in flight: after a loss the window halves
    and frames are cut half as long (down to 48 bytes, which the board's 63-byte receive
    ring holds whatever the pause), and both grow back after clean acknowledgements.
    """

    MIN_WAIT = 0.08  # s: the least time to wait for a word on a frame after its last byte
    GIVE_UP = 20.0  # s without the board's position moving
    SMALLEST = 48  # bytes: the shortest frame cut after losses

    def __init__(self, link: LinePacer, data: bytes, frame_size: int, window: int) -> None:
        self.link = link
        self.data = data
        self.size = len(data)
        self.cut = self.frame_size = max(self.SMALLEST, frame_size)
        self.window = self.max_window = max(1, window)
        self.acknowledged = 0  # the board's position: every byte before it is written
        self.sent_to = 0  # where the next frame starts
        self.highest = 0  # the furthest byte ever sent
        self.flight: list[_InFlight] = []
        self.end_sent = False  # the end frame is among those in flight
        self.began_at: dict[int, float] = {}  # offset -> when its latest frame began
        self.round_trip = 0.03  # s, smoothed: last byte out -> acknowledgement back
        self.shortest_trip = 0.0  # s: no word about a copy comes back sooner than this
        self.count = 0  # frames sent, copies included
        self.clean = self.losses = self.resends = self.wire = 0
        self.last_progress = time.monotonic()

    def fill_window(self) -> None:
        while len(self.flight) < self.window and not self.end_sent:
            start = self.sent_to
            chunk = self.data[start : start + self.cut]
            out = codec.frame(start, chunk) if chunk else codec.end_frame(start)
            began = max(time.monotonic(), self.link.free)
            self.link.write(out)
            end = start + len(chunk)
            again = start < self.highest or start in self.began_at  # a copy of sent bytes
            self.flight.append(_InFlight(start, end, began, max(time.monotonic(),
                                                                 self.link.free), again))
            self.began_at[start] = began
            self.resends += again
            self.highest = max(self.highest, end)
            self.sent_to, self.end_sent = end, not chunk
            self.wire += len(out)
            self.count += 1

    def wait_for_word(self) -> float:
        """Seconds to wait for the board's word on the oldest frame before calling it lost."""
        allowance = max(self.MIN_WAIT, 3 * self.round_trip)
        return max(0.0, self.flight[0].ended + allowance - time.monotonic())

    def nak_is_fresh(self, low16: int) -> bool:
        """A NAK at the board's position that it can have sent after hearing the latest
        frame starting there. The board repeats its NAK while the line brings it the rest of
        what was in flight; those are about copies that were already sent again."""
        if codec.position(low16, self.acknowledged) != self.acknowledged:
            return False
        began = self.began_at.get(self.acknowledged, 0.0)
        return time.monotonic() >= began + self.shortest_trip

    def acked(self, low16: int) -> bool:
        """The board is at this position now; False if that is beyond anything sent."""
        now = time.monotonic()
        pos = codec.position(low16, self.acknowledged)
        if pos > self.highest:
            return False
        first = self.flight[0] if self.flight else None
        if first is not None and first.end == pos and not first.again:
            trip = max(0.0, now - first.ended)
            self.round_trip += (trip - self.round_trip) / 4
            self.shortest_trip = min(self.shortest_trip or trip, trip)
        self.acknowledged = pos
        self.flight = [f for f in self.flight if f.start >= pos]
        if self.flight and self.flight[0].start != pos:
            # The board took an earlier copy cut longer, which ended inside what is in flight
            # now: those frames no longer start where it waits. Go on from its position.
            self.flight, self.sent_to, self.end_sent = [], pos, False
        elif not self.flight:
            self.sent_to = max(self.sent_to, pos)
        self.last_progress = now
        self.clean += 1
        if self.clean >= 8 and (self.window < self.max_window or self.cut < self.frame_size):
            self.window = min(self.max_window, self.window + 1)
            self.cut, self.clean = min(self.frame_size, self.cut * 2), 0
        return True

    def go_back(self) -> bool:
        """Send again from the board's position; False when the line is too poor to go on."""
        self.losses += 1
        self.flight, self.sent_to, self.end_sent = [], self.acknowledged, False
        self.window, self.clean = max(1, self.window // 2), 0
        self.cut = max(self.SMALLEST, self.cut // 2)
        stuck = time.monotonic() - self.last_progress > self.GIVE_UP
        return not stuck and self.losses <= 100 + self.size // 64


def stream_upload(
    board,  # noqa: ANN001 - mpkernel.board.Board (import cycle)
    data: bytes,
    target: str,
    *,
    want: str,
    journal: str = "",
    frame_size: int = 256,
    window: int = 4,
    progress: Progress | None = None,
) -> UploadReport:
    """Send `data` to `target` through the stream program; it verifies against `want`.

    On any failure the board removes `target` itself (or the host does, after a reset) and
    UploadFailed says why. Returns the board's digest on success.
    """
    started = time.monotonic()
    # Three execs, each under ~800 bytes: compiling one program of 2 KB needs more contiguous
    # RAM than a micro:bit has free after a few cells (MemoryError while compiling). The
    # checksum function rides with the first, so no exec of its own is needed to verify.
    kind = "adler32" if want.startswith("adler32:") else "sha256"
    board.exec(checksum_program(kind) + _STREAM_SCAN)
    board.exec(_STREAM_HELP)
    state = journal.split("\n")[0] if journal else ""
    # The end mark tells the board that nothing more is on its way (see _STREAM_HELP): a
    # random word per upload, so no file's bytes still in flight can end the drain early.
    end_mark = secrets.token_hex(4)
    params = "\n".join((target, state, want, end_mark))  # check_path keeps control chars out
    chan = _start(board, _call(_STREAM_UP, f"__mpk_up({frame_size},{params!r})",
                               "__mpk_up,__mpk_op,__mpk_fr,__mpk_end,__mpk_sc,__mpk_ad,__mpk_ps"))
    sender = _FrameSender(LinePacer(board.link), data, frame_size, window)
    # Measured on the emulated micro:bit: bytes that reach the board in its first ~30 ms of
    # listening arrive in bursts its 63-byte receive ring cannot hold (even with the file
    # already open, even with a pause on the board before R), and a lost first window costs
    # ~0.1 s to recover; sent after this pause, they arrived whole in almost every run.
    time.sleep(SETTLE)
    heard = time.monotonic()  # when the board last said anything
    try:
        while True:
            if board.interrupt_requested:
                return _abort(chan, "interrupt", sender.acknowledged)
            sender.fill_window()
            reply = chan.poll(sender.wait_for_word())
            if reply is not None:
                heard = time.monotonic()
            elif time.monotonic() - heard > SILENT:
                raise BoardTimeout(
                    f"The board stopped answering during the transfer (no reply in {SILENT:.0f}"
                    " s).", "Run %doctor if this repeats.")
            if reply is None or reply == codec.NAK:
                lost = reply is None or sender.nak_is_fresh(_low16(chan.exact(2, 5.0)))
                if lost and not sender.go_back():
                    return _abort(chan, "error", sender.acknowledged)
            elif reply == codec.ACK:
                if not sender.acked(_low16(chan.exact(2, 5.0))):
                    raise chan.unexpected(reply)
                if progress is not None:
                    progress(sender.acknowledged, len(data))
            elif reply == codec.DONE:
                break
            elif reply == codec.FULL:
                out_text = chan.finish()
                written = int(out_text.split()[0]) if out_text.split() else 0
                raise UploadFailed("full", cause="full", written=written)
            else:
                raise chan.unexpected(reply)
        board.link.write(end_mark.encode())
    except LinkLost:
        board.drop_link()
        raise
    # The board read its copy back and printed the digest ("=<digest>"), or "!<reason>".
    result = chan.finish().split()
    if not result or not result[-1].startswith("="):
        raise UploadFailed(f"The board gave up the upload ({result[-1][1:] if result else '?'}).",
                           cause="error")
    digest = result[-1][1:]
    if digest != want:
        raise UploadFailed(
            f"The board's copy did not match after writing (checksum {digest}, expected "
            f"{want}); it was removed.", "Run the command again.", cause="verify")
    return UploadReport(len(data), sender.wire, time.monotonic() - started, sender.resends,
                        digest, "stream", frames=sender.count)


def _low16(two: bytes) -> int:
    return two[0] | two[1] << 8


def _abort(chan: _Channel, cause: str, written: int) -> UploadReport:
    """Ask the stream program to stop and remove its file; wait for it to end."""
    link = chan.board.link
    deadline = time.monotonic() + 8.0
    link.write(codec.abort_frame())
    while time.monotonic() < deadline:
        try:
            reply = chan.byte(deadline - time.monotonic())
        except BoardTimeout:
            break
        if reply == codec.NAK:
            # The abort landed inside a frame; the board now looks for a header again.
            chan.exact(2, 1.0)
            link.write(codec.abort_frame())
        elif reply == codec.ACK:
            chan.exact(2, 1.0)  # a frame that was on its way when the abort was sent
        elif reply == b"!" or reply == b"\x04":
            chan.repl.unread(reply)
            chan.finish()
            break
    if cause == "interrupt":
        raise UploadFailed("interrupted", cause="interrupt", written=written)
    raise UploadFailed("The line lost too many bytes to finish the upload.",
                       "Check the cable; a lower baud rate may help.", cause="error")


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
    """Write `target` with one exec per chunk; the caller verifies and cleans up."""
    started = time.monotonic()
    setup = f"__mpk_f=open({target!r},'wb')\n"
    if binascii:
        setup += ("try:\n from binascii import a2b_base64 as __b64\nexcept ImportError:\n"
                  " from ubinascii import a2b_base64 as __b64\n")
    if deflate:
        setup += ("def __inf(s):\n import deflate,io\n"
                  " return deflate.DeflateIO(io.BytesIO(__b64(s)),deflate.RAW,9).read()\n")
    board.exec(setup)
    wire = 0
    try:
        for start in range(0, len(data), chunk):
            enc = codec.encode_chunk(data[start : start + chunk], binascii=binascii,
                                     deflate=deflate)
            for attempt in range(3):
                try:
                    board.exec(f"__mpk_f.write({enc.expr})")
                    break
                except DeviceError as err:
                    # Plain raw mode has no flow control: a byte lost on the way gives a
                    # SyntaxError before anything ran, so sending the chunk again is safe.
                    if err.ename != "SyntaxError" or attempt == 2:
                        raise
            wire += len(enc.expr) + 16
            if progress is not None:
                progress(min(len(data), start + chunk), len(data))
    finally:
        board.exec("__mpk_f.close()\ndel __mpk_f", interruptible=False)
    return UploadReport(len(data), wire, time.monotonic() - started, 0, "", "exec")


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


def _intern_program() -> str:
    """One short program naming every identifier and short string the transfer programs use.

    MicroPython interns those for good in qstr pools placed wherever the heap has room; when
    the first upload does it, the pools land mid-heap and split the free RAM so the next
    upload's program no longer compiles (MemoryError on a 10 KB heap). Run once right after
    connecting, while the heap is still unfragmented, it puts them in one place.
    """
    import io
    import keyword
    import tokenize

    names: set[str] = set()
    strings: set[str] = set()
    for text in (_STREAM_SCAN, _STREAM_HELP, _STREAM_UP, _ADLER, _REPLACE, _COPY,
                 _STREAM_GET):
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.NAME and not keyword.iskeyword(tok.string):
                names.add(tok.string)
            elif tok.type == tokenize.STRING and not tok.string.startswith("b"):
                value = ast.literal_eval(tok.string)
                if len(value) <= 10 and "%" not in value:
                    strings.add(value)
    params = ",".join(sorted(names))
    return f"__mpk_q=(lambda {params}:0,{tuple(sorted(strings))!r})\ndel __mpk_q\n"


INTERN = _intern_program()
