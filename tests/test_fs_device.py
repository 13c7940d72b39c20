"""The files API on the emulated micro:bit: round trips, atomic replace, interrupts, resets,
a full filesystem, and recovery from a journal left by a power loss."""

from __future__ import annotations

import os

import pytest
from harness import BAUD_115200, TO_BOARD, USB_SERIAL_LATENCY

from mpkernel.errors import BoardReset, Interrupted
from mpkernel.files import codec
from mpkernel.files.api import BoardFull, FileNotFound, FileSystem, Unsupported

pytestmark = pytest.mark.device


def names(fs: FileSystem) -> list[str]:
    return [e.path for e in fs.ls()]


def wipe(board) -> None:  # noqa: ANN001
    """Remove every file (the session shares one emulated flash between tests), and start
    from a soft reset: earlier tests' programs leave the 10 KB heap fragmented."""
    board.soft_reset()
    if board.caps.mkdir:  # folders too, where the filesystem has them
        board.exec("import os\ndef __rm(d):\n for e in os.ilistdir(d or '/'):\n"
                   "  p=(d+'/' if d else '')+e[0]\n  if e[1]==0x4000:\n   __rm(p);os.rmdir(p)\n"
                   "  else:\n   os.remove(p)\n__rm('')\ndel __rm")
    else:
        board.exec("import os\nfor __n in os.listdir():\n os.remove(__n)\n__n=0\ndel __n")


def digest_kind(fs: FileSystem) -> str:
    """The checksum the board computes of its files: SHA-256 where it has hashlib."""
    return "sha256" if fs.board.caps.hashlib else "adler32"


@pytest.fixture
def fs(board, relay) -> FileSystem:  # noqa: ANN001
    # A real 115200-baud line: the unthrottled pty feeds the emulated UART faster than a
    # loaded host lets the firmware drain it.
    relay.set_throttle(rate=BAUD_115200)
    wipe(board)
    return FileSystem(board)


def test_binary_round_trips_of_several_sizes(fs: FileSystem) -> None:
    every_byte = bytes(range(256)) * 3  # 0x00-0x1f (Ctrl-C, Ctrl-D), 0x80-0xff
    for size, data in [(0, b""), (1, b"\x03"), (768, every_byte), (5000, os.urandom(5000))]:
        result = fs.put(data, "blob.bin")
        assert fs.get("blob.bin") == data, f"{size} bytes came back different"
        assert (result.size, result.digest) == (size, codec.digest(data, digest_kind(fs)))
    assert names(fs) == ["blob.bin"]  # no temporary or journal left behind


def test_a_file_near_the_filesystem_limit_larger_than_ram(fs: FileSystem) -> None:
    # The emulated filesystem holds ~15 KB, of which mpkernel uses ~11 KB (see
    # files/codec.py: SAFETY_CHUNKS); free RAM is ~7 KB.
    data = os.urandom(10_500)
    fs.put(data, "big.bin")
    assert fs.get("big.bin") == data
    assert fs.ls()[0].size == 10_500


def test_replacing_keeps_no_temp_and_a_throttled_link_still_verifies(fs: FileSystem,
                                                                     relay) -> None:  # noqa: ANN001
    fs.put(b"old contents\n", "cfg.txt")
    relay.set_throttle(rate=BAUD_115200, latency=USB_SERIAL_LATENCY)
    new = os.urandom(3000)
    fs.put(new, "cfg.txt")
    relay.set_throttle(rate=BAUD_115200)
    assert fs.get("cfg.txt") == new
    assert names(fs) == ["cfg.txt"]


def test_interrupt_mid_upload_leaves_the_old_file(fs: FileSystem) -> None:
    fs.put(b"version 1\n", "main.py")
    board = fs.board
    board.start_cell()

    def interrupt_halfway(done: int, total: int) -> None:
        if done >= total // 3:
            board.interrupt()

    with pytest.raises(Interrupted) as err:
        fs.put(os.urandom(4000), "main.py", progress=interrupt_halfway)
    assert "main.py is unchanged" in str(err.value)
    board.start_cell()
    assert fs.get("main.py") == b"version 1\n"
    assert names(fs) == ["main.py"]


def test_reset_mid_upload_leaves_the_old_file(fs: FileSystem, relay) -> None:  # noqa: ANN001
    fs.put(b"keep me\n", "data.txt")
    fired = []

    def reset_once(done: int, total: int) -> None:
        if not fired and done >= 1000:
            fired.append(done)
            relay.reset_board()

    with pytest.raises(BoardReset) as err:
        fs.put(os.urandom(5000), "data.txt", progress=reset_once)
    assert "data.txt is unchanged" in str(err.value)
    assert fs.get("data.txt") == b"keep me\n"
    assert names(fs) == ["data.txt"]


