"""File magics on the emulated micro:bit, as a user sees them in a notebook."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from harness import BAUD_115200
from harness.checks import wipe_files

from mpkernel.display import TextProgress
from mpkernel.errors import MpkernelError
from mpkernel.files import codec
from mpkernel.magics import MagicContext, registry

pytestmark = pytest.mark.device


class Notebook:
    """Runs magics with a context like the kernel's (text progress, no widgets)."""

    def __init__(self, board) -> None:  # noqa: ANN001
        self.out: list[str] = []
        self.ctx = MagicContext(
            get_board=lambda: board, write=self.out.append,
            make_progress=lambda label, total: TextProgress(label, total, self.out.append),
        )

    def run(self, line: str, body: str | None = None) -> str:
        start = len(self.out)
        name, _, rest = line.partition(" ")
        magic = registry()[name]
        args = magic.parse(rest)
        if magic.cell:
            magic.handler(self.ctx, args, body or "")
        else:
            magic.handler(self.ctx, args)
        return "".join(self.out[start:])


# The checksum a summary names is the board's own: SHA-256 (its first 16 hex digits) where
# the firmware has hashlib, else Adler-32 (its 8 hex digits; issue 11: the kind is named
# once, not again as a prefix of the digits).
PUT_LINE = re.compile(r"Wrote (\S+) \((\d+) bytes\) in [\d.]+ s .*; verified: the board's "
                      r"(Adler-32|SHA-256) (\S+) matches\.")
GET_LINE = re.compile(r"Saved (\S+) \((\d+) bytes\) in [\d.]+ s .*; verified: the size the "
                      r"board lists and the board's (Adler-32|SHA-256) (\S+) of (\S+) "
                      r"match\.")


def shown_digest(board, data: bytes) -> tuple[str, str]:  # noqa: ANN001
    """(kind, digest) as a summary must state them for `data` on this board."""
    if board.caps.hashlib:
        return "SHA-256", codec.digest(data, "sha256")[:16]
    return "Adler-32", codec.digest(data, "adler32").removeprefix("adler32:")


def put_facts(out: str) -> tuple[str, int, tuple[str, str]]:
    """(name, size, (checksum kind, checksum)) as a %put/%%writefile summary states them."""
    found = PUT_LINE.findall(out)
    assert len(found) == 1, out
    name, size, kind, digest = found[0]
    return name, int(size), (kind, digest)


def board_file(board, name: str) -> bytes:  # noqa: ANN001
    """A file's bytes read on the board by a program of the test's own (not mpkernel's)."""
    out = board.exec(f"f=open({name!r},'rb')\nwhile 1:\n c=f.read(128)\n if not c:break\n"
                     " print(repr(c))\nf.close()\ndel f,c")
    import ast

    return b"".join(ast.literal_eval(line) for line in out.split("\n") if line.strip())


@pytest.fixture
def nb(board, relay) -> Notebook:  # noqa: ANN001
    relay.set_throttle(rate=BAUD_115200)
    board.soft_reset()  # a clean heap: earlier tests' programs leave it fragmented
    wipe_files(board)  # folders too: an earlier test on the shared board may leave one
    return Notebook(board)


