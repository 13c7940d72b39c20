"""The micro:bit's stream upload: framed raw bytes through `microbit.uart`, go-back-N.

See transfer's docstring for where it fits: api.FileSystem chooses it on firmware that has
`microbit.uart` and `micropython.kbd_intr` but no `sys.stdin.buffer` (modern firmware uses
fast.py), and falls back to transfer.exec_upload where its programs do not fit in RAM.
"""

from __future__ import annotations

import ast
import secrets
import time
from dataclasses import dataclass

from mpkernel.board.rawrepl import LinePacer
from mpkernel.errors import BoardTimeout, DeviceError, LinkLost
from mpkernel.files import codec, transfer
from mpkernel.files.transfer import (
    HELPERS,
    Progress,
    UploadFailed,
    UploadReport,
    _Channel,
    _start,
    checksum_program,
)

SETTLE = 0.04  # s: the pause between the board's R and the first frame (see stream_upload)
SILENT = 5.0  # s without a byte from the board during an upload: it stopped answering

# Stream upload. The program text never changes (its names are interned once, not per
# upload); the file name, journal state, expected digest and end mark come as one string
# argument longer than 10 characters, which MicroPython does not intern. The board writes the
# journal and creates the file before it says R, so nothing arrives while flash is being
# written for them. It keeps what it received in `b` and skips to the next byte that could
# start the frame it expects; every 8 reads it joins what it kept into one bytes object (a
# real board's reads bring a few bytes each, and an object per read ran the 10 KB heap out
# of RAM within a frame). It sends NAK+seq when there is evidence that frame is damaged
# or gone (its sum fails, it stays incomplete through 50 ms of silence, or a later frame's
# header shows up), again at most every 50 ms while that goes on and after 100 ms of silence.
# Silence is timed only while the board runs: over 20 ms between two of its reads means it
# was not running (QEMU not scheduled on a busy host; its clock goes on meanwhile), and the
# rest of the frame may be waiting, so the silence clock starts again (under load such pauses
# made the board NAK frames that were only late; the freeze test in test_fs_stream shows it)
# and the 2 s give-up clock skips the pause. (Restarted too, it never reached 2 s on a board
# paused every second or so, which then never gave up on a host that had gone: unplugged
# mid-upload, with Ctrl-C off, as the seeded soak saw.)
# A copy of a frame it already has is skipped without a word (the host resends exact copies,
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
 L=[];g=k=0;q=6;ok=0;y='';S=__mpk_op(P)
 micropython.kbd_intr(-1)
 try:
  wr(b'R');t=z=p=tk()
  while 1:
   d=rd(96);c=tk()
   if df(c,p)>20:t=c;z=c-df(p,z)
   p=c
   if d:
    L.append(d);g+=len(d);t=c
    if len(L)>7:L=[b''.join(L)]
   w=df(c,t)
   if g<q and w<=50:continue
   if k and w>100:
    if df(tk(),z)>2000:y='timeout';break
    L=[];g=0;q=6;t=n=tk();wr(__mpk_ps(b'N',S));continue
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

