"""Issue 13 ("Trust"), files: what a new user saw on the emulated micro:bit, as tests.

Each test reads the board with programs of its own (not mpkernel's) and checks the facts the
messages state (sizes, checksums, counts) against it.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import zlib

import pytest
from harness import BAUD_115200
from harness.checks import wipe_files

from mpkernel.files import codec
from mpkernel.files.api import BoardFull, FileSystem

# The micro:bit's flat filesystem in 128-byte chunks, Adler-32, no os.rename: what issue 13
# saw. The modern board's replace is one rename (tests/test_fs_journal_fake.py covers FAT's).
pytestmark = [pytest.mark.device, pytest.mark.boards(
    "microbit", reason="the micro:bit filesystem's chunks and its missing os.rename")]

LISTING = ("import os\nprint(repr([(n,os.size(n)) for n in os.listdir()]))")


def board_sizes(board) -> dict[str, int]:  # noqa: ANN001
    """Every file on the board with its size, temporaries and journal included."""
    return dict(ast.literal_eval(board.exec(LISTING).strip()))


def board_adler(board, name: str) -> int:  # noqa: ANN001
    """Adler-32 of a file, computed on the board by this test's own program."""
    out = board.exec(f"""def __t(n):
 a=1;b=0
 f=open(n,'rb')
 while 1:
  c=f.read(256)
  if not c:break
  for x in c:
   a+=x;b+=a
  a%=65521;b%=65521
 f.close()
 print(b,a)
__t({name!r})
del __t""")
    high, low = (int(x) for x in out.split())
    return (high << 16) | low


@pytest.fixture
def fs(board, relay) -> FileSystem:  # noqa: ANN001
    relay.set_throttle(rate=BAUD_115200)
    board.soft_reset()
    wipe_files(board)  # folders too: earlier tests on this shared board may have left some
    return FileSystem(board)


def test_a_replace_that_does_not_fit_is_refused_and_touches_no_file(fs: FileSystem) -> None:
    # Seen: 5,000-byte other.bin, 1,000-byte a.bin, then an 8,000-byte a.bin. The room check
    # counted one copy; the copy step overran the filesystem and cut other.bin to 1,220 bytes.
    board = fs.board
    other, old = os.urandom(5000), os.urandom(1000)
    fs.put(other, "other.bin")
    fs.put(old, "a.bin")
    free_before = fs.df().free
    with pytest.raises(BoardFull) as err:
        fs.put(os.urandom(8000), "a.bin")
    stated = re.search(r"a\.bin needs (\d+) bytes\. (\d+) bytes are free", str(err.value))
    assert stated, str(err.value)
    assert int(stated[1]) == 8000 and int(stated[2]) == free_before
    # The peak really is over the capacity: the temporary plus the copy, next to other.bin.
    peak = (codec.chunks_for("other.bin", 5000) + codec.chunks_for("a.bin.mpk~", 8000)
            + codec.chunks_for("a.bin", 8000) + 1)
    assert peak > codec.MICROBIT_CHUNKS
    assert board_sizes(board) == {"other.bin": 5000, "a.bin": 1000}
    assert board_adler(board, "other.bin") == zlib.adler32(other)
    assert board_adler(board, "a.bin") == zlib.adler32(old)


def test_a_replace_whose_peak_just_fits_completes_and_leaves_its_neighbour(
        fs: FileSystem) -> None:
    board = fs.board
    other = os.urandom(5000)
    fs.put(other, "other.bin")
    fs.put(os.urandom(1000), "a.bin")
    # The largest new a.bin whose peak (temporary + copy + journal) fits beside other.bin.
    room = codec.MICROBIT_CHUNKS - codec.SAFETY_CHUNKS - codec.chunks_for("other.bin", 5000) - 1
    size = max(n for n in range(0, 8000, 50)
               if codec.chunks_for("a.bin.mpk~", n) + codec.chunks_for("a.bin", n) <= room)
    new = os.urandom(size)
    result = fs.put(new, "a.bin")
    assert (result.size, result.digest) == (size, codec.digest(new, "adler32"))
    assert board_sizes(board) == {"other.bin": 5000, "a.bin": size}
    assert board_adler(board, "a.bin") == zlib.adler32(new)
    assert board_adler(board, "other.bin") == zlib.adler32(other)
    # 50 bytes more would not fit: refused, nothing touched.
    with pytest.raises(BoardFull):
        fs.put(os.urandom(size + 126), "a.bin")
    assert board_sizes(board) == {"other.bin": 5000, "a.bin": size}