def test_writefile_run_streams_output_and_writes_to_the_board_not_the_host(
        nb: Notebook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    source = "for i in range(3):\n    print('line', i)\n"
    out = nb.run("%%writefile hello.py --run", source)
    on_board = board_file(nb.ctx.board, "hello.py")
    assert on_board == source.encode()
    assert put_facts(out) == ("hello.py", len(on_board), shown_digest(nb.ctx.board, on_board))
    assert "line 0\nline 1\nline 2\n" in out and "\r\n" not in out
    assert not (tmp_path / "hello.py").exists()
    assert nb.run("%cat hello.py") == "for i in range(3):\n    print('line', i)\n"


def test_run_a_host_file_leaves_no_copy(nb: Notebook, tmp_path: Path) -> None:
    script = tmp_path / "exp.py"
    script.write_text("x = 6 * 7\nprint('answer', x)\n")
    assert nb.run(f"%run {script}") == "answer 42\n"
    assert "No files" in nb.run("%ls")


def test_sync_uploads_only_what_changed_even_behind_its_back(nb: Notebook, tmp_path: Path,
                                                             board) -> None:  # noqa: ANN001
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.py").write_text("import drv\ndrv.go()\n")
    (src / "drv.py").write_text("def go():\n    print('go')\n")
    out = nb.run(f"%sync {src}")
    assert "0 unchanged; uploading 2" in out
    assert "0 unchanged; uploading 0" not in out
    assert "2 unchanged; uploading 0" in nb.run(f"%sync {src}")
    # Someone edits drv.py on the board directly: the hash differs, so it goes up again.
    board.exec("f=open('drv.py','w');f.write('broken');f.close()")
    out = nb.run(f"%sync {src}")
    assert "1 unchanged; uploading 1" in out and "drv.py" in out
    assert nb.run("%cat drv.py") == "def go():\n    print('go')\n"
    # A local change is uploaded; a board-only file is reported, and removed with --delete.
    (src / "main.py").write_text("print('v2')\n")
    board.exec("f=open('extra.txt','w');f.write('x');f.close()")
    out = nb.run(f"%sync {src}")
    assert "uploading 1" in out and "extra.txt" in out and "--delete" in out
    out = nb.run(f"%sync {src} --delete")
    assert "Removed extra.txt" in out
    assert "extra.txt" not in nb.run("%ls")


def test_put_get_with_one_updating_progress_line(nb: Notebook, tmp_path: Path) -> None:
    data = bytes(range(256)) * 16
    local = tmp_path / "blob.bin"
    local.write_bytes(data)
    out = nb.run(f"%put {local}")
    assert out.count("\n") == 1 and out.startswith("\r")  # one line, redrawn in place
    on_board = board_file(nb.ctx.board, "blob.bin")
    assert on_board == data
    assert put_facts(out) == ("blob.bin", 4096, shown_digest(nb.ctx.board, data))
    back = tmp_path / "back.bin"
    out = nb.run(f"%get blob.bin {back}")
    saved, size, kind, digest, remote = GET_LINE.findall(out)[0]
    assert (saved, int(size), remote) == (str(back), 4096, "blob.bin")
    assert back.read_bytes() == data and (kind, digest) == shown_digest(nb.ctx.board, data)
    listing = nb.run("%ls -l")
    if nb.ctx.board.caps.stat:  # the modification time the board's own os.stat gives
        import time

        mtime = int(nb.ctx.board.exec("import os\nprint(os.stat('blob.bin')[8])").strip())
        mtime += 946684800 if mtime < 946684800 else 0  # MicroPython's 2000 epoch, if used
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(mtime))
        assert re.search(rf"^blob\.bin +4096  {when}$", listing, re.M), listing
    else:
        assert re.search(r"^blob\.bin +4096$", listing, re.M) and "no file dates" in listing
    assert nb.run("%cat blob.bin").startswith("blob.bin is binary (4096 bytes)")


def test_clear_errors_name_the_cause(nb: Notebook, tmp_path: Path) -> None:
    with pytest.raises(MpkernelError, match="no missing.py on the board"):
        nb.run("%cat missing.py")
    with pytest.raises(MpkernelError, match="no missing.py on the board"):
        nb.run("%rm missing.py")
    folder = tmp_path / "pkg"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.py").write_text("a = 1\n")
    board = nb.ctx.board
    if board.caps.mkdir:  # folders exist there: they are made, and the board has them
        try:
            assert nb.run("%mkdir lib") == "Made lib/.\n"
            assert "Copied 1 files" in nb.run(f"%put {folder}")
            assert board_file(board, "pkg/sub/a.py") == b"a = 1\n"
            assert board.exec("import os\nprint(os.stat('lib')[0]&0x4000)").strip() == "16384"
        finally:
            board.exec("import os\nos.remove('pkg/sub/a.py')\nos.rmdir('pkg/sub')\n"
                       "os.rmdir('pkg')\nos.rmdir('lib')")
    else:  # the micro:bit's flat filesystem
        with pytest.raises(MpkernelError, match="flat"):
            nb.run("%mkdir lib")
        with pytest.raises(MpkernelError, match="flat"):
            nb.run(f"%put {folder}")
    with pytest.raises(MpkernelError, match="no .*nothere.py on this computer"):
        nb.run(f"%run {tmp_path / 'nothere.py'}")
