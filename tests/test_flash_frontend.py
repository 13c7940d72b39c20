"""The one flash front end: %flash and `mpkernel flash`, to an ESP or a drive, then reattach.

ESP flashes run the real esptool against the emulated ESP32 (tests/esp_rom_emulator.py);
drive copies land in a temp folder that `lsblk` (faked: the boundary with the OS) reports
as the board's volume. Summaries are checked by the facts they state (tests/flash_facts.py).
"""

from __future__ import annotations

import argparse

import pytest
import serial
from esp_rom_emulator import EspRomEmulator, RelayApp, make_app_image, serve
from flash_facts import check_against_drive, check_against_flash

import mpkernel.board.ports as ports_module
import mpkernel.flash.writers as flash_module
from mpkernel.board.caps import Capabilities
from mpkernel.errors import LinkLost
from mpkernel.flash.frontend import add_cli_arguments, run_cli
from mpkernel.magics import MagicContext, registry

IMAGE = make_app_image()
OLD = b"OLDFIRMWARE!" * 100  # what the board held before; must survive a refused flash


def board_with_old_firmware(name: str, **kw) -> tuple[EspRomEmulator, str]:
    emu = EspRomEmulator(**kw)
    emu.flash[0x1000:0x1000 + len(OLD)] = OLD
    emu.flash[0x300000:0x300000 + len(OLD)] = OLD  # "files" in the filesystem partition
    return emu, serve(name, emu)


class FakeBoard:
    """Stands in for a Board where no real REPL exists: records the release and the reattach.

    Like Board, it asks the firmware for its version on reattach only when its capabilities
    were cleared; it reads what the emulated ESP32 printed after its reset (the BannerApp
    prints the banner found in flash), so the summary reports the firmware that booted.
    """

    def __init__(self, url: str, connected: bool = False, came_back_as: str | None = None,
                 fails: bool = False, log: list | None = None) -> None:
        self.url, self.connected = url, connected
        self.came_back_as, self.fails = came_back_as, fails
        self.identity = None
        self.reattach_wait = 0.5
        self.caps = Capabilities(version=(1, 20, 0), firmware="MicroPython v1.20.0 (before)")
        self.log = log if log is not None else []

    def drop_link(self) -> None:
        self.log.append("drop_link")
        self.connected = False

    def reattach(self, wait: float, note) -> str:
        self.log.append(("reattach", wait))
        if self.fails:
            raise LinkLost(f"The board did not come back on {self.url} within {wait:.0f} s.")
        if not self.caps.version:
            firmware = "MicroPython v1.22.0 on /dev/ttyACM0"
            if self.url.startswith("espemu://"):
                with serial.serial_for_url(self.url, timeout=2) as port:
                    firmware = port.read_until(b">>> ").split(b"\r\n")[-3].decode()
            self.caps = Capabilities(version=(1,), firmware=firmware)
        self.url = self.came_back_as or self.url
        self.connected = True
        return self.url

    @property
    def firmware(self) -> str:
        return self.caps.firmware

    def close(self) -> None:
        self.log.append("close")


def magic_ctx(out: list[str], answer: str | None = None, **kw) -> MagicContext:
    return MagicContext(get_board=lambda: None, write=out.append,
                        make_progress=lambda label, total: Bar(out),
                        ask=(lambda q: out.append(q) or answer) if answer is not None else None,
                        **kw)


class Bar:
    """A progress bar whose closing summary lands in the same output list."""

    def __init__(self, out: list[str]) -> None:
        self.out = out

    def update(self, done: int) -> None:
        pass

    def close(self, summary: str = "") -> None:
        self.out.append(summary + "\n")


def run_magic(ctx: MagicContext, line: str) -> None:
    m = registry()["%flash"]
    m.handler(ctx, m.parse(line))


def cli_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_cli_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def drive(tmp_path, monkeypatch):
    """A temp folder that lsblk reports as the mounted MICROBIT and RPI-RP2 volume."""
    mount = tmp_path / "mnt" / "board"
    mount.mkdir(parents=True)
    monkeypatch.setattr(flash_module, "DRIVE_ROOTS", (tmp_path / "media",))  # none mounted
    listing = (f'LABEL="" MOUNTPOINT=""\nLABEL="MICROBIT" MOUNTPOINT="{mount}"\n'
               f'LABEL="RPI-RP2" MOUNTPOINT="{mount}"\n')
    monkeypatch.setattr(flash_module, "_lsblk", lambda: listing)
    return mount


# ---- %flash to an ESP ------------------------------------------------------------------
def test_erase_without_yes_asks_in_words_and_does_nothing_on_no(tmp_path):
    emu, url = board_with_old_firmware("ask")
    image = tmp_path / "fw.bin"
    image.write_bytes(IMAGE)
    out: list[str] = []
    run_magic(magic_ctx(out, answer="n"), f"{image} --erase --port {url}")
    assert out[0].startswith("--erase deletes every file on the board")
    assert out[-1] == "Not erased, nothing flashed. Add --yes to erase without asking.\n"
    assert emu.events == [] and emu.flash[0x300000:0x300000 + len(OLD)] == OLD


