"""Unit tests for the pure transfer functions: encodings, frames, checksums, sizing, plans."""

from __future__ import annotations

import ast
import base64
import os
import struct
import zlib

import pytest

from mpkernel.files import codec


def _decode(enc: codec.Encoded) -> bytes:
    """Evaluate an encoded chunk the way the board does, with the same decoders."""
    def inf(text: str) -> bytes:
        return zlib.decompress(base64.b64decode(text), -15)

    return eval(enc.expr, {"__b64": base64.b64decode, "__inf": inf})  # noqa: S307 - own output


SOURCE = (b"def blink(pin, times=3):\n    for _ in range(times):\n        pin.on()\n"
          b"        sleep_ms(100)  # wait\n        pin.off()\n") * 20


@pytest.mark.parametrize("data", [b"", b"\x00\x01\x03\x04\x1f", bytes(range(256)),
                                  os.urandom(700), SOURCE, "héllo ✓\n".encode()])
@pytest.mark.parametrize("caps", [dict(binascii=False, deflate=False),
                                  dict(binascii=True, deflate=False),
                                  dict(binascii=True, deflate=True)])
def test_every_encoding_round_trips_any_bytes(data: bytes, caps: dict) -> None:
    assert _decode(codec.encode_chunk(data, **caps)) == data


def test_text_goes_as_repr_random_bytes_as_base64() -> None:
    assert codec.encode_chunk(b"print('hi')\n" * 10, binascii=True, deflate=False).kind == "repr"
    assert codec.encode_chunk(os.urandom(300), binascii=True, deflate=False).kind == "base64"
    # Without binascii on the board, repr is the only choice, whatever it costs.
    assert codec.encode_chunk(os.urandom(300), binascii=False, deflate=False).kind == "repr"


def test_deflate_is_chosen_when_it_is_shorter_and_beats_the_wire() -> None:
    enc = codec.encode_chunk(SOURCE, binascii=True, deflate=True)
    assert enc.kind == "deflate"
    assert len(enc) < len(SOURCE)  # compressed text costs less than the wire rate


def test_repr_of_binary_costs_much_more_than_base64() -> None:
    data = os.urandom(3000)
    # What exec_chunk_size's worst cases assume: 4 wire bytes per byte for repr, 1.4 base64.
    assert len(codec.encode_chunk(data, binascii=False, deflate=False)) > 2.5 * len(data)
    assert len(codec.encode_chunk(data, binascii=True, deflate=False)) < 1.4 * len(data)


def test_frames_carry_offset_length_sum_and_trailer() -> None:
    payload = b"\x03\x04\xff" * 10
    out = codec.frame(65536 + 700, payload)
    offset, length, total = struct.unpack("<HHH", out[:6])
    assert (offset, length, total) == (700, 30, sum(payload) & 0xFFFF)
    assert out[6:-1] == payload and out[-1] == (700 + 30 + 0x5A) & 0xFF
    assert codec.end_frame(3)[2:4] == b"\x00\x00" and len(codec.end_frame(3)) == 7
    assert struct.unpack("<HHH", codec.abort_frame()) == (0, codec.ABORT_LEN, 0)
    # The board's 16-bit position, read back as the file offset at or after the last one.
    assert codec.position(700, near=65536 + 100) == 65536 + 700
    assert codec.position(50, near=65500) == 65536 + 50


def test_a_lost_byte_replaced_by_the_next_frames_first_byte_fails_the_check() -> None:
    """The case a plain sum misses: the frame's trailer stands in for the lost byte (same
    value), and the next frame's first byte is read where the trailer should be."""
    data = bytearray(range(256))
    data[6] = codec.trailer(0, 256)
    first, second = codec.frame(0, bytes(data)), codec.frame(256, b"more")
    damaged = first[: 6 + 6] + first[6 + 7 :] + second[:1]  # data[6] lost on the line
    payload, tail = damaged[6 : 6 + 256], damaged[6 + 256]
    assert payload != data and sum(payload) & 0xFFFF == sum(data) & 0xFFFF
    assert tail != codec.trailer(0, 256)  # the board rejects it


def test_adler_digest_matches_the_board_format() -> None:
    # The board prints '%04x%04x' % (b, a) after the "adler32:" prefix.
    data = b"Wikipedia"
    assert codec.digest(data, "adler32") == "adler32:11e60398"
    assert len(codec.digest(data, "adler32")) > 10  # longer than MicroPython interns
    assert codec.digest(data, "sha256") == codec.sha256(data)


@pytest.mark.parametrize("mem", [-1, 2000, 7500, 9000, 60000, 200000])
def test_chunk_sizes_fit_the_free_ram(mem: int) -> None:
    frame = codec.stream_frame_size(mem)
    assert 64 <= frame <= 512 and frame % 64 == 0
    if mem > 0:
        assert frame * 8 <= max(mem, 64 * 8)
    chunk = codec.exec_chunk_size(mem, raw_paste=False, binascii=False)
    # A repr'd chunk (up to 4x) must stay well inside the board's free RAM.
    if mem > 0:
        assert chunk * 4 <= max(mem // 4, 256)


def test_window_covers_the_round_trip() -> None:
    for size in (128, 256, 512):
        window = codec.stream_window(size)
        assert window * size >= 11_520 * 0.032  # an FTDI bridge's 16 ms, both ways
        assert 2 <= window <= 8


@pytest.mark.parametrize("name", ["", "/", "a\x00b", "bad\nname", "it's", 'q"'])
def test_bad_names_are_refused_with_the_reason(name: str) -> None:
    with pytest.raises(codec.BadPath) as err:
        codec.check_path(name, flat=True)
    assert str(err.value)


def test_flat_filesystems_refuse_folders_and_long_names() -> None:
    with pytest.raises(codec.BadPath, match="flat"):
        codec.check_path("lib/x.py", flat=True)
    with pytest.raises(codec.BadPath, match="120"):
        codec.check_path("a" * 121, flat=True)
    assert codec.check_path("/main.py", flat=True) == "main.py"
    assert codec.check_path("lib/x.py/", flat=False) == "lib/x.py"


def test_temp_names_stay_in_the_same_folder() -> None:
    assert codec.temp_name("main.py") == "main.py.mpk~"
    assert codec.temp_name("lib/x.py") == "lib/x.py.mpk~"
    assert codec.temp_name("/lib/x.py") == "/lib/x.py.mpk~"


def test_sync_plan_uploads_changed_and_missing_only() -> None:
    plan = codec.plan_sync({"a.py": "1", "b.py": "2", "c.py": "3"},
                           {"a.py": "1", "b.py": "X", "old.py": "9"})
    assert plan.upload == ["b.py", "c.py"]
    assert plan.same == ["a.py"]
    assert plan.delete == ["old.py"]


def test_repr_literals_read_back_in_python() -> None:
    data = bytes(range(256))
    assert ast.literal_eval(codec.repr_literal(data)) == data
