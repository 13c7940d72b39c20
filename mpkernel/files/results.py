"""What fs.FileSystem hands back: its errors and the results of its operations, with the
summary lines the magics show (each states only what was measured or checked)."""

from __future__ import annotations

from dataclasses import dataclass

from mpkernel.errors import MpkernelError


class FileError(MpkernelError):
    """A file operation failed on the board for a reason a user can act on."""


class FileNotFound(FileError):
    pass


class IsADirectory(FileError):
    pass


class BoardFull(FileError):
    pass


class ReadOnly(FileError):
    pass


class Unsupported(FileError):
    """The firmware cannot do this at all (folders on a flat filesystem)."""


@dataclass(frozen=True)
class FsInfo:
    flat: bool  # no folders (the micro:bit)
    stream: bool  # raw UART channel with Ctrl-C switchable (see transfer.py)
    digest: str  # "sha256" | "adler32"
    rename: bool
    mtime: bool


@dataclass(frozen=True)
class Entry:
    path: str
    size: int
    is_dir: bool = False
    mtime: int | None = None


@dataclass
class PutResult:
    path: str
    size: int
    seconds: float
    digest: str
    digest_kind: str
    method: str
    resends: int = 0
    note: str = ""  # how the upload deviated from the usual way, in words
    frames: int = 0  # frames the upload was cut into (0: not framed)

    def summary(self) -> str:
        rate = self.size / self.seconds if self.seconds > 0 else 0.0
        # A few frames sent twice is routine on a line without flow control (and on the
        # emulated board whenever its host is busy); it is worth a word only when it cost
        # the upload a noticeable share of its time.
        extra = (f"; the line lost bytes, so {self.resends} of {self.frames} frames went "
                 "twice" if self.frames and self.resends * 4 > self.frames else "")
        return (f"Wrote {self.path} ({self.size} bytes) in {self.seconds:.2f} s "
                f"({rate / 1024:.1f} KB/s{extra}); verified: the board's {self.digest_kind} "
                f"{shown_digest(self.digest)} matches." + (f" {self.note}" if self.note else ""))


def shown_digest(digest: str) -> str:
    """A digest as the user reads it: hex only (the kind is named beside it), 16 digits."""
    return digest.rpartition(":")[2][:16]


@dataclass
class GetResult:
    path: str
    data: bytes
    seconds: float
    digest: str  # computed on the board, of its copy; the download matched it
    digest_kind: str
    method: str
    retries: int = 0  # downloads that did not match and were fetched again

    def summary(self, saved_as: str) -> str:
        """What was saved and what was checked (the size and the board's checksum)."""
        size = len(self.data)
        rate = size / self.seconds if self.seconds > 0 else 0.0
        again = (f" (fetched again after {self.retries} download{'s' * (self.retries > 1)} "
                 "that did not match)" if self.retries else "")
        return (f"Saved {saved_as} ({size} bytes) in {self.seconds:.2f} s "
                f"({rate / 1024:.1f} KB/s){again}; verified: the size the board lists and "
                f"the board's {self.digest_kind} {shown_digest(self.digest)} of {self.path} "
                "match.")


@dataclass(frozen=True)
class DfResult:
    total: int | None
    free: int
    how: str  # how the figures were obtained, in words
