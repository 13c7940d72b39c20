"""The MQTT bridge: umqtt.simple on a board without a network, relayed by the kernel.

The board-side module (board_simple.py) prints one frame per call and reads the answer from
the serial link while the cell runs; this module is the kernel's half, a cell output filter
(see output_filters) that takes the frames out of the cell's output and answers them.

Frames, both ways: 0x1D, a body, '#', the sum of its bytes mod 65536 in hex, 0x1E. From the
board the body is a Python literal (repr, ASCII: bytes reprs, ints, None), read here with
ast.literal_eval; to the board it is a letter and hex (see encode_reply), which the board
reads without eval. Neither has control bytes: a user print cannot end a frame early, text
that only looks like a frame fails its sum and is shown as printed, no Ctrl-C is ever sent.

Answers go to the board in pieces of at most CHUNK bytes; the board asks for the next
with the frame `+` and for all of it again with `!` (its 63-byte UART ring overflowed).
Connections live on this computer across cells, as sockets do on a Wi-Fi board.
"""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mpkernel.host.mqtt.client import CONNECT_WAIT, Connection, MqttError, check_topic

if TYPE_CHECKING:
    from mpkernel.board.board import Board

START, END = "\x1d", "\x1e"
CHUNK = 48  # must match _CHUNK in board_simple.py
MAX_FRAME = 16384  # a "frame" that does not end within this is user text after all
SUB_WAIT = 5.0

Reply = tuple[str, Any]


def frame(literal: str) -> bytes:
    body = literal.encode("ascii")
    return START.encode() + body + b"#%x" % (sum(body) & 0xFFFF) + END.encode()


def encode_reply(reply: Reply) -> str:
    """An answer as the board reads it: n (None), i<int>, x<code> (MQTTException),
    e<text> (OSError), or m<topic hex>,<payload hex> (a message); ASCII without control bytes,
    so no Ctrl-C and no frame byte can appear in it."""
    kind, value = reply
    if kind == "x":
        return f"x{int(value)}"
    if kind == "e":
        # '#' may stay: the board takes the frame's last '#' as the one before the sum, and
        # a topic filter in an error ('sensors/#') must read as the user wrote it.
        return "e" + "".join(c if " " <= c <= "~" else "?" for c in str(value))
    if value is None:
        return "n"
    if isinstance(value, int):
        return f"i{value}"
    topic, payload = value
    return f"m{bytes(topic).hex()},{bytes(payload).hex()}"


def parse_frame(body: str) -> Any:
    """The literal a frame body carries, or None when it is not a bridge frame."""
    literal, _, check = body.rpartition("#")
    try:
        if not literal or int(check, 16) != sum(literal.encode()) & 0xFFFF:
            return None
        value = ast.literal_eval(literal)  # literals only: never eval() of board text
    except (ValueError, SyntaxError, UnicodeEncodeError):
        return None
    return value if isinstance(value, tuple) and value and isinstance(value[0], str) else None


def board_source(microbit: bool) -> tuple[str, str]:
    """The board module as (transport, client), without comment lines (flash is scarce),
    with the reader for this board: the micro:bit's UART, or stdin with poll elsewhere.

    A micro:bit cannot compile both parts at once in its free RAM: there they are two modules.
    """
    text = (Path(__file__).parent / "board_simple.py").read_text()
    parts = dict(re.findall(r"^# -- (\w+) --\n(.*?)(?=^# -- |\Z)", text, re.M | re.S))
    reader = parts["microbit"] if microbit else parts["stdin"]
    head = "# mpkernel MQTT bridge (%mqtt bridge): umqtt.simple's API over the serial link\n"

    def strip(part: str) -> str:
        return "\n".join(ln for ln in part.splitlines() if not ln.lstrip().startswith("#"))

    return head + strip(reader + parts["core"]) + "\n", strip(parts["client"]) + "\n"


def _frame_like(partial: str) -> bool:
    """Could this be the start of a frame body? Bodies are printable ASCII only."""
    return all(" " <= c <= "~" for c in partial)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class Relay:
    """The kernel's bridge state: the board's connections, by the board client's handle."""

    def __init__(self) -> None:
        self.conns: dict[int, Connection] = {}
        self.relayed = 0  # frames answered, for tests and the benchmark

    def for_cell(self, board: Board) -> CellRelay:
        return CellRelay(self, board)

    def drop(self, handle: int) -> None:
        conn = self.conns.pop(handle, None)
        if conn is not None:
            conn.close()

    def close_all(self) -> None:
        for handle in list(self.conns):
            self.drop(handle)


