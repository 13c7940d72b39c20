"""Write a memory image into a paused QEMU through its gdbstub (the GDB remote protocol).

Why not QEMU's `-device loader`: an image it loads into RAM is copied in again at every
system reset, so a board reset (the monitor's, or the board's own machine.reset()) would throw
away every file written since QEMU started. Memory written through the gdbstub is plain RAM
contents that a reset leaves alone, and the gdbstub exists in QEMU on every OS.

Only what the protocol needs for this: no-ack mode, `M` (write memory, hex), `D` (detach).
"""

from __future__ import annotations

import socket
import time

#: bytes per `M` packet: 2 KB of hex, well inside QEMU's 4 KB packet buffer
CHUNK = 1024


class _Remote:
    """One GDB remote-protocol connection: a packet out, its reply back, with a deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.acks = True  # until no-ack mode is on, each packet is acknowledged with '+'
        self.buf = b""

    def request(self, body: bytes) -> bytes:
        self.sock.sendall(b"$%s#%02x" % (body, sum(body) & 0xFF))
        return self._reply()

    def _reply(self) -> bytes:
        while True:
            start = self.buf.find(b"$")
            end = self.buf.find(b"#", start + 1) if start >= 0 else -1
            if start >= 0 and end >= 0 and len(self.buf) >= end + 3:
                body, self.buf = self.buf[start + 1:end], self.buf[end + 3:]
                if self.acks:
                    self.sock.sendall(b"+")
                return body
            if b"-" in self.buf[: start if start >= 0 else len(self.buf)]:
                raise OSError("QEMU's gdbstub asked for a packet again (a corrupted packet)")
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("QEMU's gdbstub did not answer in time")
            self.sock.settimeout(left)
            more = self.sock.recv(4096)
            if not more:
                raise ConnectionResetError("QEMU's gdbstub closed the connection")
            self.buf += more


def write_memory(port: int, base: int, image: bytes, timeout: float = 30.0,
                 host: str = "127.0.0.1") -> int:
    """Write `image` at guest address `base` through the gdbstub at host:port; return the
    bytes sent. All-zero chunks are skipped: the target is fresh RAM, which starts zeroed, and
    a flash image is mostly empty."""
    deadline = time.monotonic() + timeout
    sent = 0
    with socket.create_connection((host, port), timeout) as sock:
        remote = _Remote(sock, deadline)
        if remote.request(b"QStartNoAckMode") == b"OK":
            remote.acks = False
        zero = bytes(CHUNK)
        for offset in range(0, len(image), CHUNK):
            chunk = image[offset:offset + CHUNK]
            if chunk == zero[:len(chunk)]:
                continue
            packet = b"M%x,%x:%s" % (base + offset, len(chunk), chunk.hex().encode())
            answer = remote.request(packet)
            if answer != b"OK":
                raise OSError(f"QEMU's gdbstub refused to write at {base + offset:#x}: "
                              f"{answer.decode(errors='replace')}")
            sent += len(chunk)
        remote.request(b"D")  # detach; the caller resumes the VM through the monitor
    return sent