@pytest.mark.boards("qemu", reason="raw-paste: the micro:bit's plain raw mode has no paste")
@pytest.mark.parametrize("op", ["put", "get"])
def test_a_reset_while_a_transfer_program_is_pasted_is_a_board_reset(
        fs: FileSystem, relay, op: str) -> None:  # noqa: ANN001
    # The streaming programs are sent by the files layer itself, not through Board.exec: a
    # reboot in the middle of their raw-paste escaped as a bare ResetDuringExec.
    fs.put(b"keep me\n", "data.txt")  # defines the board's transfer helpers

    def mid_call(way: str, seen: bytes) -> bool:
        at = seen.rfind(b"__mpk_f")  # the helper's call, pasted: cut before its end
        return at >= 0 and b"\x04" not in seen[at:]

    relay.set_throttle(rate=BAUD_115200 / 10)  # 2-byte slices: the call arrives in pieces
    trigger = relay.reset_when(mid_call, direction=TO_BOARD)
    with pytest.raises(BoardReset) as err:
        if op == "put":
            fs.put(os.urandom(3000), "data.txt")
        else:
            fs.get("data.txt")
    relay.set_throttle(rate=BAUD_115200)
    assert trigger.fired.is_set()
    text = str(err.value)
    assert "was being sent (none of it ran)" in text, text
    if op == "put":
        assert "data.txt is unchanged" in text, text
    assert board_bytes(fs.board, "data.txt") == b"keep me\n"
    assert fs.get("data.txt") == b"keep me\n"
    assert names(fs) == ["data.txt"]


@pytest.mark.boards("microbit", reason="its ~11 KB filesystem fills in seconds; the modern "
                    "board's 2 MiB one is filled through a small littlefs below")
def test_filling_the_filesystem_says_needed_and_free(fs: FileSystem) -> None:
    fs.put(os.urandom(6000), "a.bin")
    with pytest.raises(BoardFull) as err:
        fs.put(os.urandom(12_000), "b.bin")
    text = str(err.value)
    assert "12000 bytes" in text and "free" in text
    assert names(fs) == ["a.bin"]
    # Replacing needs room for both copies: refused, the old file kept.
    old = fs.get("a.bin")
    with pytest.raises(BoardFull) as err:
        fs.put(os.urandom(9000), "a.bin")
    assert "old file is unchanged" in str(err.value)
    assert fs.get("a.bin") == old
    assert names(fs) == ["a.bin"]


def test_recovery_undoes_a_half_written_file_and_finishes_a_replace(board, relay) -> None:  # noqa: ANN001
    relay.set_throttle(rate=BAUD_115200)
    wipe(board)
    # As left by a power loss while writing new.py in place (journal "w"):
    board.exec("f=open('new.py','w');f.write('half');f.close()\n"
               "f=open('.mpkj','w');f.write('w\\nnew.py\\n');f.close()")
    fs = FileSystem(board)
    fs.info()
    assert names(fs) == []
    # As left by a power loss after the old main.py was removed, mid-copy (journal "c"):
    good = b"print('new')\n" * 20
    want = codec.digest(good, "adler32")
    board.exec(f"f=open('main.py.mpk~','wb');f.write({good!r});f.close()\n"
               "f=open('main.py','w');f.write('print(');f.close()\n"
               f"f=open('.mpkj','w');f.write('c\\nmain.py.mpk~\\nmain.py\\n{want}\\n');f.close()")
    fresh = FileSystem(board)
    said = fresh.recover()
    assert "main.py" in said
    assert fresh.get("main.py") == good
    assert names(fresh) == ["main.py"]