def test_erase_with_yes_erases_then_flashes_and_the_kernel_reattaches(tmp_path):
    emu, url = board_with_old_firmware("erase")
    image = tmp_path / "ESP32_GENERIC-20241129-v1.24.1.bin"
    image.write_bytes(IMAGE)
    out: list[str] = []
    made: list[FakeBoard] = []

    def attach(port: str, connect: bool = True) -> FakeBoard:
        assert connect is False  # the port must stay free for esptool
        made.append(FakeBoard(port))
        return made[0]

    run_magic(magic_ctx(out, attach=attach), f"{image} --erase --yes --port {url}")
    assert emu.flash[0x300000:0x300000 + len(OLD)] == b"\xff" * len(OLD)  # files erased
    text = "".join(out)
    facts = check_against_flash(text, emu, IMAGE)
    assert facts["name"] == image.name and facts["offset"] == 0x1000
    begin = next(i for i, e in enumerate(emu.events) if e.startswith("defl_begin:0x1000:"))
    assert emu.events.index("erase_flash") < begin
    # the kernel's new board reattached after the chip's reset, to the firmware just written
    assert [board.url for board in made] == [url] and made[0].log == [("reattach", 30.0)]
    assert out[-1] == f"Reconnected on {url}; the board reports MicroPython v1.24.1 on " \
        "2024-11-29; Generic ESP32 module with ESP32.\n"


def test_the_connected_board_is_released_and_a_failed_flash_keeps_its_own_error(tmp_path):
    emu, url = board_with_old_firmware("failkeep")
    log: list = []
    board = FakeBoard(url, connected=True, fails=True, log=log)
    s3 = tmp_path / "s3.bin"
    s3.write_bytes(make_app_image(chip_id=9))
    out: list[str] = []
    with pytest.raises(flash_module.FlashError) as info:
        run_magic(magic_ctx(out, peek_board=lambda: board), str(s3))
    assert "image for ESP32-S3, but the board is ESP32" in str(info.value)
    assert f"The board did not come back either: The board did not come back on {url}" \
        in info.value.hint
    assert log == ["drop_link", ("reattach", 0.5)]  # released, then looked for once
    assert emu.flash[0x1000:0x1000 + len(OLD)] == OLD and emu.open_ports == 0


def test_a_board_that_re_enumerates_is_found_by_the_identity_taken_before_flashing(
        tmp_path, monkeypatch):
    emu, url = board_with_old_firmware("renamed")
    image = tmp_path / "fw.bin"
    image.write_bytes(IMAGE)
    identity = object()
    monkeypatch.setattr(ports_module, "identity_of", lambda port: identity if port == url else None)
    made: list[FakeBoard] = []

    def attach(port: str, connect: bool = True) -> FakeBoard:
        made.append(FakeBoard(port, came_back_as="/dev/ttyACM1"))
        return made[-1]

    out: list[str] = []
    run_magic(magic_ctx(out, attach=attach), f"{image} --port {url}")
    assert made[0].identity is identity
    assert out[-1].startswith("Reconnected on /dev/ttyACM1; the board reports MicroPython v1.24.1")


def test_a_repl_that_does_not_come_back_is_said_plainly_after_a_good_flash(tmp_path):
    emu, url = board_with_old_firmware("noreturn")
    image = tmp_path / "fw.bin"
    image.write_bytes(IMAGE)
    out: list[str] = []
    run_magic(magic_ctx(out, attach=lambda port, connect=True: FakeBoard(port, fails=True)),
              f"{image} --port {url}")
    check_against_flash("".join(out), emu, IMAGE)
    assert out[-1] == (f"The REPL did not answer on {url} afterwards: The board did not come "
                       f"back on {url} within 30 s.\n")


# ---- %flash to a drive -----------------------------------------------------------------
@pytest.mark.parametrize("name", ["microbit-v1.9.2.hex", "RPI_PICO-20241129-v1.24.1.uf2"])
def test_the_magic_copies_a_drive_image_and_states_its_size_and_sha256(tmp_path, drive, name):
    image = tmp_path / name
    image.write_bytes(b":10000000" + bytes(range(256)) * 300)
    out: list[str] = []
    run_magic(magic_ctx(out), str(image))
    facts = check_against_drive("".join(out), drive, image)
    assert facts["name"] == name
    assert out[-1].startswith("The board installs it from the drive and restarts")


def test_a_drive_copy_releases_the_connected_board_and_reattaches_after(
        tmp_path, drive, monkeypatch):
    import mpkernel.flash.frontend as flashing

    image = tmp_path / "microbit.hex"
    image.write_bytes(b":00000001FF\n" * 1000)
    log: list = []
    board = FakeBoard("/dev/ttyACM0", connected=True, log=log)
    original_copy = flashing.copy_to_drive

    def copy_while_watching(*a, **kw):
        log.append("copy")
        return original_copy(*a, **kw)

    monkeypatch.setattr(flashing, "copy_to_drive", copy_while_watching)
    out: list[str] = []
    run_magic(magic_ctx(out, peek_board=lambda: board), str(image))
    check_against_drive("".join(out), drive, image)
    assert log == ["drop_link", "copy", ("reattach", 30.0)]
    # the firmware changed, so the version is asked again rather than the old one repeated
    assert out[-1] == ("Reconnected on /dev/ttyACM0; the board reports "
                       "MicroPython v1.22.0 on /dev/ttyACM0.\n")


