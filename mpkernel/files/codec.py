"""Pure functions for file transfer: chunk encodings, frame layout, checksums, sizing, plans.

Nothing here talks to a board, so all of it is unit-tested on the host. `transfer` sends
what these functions build; `api` decides which method a board's capabilities allow.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from dataclasses import dataclass

from mpkernel.errors import MpkernelError

# -- stream frames (the raw binary channel) ----------------------------------------------
# A frame is: where its payload goes in the file (the byte offset mod 2**16, 2 bytes LE),
# length (2 bytes LE), sum of the payload bytes mod 2**16 (2 bytes LE), the payload, and one
# trailer byte, (offset + length + 0x5A) mod 256. The trailer is what notices a byte lost
# inside a frame: the frame is then completed by the next frame's first byte, and the sum
# alone still matched when that byte equalled the lost one (1 loss in 256, seen in benchmarks
# under load); that byte is the next offset's low byte, which is never the trailer. Length 0
# at the file's size ends the file; ABORT_LEN at offset 0 asks the board to give up. Frames
# are named by offset, not by a counter, so the host may cut the data again after a loss: a
# copy the board already has starts before its position and is skipped, whatever its length.
FRAME_HEADER = 6
FRAME_OVERHEAD = FRAME_HEADER + 1  # the trailer
ABORT_LEN = 0xFFFF
ACK = b"k"  # + the board's position (2 bytes LE): every byte before it is written
NAK = b"N"  # + the position: the frame that should start there is damaged or missing
FULL = b"F"  # the filesystem filled up (ENOSPC); followed by the bytes written so far
DONE = b"D"  # the end frame arrived and the file is closed


def trailer(offset: int, length: int) -> int:
    return (offset + length + 0x5A) & 0xFF


def frame(offset: int, payload: bytes) -> bytes:
    """One upload frame: header (offset, length, 16-bit sum), the payload, the trailer."""
    return (struct.pack("<HHH", offset & 0xFFFF, len(payload), sum(payload) & 0xFFFF)
            + payload + bytes([trailer(offset, len(payload))]))


def end_frame(offset: int) -> bytes:
    return struct.pack("<HHH", offset & 0xFFFF, 0, 0) + bytes([trailer(offset, 0)])


def abort_frame() -> bytes:
    return struct.pack("<HHH", 0, ABORT_LEN, 0)


def position(low16: int, near: int) -> int:
    """The file position whose low 16 bits the board sent, at or after `near`."""
    return near + ((low16 - near) & 0xFFFF)


def parse_download_header(header: bytes) -> tuple[int, int]:
    """A download frame header: (length, 16-bit sum). Length 0 ends the file."""
    length, total = struct.unpack("<HH", header)
    return length, total


def sum16(data: bytes) -> int:
    return sum(data) & 0xFFFF


# -- checksums ---------------------------------------------------------------------------
def adler32(data: bytes) -> int:
    """What the board computes in Python where it has no hashlib (see BOARD_ADLER)."""
    return zlib.adler32(data) & 0xFFFFFFFF


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest(data: bytes, kind: str) -> str:
    """The host's side of a board checksum: "sha256" (hex) or "adler32:" + 8 hex digits."""
    if kind == "sha256":
        return sha256(data)
    return f"adler32:{adler32(data):08x}"


# -- encodings for the exec-per-chunk path (boards without a raw channel) -------------------
@dataclass(frozen=True)
class Encoded:
    """One chunk as a Python expression the board evaluates to bytes."""

    kind: str  # "repr" | "base64" | "deflate"
    expr: str

    def __len__(self) -> int:
        return len(self.expr)


def repr_literal(data: bytes) -> str:
    """The shortest bytes literal Python and MicroPython both read back exactly."""
    return repr(data)


def encode_chunk(data: bytes, *, binascii: bool, deflate: bool) -> Encoded:
    """Pick the cheapest expression the firmware can decode: repr for mostly-printable text,
    base64 for other bytes (where binascii exists), deflate+base64 when it is shorter still.

    The decoders `__b64` and `__inf` are defined on the board by the upload's set-up step.
    """
    options = [Encoded("repr", repr_literal(data))]
    if binascii:
        options.append(Encoded("base64", f"__b64({base64.b64encode(data).decode()!r})"))
        if deflate and len(data) >= 64:
            # Raw deflate with a 512-byte window, the one the board's DeflateIO is given
            # (its default is 256 bytes: a 32 KB window gave EINVAL there, issue 9).
            packer = zlib.compressobj(9, zlib.DEFLATED, -9)
            packed = packer.compress(data) + packer.flush()
            options.append(Encoded("deflate", f"__inf({base64.b64encode(packed).decode()!r})"))
    return min(options, key=len)


