"""The %put / %get summary lines (issue 11, item 4): what they state, and only that."""

from __future__ import annotations

from mpkernel.files.api import GetResult, PutResult


def put(resends: int, frames: int, digest: str = "adler32:80e6612b") -> str:
    return PutResult("a.bin", 4096, 0.9, digest, "Adler-32", "stream", resends,
                     frames=frames).summary()


def test_a_few_frames_sent_twice_are_routine_and_not_reported_as_trouble() -> None:
    assert "twice" not in put(resends=3, frames=17)
    assert "lost" not in put(resends=0, frames=17)


def test_many_frames_sent_twice_are_reported_as_a_share_of_the_upload() -> None:
    line = put(resends=13, frames=17)
    assert "the line lost bytes, so 13 of 17 frames went twice" in line


def test_the_checksum_kind_is_named_once_and_the_digits_follow() -> None:
    line = put(resends=0, frames=17)
    assert line.endswith("verified: the board's Adler-32 80e6612b matches.")
    sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    modern = PutResult("a.bin", 4096, 0.9, sha, "SHA-256", "fast", 0, frames=5).summary()
    assert modern.endswith("verified: the board's SHA-256 9f86d081884c7d65 matches.")
    got = GetResult("a.bin", b"x" * 10, 0.1, "adler32:0b4c02f9", "Adler-32", "stream")
    assert "the board's Adler-32 0b4c02f9 of a.bin match." in got.summary("a.bin")