def test_erase_is_refused_for_a_drive_copy_rather_than_silently_skipped(tmp_path, drive):
    image = tmp_path / "microbit.hex"
    image.write_text(":00000001FF\n")
    with pytest.raises(flash_module.FlashError, match="--erase works on ESP chips only"):
        run_magic(magic_ctx([]), f"{image} --erase --yes")
    assert list(drive.iterdir()) == []


def test_no_drive_mounted_is_explained_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(flash_module, "DRIVE_ROOTS", (tmp_path / "media",))
    monkeypatch.setattr(flash_module, "_lsblk", lambda: 'LABEL="OTHER" MOUNTPOINT="/mnt/x"\n')
    image = tmp_path / "microbit.hex"
    image.write_text(":00000001FF\n")
    with pytest.raises(flash_module.FlashError) as info:
        run_magic(magic_ctx([]), str(image))
    assert str(info.value) == "No drive labelled MICROBIT or MINI is mounted."


# ---- mpkernel flash (the same front end) ---------------------------------------------------
def test_cli_flashes_a_file_and_states_what_it_wrote(tmp_path, capsys):
    emu, url = board_with_old_firmware("cli")
    image = tmp_path / "ESP32_GENERIC-20241129-v1.24.1.bin"
    image.write_bytes(IMAGE)
    assert run_cli(cli_args(str(image), "--port", url, "--no-reattach")) == 0
    out = capsys.readouterr().out
    assert check_against_flash(out, emu, IMAGE)["name"] == image.name
    assert out.endswith(f"Not reconnecting (--no-reattach); the board is on {url}.\n")
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\0" * 64)
    assert run_cli(cli_args(str(bad), "--port", url, "--chip", "esp32")) == 1
    assert "not an ESP firmware image" in capsys.readouterr().err


def test_cli_copies_a_uf2_to_the_drive(tmp_path, drive, capsys):
    image = tmp_path / "RPI_PICO-20241129-v1.24.1.uf2"
    image.write_bytes(b"UF2\n" * 50000)
    assert run_cli(cli_args(str(image))) == 0
    check_against_drive(capsys.readouterr().out.split("\r")[-1], drive, image)


def test_cli_erase_declined_flashes_nothing(tmp_path, capsys):
    emu, url = board_with_old_firmware("cli-no")
    image = tmp_path / "fw.bin"
    image.write_bytes(IMAGE)
    assert run_cli(cli_args(str(image), "--port", url, "--erase")) == 1  # stdin is no tty
    assert emu.events == []
    assert "Not erased, nothing flashed" in capsys.readouterr().out


# ---- the real reattach: esptool resets the board, Board.reattach finds its REPL -------------
@pytest.mark.device
@pytest.mark.parametrize("front", ["magic", "cli"])
def test_flash_then_the_next_cell_runs_on_the_new_repl(tmp_path, capsys, front):
    """The board runs a REPL; the flash releases it, esptool resets it into the bootloader
    through DTR/RTS, flashes, hard-resets; the port then serves real MicroPython (the QEMU
    micro:bit, relayed) and Board.reattach finds it."""
    from mpkernel.board.board import Board
    from mpkernel.sim import Simulator

    image = tmp_path / "fw.bin"
    image.write_bytes(IMAGE)
    with Simulator() as sim:
        emu = EspRomEmulator(mode="app", app=RelayApp(sim.pty_path, on_boot=sim.hard_reset))
        emu.flash[0x1000:0x1000 + len(OLD)] = OLD
        url = serve(f"reattach-{front}", emu)
        if front == "cli":
            assert run_cli(cli_args(str(image), "--port", url)) == 0
            text = capsys.readouterr().out
            assert emu.open_ports == 0  # the command closed its connection
        else:
            board = Board(url, reattach_wait=10.0)
            try:
                assert "MicroPython" in board.connect()
                # As if it ran older firmware: what is reported after must be asked anew.
                board.caps = Capabilities(version=(1, 20, 0), firmware="MicroPython v1.20.0")
                out: list[str] = []
                run_magic(magic_ctx(out, peek_board=lambda: board), str(image))
                text = "".join(out)
                assert text.startswith(f"Released {url}.\n")
                assert "42" in board.exec("print(6*7)")  # the next cell just runs
            finally:
                board.close()
        check_against_flash(text, emu, IMAGE)
        assert "boot:download" in emu.events  # reset into the bootloader by DTR/RTS
        last = text.splitlines()[-1]
        assert last.startswith(f"Reconnected on {url}; the board reports micro:bit v1.0.1")
        assert "MicroPython v1.9.2-34-gd64154c73" in last  # what the relayed REPL says of itself
