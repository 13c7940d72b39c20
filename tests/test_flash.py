"""%flash end to end: real esptool 5 against the emulated ESP32 ROM loader."""

from __future__ import annotations

import argparse
import shutil

import pytest
from esp_rom_emulator import EspRomEmulator, RelayApp, make_app_image, serve

from mpkernel.flash import FlashError, FlashResult, flash_esp, run_cli
from mpkernel.magics import MagicContext, registry

IMAGE = make_app_image()
OLD = b"OLDFIRMWARE!" * 100  # what the board held before; must survive a refused flash


class Bar:
    def __init__(self, log: list, label: str, total: int) -> None:
        self.log, self.label, self.total = log, label, total

    def update(self, done: int) -> None:
        self.log.append(("update", done, self.total))

    def close(self, summary: str = "") -> None:
        self.log.append(("close", summary))


def board_with_old_firmware(name: str, **kw) -> tuple[EspRomEmulator, str]:
    emu = EspRomEmulator(**kw)
    emu.flash[0x1000:0x1000 + len(OLD)] = OLD
    emu.flash[0x300000:0x300000 + len(OLD)] = OLD  # "files" in the filesystem partition
    return emu, serve(name, emu)


def test_flash_leaves_exactly_the_image_at_the_esp32_offset_and_boots_it():
    emu, url = board_with_old_firmware("exact")
    out: list[str] = []
    bars: list = []
    result = flash_esp(url, IMAGE, write=out.append,
                       make_progress=lambda label, total: Bar(bars, label, total))
    assert emu.flash[0x1000:0x1000 + len(IMAGE)] == IMAGE
    assert emu.flash[:0x1000] == b"\xff" * 0x1000  # nothing written below the offset
    assert emu.flash[0x300000:0x300000 + len(OLD)] == OLD  # no --erase: files survive
    assert result == FlashResult("esp32", result.description, 0x1000, len(IMAGE),
                                 "the firmware")
    text = "".join(out)
    assert "ESP32-D0WD-V3 (revision v3.0), 4MB flash, MAC 24:62:ab:cd:ef:01" in text
    # one progress bar that reaches its total, closed once with a summary
    updates = [b for b in bars if b[0] == "update"]
    assert updates and updates[-1][1] == updates[-1][2]
    assert [b for b in bars if b[0] == "close"] == [
        ("close", f"Wrote the firmware: {len(IMAGE)} bytes at 0x1000, MD5 verified.")]
    # compressed writes through the stub, then a hard reset into the new firmware
    assert "stub" in emu.events and any(e.startswith("defl_begin:0x1000") for e in emu.events)
    assert emu.events[-1] == "reset" and emu.open_ports == 0
    assert emu.in_waiting() and b"MicroPython v1.24.1" in emu.host_read(4096, 0.5)


def test_flash_without_stub_uses_rom_commands():
    emu, url = board_with_old_firmware("rom")
    flash_esp(url, IMAGE, use_stub=False, baud=115200, write=lambda s: None)
    assert emu.flash[0x1000:0x1000 + len(IMAGE)] == IMAGE
    assert "stub" not in emu.events


def test_an_image_for_another_chip_is_refused_before_anything_is_erased():
    emu, url = board_with_old_firmware("wrongchip")
    s3_image = make_app_image(chip_id=9)
    with pytest.raises(FlashError) as info:
        flash_esp(url, s3_image, erase=True, write=lambda s: None)
    message = info.value.user_text()
    assert "image for ESP32-S3, but the board is ESP32" in message
    assert "Nothing was written" in message and "ESP32_GENERIC" in message
    assert emu.flash[0x1000:0x1000 + len(OLD)] == OLD
    assert emu.flash[0x300000:0x300000 + len(OLD)] == OLD
    assert not [e for e in emu.events if e in ("stub", "erase_flash") or "begin" in e]
    assert emu.open_ports == 0


def test_a_file_that_is_not_an_image_is_refused_and_with_chip_given_the_port_is_untouched():
    emu, url = board_with_old_firmware("notimage")
    with pytest.raises(FlashError, match="not an ESP firmware image: it starts with 0x50"):
        flash_esp(url, b"PK\x03\x04" + bytes(100), chip="esp32", erase=True,
                  write=lambda s: None)
    assert emu.events == []  # refused before the port was opened
    assert emu.flash[0x1000:0x1000 + len(OLD)] == OLD


def test_an_interrupted_transfer_reports_what_to_do_and_releases_the_port():
    emu, url = board_with_old_firmware("cut", cut_after_blocks=1)
    out: list[str] = []
    with pytest.raises(FlashError) as info:
        flash_esp(url, IMAGE, write=out.append)
    message = info.value.user_text()
    assert "interrupted" in message and "flash again" in message
    assert "Retrying once at 115200 baud" in "".join(out)
    assert emu.open_ports == 0  # released, whatever happened


def test_no_serial_data_says_hold_boot_and_retries_once_at_115200():
    emu, url = board_with_old_firmware("dead", mode="dead")
    out: list[str] = []
    with pytest.raises(FlashError) as info:
        flash_esp(url, IMAGE, connect_attempts=1, write=out.append)
    message = info.value.user_text()
    assert "no serial data received" in message
    assert "hold the BOOT" in message and "--baud 115200" in message
    assert "".join(out).count("Retrying once at 115200 baud") == 1
    assert emu.events.count("open") == 2 and emu.open_ports == 0


