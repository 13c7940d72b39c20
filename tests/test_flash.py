"""flash_esp end to end: real esptool 5 against the emulated ESP32 ROM loader.

The front end (%flash, `mpkernel flash`, drives, reattach) is tests/test_flash_frontend.py.
"""

from __future__ import annotations

import hashlib

import pytest
from esp_rom_emulator import EspRomEmulator, make_app_image, serve
from flash_facts import check_against_flash

from mpkernel.flash.writers import FlashError, FlashResult, flash_esp

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
    description = "ESP32: ESP32-D0WD-V3 (revision v3.0), 4MB flash, MAC 24:62:ab:cd:ef:01"
    assert result == FlashResult("the firmware", len(IMAGE), hashlib.sha256(IMAGE).hexdigest(),
                                 "esp32", description, 0x1000, verified=True)
    assert description in "".join(out)
    # one progress bar that reaches its total, closed once with the summary
    updates = [b for b in bars if b[0] == "update"]
    assert updates and updates[-1][1] == updates[-1][2]
    closes = [b for b in bars if b[0] == "close"]
    assert closes == [("close", result.summary())]
    facts = check_against_flash(result.summary(), emu, IMAGE)
    assert facts["md5_read_back"] and facts["description"] == description[len("ESP32: "):]
    # compressed writes through the stub, then a hard reset into the new firmware
    assert "stub" in emu.events and any(e.startswith("defl_begin:0x1000") for e in emu.events)
    assert emu.events[-1] == "reset" and emu.open_ports == 0
    assert emu.in_waiting() and b"MicroPython v1.24.1" in emu.host_read(4096, 0.5)


def test_flash_without_stub_uses_rom_commands():
    emu, url = board_with_old_firmware("rom")
    result = flash_esp(url, IMAGE, use_stub=False, baud=115200, write=lambda s: None)
    assert "stub" not in emu.events
    check_against_flash(result.summary(), emu, IMAGE)


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