# -- sizing ------------------------------------------------------------------------------
def exec_chunk_size(mem_free: int, raw_paste: bool, binascii: bool) -> int:
    """Payload bytes per exec on the exec-per-chunk path.

    The board holds the whole program (up to 4x the payload for repr of binary bytes) plus
    the decoded bytes and the compiler's own allocations, so keep the program near a sixth
    of free RAM; raw-paste compiles as it reads, which needs less.
    """
    if mem_free <= 0:
        mem_free = 16 * 1024
    budget = mem_free // (4 if raw_paste else 6)
    worst = 1.4 if binascii else 4.0  # wire bytes per payload byte, worst case
    return _clamp(int(budget / worst), 64, 4096)


def stream_frame_size(mem_free: int) -> int:
    """Payload bytes per stream frame: the board assembles one frame in RAM before writing
    it, next to the receive pieces; small frames also make a resend after a loss cheap."""
    if mem_free <= 0:
        return 256
    return _clamp(mem_free // 24, 64, 512) // 64 * 64


def stream_window(frame_size: int, rate: float = 11_520.0, rtt: float = 0.060) -> int:
    """Frames in flight: enough to cover a round trip (USB latency both ways and the board's
    turnaround) so the wire, not the acknowledgements, sets the pace; at least 2."""
    in_flight = rate * rtt + frame_size
    return max(2, min(8, -(-int(in_flight) // frame_size)))


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


# -- paths -------------------------------------------------------------------------------
class BadPath(MpkernelError):
    """A path the board would reject."""


def check_path(path: str, *, flat: bool) -> str:
    """Refuse a remote path before sending it; return it normalised.

    The micro:bit's flat filesystem takes names without "/" of up to 120 bytes; other boards
    take "/"-separated paths. No board takes control characters or quotes in names here.
    """
    if not path or path in (".", "/"):
        raise BadPath("No file name given.", "Give a name such as main.py.")
    bad = sorted({c for c in path if ord(c) < 32 or c in "\\\"'" or ord(c) == 127})
    if bad:
        raise BadPath(
            f"The name {path!r} contains characters the board's filesystem rejects: "
            + ", ".join(repr(c) for c in bad) + ".",
            "Use letters, digits, '.', '_' and '-'.",
        )
    if flat:
        name = path.lstrip("/")
        if "/" in name:
            raise BadPath(
                f"{path!r} is in a folder, but this board's filesystem is flat (it has no "
                "folders).",
                "Use a plain name such as data.txt.",
            )
        if len(name.encode()) > 120:
            raise BadPath(f"The name {name!r} is longer than the 120 bytes this board allows.")
        return name
    return path.rstrip("/") if len(path) > 1 else path


def temp_name(path: str) -> str:
    """Where an upload goes before it replaces `path` (same folder, so rename is atomic)."""
    head, _, tail = path.rpartition("/")
    return f"{head}/{tail}.mpk~" if head or path.startswith("/") else f"{tail}.mpk~"


TEMP_SUFFIX = ".mpk~"

# The micro:bit filesystem stores files in 128-byte chunks carrying 126 data bytes; the first
# chunk also holds the name and its length. Measured on the emulated board: 120 chunks (one
# file of 15,104 bytes named "y" fills it). Real boards with smaller firmware have more, so
# this estimate errs on the safe side there.
CHUNK_DATA = 126
MICROBIT_CHUNKS = 120
# Chunks never to be used. Measured on the emulated micro:bit (v1.9.2 under QEMU): once a
# write takes the filesystem to ~107-112 of its 120 chunks after files were removed, the
# firmware can overwrite another file's chunks without raising an error (a 5,000-byte file
# kept, a 3,000-byte one removed, one file written: intact at 108 live chunks, the kept file
# cut to 212 bytes at 112; a verified temporary damaged by a copy at 107 after other tests'
# churn; a replace at ~100 after 96 random steps of the fault soak). Writes that reclaim
# removed files' chunks move the whole filesystem (its "sweep"); that step is where it goes
# wrong near full. 30 keeps every write well below where it was seen.
SAFETY_CHUNKS = 30


def chunks_for(name: str, size: int) -> int:
    """Chunks a file takes on the micro:bit filesystem."""
    return -(-(size + len(name.encode()) + 2) // CHUNK_DATA)
JOURNAL = ".mpkj"


# -- sync plans --------------------------------------------------------------------------
@dataclass(frozen=True)
class SyncPlan:
    upload: list[str]  # relative paths whose content differs or that are missing
    same: list[str]
    delete: list[str]  # remote files with no local counterpart (deleted only on request)


def plan_sync(local: dict[str, str], remote: dict[str, str | None]) -> SyncPlan:
    """Compare content digests: `local` {relpath: digest}, `remote` {relpath: digest or None
    when unknown}. A file is uploaded when the board's digest differs or is missing."""
    upload = sorted(p for p, d in local.items() if remote.get(p) != d)
    same = sorted(p for p, d in local.items() if remote.get(p) == d)
    delete = sorted(p for p in remote if p not in local)
    return SyncPlan(upload, same, delete)
