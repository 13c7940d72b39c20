"""The one exception family mpkernel raises for things a user must read.

Every error carries a plain-words message (what happened) and a hint (the way out), so the
kernel can show both without knowing where the error came from.
"""

from __future__ import annotations


class MpkernelError(Exception):
    """An error meant for the user: `str(err)` says what happened, `hint` what to do next."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint

    def user_text(self) -> str:
        text = str(self)
        return f"{text}\n{self.hint}" if self.hint else text


class PortError(MpkernelError):
    """The port cannot be opened or used (missing, busy, permission, no USB identity)."""


class PortBusy(PortError):
    """Another program holds the port."""


class LinkLost(MpkernelError):
    """The port vanished while in use (cable pulled, USB re-enumeration)."""


class BoardTimeout(MpkernelError):
    """The board did not answer within a bounded time."""


class BoardReset(MpkernelError):
    """The board reset (soft or hard) while we talked to it; its variables are gone."""

    def __init__(self, message: str, hint: str = "", boot_output: str = "") -> None:
        super().__init__(message, hint)
        self.boot_output = boot_output


class DeviceError(MpkernelError):
    """Code raised an exception on the board.

    `ename`/`evalue`/`traceback` are parsed from the board's traceback text.
    """

    def __init__(self, ename: str, evalue: str, traceback: list[str]) -> None:
        super().__init__(f"{ename}: {evalue}" if evalue else ename)
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback


class ResetUnsupported(MpkernelError):
    """The link cannot reset the board through DTR/RTS (a pty, a socket without modem lines)."""


class CellRefused(MpkernelError):
    """A cell was refused before anything was sent (control bytes, bad magic arguments)."""


class Interrupted(MpkernelError):
    """The user interrupted the cell between two steps of a multi-step operation."""
