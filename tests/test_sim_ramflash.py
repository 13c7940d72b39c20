"""The modern emulated board's flash where QEMU has no memory-backend-file (Windows).

There the board's PSRAM is plain RAM: the flash file is loaded into it at start (a generic
loader device) and saved back with the monitor's pmemsave at a hard reset and at stop. The OS
is faked at platform_support's boundary (PLATFORM = "win32", which also puts the UART and the
monitor on TCP), with the two process-tying calls that only run on a real Windows replaced by
the Linux ones, so the whole Windows path runs here under Debian's QEMU.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from pathlib import Path

import pytest

from mpkernel import platform_support
from mpkernel.board.board import Board
from mpkernel.errors import MpkernelError
from mpkernel.sim import ModernBoard, _gdbload, modern

_LINUX_POPEN = {"start_new_session": True, "preexec_fn": platform_support._die_with_parent}


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform_support, "PLATFORM", "win32")
    monkeypatch.setattr(platform_support, "child_popen_options", lambda: dict(_LINUX_POPEN))
    monkeypatch.setattr(platform_support, "tie_to_this_process",
                        lambda proc: platform_support.Tie())


def test_only_windows_keeps_the_flash_in_ram(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, kind in (("win32", "ram"), ("linux", "file"), ("darwin", "file")):
        monkeypatch.setattr(platform_support, "PLATFORM", name)
        assert platform_support.qemu_flash_backend() == kind


def _memory_options(tmp_path: Path, flash: Path) -> list[str]:
    elf = tmp_path / "firmware.elf"
    elf.write_bytes(b"\x7fELF")
    board = ModernBoard(flash, firmware=elf)
    try:
        cmd = board._command("qemu-system-arm")
    finally:
        board._stopped()
    return cmd[cmd.index("-machine"):cmd.index("-kernel")]


def test_the_ram_command_starts_paused_only_when_there_is_an_image_to_load(
    windows: None, tmp_path: Path,
) -> None:
    flash = tmp_path / "flash.bin"
    memory = ["-machine", "mps2-an385,memory-backend=psram",
              "-object", "memory-backend-ram,id=psram,size=16M"]
    assert _memory_options(tmp_path, flash) == memory  # nothing to load: the board formats it
    flash.write_bytes(b"\0" * 4096)
    # -S: the CPU waits until the image is in; no -device loader, which reloads at each reset
    assert _memory_options(tmp_path, flash) == [*memory, "-S"]


def test_linux_maps_the_file_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform_support, "PLATFORM", "linux")
    flash = tmp_path / "a, b" / "flash.bin"
    options = _memory_options(tmp_path, flash)
    # QEMU's option parser ends a value at a comma, unless it is written twice
    assert options[-1] == (
        f"memory-backend-file,id=psram,size=16M,mem-path={tmp_path}/a,, b/flash.bin,share=on")


def test_monitor_strings_keep_spaces_and_backslashes() -> None:
    assert modern._hmp_string(r"C:\Users\Jo Smith\flash.bin") == (
        r'"C:\\Users\\Jo Smith\\flash.bin"')
    assert modern._hmp_string('say "hi"') == r'"say \"hi\""'


def _cmdline(board: Board) -> str:
    assert board.simulator is not None and board.simulator.pid is not None
    return Path(f"/proc/{board.simulator.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _write(board: Board, name: str, text: str) -> None:
    board.exec(f"f = open({name!r}, 'w')\nf.write({text!r})\nf.close()")


def _files(board: Board) -> list[str]:
    return sorted(board.exec("import os\nprint(' '.join(os.listdir()))").split())


@pytest.mark.device
def test_files_survive_restarts_through_the_saved_image(
    windows: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A space, a comma and a backslash: the monitor's quoting (pmemsave) must keep them.
    flash = tmp_path / "My Documents, 2" / "flash\\image.bin"
    monkeypatch.setenv("MPKERNEL_QEMU_FLASH", str(flash))

    board = Board("sim:qemu")  # first start: no image yet
    try:
        board.connect()
        assert board.url.startswith("socket://127.0.0.1:")
        assert "memory-backend-ram" in _cmdline(board) and " -S " not in _cmdline(board)
        _write(board, "one.txt", "1")
        board.hard_reset()  # saves before pressing reset
        assert flash.stat().st_size == modern.PSRAM_BYTES
        assert _files(board) == ["one.txt"]
    finally:
        board.close()

    board = Board("sim:qemu")  # the image is loaded at start
    try:
        board.connect()
        assert " -S " in _cmdline(board)  # started paused, the image written in, then run
        assert _files(board) == ["one.txt"]
        _write(board, "two.txt", "2")
        board.hard_reset()
        # The image went in once, not at every reset: a reset keeps what was written since
        assert _files(board) == ["one.txt", "two.txt"]
        _write(board, "three.txt", "3")
        # The kernel killed: its job object (or watchdog) ends QEMU, and nothing saves.
        assert board.simulator is not None and board.simulator._proc is not None
        board.simulator._proc.kill()
        board.simulator._proc.wait()
    finally:
        board.close()

    board = Board("sim:qemu")
    try:
        board.connect()
        assert _files(board) == ["one.txt", "two.txt"]  # three.txt went with the killed QEMU
        _write(board, "four.txt", "4")
    finally:
        board.close()  # a deliberate stop saves

    # The image has the same format as Linux's mapped file: the board moves between them.
    monkeypatch.setattr(platform_support, "PLATFORM", "linux")
    board = Board("sim:qemu")
    try:
        board.connect()
        assert "memory-backend-file" in _cmdline(board)
        assert _files(board) == ["four.txt", "one.txt", "two.txt"]
        assert board.exec("print(open('four.txt').read())").strip() == "4"
    finally:
        board.close()


@pytest.mark.device
def test_a_failed_save_keeps_the_old_image_and_says_why(
    windows: None, tmp_path: Path, capfd: pytest.CaptureFixture[str],
) -> None:
    flash = tmp_path / "flash.bin"
    with ModernBoard(flash):
        pass  # a first run formats the filesystem and saves it
    before = hashlib.sha256(flash.read_bytes()).hexdigest()
    (tmp_path / "flash.bin.saving").mkdir()  # pmemsave cannot open a folder to write
    board = ModernBoard(flash).start()
    try:
        with pytest.raises(MpkernelError, match="QEMU did not save the board's flash") as caught:
            board.save_flash()
        assert "files written since the last save are not in" in caught.value.hint
        assert "running" in board.monitor("info status")  # the board was not left paused
    finally:
        board.stop()
    said = capfd.readouterr().err
    print(said)
    assert "mpkernel: QEMU did not save the board's flash" in said
    assert hashlib.sha256(flash.read_bytes()).hexdigest() == before
    assert not board.running


class ScriptedStub:
    """A gdbstub that acknowledges like QEMU's and records the packets it got."""

    def __init__(self, refuse_at: int | None = None) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.packets: list[bytes] = []
        self.refuse_at = refuse_at
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        acks, buf = True, b""
        with conn:
            while True:
                more = conn.recv(65536)
                if not more:
                    return
                buf += more
                while b"#" in buf and len(buf) >= buf.index(b"#") + 3:
                    end = buf.index(b"#")
                    body, buf = buf[buf.index(b"$") + 1:end], buf[end + 3:]
                    self.packets.append(body)
                    reply = b"OK"
                    if self.refuse_at is not None and body.startswith(b"M%x," % self.refuse_at):
                        reply = b"E14"
                    conn.sendall((b"+" if acks else b"") + b"$%s#%02x" % (reply, sum(reply) % 256))
                    if body == b"QStartNoAckMode":
                        acks = False


def test_the_gdb_loader_writes_only_what_is_not_zero_and_detaches() -> None:
    stub = ScriptedStub()
    image = bytes(3000) + b"littlefs" + bytes(5000) + b"\xff" * 10
    sent = _gdbload.write_memory(stub.port, 0x21000000, image)
    stub.thread.join(5)
    assert stub.packets[0] == b"QStartNoAckMode" and stub.packets[-1] == b"D"
    writes = stub.packets[1:-1]
    # 1 KB chunks; the last is short (8018 bytes in all)
    assert [w.split(b":")[0] for w in writes] == [b"M21000800,400", b"M21001c00,352"]
    assert bytes.fromhex(writes[0].split(b":")[1].decode())[3000 - 2048:][:8] == b"littlefs"
    assert bytes.fromhex(writes[1].split(b":")[1].decode()).endswith(b"\xff" * 10)
    assert sent == 1024 + 0x352


def test_a_refused_write_is_an_error() -> None:
    stub = ScriptedStub(refuse_at=0x21000000)
    with pytest.raises(OSError, match="refused to write at 0x21000000: E14"):
        _gdbload.write_memory(stub.port, 0x21000000, b"\x01" * 10)