class CellRelay:
    """One cell's part: frames in the output, answers written back to the board."""

    def __init__(self, relay: Relay, board: Board) -> None:
        self.relay = relay
        self.board = board
        self.held = ""
        self.out = b""
        self.pos = 0
        self.pending: Callable[[], Reply | None] | None = None

    # -- the output filter -------------------------------------------------------------------
    def feed(self, text: str) -> str:
        shown: list[str] = []
        data, self.held = self.held + text, ""
        while data:
            start = data.find(START)
            if start < 0:
                shown.append(data)
                break
            shown.append(data[:start])
            data = data[start:]
            end = data.find(END)
            if end < 0:
                if len(data) > MAX_FRAME or not _frame_like(data[1:]):
                    shown.append(data[0])  # a lone 0x1D the user printed: not a frame
                    data = data[1:]
                    continue
                self.held = data  # the rest of the frame is still on its way
                break
            if not self._on_frame(data[1:end]):
                shown.append(data[: end + 1])
            data = data[end + 1 :]
        return "".join(shown)

    def idle(self) -> None:
        self._progress()

    def close(self) -> str:
        """End of the cell: forget a pending request; give back text that was held."""
        self.pending = None
        if self.board.interrupt_requested:
            # The board's loop was stopped: its clients are gone with it, and the next
            # connect() must start afresh (the broker would see a duplicate client id).
            self.relay.close_all()
        held, self.held = self.held, ""
        return held

    # -- answering ---------------------------------------------------------------------------
    def _on_frame(self, body: str) -> bool:
        if body == "+":
            self._send_chunk()
            return True
        if body == "!":
            self.pos = 0
            self._send_chunk()
            return True
        op = parse_frame(body)
        if op is None:
            return False
        try:
            self.pending = self._dispatch(op)
        except MqttError as err:
            self._answer(("x", err.code) if err.code is not None else ("e", _message(err)))
            return True
        except (TypeError, ValueError, IndexError) as err:
            self._answer(("e", f"MQTT bridge: a malformed request ({err})"))
            return True
        self._progress()
        return True

    def _progress(self) -> None:
        if self.pending is None:
            return
        try:
            reply = self.pending()
        except MqttError as err:
            reply = ("x", err.code) if err.code is not None else ("e", _message(err))
        if reply is not None:
            self.pending = None
            self._answer(reply)

    def _answer(self, reply: Reply) -> None:
        self.relay.relayed += 1
        self.out, self.pos = frame(encode_reply(reply)), 0
        self._send_chunk()

    def _send_chunk(self) -> None:
        piece = self.out[self.pos : self.pos + CHUNK]
        self.pos += len(piece)
        if piece and self.board.link is not None:
            self.board.link.write(piece)

    def _conn(self, handle: int) -> Connection:
        conn = self.relay.conns.get(handle)
        if conn is None:
            raise MqttError("Not connected: call connect() first.")
        conn.check_alive()
        return conn

    def _dispatch(self, op: tuple) -> Callable[[], Reply | None]:
        kind, handle = op[0], int(op[1])
        if kind == "C":
            return self._connect(handle, *op[2:])
        if kind == "D":
            self.relay.drop(handle)
            return lambda: ("k", None)
        conn = self._conn(handle)
        if kind == "P":
            topic, msg, retain, qos = op[2:6]
            conn.publish(_text(topic), bytes(msg), int(qos), bool(retain))
            return lambda: ("k", None)
        if kind == "S":
            topic, qos = _text(op[2]), int(op[3])
            mid = conn.subscribe(topic, qos)
            return self._await_suback(conn, mid, topic)
        if kind == "M":
            return lambda: self._next_message(conn, bool(op[2]))
        if kind == "I":
            return lambda: ("k", None)
        raise ValueError(f"unknown operation {kind!r}")

    def _connect(self, handle: int, client_id: bytes, server: bytes, port: int,
                 user: bytes | None, password: bytes | None, keepalive: int, tls: bool,
                 will: tuple | None, clean: bool) -> Callable[[], Reply | None]:
        self.relay.drop(handle)
        cid = _text(client_id)
        for other, conn in list(self.relay.conns.items()):
            if conn.client_id == cid:
                self.relay.drop(other)  # the same client again: the old session goes
        if will is not None:
            check_topic(_text(will[0]), wildcards=False)
            will = (_text(will[0]), bytes(will[1]), bool(will[2]), int(will[3]))
        conn = Connection(
            _text(server), int(port), client_id=cid,
            user=None if user is None else _text(user),
            password=None if password is None else _text(password),
            keepalive=int(keepalive), tls=bool(tls), will=will, clean=bool(clean),
        )
        self.relay.conns[handle] = conn
        conn.start()
        deadline = time.monotonic() + CONNECT_WAIT

        def done() -> Reply | None:
            if not conn.ready.is_set():
                if time.monotonic() < deadline:
                    return None
                self.relay.drop(handle)
                return ("e", f"MQTT: {conn.host}:{conn.port} did not answer within "
                             f"{CONNECT_WAIT:.0f} s")
            if conn.error is not None:
                self.relay.drop(handle)
                raise conn.error
            return ("k", 0)

        return done

    def _await_suback(self, conn: Connection, mid: int, topic: str) -> Callable[[], Reply | None]:
        deadline = time.monotonic() + SUB_WAIT

        def done() -> Reply | None:
            codes = conn.suback(mid)
            if codes is None:
                conn.check_alive()
                if time.monotonic() > deadline:
                    return ("e", f"MQTT: the broker did not confirm the subscription to "
                                 f"{topic!r} within {SUB_WAIT:.0f} s")
                return None
            if any(c >= 0x80 for c in codes):
                return ("x", 0x80)
            return ("k", None)

        return done

    def _next_message(self, conn: Connection, wait: bool) -> Reply | None:
        if conn.messages:
            m = conn.messages.popleft()
            return ("k", (m.topic.encode(), m.payload))
        conn.check_alive()
        return None if wait else ("k", None)


RELAY = Relay()  # the process's relay (one kernel per process), see register()


def register() -> None:
    """Relay for every board cell of this process (output_filters.DEFAULTS)."""
    from mpkernel import output_filters

    output_filters.DEFAULTS["mqtt-bridge"] = RELAY.for_cell


def _message(err: MqttError) -> str:
    return f"MQTT: {err} {err.hint}".strip()