def test_df_states_what_the_board_holds_and_put_agrees(fs: FileSystem) -> None:
    board = fs.board
    fs.put(os.urandom(3000), "a.bin")
    fs.put(b"x = 1\n" * 300, "b.py")
    df = fs.df()
    assert df.how.startswith("counted from the sizes of the 2 files on the board")
    # The same count made on the board by this test's own program: each file takes whole
    # 126-byte chunks, its name and a 2-byte header in the first; a reserve is kept.
    out = board.exec("import os\nu=0\nfor n in os.listdir():\n u+=(os.size(n)+len(n)+2+125)//126\n"
                     f"print(({codec.MICROBIT_CHUNKS}-{codec.SAFETY_CHUNKS}-u)*126)\ndel u,n")
    assert df.free == int(out.split()[-1])
    # And what %df calls free is what an upload may use: a file of exactly that many chunks
    # (less the journal's) is written, one byte more is refused with the same figure.
    fits = df.free - codec.CHUNK_DATA - len("c.bin") - 2
    with pytest.raises(BoardFull, match=f"{df.free} bytes are free"):
        fs.put(os.urandom(fits + 1), "c.bin")
    fs.put(os.urandom(fits), "c.bin")
    assert board_sizes(board)["c.bin"] == fits


def test_rescue_rename_copies_with_room_checked_and_never_overwrites(fs: FileSystem) -> None:
    board = fs.board
    main = b"while True:\n    pass\n" * 10
    fs.put(main, "main.py")
    fs.put(b"an older quiet copy\n", "main.py.off")
    said = fs.move("main.py", "main.py.off2")
    assert said == (f"Renamed main.py to main.py.off2 ({len(main)} bytes; copied, verified, "
                    "then removed the original).")
    assert board_sizes(board) == {"main.py.off": 20, "main.py.off2": len(main)}
    assert board_adler(board, "main.py.off2") == zlib.adler32(main)
    # With no room for the copy, nothing is changed.
    fs.move("main.py.off2", "main.py")
    free = fs.df().free
    fs.put(os.urandom(free - 2 * codec.CHUNK_DATA - 20), "filler.bin")
    before = board_sizes(board)
    with pytest.raises(BoardFull, match="too full to rename main.py"):
        fs.move("main.py", "main.py.off3")
    assert board_sizes(board) == before
    assert board_adler(board, "main.py") == zlib.adler32(main)


# -- the modern board: littlefs with os.rename and os.statvfs, SHA-256 on the board ---------
MODERN = pytest.mark.boards("qemu", reason="os.rename, os.statvfs and hashlib on littlefs")


def board_sha256(board, name: str) -> str:  # noqa: ANN001
    """SHA-256 of a file, computed on the board by this test's own program."""
    return board.exec(f"import hashlib,binascii\nh=hashlib.sha256()\nf=open({name!r},'rb')\n"
                      "while 1:\n b=f.read(1024)\n if not b:break\n h.update(b)\nf.close()\n"
                      "print(binascii.hexlify(h.digest()).decode())"
                      "\ndel h,f,b").strip()


def board_stat_sizes(board) -> dict[str, int]:  # noqa: ANN001
    return dict(ast.literal_eval(board.exec(
        "import os\nprint(repr([(n,os.stat(n)[6]) for n in os.listdir()]))").strip()))


@MODERN
def test_modern_df_is_the_boards_statvfs_and_put_agrees(fs: FileSystem) -> None:
    board = fs.board
    fs.put(os.urandom(3000), "a.bin")
    df = fs.df()
    out = board.exec("import os\nv=os.statvfs('/')\nprint(v[0]*v[2],v[0]*v[4])").split()
    assert (df.total, df.free) == (int(out[0]), int(out[1]))
    assert df.how == "as the board's os.statvfs reports"
    # An upload larger than that is refused before anything is written, with the same figure.
    with pytest.raises(BoardFull, match=f"{df.free} bytes are free"):
        fs.put(b"\0" * (df.free + 1), "c.bin")
    assert board_stat_sizes(board) == {"a.bin": 3000}


@MODERN
def test_modern_rescue_rename_is_one_rename_and_never_overwrites(fs: FileSystem) -> None:
    board = fs.board
    main = b"while True:\n    pass\n" * 10
    fs.put(main, "main.py")
    fs.put(b"an older quiet copy\n", "main.py.off")
    with pytest.raises(Exception, match="already a main.py.off on the board"):
        fs.move("main.py", "main.py.off")
    said = fs.move("main.py", "main.py.off2")
    assert said == f"Renamed main.py to main.py.off2 ({len(main)} bytes; renamed)."
    assert board_stat_sizes(board) == {"main.py.off": 20, "main.py.off2": len(main)}
    assert board_sha256(board, "main.py.off2") == hashlib.sha256(main).hexdigest()
    assert board_sha256(board, "main.py.off") == hashlib.sha256(b"an older quiet copy\n"
                                                                ).hexdigest()