@dataclass
class _InFlight:
    start: int  # where the frame's payload goes in the file
    end: int  # start + its length (start, for the end frame)
    began: float  # when its first byte went on the line
    ended: float  # when its last byte had crossed the line
    again: bool  # these bytes had been sent before (no round-trip sample from it)
    round: int  # how many go-backs came before it was sent


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
    GROW_AFTER = 8  # clean acknowledgements before the window and the cut grow back
    FEWEST = 1  # frames: the smallest window after losses

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
        # The board reached its position with a frame sent since the latest go-back: it had
        # read every older byte by then, so its next NAK is about what was sent since.
        self.reached_this_round = True
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
                                                                 self.link.free), again,
                                         self.losses))
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
        head = self.flight[0] if self.flight else None  # the latest frame at that position
        if head is None or not head.again or self.reached_this_round:
            # Only one frame ever started there, or the board got there with a frame sent
            # since the latest go-back: this NAK is about bytes sent since. (Measured under
            # load: the time rule alone took such NAKs for stale ones, at ~150 ms a loss
            # spent waiting for the board's next NAK.)
            return True
        began = self.began_at.get(self.acknowledged, 0.0)
        return time.monotonic() >= began + self.shortest_trip

    def acked(self, low16: int) -> bool:
        """The board is at this position now; False if that is beyond anything sent."""
        now = time.monotonic()
        pos = codec.position(low16, self.acknowledged)
        if pos > self.highest:
            return False
        first = self.flight[0] if self.flight else None
        self.reached_this_round = any(f.end == pos and f.round == self.losses
                                      for f in self.flight)
        if first is not None and first.end == pos and not first.again:
            trip = max(0.0, now - first.ended)
            self.round_trip += (trip - self.round_trip) / 4
            self.shortest_trip = min(self.shortest_trip or trip, trip)
        self.acknowledged = pos
        # Bytes before the board's position are never sent again: forget when they went.
        for start in [s for s in self.began_at if s < pos]:
            del self.began_at[start]
        self.flight = [f for f in self.flight if f.start >= pos]
        if self.flight and self.flight[0].start != pos:
            # The board took an earlier copy cut longer, which ended inside what is in flight
            # now: those frames no longer start where it waits. Go on from its position.
            self.flight, self.sent_to, self.end_sent = [], pos, False
        elif not self.flight:
            self.sent_to = max(self.sent_to, pos)
        self.last_progress = now
        self.clean += 1
        shrunk = self.window < self.max_window or self.cut < self.frame_size
        if self.clean >= self.GROW_AFTER and shrunk:
            self.window = min(self.max_window, self.window + 1)
            self.cut, self.clean = min(self.frame_size, self.cut * 2), 0
        return True

    def go_back(self) -> bool:
        """Send again from the board's position; False when the line is too poor to go on."""
        self.losses += 1
        self.reached_this_round = False
        self.flight, self.sent_to, self.end_sent = [], self.acknowledged, False
        self.window, self.clean = max(self.FEWEST, self.window // 2), 0
        self.cut = max(self.SMALLEST, self.cut // 2)
        stuck = time.monotonic() - self.last_progress > self.GIVE_UP
        return not stuck and self.losses <= 100 + self.size // 64


def stream_upload(
    board,  # noqa: ANN001 - mpkernel.board.board.Board (import cycle)
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
    state = journal.split("\n")[0] if journal else ""
    # The end mark tells the board that nothing more is on its way (see _STREAM_HELP): a
    # random word per upload, so no file's bytes still in flight can end the drain early.
    end_mark = secrets.token_hex(4)
    params = "\n".join((target, state, want, end_mark))  # check_path keeps control chars out
    # The helpers stay defined after the upload, for the next file command (Board.resident).
    # A call to resident helpers names each of them before anything runs: a NameError then
    # means the board lost them (a reset that went by unseen) and none of the upload ran, so
    # it is safe to define them and call again.
    call = f"__mpk_up({frame_size},{params!r})\n"
    board.ensure_ready()  # a reset it finds clears Board.resident
    warm = board.resident == HELPERS
    try:
        if warm:
            chan = _start(board, f"[{','.join(HELPERS[1:])}]\n" + call, keep_resident=True)
        else:
            chan = _start(board, _define(board, want) + call)
    except DeviceError as err:
        if not warm or err.ename != "NameError" or "__mpk_" not in err.evalue:
            raise
        board.free_resident()  # the rest of them: their RAM is what the definitions need
        chan = _start(board, _define(board, want) + call)
    board.resident = HELPERS
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
            # The board's words that are already here come before more frames: a frame
            # takes ~23 ms to go out, and a NAK read only after two of them had gone cost
            # those bytes (measured under load).
            reply = chan.poll(0.0) if sender.flight else None
            if reply is None:
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
        board.lost_link_while_running(codec.abort_frame())
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


def _define(board, want: str) -> str:  # noqa: ANN001 - Board (import cycle)
    """Define every stream helper except __mpk_up on the board; return the program that
    defines __mpk_up (it goes with the upload's call, in one exec)."""
    # Three execs, each under ~800 bytes: compiling one program of 2 KB needs more contiguous
    # RAM than a micro:bit has free after a few cells (MemoryError while compiling). The
    # checksum function rides with the first, so no exec of its own is needed to verify.
    kind = "adler32" if want.startswith("adler32:") else "sha256"
    board.exec("__import__('gc').collect()\n" + checksum_program(kind) + _STREAM_SCAN)
    board.exec(_STREAM_HELP)
    return _STREAM_UP


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
    for text in (_STREAM_SCAN, _STREAM_HELP, _STREAM_UP, transfer._ADLER, transfer._REPLACE,
                 transfer._COPY, transfer._STREAM_GET):
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