def test_clear_errors(fs: FileSystem) -> None:
    with pytest.raises(FileNotFound, match="no nothere.txt"):
        fs.get("nothere.txt")
    with pytest.raises(codec.BadPath, match="reject"):
        fs.put(b"x", "bad\x01name")
    if fs.board.caps.mkdir:
        # Folders exist: made and written into, as the board's own listing shows; %df is the
        # board's os.statvfs of its filesystem.
        fs.mkdir("lib")
        fs.put(b"x", "lib/x.py")
        got = fs.board.exec("import os\nprint(os.listdir('lib'),os.stat('lib')[0]&0x4000)\n"
                            "v=os.statvfs('/')\nprint(v[0]*v[2],v[0]*v[4])").split("\n")
        assert got[0].strip() == "['x.py'] 16384"
        df = fs.df()
        assert f"{df.total} {df.free}" == got[1].strip()
        assert "statvfs" in df.how
        return
    with pytest.raises(Unsupported, match="flat"):
        fs.mkdir("lib")
    with pytest.raises(codec.BadPath, match="flat"):
        fs.put(b"x", "lib/x.py")
    df = fs.df()
    # Nothing on it: every block free but the reserve, which %df's sentence names.
    assert df.total == codec.MICROBIT_CHUNKS * codec.CHUNK_DATA
    assert df.free == (codec.MICROBIT_CHUNKS - codec.SAFETY_CHUNKS) * codec.CHUNK_DATA
    assert f"the last {codec.SAFETY_CHUNKS} are never used" in df.how
    assert names(fs) == []


