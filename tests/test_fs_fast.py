"""files/fast.py's host-side planning: what goes on the wire decodes to the file on a board that
inflates with the window it is told, and the cheapest encoding is the one chosen."""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from pathlib import Path

import pytest

from mpkernel.files import fast as fs_fast
from mpkernel.files.fast import F_DEFLATE, F_SEGMENT_END, FRAME, HEADER, plan_upload

SOURCE = b"".join(p.read_bytes() for p in sorted(Path(fs_fast.__file__).parent.glob("*.py")))


def board_side(plan: fs_fast.Plan) -> bytes:
    """What the board program writes for these frames: raw payloads as they are, deflated
    segments inflated with exactly the window the plan tells the board (zlib refuses a
    back-reference beyond it, as MicroPython's uzlib does with EINVAL)."""
    out, segment = bytearray(), bytearray()
    for flags, payload in plan.frames:
        assert len(payload) <= FRAME
        if flags & F_DEFLATE:
            segment += payload
            if flags & F_SEGMENT_END:
                out += zlib.decompressobj(-plan.wbits).decompress(bytes(segment))
                segment.clear()
        else:
            out += payload
    assert not segment, "a deflated segment never ended"
    return bytes(out)


@pytest.mark.parametrize("mem_free", [8_000, 30_000, 140_000])
def test_every_plan_decodes_to_the_file(mem_free: int) -> None:
    half = SOURCE[:6000] + os.urandom(6000) + SOURCE[6000:12_000]
    for data in (b"", b"x", SOURCE[:20_000], os.urandom(20_000), half, bytes(70_000)):
        plan = plan_upload(data, deflate=True, mem_free=mem_free)
        assert board_side(plan) == data
        assert 9 <= plan.wbits <= 12 or plan.how == "raw"
        # A board holds a deflated segment's compressed bytes in RAM: never more than 1/6.
        size = 0
        for flags, payload in plan.frames:
            size = size + len(payload) if flags & F_DEFLATE else 0
            assert size <= max(1024, mem_free // 6)
            if flags & F_SEGMENT_END:
                size = 0


def test_the_cheapest_encoding_is_chosen() -> None:
    text = plan_upload(SOURCE[:20_000], deflate=True, mem_free=140_000)
    assert text.how == "deflate per file"
    assert text.wire < 20_000 * 0.45  # Python source deflates to well under half
    noise = plan_upload(os.urandom(20_000), deflate=True, mem_free=140_000)
    assert noise.how == "raw" and noise.wire == 20_000 + HEADER.size * 21
    # Text and noise in one file: the text chunks deflated, the noise sent raw.
    mixed = plan_upload(os.urandom(9000) + SOURCE[:16_000] + os.urandom(9000),
                        deflate=True, mem_free=140_000)
    assert mixed.how == "mixed"
    assert {f & F_DEFLATE for f, _ in mixed.frames} == {0, F_DEFLATE}
    # No deflate on the board: raw, whatever the data.
    assert plan_upload(SOURCE[:20_000], deflate=False, mem_free=140_000).how == "raw"


def test_the_window_fits_the_boards_ram() -> None:
    assert fs_fast.window_bits(140_000) == 12  # 4 KB: what a fragmented heap still finds
    assert fs_fast.window_bits(30_000) == 9
    assert fs_fast.window_bits(-1) == 9  # unknown RAM: the smallest window


def test_a_frame_carries_its_sequence_length_and_a_sha256_prefix() -> None:
    payload = bytes(range(256))
    frame = fs_fast.frame_bytes(300, F_DEFLATE, payload)
    seq, flags, length, check = struct.unpack("<BBHI", frame[:8])
    assert (seq, flags, length) == (300 & 0xFF, F_DEFLATE, 256)
    assert frame[8:] == payload
    assert struct.pack("<I", check) == hashlib.sha256(payload).digest()[:4]
