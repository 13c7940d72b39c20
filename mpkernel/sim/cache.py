"""Where the modern emulated board's firmware is built and found (no build code here, so the
board can be started without importing the builder)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

BOARD_DIR = Path(__file__).resolve().parent / "boards" / "qemu"
BUILD_COMMAND = "mpkernel sim --build"
TOOLCHAIN = "make, gcc-arm-none-eabi and libnewlib-arm-none-eabi"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mpkernel"


def board_hash(board_dir: Path = BOARD_DIR) -> str:
    """A short hash of the board folder's files (names and contents)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in board_dir.iterdir() if p.is_file()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def find_firmware(board_dir: Path = BOARD_DIR) -> Path | None:
    """The built image for this board folder, if any (the newest source version wins)."""
    override = os.environ.get("MPKERNEL_QEMU_FIRMWARE")
    if override:
        return Path(override)
    found = sorted((cache_root() / "firmware").glob(f"*-{board_hash(board_dir)}/firmware.elf"))
    return found[-1] if found else None