def test_exec_path_for_boards_without_a_raw_channel(fs: FileSystem,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Boards without microbit.uart (or, on modern firmware, without sys.stdin.buffer) get one
    # f.write(<literal>) per chunk; check it here too.
    import dataclasses

    from mpkernel.files import fast as fs_fast

    fs._info = dataclasses.replace(fs.info(), stream=False)
    monkeypatch.setattr(fs_fast, "usable", lambda board: False)
    data = bytes(range(256)) + os.urandom(1200)
    result = fs.put(data, "e.bin")
    assert result.method == "exec"
    assert fs.get("e.bin") == data
    assert names(fs) == ["e.bin"]


def hog_ram(board, leave: int) -> int:  # noqa: ANN001
    """Fill the board's heap with small live objects until about `leave` bytes are free, the
    way a long session's variables fragment it; return what is free."""
    out = board.exec("import gc\ngc.collect()\n__hog=[]\n"
                     f"while gc.mem_free()>{leave}:\n __hog.append(bytearray(48))\n"
                     "print(gc.mem_free())")
    return int(out.split()[-1])


@pytest.mark.boards("microbit", reason="a 16 KB heap that a session fragments; the modern "
                    "board's counterpart follows")
def test_fragmented_ram_falls_back_to_chunks_and_too_little_ram_keeps_the_old_file(
        fs: FileSystem, board) -> None:  # noqa: ANN001
    old = b"# the old version\n" * 20
    fs.put(old, "app.py")
    new = b"x = 1  # the new version\n" * 40
    try:
        # ~3.3 KB free in small pieces: the stream programs no longer compile, the upload
        # goes chunk by chunk and says why. (At 3.0 KB the journaled replace itself now
        # runs out of RAM and says so; that safe failure is the 2 KB case below.)
        hog_ram(board, 3300)
        result = fs.put(new, "app.py")
        assert "too fragmented" in result.summary() and "verified" in result.summary()
        assert result.method == "exec"
        # ~2 KB: not even that fits; a plain error, and the file on the board is intact.
        board.exec("del __hog")
        hog_ram(board, 2000)
        with pytest.raises(Exception, match="ran out of RAM") as caught:
            fs.put(old, "app.py")
        assert "%reset" in caught.value.hint
    finally:
        # A soft reset frees the heap whatever state it is in: with ~2 KB free even a
        # one-line `del` may not compile, and the next tests share this board.
        board.soft_reset()
    # Failed while writing: the board still has `new`. Failed while putting the verified copy
    # in place: this next command finishes it (and says so) or removes the copy it had not
    # started to use (and says that). Either way one whole version, never a mix.
    notes: list[str] = []
    board.note = notes.append
    got = fs.get("app.py")
    said = "".join(notes)
    if "still on the board" in str(caught.value):  # stopped while writing, not cleaned up
        assert got == new and said == "Removed the half-written app.py.mpk~ of an interrupted " \
            "upload.\n"
    elif "putting it in place" not in str(caught.value):
        assert got == new and said == ""
    elif "Finished replacing app.py" in said:
        assert got == old
    elif said:
        assert got == new and "Removed leftover temporary files: app.py.mpk~." in said
    else:  # the replace had completed; RAM ran out only while it was being confirmed
        assert got == new and "before it could be confirmed" in str(caught.value)
    assert names(fs) == ["app.py"]  # no temporary file or journal left behind


@pytest.mark.boards("qemu", reason="the micro:bit's test is above")
def test_too_little_ram_on_the_modern_board_keeps_the_old_file(fs: FileSystem,
                                                               board) -> None:  # noqa: ANN001
    old = b"# the old version\n" * 20
    fs.put(old, "app.py")
    try:
        hog_ram(board, 2000)  # of ~140 KB, in small pieces
        with pytest.raises(Exception, match="ran out of RAM") as caught:
            fs.put(b"x = 1  # the new version\n" * 40, "app.py")
        assert "the old app.py is unchanged" in str(caught.value)
        assert "%reset" in caught.value.hint
    finally:
        board.soft_reset()
    assert board_bytes(board, "app.py") == old  # read by the board, not through mpkernel
    assert names(fs) == ["app.py"]  # no temporary file left behind


def board_bytes(board, name: str) -> bytes:  # noqa: ANN001
    import ast

    return ast.literal_eval(board.exec(f"f=open({name!r},'rb')\nprint(repr(f.read()))\n"
                                       "f.close()\ndel f").strip())


# A small littlefs in the modern board's RAM, mounted at /tiny: its 2 MiB filesystem would
# take minutes to fill over a 115200-baud line, this one fills in a second.
TINY_FS = """import vfs
class TinyBlocks:
 def __init__(s,n,b):
  s.n=n;s.b=b;s.m=bytearray(n*b)
 def readblocks(s,n,buf,off=0):
  a=n*s.b+off;buf[:]=s.m[a:a+len(buf)]
 def writeblocks(s,n,buf,off=0):
  a=n*s.b+off;s.m[a:a+len(buf)]=buf
 def ioctl(s,op,arg):
  if op==4:return s.n
  if op==5:return s.b
  return 0
tiny_bd=TinyBlocks(48,512)
vfs.VfsLfs2.mkfs(tiny_bd)
vfs.mount(vfs.VfsLfs2(tiny_bd),'/tiny')
del TinyBlocks"""


def tiny_state(board) -> tuple[dict[str, int], int]:  # noqa: ANN001
    """The small filesystem's files with their sizes, and its free bytes, by the board's own
    os.stat and os.statvfs."""
    out = board.exec("import os\nprint(repr([(n,os.stat('/tiny/'+n)[6]) for n in "
                     "os.listdir('/tiny')]))\nv=os.statvfs('/tiny')\nprint(v[0]*v[4])")
    import ast

    listing, free = out.strip().split("\n")
    return dict(ast.literal_eval(listing)), int(free)


@pytest.mark.boards("qemu", reason="mounts a second littlefs; the micro:bit's test is above")
def test_filling_a_small_littlefs_says_needed_and_free(fs: FileSystem) -> None:
    board = fs.board
    board.exec(TINY_FS)
    try:
        a = os.urandom(6000)
        fs.put(a, "tiny/a.bin")
        files, free = tiny_state(board)
        assert files == {"a.bin": 6000} and 0 < free < 20_000
        with pytest.raises(BoardFull) as err:
            fs.put(os.urandom(20_000), "tiny/b.bin")
        text = str(err.value)
        assert "20000 bytes" in text and f"{free} bytes are free" in text, text
        assert tiny_state(board) == ({"a.bin": 6000}, free)
        # Replacing needs room for both copies: one that would fit alone is refused, the
        # old file kept.
        size = free + 2000
        with pytest.raises(BoardFull) as err:
            fs.put(os.urandom(size), "tiny/a.bin")
        assert "old file is unchanged" in str(err.value) and "room for both" in str(err.value)
        assert tiny_state(board) == ({"a.bin": 6000}, free)
        assert fs.get("tiny/a.bin") == a
    finally:
        board.exec("import vfs\nvfs.umount('/tiny')\ndel tiny_bd")


@pytest.mark.boards("qemu", reason="mounts a second littlefs; the micro:bit's test is above")
def test_a_filesystem_that_fills_mid_write_says_what_is_free_now(
        fs: FileSystem, monkeypatch: pytest.MonkeyPatch) -> None:
    # As if the free figure had overstated the room (another writer, or a filesystem whose
    # statvfs counts loosely): the room check is skipped, the board runs out mid-write.
    board = fs.board
    board.exec(TINY_FS)
    try:
        _, free = tiny_state(board)
        monkeypatch.setattr(FileSystem, "_kind_and_room", lambda self, path, size: None)
        with pytest.raises(BoardFull) as err:
            fs.put(os.urandom(free + 4000), "tiny/b.bin")
        text = str(err.value)
        assert f"{free + 4000} bytes" in text and "Nothing was left behind" in text, text
        assert tiny_state(board) == ({}, free)
        assert f" {free} bytes are free" in text, text  # the small filesystem's, not '/'s
    finally:
        board.exec("import vfs\nvfs.umount('/tiny')\ndel tiny_bd")