def magic_ctx(out: list[str], answer: str | None = None, **kw) -> MagicContext:
    return MagicContext(get_board=lambda: None, write=out.append,
                        make_progress=lambda label, total: Bar([], label, total),
                        ask=(lambda q: out.append(q) or answer) if answer is not None else None,
                        **kw)


def run_magic(ctx: MagicContext, line: str) -> None:
    m = registry()["%flash"]
    m.handler(ctx, m.parse(line))


def test_erase_without_yes_asks_in_words_and_does_nothing_on_no(tmp_path):
    emu, url = board_with_old_firmware("ask")
    image = tmp_path / "fw.bin"
    image.write_bytes(IMAGE)
    out: list[str] = []
    run_magic(magic_ctx(out, answer="n"), f"{image} --erase --port {url}")
    assert "deletes every file on the board" in out[0]
    assert "Not erased, nothing flashed" in "".join(out)
    assert emu.events == [] and emu.flash[0x300000:0x300000 + len(OLD)] == OLD


def test_erase_with_yes_erases_everything_then_flashes_and_attaches(tmp_path):
    emu, url = board_with_old_firmware("erase")
    image = tmp_path / "fw.bin"
    image.write_bytes(IMAGE)
    out: list[str] = []
    attached: list[str] = []

    class NewBoard:
        firmware = "MicroPython v1.24.1 on 2024-11-29"

    def attach(port: str) -> NewBoard:
        attached.append(port)
        return NewBoard()

    run_magic(magic_ctx(out, attach=attach), f"{image} --erase --yes --port {url}")
    assert "erase_flash" in emu.events
    assert emu.flash[0x300000:0x300000 + len(OLD)] == b"\xff" * len(OLD)
    assert emu.flash[0x1000:0x1000 + len(IMAGE)] == IMAGE
    assert attached == [url]
    assert "Now running MicroPython v1.24.1" in "".join(out)


def test_a_board_that_re_enumerates_is_attached_under_its_new_name(tmp_path, monkeypatch):
    import mpkernel.magics.flash as magic_module

    emu, url = board_with_old_firmware("renamed")
    image = tmp_path / "fw.bin"
    image.write_bytes(IMAGE)
    identity = object()
    monkeypatch.setattr(magic_module, "identity_of", lambda port: identity)
    monkeypatch.setattr(magic_module, "find_by_identity",
                        lambda ident: "/dev/ttyACM1" if ident is identity else None)
    attached: list[str] = []

    def attach(port: str):
        attached.append(port)
        raise FlashError("no REPL on /dev/ttyACM1 yet")

    out: list[str] = []
    run_magic(magic_ctx(out, attach=attach), f"{image} --port {url}")
    text = "".join(out)
    assert attached == ["/dev/ttyACM1"] and "came back as /dev/ttyACM1" in text
    # the flash succeeded; the REPL not coming back is said plainly, not raised
    assert "written and verified, but the REPL did not come back" in text


def test_cli_flashes_a_file(tmp_path, capsys):
    emu, url = board_with_old_firmware("cli")
    image = tmp_path / "ESP32_GENERIC-20241129-v1.24.1.bin"
    image.write_bytes(IMAGE)
    parser = argparse.ArgumentParser()
    from mpkernel.flash import add_cli_arguments

    add_cli_arguments(parser)
    assert run_cli(parser.parse_args([str(image), "--port", url])) == 0
    assert emu.flash[0x1000:0x1000 + len(IMAGE)] == IMAGE
    assert "Done: ESP32_GENERIC-20241129-v1.24.1.bin on ESP32" in capsys.readouterr().out
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\0" * 64)
    assert run_cli(parser.parse_args([str(bad), "--port", url, "--chip", "esp32"])) == 1
    assert "not an ESP firmware image" in capsys.readouterr().err


@pytest.mark.device
def test_flash_releases_the_kernels_board_and_the_next_cell_runs_on_the_new_repl(tmp_path):
    """The board runs a REPL; %flash releases it, esptool resets it into the bootloader
    through DTR/RTS, flashes, hard-resets; the port then serves real MicroPython (the QEMU
    micro:bit, relayed) and the kernel's Board reattaches to it."""
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm is not installed")
    from mpkernel.board import Board
    from mpkernel.sim import Simulator

    image = tmp_path / "fw.bin"
    image.write_bytes(IMAGE)
    with Simulator() as sim:
        emu = EspRomEmulator(mode="app", app=RelayApp(sim.pty_path, on_boot=sim.hard_reset))
        emu.flash[0x1000:0x1000 + len(OLD)] = OLD
        url = serve("reattach", emu)
        board = Board(url, reattach_wait=10.0)
        try:
            assert "MicroPython" in board.connect()
            out: list[str] = []
            run_magic(magic_ctx(out, peek_board=lambda: board), str(image))
            text = "".join(out)
            assert f"Released {url}" in text and "Reconnected on" in text
            assert "Now running" in text and "MicroPython v1.9.2" in text  # the relayed REPL
            assert emu.flash[0x1000:0x1000 + len(IMAGE)] == IMAGE
            assert "boot:download" in emu.events  # reset into the bootloader by DTR/RTS
            assert "42" in board.exec("print(6*7)")  # the next cell just runs
        finally:
            board.close()
