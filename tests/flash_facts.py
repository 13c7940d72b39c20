"""Read the facts a flash summary states, to check them against what is really in flash.

A summary is checked by its facts (file, size, SHA-256, offset, chip, drive), not its wording:
`stated(summary)` pulls them out, and the tests compare them with the emulated chip's flash
or the file that landed on the drive.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from esp_rom_emulator import EspRomEmulator

_WHAT = r"(?P<name>\S+(?: \S+)*?) \((?P<size>[\d,]+) bytes, SHA-256 (?P<sha256>[0-9a-f]{64})\)"
_ESP = re.compile(r"Wrote " + _WHAT + r" at (?P<offset>0x[0-9a-f]+) on (?P<chip>[\w-]+): "
                  r"(?P<description>[^;]+); (?P<check>[^.]+)\.")
_DRIVE = re.compile(r"Copied " + _WHAT + r" to (?P<drive>.+)\.$", re.M)


def stated(summary: str) -> dict[str, object]:
    """The facts of the one flash summary in `summary` (AssertionError if there is none)."""
    found = _ESP.findall(summary) or _DRIVE.findall(summary)
    assert len(found) == 1, f"expected one flash summary in {summary!r}"
    m = _ESP.search(summary) or _DRIVE.search(summary)
    assert m is not None
    facts: dict[str, object] = dict(m.groupdict())
    facts["size"] = int(str(facts["size"]).replace(",", ""))
    if "offset" in facts:
        facts["offset"] = int(str(facts["offset"]), 16)
        facts["md5_read_back"] = facts.pop("check") == "esptool read it back and its MD5 matched"
    return facts


def check_against_flash(summary: str, emu: EspRomEmulator, image: bytes) -> dict[str, object]:
    """The summary's size, SHA-256, offset and chip are what the emulated ESP32 holds."""
    facts = stated(summary)
    offset, size = int(facts["offset"]), int(facts["size"])  # type: ignore[call-overload]
    assert size == len(image)
    assert hashlib.sha256(emu.flash[offset:offset + size]).hexdigest() == facts["sha256"]
    assert emu.flash[offset:offset + size] == image
    assert facts["chip"] == "ESP32"  # the emulated chip's magic register says ESP32
    # "read back" is claimed exactly when esptool asked the chip for that region's MD5
    assert facts["md5_read_back"] == (f"md5:{offset:#x}:{size}" in emu.events)
    return facts


def check_against_drive(summary: str, drive: Path, image: Path) -> dict[str, object]:
    """The summary names the drive, and its size and SHA-256 are the file that landed there."""
    facts = stated(summary)
    assert Path(str(facts["drive"])) == drive
    landed = (drive / str(facts["name"])).read_bytes()
    assert landed == image.read_bytes()
    assert facts["size"] == len(landed)
    assert facts["sha256"] == hashlib.sha256(landed).hexdigest()
    return facts
